"""One artwork's image features: decoding with its checks, the feature vector (version ``FEATURE_VERSION``),
its documented embedding, and the perceptual hash with near-duplicate search.

The image is decoded only after its header was read and judged (format, size), at a reduced scale where
the format allows it (JPEG's DCT scaling), and analysed at ``WORK_SIDE`` pixels on its long side, so one
image costs a few tens of milliseconds on one core whatever its size. Every step is deterministic: no
randomness, and OpenCV runs on one thread while features are computed.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from keyart.errors import KeyartError, ValidationError

#: The definition of the feature vector: bumped whenever a feature's meaning or computation changes, so
#: cached features of an older definition are recomputed, never mixed with newer ones.
FEATURE_VERSION = 1
#: How feature values become the embedding written into a catalog: 1 was the fixed centre and scale of
#: ``FEATURES`` (rough values of photographs); 2 standardizes over the catalog's own images (``Scaling``),
#: because a catalog's artworks are not typical photographs (one poster format, one house style) and a
#: feature far from 0 or with a spread many times another's misleads a ridge penalty shared by the columns.
EMBEDDING_VERSION = 2
#: Fewer images than this are too few to estimate a spread from: ``Scaling.fit`` falls back to the fixed
#: centre and scale of ``FEATURES``.
MIN_SCALING_IMAGES = 20
#: A feature whose spread over a catalog is below this share of its ``FEATURES`` scale is constant there
#: (every poster has the same aspect ratio): its embedding is 0, nothing can be learned from it.
CONSTANT_SHARE = 1e-3
#: Images larger than this many pixels are refused from their header, before any decoding.
MAX_PIXELS = 100_000_000
#: Images smaller than this on a side are refused: there is nothing to analyse.
MIN_SIDE = 16
#: The long side, in pixels, at which the features are computed.
WORK_SIDE = 256
#: The side of the square grey image on which the spectral-residual saliency map is computed.
SALIENCY_SIDE = 64
#: Formats accepted (Pillow's names).
FORMATS = ("PNG", "JPEG", "WEBP")


class ImageError(ValidationError):
    """An image file keyart cannot use (empty, not an image, corrupt, truncated, too large or too small);
    the message names the file."""


class VisionUnavailableError(KeyartError, ImportError):
    """OpenCV is not installed: install the extra with ``pip install 'keyart[vision]'``."""


@dataclass(frozen=True)
class FeatureDoc:
    """One entry of the feature vector: its name, group, meaning, and the fixed ``centre`` and ``scale``
    that turn it into the embedding's ``(value - centre) / scale`` (0 is a typical artwork)."""

    name: str
    group: str
    meaning: str
    centre: float
    scale: float


