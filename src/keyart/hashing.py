"""Stable hashes: the same in every process, machine and version (unlike Python's ``hash``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from keyart import kernels

_MASK63 = (1 << 63) - 1


def stable_hash(text: str, salt: str = "") -> int:
    """A 64-bit BLAKE2b hash of ``text``, personalized by ``salt``."""
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=salt.encode()[:16].ljust(16, b"\0"))
    return int.from_bytes(digest.digest(), "little")


@lru_cache(maxsize=1 << 18)
def artwork_key(artwork_id: str) -> int:
    """A non-negative 63-bit key of an artwork id (0 is never returned: it marks padding)."""
    return (stable_hash(artwork_id, "artwork") & _MASK63) or 1


def artwork_keys(artwork_ids: np.ndarray) -> np.ndarray:
    """Keys of an array of artwork ids (any shape); '' (padding) maps to 0."""
    flat = [artwork_key(a) if a else 0 for a in np.asarray(artwork_ids, dtype=object).ravel().tolist()]
    return np.asarray(flat, dtype=np.int64).reshape(np.shape(artwork_ids))


@lru_cache(maxsize=1 << 18)
def title_key(title_id: str) -> int:
    return stable_hash(title_id, "title")


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer, a bijective 64-bit mixer, over uint64 arrays of any shape (wrapping
    arithmetic); a ``keyart.kernels`` kernel."""
    return kernels.splitmix64(x)


class BucketHasher:
    """Cached signed feature hashing of strings into a fixed number of buckets.

    Tokens of an exact ``vocabulary`` own the first buckets (sign +1, never colliding); every other token
    is hashed into the remaining ones.
    """

    def __init__(self, buckets: int, salt: str, vocabulary: Sequence[str] = ()) -> None:
        self.buckets, self.salt = buckets, salt
        self._cache: dict[str, tuple[int, float]] = {t: (i, 1.0) for i, t in enumerate(vocabulary)}
        self._open = buckets - len(vocabulary)

    def __call__(self, token: str) -> tuple[int, float]:
        hit = self._cache.get(token)
        if hit is None:
            h = stable_hash(token, self.salt)
            hit = (self.buckets - self._open + h % self._open, 1.0 if (h >> 63) & 1 else -1.0)
            self._cache[token] = hit
        return hit

    def signed(self, tokens: Sequence[str], normalize: bool = True) -> np.ndarray:
        v = np.zeros(self.buckets)
        for t in tokens:
            b, s = self(t)
            v[b] += s
        if normalize and tokens:
            v /= len(tokens)
        return v

    def onehot(self, token: str) -> np.ndarray:
        v = np.zeros(self.buckets)
        if token and self.buckets:
            v[self(token)[0]] = 1.0
        return v
