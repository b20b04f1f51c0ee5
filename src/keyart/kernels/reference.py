"""The numpy reference of every kernel: what the compiled kernels (``keyart.kernels.compiled``) are
tested equal to, and what runs where numba is not installed or ``KEYART_KERNELS=numpy``."""

from __future__ import annotations

import numpy as np

_GAMMA, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_POW_53 = float(2**53)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer, a bijective 64-bit mixer, vectorized over uint64 arrays (wrapping
    arithmetic: numpy does not warn on integer overflow of arrays)."""
    shape = np.shape(x)
    x = np.array(x, dtype=np.uint64, ndmin=1)
    x += _GAMMA
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x.reshape(shape)


def unit(x: np.ndarray) -> np.ndarray:
    """The top 53 bits of uint64 values as floats in [0, 1)."""
    return (x >> _S11).astype(np.float64) / _TWO_POW_53


def sticky_mix(member_keys: np.ndarray, title_keys: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """(n,) uniforms of (member key, title key, period): splitmix(m ^ splitmix(t ^ splitmix(p)))."""
    pk = np.asarray(periods, dtype=np.int64).astype(np.uint64)
    return unit(splitmix64(member_keys ^ splitmix64(title_keys ^ splitmix64(pk))))


def member_offsets(member_keys: np.ndarray, salt: np.uint64, sticky_seconds: float) -> np.ndarray:
    """(n,) each member's period offset in [0, sticky_seconds) from its key (finite sticky_seconds)."""
    return unit(splitmix64(splitmix64(member_keys ^ salt))) * sticky_seconds


def period_index(timestamps: np.ndarray, sticky_seconds: float, offsets: np.ndarray) -> np.ndarray:
    """floor((t - offset) / sticky_seconds) as int64 (finite, positive sticky_seconds)."""
    return np.floor((timestamps - offsets) / sticky_seconds).astype(np.int64)


def sample_index(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one index per row of ``p`` (n, K) with uniforms ``u`` (n,); zero-probability
    entries are never returned, whatever rounding does to the cumulative sum."""
    cdf = np.cumsum(p, axis=1)
    t = u[:, None] * cdf[:, -1:]
    idx = (cdf > t).argmax(axis=1)
    bad = p[np.arange(p.shape[0]), idx] <= 0
    if bad.any():  # u landed on a plateau's edge through rounding: take the last positive entry
        last = p.shape[1] - 1 - np.argmax((p[bad] > 0)[:, ::-1], axis=1)
        idx[bad] = last
    return idx


def greedy_distribution(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """All mass on the best-scoring candidates of each row's pool, ties shared equally."""
    s = np.where(mask, scores, -np.inf)
    best = s.max(axis=1, keepdims=True)
    top = (s >= best) & mask
    return top / top.sum(axis=1, keepdims=True)


def row_quadratic(H: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """(n, K): sum_r H[n, k, r] Z[n, k, r], the quadratic forms of a page's candidates."""
    return np.einsum("nkr,nkr->nk", H, Z)


def sticky_draw(
    member_keys: np.ndarray,
    title_keys: np.ndarray,
    timestamps: np.ndarray,
    sticky_seconds: float,
    salt: np.uint64,
) -> tuple[np.ndarray, np.ndarray]:
    """(uniforms, periods) of decisions: each member's period at its timestamp, staggered by the member's
    keyed offset (period 0 forever when ``sticky_seconds`` is inf), then ``sticky_mix``."""
    if not np.isfinite(sticky_seconds):
        periods = np.zeros(timestamps.shape, dtype=np.int64)
    else:
        periods = period_index(timestamps, sticky_seconds, member_offsets(member_keys, salt, sticky_seconds))
    return sticky_mix(member_keys, title_keys, periods), periods


def gather_product(Y: np.ndarray, rows: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Y[rows] @ V, (len(rows), V's width), on V's nonzero rows only (a page basis's V is mostly zero)."""
    nz = np.flatnonzero(V.any(axis=1))
    return Y[np.ix_(rows, nz)] @ V[nz]
