"""A catalog's image features: every artwork with an ``image`` is read, its features computed in parallel
(a process pool) or taken from a Parquet cache keyed by the image's content hash, and written into the
artworks' embeddings; near-duplicate artworks within a title's pool are reported.

Only new or changed images are computed: the cache holds one row per distinct image content (SHA-256) and
feature version, so a renamed file, or one image shared by several artworks, is computed once. A file that
cannot be used is reported with its error and the rest of the catalog is done. An artwork without an image,
or whose image failed, gets no embedding (``None``): the featurizer reads that as zeros, which in the
embedding's centred units (``keyart.vision.Scaling``: standardized over the catalog's images) is the
catalog's typical artwork; an embedding it held before is removed, since a catalog's embeddings share one
length and one meaning.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from keyart.catalog import Artwork, Catalog
from keyart.errors import ValidationError
from keyart.vision.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    ImageError,
    ImageFeatures,
    Scaling,
    image_features_from_bytes,
    near_duplicates,
)

#: The cache's file name in the images folder when no other is given.
DEFAULT_CACHE_NAME = ".keyart-vision-cache.parquet"


@dataclass(frozen=True)
class Extraction:
    """What ``extract_catalog`` did: the catalog with the embeddings written, how many distinct images were
    computed now or taken from the cache, the artworks whose image failed (id: error naming the file),
    those without an image, those whose earlier embedding was removed, near-duplicate pairs
    ``(title_id, artwork_id, other artwork_id, Hamming distance)`` within a title, and the ``Scaling`` the
    embeddings were written with."""

    catalog: Catalog
    computed: int
    cached: int
    failed: Mapping[str, str]
    without_image: tuple[str, ...]
    removed_embeddings: tuple[str, ...]
    duplicates: tuple[tuple[str, str, str, int], ...]
    scaling: Scaling


def image_path(artwork: Artwork, images: Path) -> Path:
    """Where an artwork's image file is: its ``image`` as given when absolute, else under ``images``.
    A URL is refused: keyart.vision reads local files only."""
    if artwork.image is None:
        raise ValidationError(f"Artwork {artwork.artwork_id!r} has no image.")
    if "://" in artwork.image:
        raise ImageError(f"{artwork.image}: a URL; keyart vision reads local files (download it first).")
    return images / artwork.image


def content_hash(path: Path) -> str:
    """The SHA-256 of a file's content, as hex; an ``ImageError`` naming the file when it cannot be read."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the file ({exc.strerror or exc}).") from None
    return h.hexdigest()


def _features_of(path: str) -> tuple[str, ImageFeatures | str]:
    """One image's content hash and its features, or the error that names it (run in a worker)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        return "", f"{p}: cannot read the file ({exc.strerror or exc})."
    digest = hashlib.sha256(data).hexdigest()
    try:
        return digest, image_features_from_bytes(data, path)
    except ImageError as exc:
        return digest, str(exc)


def _compute(
    paths: list[str], jobs: int, progress: Callable[[int, int], None] | None
) -> Iterable[tuple[str, str, ImageFeatures | str]]:
    """``(path, content hash, features or error)`` per path, in completion order; a pool of ``jobs``
    processes (started afresh, never forked from a threaded parent) when ``jobs`` > 1."""
    total = len(paths)
    if jobs == 1 or total <= 1:
        for done, path in enumerate(paths, 1):
            yield path, *_features_of(path)
            if progress:
                progress(done, total)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, total), mp_context=context) as pool:
        futures = {pool.submit(_features_of, path): path for path in paths}
        for done, future in enumerate(as_completed(futures), 1):
            yield futures[future], *future.result()
            if progress:
                progress(done, total)


def read_cache(path: Path) -> dict[str, ImageFeatures]:
    """The cached features of this ``FEATURE_VERSION`` by content hash (empty when there is no cache)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.exists():
        return {}
    try:
        table = pq.read_table(path)
        rows = table.filter(pc.equal(table["feature_version"], FEATURE_VERSION)).to_pylist()
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise ValidationError(
            f"{path}: not a keyart vision cache ({exc}); remove it to start afresh."
        ) from None
    return {
        r["sha256"]: ImageFeatures(tuple(r["values"]), int(r["phash"]), r["width"], r["height"], r["format"])
        for r in rows
    }


