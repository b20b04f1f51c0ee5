"""The hot kernels of choosing, behind one switch: numba-compiled where numba is installed, numpy otherwise.

``keyart.kernels.reference`` holds the numpy implementation of every kernel, the tested reference;
``keyart.kernels.compiled`` the numba one, equal to it (exactly for the discrete and integer kernels, to
1e-12 relative for sums). The environment variable ``KEYART_KERNELS`` picks the backend when the package is
first used: ``numba`` (requires numba), ``numpy``, or ``auto`` (the default: numba when it can be imported,
else numpy). Compiled kernels are cached on disk (numba's ``cache=True``); ``warm_up`` loads or compiles
them all, which a serving worker does before it reports ready, so no request waits on a compile.

The rest of keyart calls the functions here (``sample_index``, ``greedy_distribution``, ``sticky_draw``,
``sticky_mix``, ``splitmix64``, ``row_quadratic``, ``gather_product``), never a backend module directly.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from keyart.errors import DimensionError, ValidationError
from keyart.kernels import reference

BACKENDS = ("auto", "numba", "numpy")
_impl: ModuleType | None = None


def _choose(setting: str) -> ModuleType:
    """The backend module for a ``KEYART_KERNELS`` value."""
    setting = (setting or "auto").strip().lower()
    if setting not in BACKENDS:
        raise ValidationError(f"KEYART_KERNELS must be one of {', '.join(BACKENDS)}. Got {setting!r}.")
    if setting == "numpy":
        return reference
    try:
        from keyart.kernels import compiled
    except ImportError as exc:
        if setting == "numba":
            raise ValidationError(
                "KEYART_KERNELS=numba but numba cannot be imported: pip install 'keyart[fast]'."
            ) from exc
        return reference
    return compiled


def _backend() -> ModuleType:
    global _impl
    if _impl is None:
        _impl = _choose(os.environ.get("KEYART_KERNELS", "auto"))
    return _impl


def backend() -> str:
    """The backend in use: ``"numba"`` or ``"numpy"``."""
    return "numpy" if _backend() is reference else "numba"


def use(setting: str) -> str:
    """Switch the backend (``auto``, ``numba`` or ``numpy``, as ``KEYART_KERNELS``); returns the one in use.
    For tests and benchmarks that run both in one process."""
    global _impl
    _impl = _choose(setting)
    return backend()


def _arr(a: Any, dtype: Any) -> np.ndarray:
    """``a`` as a C-contiguous, writeable array of ``dtype``: the one type each compiled kernel takes (a
    copy only when ``a`` is not one already)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer over a uint64 array (any shape)."""
    shape = np.shape(x)
    return _backend().splitmix64(_arr(np.ravel(x), np.uint64)).reshape(shape)


def sticky_mix(member_keys: np.ndarray, title_keys: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """(n,) uniforms in [0, 1) of (member key, title key, period), all (n,)."""
    return _backend().sticky_mix(
        _arr(member_keys, np.uint64), _arr(title_keys, np.uint64), _arr(periods, np.int64)
    )


def sticky_draw(
    member_keys: np.ndarray,
    title_keys: np.ndarray,
    timestamps: np.ndarray,
    sticky_seconds: float,
    salt: np.uint64,
) -> tuple[np.ndarray, np.ndarray]:
    """(uniforms, periods) of decisions at ``timestamps``, each member's periods staggered by an offset
    hashed from its key with ``salt``; ``sticky_seconds`` > 0 (inf: one period forever)."""
    return _backend().sticky_draw(
        _arr(member_keys, np.uint64),
        _arr(title_keys, np.uint64),
        _arr(timestamps, np.float64),
        float(sticky_seconds),
        np.uint64(salt),
    )


def sample_index(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one index per row of ``p`` (n, K) with uniforms ``u`` (n,); zero-probability
    entries are never returned."""
    return _backend().sample_index(_arr(p, np.float64), _arr(u, np.float64))


def greedy_distribution(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, K): all mass on each row's best-scoring candidates of ``mask``, ties shared equally."""
    return _backend().greedy_distribution(_arr(scores, np.float64), _arr(mask, np.bool_))


def row_quadratic(H: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """(n, K) sums over the last axis of H * Z, both (n, K, r)."""
    return _backend().row_quadratic(_arr(H, np.float64), _arr(Z, np.float64))


def gather_product(Y: np.ndarray, rows: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Y[rows] @ V (len(rows), V's width) for a mostly zero V: the rows of Y (m, d) at int64 ``rows``
    (negative ones count from the end, as numpy's), times V (d, r)."""
    Y, V = _arr(Y, np.float64), _arr(V, np.float64)
    rows = _arr(rows, np.int64)
    if rows.size and (rows.min() < -Y.shape[0] or rows.max() >= Y.shape[0]):
        raise DimensionError(f"rows must index Y's {Y.shape[0]} rows.")
    return _backend().gather_product(Y, np.where(rows < 0, rows + Y.shape[0], rows), V)


def _examples() -> list[tuple[str, tuple[Any, ...]]]:
    """One call of each kernel with the argument types keyart passes (what ``warm_up`` compiles)."""
    rng = np.random.default_rng(0)
    keys = np.arange(1, 4, dtype=np.uint64)
    p = rng.random((3, 4))
    mask = np.ones((3, 4), dtype=bool)
    H = rng.random((2, 3, 5))
    return [
        ("splitmix64", (keys,)),
        ("sticky_mix", (keys, keys, np.arange(3, dtype=np.int64))),
        ("sticky_draw", (keys, keys, rng.random(3) * 1e9, 86_400.0, np.uint64(5))),
        ("sticky_draw", (keys, keys, rng.random(3) * 1e9, float("inf"), np.uint64(5))),
        ("sample_index", (p, rng.random(3))),
        ("greedy_distribution", (p, mask)),
        ("row_quadratic", (H, H)),
        ("gather_product", (p, np.array([0, 2], dtype=np.int64), p.T.copy())),
    ]


def warm_up() -> str:
    """Load (or compile, the first time on a machine) every kernel of the backend in use, for the argument
    types keyart uses; a worker calls it before it reports ready. Returns the backend's name."""
    impl = _backend()
    for name, args in _examples():
        getattr(impl, name)(*args)
    return backend()