FEATURES: tuple[FeatureDoc, ...] = (
    FeatureDoc("brightness", "colour", "Mean luma (Rec. 601) in [0, 1].", 0.45, 0.2),
    FeatureDoc("contrast", "colour", "Standard deviation of luma (RMS contrast), in [0, 0.5].", 0.2, 0.1),
    FeatureDoc("saturation", "colour", "Mean HSV saturation in [0, 1].", 0.35, 0.2),
    FeatureDoc(
        "colourfulness",
        "colour",
        "Hasler and Süsstrunk's M on 0-255 RGB: 0 for grey, about 33 'moderately', 109 'extremely'.",
        35.0,
        25.0,
    ),
    FeatureDoc("warmth", "colour", "Warm/cool balance: mean (R - B) / 255 in [-1, 1]; > 0 warm.", 0.0, 0.15),
    *(
        FeatureDoc(
            f"hue_{hue}",
            "colour",
            f"Share of the image's chroma whose hue is {hue} (six 60-degree sectors centred on red, "
            "yellow, green, cyan, blue, magenta; the six sum to 1, or are all 0 for a grey image).",
            1 / 6,
            0.2,
        )
        for hue in ("red", "yellow", "green", "cyan", "blue", "magenta")
    ),
    FeatureDoc("aspect", "composition", "log(width / height): 0 square, > 0 landscape.", 0.0, 0.5),
    FeatureDoc("edge_density", "composition", "Share of pixels on a Canny edge (busy vs clean).", 0.08, 0.06),
    FeatureDoc(
        "saliency_x",
        "composition",
        "Centre of mass of the spectral-residual saliency map, across, in [0, 1] (0 left).",
        0.5,
        0.15,
    ),
    FeatureDoc("saliency_y", "composition", "The same, down, in [0, 1] (0 top).", 0.5, 0.15),
    FeatureDoc(
        "saliency_spread",
        "composition",
        "RMS distance of the saliency mass from its centre, in frame units (0.41 for a uniform map).",
        0.37,
        0.05,
    ),
    FeatureDoc(
        "subject_fill",
        "composition",
        "Share of the frame taken by the box holding the central 90% of the saliency mass (5-95% "
        "quantiles across and down): 0.81 when saliency is spread over the whole frame, about 0.7 for a "
        "close-up whose subject fills it, small for a small subject.",
        0.75,
        0.1,
    ),
    FeatureDoc(
        "thirds",
        "composition",
        "Rule of thirds: 1 - (distance of the saliency centre to the nearest thirds intersection) / "
        "(sqrt(2) / 3), clipped at 0: 1 on an intersection, 0.5 at the frame's centre, 0 in a corner.",
        0.55,
        0.15,
    ),
    FeatureDoc("face_count", "people", "Number of frontal faces found (Haar cascade, up to 10).", 0.5, 1.0),
    FeatureDoc(
        "face_share", "people", "The largest face's share of the frame (0 without faces).", 0.02, 0.05
    ),
    FeatureDoc(
        "face_dx",
        "people",
        "The largest face's centre across, minus the frame's centre (0 without).",
        0.0,
        0.2,
    ),
    FeatureDoc("face_dy", "people", "The same, down (0 without faces).", 0.0, 0.2),
    FeatureDoc(
        "text_share",
        "text",
        "Share of the frame inside regions that look like lettering (dense, horizontal runs of strokes "
        "found by a morphological gradient).",
        0.03,
        0.05,
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
EMBEDDING_NAMES: tuple[str, ...] = tuple(f"vision_{n}" for n in FEATURE_NAMES)
_CENTRE = np.array([f.centre for f in FEATURES])
_SCALE = np.array([f.scale for f in FEATURES])
_MAX_FACES = 10


@dataclass(frozen=True)
class ImageFeatures:
    """The features of one image: ``values`` in ``FEATURE_NAMES`` order (version ``FEATURE_VERSION``),
    its 64-bit DCT perceptual hash, and its size and format as read from the header."""

    values: tuple[float, ...]
    phash: int
    width: int
    height: int
    format: str

    def as_dict(self) -> dict[str, float]:
        """The values by feature name."""
        return dict(zip(FEATURE_NAMES, self.values, strict=True))


def _vectors(values: Any) -> np.ndarray:
    """Feature vectors (one, or rows of many) as a float array, checked for their length."""
    v = np.asarray(values, dtype=float)
    if v.shape[-1:] != (len(FEATURES),):
        raise ValidationError(f"A feature vector has {len(FEATURES)} values. Got shape {v.shape}.")
    return v


@dataclass(frozen=True)
class Scaling:
    """How feature values become an embedding: ``(value - centre) / scale`` per feature, a feature of
    infinite scale giving 0. ``Scaling.fit`` standardizes over a catalog's images (0 is the catalog's
    typical artwork, every feature that varies there has spread 1), ``Scaling.fixed`` is the documented
    centre and scale of ``FEATURES``. ``images``: how many images it was fitted on (0 for the fixed one);
    ``feature_version``: the ``FEATURE_VERSION`` of the values it was fitted on."""

    centre: tuple[float, ...]
    scale: tuple[float, ...]
    images: int
    feature_version: int = FEATURE_VERSION

    def __post_init__(self) -> None:
        centre, scale = np.asarray(self.centre, dtype=float), np.asarray(self.scale, dtype=float)
        if centre.shape != (len(FEATURES),) or scale.shape != (len(FEATURES),):
            raise ValidationError(f"A Scaling has {len(FEATURES)} centres and scales.")
        if not np.isfinite(centre).all() or not (scale > 0).all():
            raise ValidationError("A Scaling needs finite centres and positive scales.")

    @classmethod
    def fixed(cls) -> Scaling:
        """The fixed centre and scale of ``FEATURES`` (embedding version 1)."""
        return cls(tuple(_CENTRE.tolist()), tuple(_SCALE.tolist()), 0)

    @classmethod
    def fit(cls, values: Any) -> Scaling:
        """Standardize over these feature vectors (rows, one per artwork): their mean and standard
        deviation; a feature constant over them (spread below ``CONSTANT_SHARE`` of its ``FEATURES``
        scale) gets an infinite scale. Fewer than ``MIN_SCALING_IMAGES`` rows: ``Scaling.fixed()``."""
        v = _vectors(values).reshape(-1, len(FEATURES))
        if not np.isfinite(v).all():
            raise ValidationError("Feature vectors contain NaN or inf.")
        if len(v) < MIN_SCALING_IMAGES:
            return cls.fixed()
        sd = v.std(axis=0)
        scale = np.where(sd > CONSTANT_SHARE * _SCALE, sd, np.inf)
        return cls(tuple(v.mean(axis=0).tolist()), tuple(scale.tolist()), len(v))

    def apply(self, values: Any) -> np.ndarray:
        """Feature vectors (one, or rows of many) as embeddings."""
        return (_vectors(values) - np.asarray(self.centre)) / np.asarray(self.scale)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (an infinite scale as null); ``from_dict`` reads it back."""
        return {
            "embedding_version": EMBEDDING_VERSION,
            "feature_version": self.feature_version,
            "images": self.images,
            "features": list(FEATURE_NAMES),
            "centre": list(self.centre),
            "scale": [s if math.isfinite(s) else None for s in self.scale],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Scaling:
        """The ``Scaling`` of ``to_dict``'s form; a ``ValidationError`` when it is not a scaling of these
        features."""
        try:
            if data["features"] != list(FEATURE_NAMES):
                raise ValidationError("A Scaling of other features than keyart.vision's.")
            scale = tuple(math.inf if s is None else float(s) for s in data["scale"])
            return cls(
                tuple(float(c) for c in data["centre"]),
                scale,
                int(data["images"]),
                int(data["feature_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"Not a keyart.vision Scaling ({exc!r}).") from None


def embedding(values: Any, scaling: Scaling | None = None) -> np.ndarray:
    """Feature vectors (one, or rows of many) as embeddings with ``scaling`` (``Scaling.fixed()``, the
    documented centre and scale of ``FEATURES``, when None), so that 0 is a typical artwork and the entries
    share a scale (what the featurizer's ridge wants)."""
    return (scaling or _FIXED).apply(values)


_FIXED = Scaling.fixed()


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise VisionUnavailableError(
            f"keyart.vision needs OpenCV: pip install 'keyart[vision]' ({exc})."
        ) from None
    if not hasattr(cv2, "CascadeClassifier"):
        raise VisionUnavailableError(
            f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them): "
            "pip install 'opencv-python-headless>=4.8,<5'."
        )
    return cv2


@cache
def _face_cascade() -> Any:
    """The frontal-face Haar cascade shipped inside the OpenCV wheel, loaded once per process."""
    cv2 = _cv2()
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise VisionUnavailableError(f"OpenCV's face cascade {path} is missing or unreadable.")
    return cascade


@contextlib.contextmanager
def _one_thread(cv2: Any) -> Iterator[None]:
    """OpenCV on one thread for the duration: the same result every time, and no contention with the
    process pool that runs one image per core."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def image_features(path: str | Path) -> ImageFeatures:
    """The features of the image file at ``path`` (PNG, JPEG or WebP); an ``ImageError`` naming the file
    when it is empty, not such an image, corrupt, truncated, too large or too small."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read the file ({exc.strerror or exc}).") from None
    return image_features_from_bytes(data, str(p))


def image_features_from_bytes(data: bytes, name: str) -> ImageFeatures:
    """The features of an image given as its file's bytes; ``name`` names it in errors."""
    cv2 = _cv2()
    rgb, width, height, fmt = _decode(data, name)
    with _one_thread(cv2):
        values, phash = _compute(cv2, rgb, width, height)
    return ImageFeatures(values, phash, width, height, fmt)


def _decode(data: bytes, name: str) -> tuple[np.ndarray, int, int, str]:
    """The image as RGB uint8 at no less than ``WORK_SIDE`` on its long side where the format can decode
    reduced (JPEG), checked from its header first: format, then size."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{name}: the file is empty.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError:
            im = None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            raise ImageError(f"{name}: not a PNG, JPEG or WebP image.") from None
        if im is None:  # Pillow's own bomb check fired: read the size without its check
            im = _open_unchecked(data, name)
        width, height = im.size
        if width * height > MAX_PIXELS:
            raise ImageError(
                f"{name}: {width:,} x {height:,} pixels is more than keyart.vision reads "
                f"({MAX_PIXELS:,} pixels); refused from its header, before decoding."
            )
        if min(width, height) < MIN_SIDE:
            raise ImageError(f"{name}: {width} x {height} pixels is too small (under {MIN_SIDE} on a side).")
        s = min(1.0, WORK_SIDE / max(width, height))
        try:
            im.draft("RGB", (math.ceil(width * s), math.ceil(height * s)))
            if im.mode.startswith("I"):  # 16-bit grey: Pillow's RGB conversion would clip it at 255
                grey = np.clip(np.asarray(im, dtype=np.float64) / 257.0, 0, 255).round().astype(np.uint8)
                rgb = np.repeat(grey[..., None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise ImageError(f"{name}: a corrupt or truncated {im.format} image ({exc}).") from None
    return rgb, width, height, str(im.format)


def _open_unchecked(data: bytes, name: str) -> Any:
    """The image's header read without Pillow's decompression-bomb check (keyart's own check follows)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Exception:
        raise ImageError(f"{name}: not a PNG, JPEG or WebP image.") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _compute(cv2: Any, rgb: np.ndarray, width: int, height: int) -> tuple[tuple[float, ...], int]:
    """The feature values (``FEATURES`` order) and the perceptual hash of a decoded image, analysed at
    ``WORK_SIDE`` on its long side; ``width`` and ``height`` are the file's own."""
    h, w = rgb.shape[:2]
    s = WORK_SIDE / max(h, w)
    if s < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    colour = _colour(cv2, rgb)
    composition = _composition(cv2, gray, width, height)
    people = _faces(cv2, gray)
    text = _text_share(cv2, gray)
    values = np.concatenate([colour, composition, people, [text]])
    return tuple(float(v) for v in values), _phash(cv2, gray)


def _colour(cv2: Any, rgb: np.ndarray) -> np.ndarray:
    """brightness, contrast, saturation, colourfulness, warmth and the six hue shares."""
    f = rgb.reshape(-1, 3).astype(np.float64)
    r, g, b = f[:, 0], f[:, 1], f[:, 2]
    luma = (f @ np.array([0.299, 0.587, 0.114])) / 255.0
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(np.float64)
    chroma = (f.max(axis=1) - f.min(axis=1)) / 255.0
    sector = np.floor(hsv[:, 0] * (6.0 / 256.0) + 0.5).astype(np.int64) % 6
    hues = np.bincount(sector, weights=chroma, minlength=6)
    total = hues.sum()
    hues = hues / total if total > 1e-3 * len(chroma) else np.zeros(6)
    head = [luma.mean(), luma.std(), hsv[:, 1].mean() / 255.0, colourfulness, (r - b).mean() / 255.0]
    return np.concatenate([head, hues])


def _composition(cv2: Any, gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """aspect, edge density, saliency centre and spread, subject fill and rule of thirds."""
    edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), 50, 150)
    sal = spectral_residual(cv2, gray)
    wx, wy = sal.sum(axis=0), sal.sum(axis=1)
    pos = (np.arange(SALIENCY_SIDE) + 0.5) / SALIENCY_SIDE
    cx, cy = float(wx @ pos), float(wy @ pos)
    spread = math.sqrt(float(wx @ (pos - cx) ** 2 + wy @ (pos - cy) ** 2))
    fill = _central_extent(wx) * _central_extent(wy)
    thirds = np.array([1 / 3, 2 / 3])
    nearest = math.hypot(float(np.abs(thirds - cx).min()), float(np.abs(thirds - cy).min()))
    thirds_score = max(0.0, 1.0 - nearest / (math.sqrt(2) / 3))
    return np.array(
        [
            math.log(width / height),
            float(np.count_nonzero(edges)) / edges.size,
            cx,
            cy,
            spread,
            fill,
            thirds_score,
        ]
    )


def spectral_residual(cv2: Any, gray: np.ndarray) -> np.ndarray:
    """Hou and Zhang's (2007) spectral-residual saliency map of a grey image, on a ``SALIENCY_SIDE``
    square grid, normalised to sum to 1: the log-amplitude spectrum minus its local mean keeps what is
    unexpected in the image; back in space with the original phase and smoothed, it marks the salient."""
    small = cv2.resize(gray, (SALIENCY_SIDE, SALIENCY_SIDE), interpolation=cv2.INTER_AREA).astype(np.float64)
    spectrum = np.fft.fft2(small / 255.0)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    sal = cv2.GaussianBlur(sal, (0, 0), 2.5)
    total = sal.sum()
    if not np.isfinite(total) or total <= 0:  # a uniform image: no place stands out
        return np.full(sal.shape, 1.0 / sal.size)
    return sal / total


def _central_extent(weights: np.ndarray) -> float:
    """The width, in frame units, between the 5% and 95% quantiles of a marginal of the saliency mass."""
    cdf = np.cumsum(weights)
    lo, hi = np.searchsorted(cdf, [0.05, 0.95])
    return float(min(hi, len(weights) - 1) - lo + 1) / len(weights)


def _faces(cv2: Any, gray: np.ndarray) -> np.ndarray:
    """face_count, the largest face's share of the frame and its offset from the frame's centre."""
    h, w = gray.shape
    side = max(20, round(0.06 * min(h, w)))
    found = _face_cascade().detectMultiScale(
        cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5, minSize=(side, side)
    )
    boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(4)
    x, y, bw, bh = boxes[np.lexsort((boxes[:, 1], boxes[:, 0], -boxes[:, 2] * boxes[:, 3]))[0]]
    return np.array(
        [min(len(boxes), _MAX_FACES), bw * bh / (w * h), (x + bw / 2) / w - 0.5, (y + bh / 2) / h - 0.5]
    )


def _text_share(cv2: Any, gray: np.ndarray) -> float:
    """The share of the frame inside lettering-like regions: strokes (a morphological gradient above
    Otsu's threshold) closed into horizontal runs, kept when the run is dense with strokes, wider than
    tall and of a letter's height."""
    h, w = gray.shape
    grad = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    otsu, _ = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _, strokes = cv2.threshold(grad, max(otsu, 48.0), 255, cv2.THRESH_BINARY)
    runs = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
    x, y, bw, bh = (stats[1:, i] for i in range(4))
    ink = np.array(
        [np.count_nonzero(strokes[y[i] : y[i] + bh[i], x[i] : x[i] + bw[i]]) for i in range(n - 1)]
    )
    density = ink / np.maximum(bw * bh, 1)
    keep = (density > 0.35) & (bh >= 6) & (bh <= 0.25 * h) & (bw >= 1.5 * bh) & (bw <= 0.95 * w)
    mask = np.zeros((h, w), dtype=bool)
    for i in np.flatnonzero(keep):
        mask[y[i] : y[i] + bh[i], x[i] : x[i] + bw[i]] = True
    return float(mask.mean())


def _phash(cv2: Any, gray: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash: the 8 x 8 lowest frequencies of the 32 x 32 grey image, each bit
    set when its coefficient is above their median (the DC term left out of the median)."""
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def hamming(a: Any, b: Any) -> np.ndarray:
    """Bitwise Hamming distances between 64-bit hashes (broadcast like numpy)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return _POPCOUNT[x[..., None].view(np.uint8)].sum(axis=-1)


def near_duplicates(hashes: Mapping[str, int], max_distance: int = 10) -> list[tuple[str, str, int]]:
    """Pairs ``(id, other id, distance)`` whose perceptual hashes differ in at most ``max_distance`` of
    their 64 bits (10 by default: resized, recompressed or retouched copies fall within it, different
    images rarely do), sorted by distance then ids."""
    if not isinstance(max_distance, int) or isinstance(max_distance, bool) or not 0 <= max_distance <= 64:
        raise ValidationError(f"max_distance must be an integer in [0, 64]. Got {max_distance!r}.")
    ids = sorted(hashes)
    try:
        h = np.array([int(hashes[i]) for i in ids], dtype=np.uint64)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError("hashes must map ids to unsigned 64-bit integers.") from None
    d = hamming(h[:, None], h[None, :])
    i, j = np.nonzero(np.triu(d <= max_distance, k=1))
    pairs = [(ids[a], ids[b], int(d[a, b])) for a, b in zip(i, j, strict=True)]
    return sorted(pairs, key=lambda p: (p[2], p[0], p[1]))
