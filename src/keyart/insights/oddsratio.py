"""Exact conditional inference on a 2x2 table's odds ratio: Fisher's noncentral hypergeometric distribution.

Given its margins, the table's top-left count X follows Fisher's noncentral hypergeometric distribution
with the odds ratio as its noncentrality: P(X = k) proportional to C(n, k) C(M - n, N - k) psi^k on
max(0, N - (M - n)) <= k <= min(n, N), for M in all, n in the first row, N in the first column
(``scipy.stats.nchypergeom_fisher(M, n, N, psi)``). The conditional maximum-likelihood odds ratio solves
E[X] = x; the exact interval inverts the two one-sided tail tests (Cornfield; what
``scipy.stats.contingency.odds_ratio(table, kind="conditional")`` computes, and what this module is tested
equal to). Here the distribution is evaluated on its whole support at once, from log weights, and the
roots are found in log psi: scipy evaluates it term by term per call, which made the clickbait
detector's intervals most of its time (``benchmarks/bench_oddsratio.py``: 75 ms per table against 0.9 ms
here, on the tables of 24,000 pages of an insights world).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.optimize
from scipy.special import gammaln


class FisherNoncentral:
    """The distribution of X given the margins (``M`` in all, ``n`` in the first row, ``N`` in the first
    column), at any log odds ratio ``t``: the log weights are shifted by their largest before they are
    exponentiated, so a tail keeps its digits down to the smallest float."""

    def __init__(self, M: int, n: int, N: int) -> None:
        self.lo, self.hi = max(0, N - (M - n)), min(n, N)
        self.k = k = np.arange(self.lo, self.hi + 1, dtype=np.float64)
        self.base = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
        self.base += gammaln(M - n + 1) - gammaln(N - k + 1) - gammaln(M - n - N + k + 1)

    def _weights(self, t: float) -> np.ndarray:
        """The probabilities at log odds ratio ``t``, up to their sum (scaled so that the largest is 1)."""
        w = self.base + self.k * t
        return np.exp(w - w.max())

    def cdf(self, x: int, t: float) -> float:
        """P(X <= x) at log odds ratio ``t``."""
        return self._tail(x, t, upper=False)

    def sf(self, x: int, t: float) -> float:
        """P(X > x) at log odds ratio ``t``."""
        return self._tail(x, t, upper=True)

    def _tail(self, x: int, t: float, upper: bool) -> float:
        if x < self.lo or x >= self.hi:  # the whole support on one side of x
            return float((x < self.lo) == upper)
        e = self._weights(t)
        cut = x - self.lo + 1
        return float((e[cut:] if upper else e[:cut]).sum() / e.sum())

    def mean(self, t: float) -> float:
        """E[X] at log odds ratio ``t``."""
        e = self._weights(t)
        return float(self.k @ e / e.sum())


def _increasing_root(f: Callable[[float], float], step: float = math.log(2.0)) -> float:
    """The root in t of an increasing function: bracketed from t = 0 in steps of ``step`` (the odds ratio
    halved or doubled, as scipy brackets it), then Brent's method to 1e-13 in t; -inf or inf if no root
    lies within 1,100 steps (an odds ratio beyond floating point)."""
    value = f(0.0)
    if value == 0:
        return 0.0
    direction = -1.0 if value > 0 else 1.0
    a = 0.0
    for _ in range(1_100):
        b = a + direction * step
        fb = f(b)
        if fb == 0 or (fb > 0) != (value > 0):
            lo, hi = sorted((a, b))
            return float(scipy.optimize.brentq(f, lo, hi, xtol=1e-13))
        a = b
    return direction * math.inf


def conditional_odds_ratio(table: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(conditional MLE, lower, upper) of the odds ratio of the 2x2 integer ``table`` [[a, b], [c, d]]
    with its exact two-sided interval at ``confidence``, as scipy's ``odds_ratio(table,
    kind="conditional")`` gives them: nan and (0, inf) when a row or a column is empty; 0 or inf at the
    ends of the support, where the matching interval end is 0 or inf."""
    t = np.asarray(table, dtype=np.int64)
    if (t.sum(axis=0) == 0).any() or (t.sum(axis=1) == 0).any():
        return math.nan, 0.0, math.inf
    x, M, n, N = int(t[0, 0]), int(t.sum()), int(t[0].sum()), int(t[:, 0].sum())
    dist = FisherNoncentral(M, n, N)
    alpha = 0.5 * (1.0 - confidence)
    if x == dist.lo:
        mle = 0.0
    elif x == dist.hi:
        mle = math.inf
    else:
        mle = math.exp(_increasing_root(lambda s: dist.mean(s) - x))
    ad, bc = t[0, 0] * t[1, 1], t[0, 1] * t[1, 0]
    lower = 0.0 if ad == 0 and bc > 0 else math.exp(_increasing_root(lambda s: dist.sf(x - 1, s) - alpha))
    upper = math.inf if bc == 0 and ad > 0 else math.exp(_increasing_root(lambda s: alpha - dist.cdf(x, s)))
    return mle, lower, upper


def lower_tail(x: np.ndarray, M: np.ndarray, n: np.ndarray, N: np.ndarray, odds: float) -> np.ndarray:
    """P(X <= x) for each (x, M, n, N) at odds ratio ``odds``: ``scipy.stats.nchypergeom_fisher.cdf(x, M, n,
    N, odds)``, elementwise."""
    t = math.log(odds)
    rows = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64) for v in (x, M, n, N)))
    out = np.empty(rows[0].shape)
    for i, (xi, Mi, ni, Ni) in enumerate(zip(*(r.ravel().tolist() for r in rows), strict=True)):
        out.flat[i] = FisherNoncentral(Mi, ni, Ni).cdf(xi, t)
    return out
