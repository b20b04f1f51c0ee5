"""Image features of artworks (``keyart[vision]``): colour, composition, faces, lettering and a perceptual
hash, computed from the pixels with OpenCV so that a new artwork is known before anyone tags it.

``image_features(path)`` gives one artwork's versioned feature vector (``FEATURES`` documents each entry,
``FEATURE_VERSION`` its definition; ``Scaling`` standardizes them over a catalog's images into its
embeddings, ``EMBEDDING_VERSION``); ``near_duplicates`` finds artworks of a pool whose perceptual hashes
nearly agree; ``keyart.vision.batch`` computes a catalog's features in parallel with a content-hash cache
and writes them into the artworks' embeddings (``keyart vision extract``, docs/vision.md).
"""

from __future__ import annotations

from keyart.vision.features import (
    EMBEDDING_NAMES,
    EMBEDDING_VERSION,
    FEATURE_NAMES,
    FEATURE_VERSION,
    FEATURES,
    MAX_PIXELS,
    FeatureDoc,
    ImageError,
    ImageFeatures,
    Scaling,
    VisionUnavailableError,
    embedding,
    hamming,
    image_features,
    image_features_from_bytes,
    near_duplicates,
)

__all__ = [
    "EMBEDDING_NAMES",
    "EMBEDDING_VERSION",
    "FEATURES",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "MAX_PIXELS",
    "FeatureDoc",
    "ImageError",
    "ImageFeatures",
    "Scaling",
    "VisionUnavailableError",
    "embedding",
    "hamming",
    "image_features",
    "image_features_from_bytes",
    "near_duplicates",
]
