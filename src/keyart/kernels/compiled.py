"""The kernels compiled with numba (``cache=True``: compiled once per machine, loaded from disk after),
each equal to its numpy reference in ``keyart.kernels.reference`` (exactly: the same IEEE operations in the
same order). Imported only by ``keyart.kernels`` when numba is installed and ``KEYART_KERNELS`` allows."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_53 = float(2**53)


def jit(signature: str) -> Any:
    """numba's njit with an explicit signature: compiled (or loaded from the disk cache) when this module
    is imported, and never again: a call with other types raises instead of compiling (``keyart.kernels``
    passes exactly these types)."""
    return numba.njit(signature, cache=True, nogil=True, error_model="numpy")


@jit("uint64(uint64)")
def _mix(x: np.uint64) -> np.uint64:
    x = x + _GAMMA
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


@jit("float64(uint64)")
def _unit(x: np.uint64) -> float:
    return float(x >> np.uint64(11)) / _TWO_POW_53


@jit("uint64[::1](uint64[::1])")
def splitmix64(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.size, dtype=np.uint64)
    for i in range(x.size):
        out[i] = _mix(x[i])
    return out


@jit("float64[::1](uint64[::1], uint64[::1], int64[::1])")
def sticky_mix(member_keys: np.ndarray, title_keys: np.ndarray, periods: np.ndarray) -> np.ndarray:
    n = member_keys.size
    out = np.empty(n)
    for i in range(n):
        p = np.uint64(np.int64(periods[i]))
        out[i] = _unit(_mix(member_keys[i] ^ _mix(title_keys[i] ^ _mix(p))))
    return out


@jit("Tuple((float64[::1], int64[::1]))(uint64[::1], uint64[::1], float64[::1], float64, uint64)")
def sticky_draw(
    member_keys: np.ndarray,
    title_keys: np.ndarray,
    timestamps: np.ndarray,
    sticky_seconds: float,
    salt: np.uint64,
) -> tuple[np.ndarray, np.ndarray]:
    n = member_keys.size
    u = np.empty(n)
    periods = np.zeros(n, dtype=np.int64)
    finite = np.isfinite(sticky_seconds)
    for i in range(n):
        mk = member_keys[i]
        if finite:
            off = _unit(_mix(_mix(mk ^ salt))) * sticky_seconds
            periods[i] = np.int64(np.floor((timestamps[i] - off) / sticky_seconds))
        p = np.uint64(periods[i])
        u[i] = _unit(_mix(mk ^ _mix(title_keys[i] ^ _mix(p))))
    return u, periods


@jit("int64[::1](float64[:, ::1], float64[::1])")
def sample_index(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    n, k = p.shape
    idx = np.zeros(n, dtype=np.int64)
    cdf = np.empty(k)
    for i in range(n):
        acc = 0.0
        for j in range(k):
            acc += p[i, j]
            cdf[j] = acc
        t = u[i] * cdf[k - 1]
        chosen = 0
        for j in range(k):
            if cdf[j] > t:
                chosen = j
                break
        if not p[i, chosen] > 0:  # rounding put u on a plateau's edge: the last positive entry
            for j in range(k - 1, -1, -1):
                if p[i, j] > 0:
                    chosen = j
                    break
            else:
                chosen = k - 1
        idx[i] = chosen
    return idx


@jit("float64[:, ::1](float64[:, ::1], boolean[:, ::1])")
def greedy_distribution(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n, k = scores.shape
    out = np.zeros((n, k))
    for i in range(n):
        best = -np.inf
        for j in range(k):
            if mask[i, j] and scores[i, j] > best:
                best = scores[i, j]
        ties = 0
        for j in range(k):
            if mask[i, j] and scores[i, j] >= best:
                ties += 1
        for j in range(k):
            if mask[i, j] and scores[i, j] >= best:
                out[i, j] = 1.0 / ties
    return out


@jit("float64[:, ::1](float64[:, :, ::1], float64[:, :, ::1])")
def row_quadratic(H: np.ndarray, Z: np.ndarray) -> np.ndarray:
    n, k, r = H.shape
    out = np.empty((n, k))
    for i in range(n):
        for j in range(k):
            acc = 0.0
            for q in range(r):
                acc += H[i, j, q] * Z[i, j, q]
            out[i, j] = acc
    return out


@jit("float64[:, ::1](float64[:, ::1], int64[::1], int64[::1], int64[::1], float64[::1], int64)")
def _gather_product(
    Y: np.ndarray, rows: np.ndarray, nz_row: np.ndarray, nz_col: np.ndarray, nz_val: np.ndarray, width: int
) -> np.ndarray:
    out = np.zeros((rows.size, width))
    for i in range(rows.size):
        y = Y[rows[i]]
        for t in range(nz_row.size):
            out[i, nz_col[t]] += y[nz_row[t]] * nz_val[t]
    return out


def gather_product(Y: np.ndarray, rows: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Y[rows] @ V over V's nonzeros (row-major order), without gathering Y's rows."""
    nz_row, nz_col = (np.ascontiguousarray(a, dtype=np.int64) for a in np.nonzero(V))
    return _gather_product(Y, rows, nz_row, nz_col, V[nz_row, nz_col], V.shape[1])