def write_cache(path: Path, features: Mapping[str, ImageFeatures]) -> None:
    """Replace the cache atomically with ``features`` (by content hash) of this ``FEATURE_VERSION``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted(features)
    table = pa.table(
        {
            "sha256": pa.array(keys, pa.string()),
            "feature_version": pa.array([FEATURE_VERSION] * len(keys), pa.int32()),
            "values": pa.array([list(features[k].values) for k in keys], pa.list_(pa.float64())),
            "phash": pa.array([features[k].phash for k in keys], pa.uint64()),
            "width": pa.array([features[k].width for k in keys], pa.int64()),
            "height": pa.array([features[k].height for k in keys], pa.int64()),
            "format": pa.array([features[k].format for k in keys], pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def extract_catalog(
    catalog: Catalog,
    images: str | Path,
    *,
    cache: str | Path | None = None,
    jobs: int = 1,
    max_distance: int = 10,
    progress: Callable[[int, int], None] | None = None,
    scaling: Scaling | None = None,
) -> Extraction:
    """Compute (or take from ``cache``, default ``images/.keyart-vision-cache.parquet``) the features of
    every artwork's image, relative paths under ``images``, with ``jobs`` processes; return the catalog with
    the embeddings written (the input is left as it is) and what was done. ``progress(done, total)`` is
    called after each computed image; ``max_distance``: the perceptual-hash distance of near-duplicates.
    ``scaling``: how values become embeddings; None fits it to this catalog's artworks with features
    (``Scaling.fit``). Give the one an earlier run fitted to keep the embeddings' meaning as artworks
    arrive (a model learned on them reads new artworks in the same units)."""
    images = Path(images)
    if scaling is not None and not isinstance(scaling, Scaling):
        raise ValidationError(f"scaling must be a keyart.vision.Scaling. Got {type(scaling).__name__}.")
    if scaling is not None and scaling.feature_version != FEATURE_VERSION:
        raise ValidationError(
            f"The scaling was fitted on features of version {scaling.feature_version}, these are version "
            f"{FEATURE_VERSION}: fit it again."
        )
    if not images.is_dir():
        raise ValidationError(f"images: {images} is not a folder.")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValidationError(f"jobs must be a positive integer. Got {jobs!r}.")
    near_duplicates({}, max_distance)  # its argument check, before any work
    cache_path = Path(cache) if cache is not None else images / DEFAULT_CACHE_NAME
    known = read_cache(cache_path)
    failed: dict[str, str] = {}
    digests: dict[str, str] = {}  # artwork id -> content hash
    paths: dict[str, str] = {}  # artwork id -> path
    for a in catalog.artworks.values():
        if a.image is None:
            continue
        try:
            path = image_path(a, images)
            digests[a.artwork_id] = content_hash(path)
            paths[a.artwork_id] = str(path)
        except ImageError as exc:
            failed[a.artwork_id] = str(exc)
    first_path = {d: paths[i] for i, d in reversed(digests.items())}  # one file per distinct content
    todo = sorted(path for d, path in first_path.items() if d not in known)
    cached = len({d for d in digests.values() if d in known})
    errors: dict[str, str] = {}
    computed = 0
    for path, digest, result in _compute(todo, jobs, progress):
        if isinstance(result, ImageFeatures):
            known[digest] = result
            computed += 1
        else:
            errors[path] = result
    if computed:
        write_cache(cache_path, known)
    for artwork_id, digest in digests.items():
        if digest not in known:  # failed now (or changed while it was read: then it is reported too)
            path = first_path[digest]
            failed[artwork_id] = errors.get(path, f"{path}: changed while it was read; run again.")
    if scaling is None:
        fitted = [known[d].values for i, d in digests.items() if i not in failed and d in known]
        scaling = Scaling.fit(np.array(fitted).reshape(-1, len(FEATURE_NAMES)))
    return _written(catalog, known, digests, failed, computed, cached, max_distance, scaling)


def _written(
    catalog: Catalog,
    known: Mapping[str, ImageFeatures],
    digests: Mapping[str, str],
    failed: Mapping[str, str],
    computed: int,
    cached: int,
    max_distance: int,
    scaling: Scaling,
) -> Extraction:
    """The catalog with each artwork's embedding from its image's features (``None`` without them)."""
    vectors: dict[str, Any] = {
        i: scaling.apply(known[d].values) for i, d in digests.items() if i not in failed and d in known
    }
    artworks = []
    removed = []
    for a in catalog.artworks.values():
        vec = vectors.get(a.artwork_id)
        if vec is None and a.embedding is not None:
            removed.append(a.artwork_id)
        artworks.append(replace(a, embedding=None if vec is None else tuple(vec.tolist())))
    by_title: dict[str, dict[str, int]] = {}
    for a in artworks:
        if a.active and a.artwork_id in vectors:
            by_title.setdefault(a.title_id, {})[a.artwork_id] = known[digests[a.artwork_id]].phash
    duplicates = tuple(
        (title_id, x, y, d)
        for title_id, hashes in by_title.items()
        for x, y, d in near_duplicates(hashes, max_distance)
    )
    return Extraction(
        catalog=Catalog(catalog.titles.values(), artworks),
        computed=computed,
        cached=cached,
        failed=dict(sorted(failed.items())),
        without_image=tuple(a.artwork_id for a in catalog.artworks.values() if a.image is None),
        removed_embeddings=tuple(removed),
        duplicates=duplicates,
        scaling=scaling,
    )
