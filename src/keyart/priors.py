"""Priors of the shared ridge model learned from the data: empirical Bayes (type-II maximum likelihood).

The model is r = x . theta + beta_a + noise, noise ~ N(0, s2), with independent Gaussian priors theta_j ~
N(0, s2 / ridge_g(j)) for each column group g (a feature family of the layout: theme, device x style, ...)
and beta_a ~ N(0, s2 / bias_ridge). How strongly each family and the artworks' own biases are shrunk, and
the noise level s2 itself, are the hyperparameters that maximize the marginal likelihood of the logged
rewards. With the prior scaled by the noise the best noise has a closed form given the ridges, and
``fit_priors`` maximizes the evidence so profiled over the log ridges by L-BFGS-B, bounded to
``RIDGE_RANGE`` (a family with no signal goes to the upper bound, where MacKay's fixed point -- MacKay
1992, "Bayesian interpolation"; Bishop, PRML 3.5.2 -- would creep towards infinity). The
gradient holds the fixed point's terms: with the posterior mean mu and covariance s2 * P^-1,

    d log evidence / d log ridge_j = 1/2 (gamma_j - ridge_j mu_j^2 / s2),  gamma_j = 1 - ridge_j (P^-1)_jj

so at the optimum ridge_g = s2 * sum_g gamma_j / sum_g mu_j^2 and s2 = |r - Z mu|^2 / (n - sum gamma).
Everything is computed from the additive statistics the policy keeps anyway (``keyart.learning``: the
block precision's data part and sum w r^2), through the d x d Schur complement of the diagonal artwork
block, so one evaluation costs O(c^3 + m c^2) for the c columns and m artworks that data touched (the
others add nothing to the evidence), and no event is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize

from keyart.errors import ValidationError
from keyart.learning import spd_factor_inverse, weighted_gram

#: Ridges are kept inside. The upper bound keeps every family's prior standard deviation at least 1% of
#: the noise's: a fit from little data may find no signal in a family, and a bandit that then sees no
#: uncertainty there never explores it to learn otherwise. Chosen on the zoo's development worlds 1-5
#: (LinUCB, 50,000 requests, mean share of oracle 0.765 with 1e8, 0.797 with 1e4, 0.794 with 1e3:
#: ``benchmarks/tune_defaults.py``, docs/simulation.md); a family with no signal is still shrunk hard.
RIDGE_RANGE = (1e-6, 1e4)
NOISE_FLOOR = 1e-6
#: Families whose ridge is not learned: the intercept keeps its weak starting prior, so the artwork biases
#: are shrunk towards the overall take rate rather than towards zero (the usual unpenalized intercept)
UNSHRUNK_FAMILIES = frozenset({"bias"})
INITIAL_NOISE = 0.25  # the noise variance assumed before any fit: a Bernoulli reward's largest
#: ``fit_priors`` stops on the gradient (no log ridge's derivative of the log evidence above ``tol``), not
#: on a step's small gain: L-BFGS-B's first step can gain almost nothing while nats are left to gain (from
#: ridge 1 on ``tests/test_priors.py``'s draws, 2 of 8 fits stopped after one step, 4.5 and 2.2 nats short;
#: resuming from there repeated it). The gain test is kept only as a guard against plateaus of rounding,
#: at this relative change of the per-event objective; None restores it at ``tol`` nats (the rule before,
#: for ``benchmarks/tune_defaults.py``)
STEP_GAIN_TOL: float | None = 1e-12


@dataclass(frozen=True)
class DataStats:
    """The data part of the ridge model's statistics: ``xx``, ``xa``, ``aa``, ``xr``, ``ar`` as in
    ``keyart.learning.LinearStats`` (rows of the artwork arrays = the model's artwork rows), ``rr`` = sum
    w r^2 and ``n`` = sum w (weights decayed as the model forgets)."""

    xx: np.ndarray
    xa: np.ndarray
    aa: np.ndarray
    xr: np.ndarray
    ar: np.ndarray
    rr: float
    n: float


@dataclass(frozen=True)
class Priors:
    """Fitted hyperparameters: one ridge per column group, the artwork biases' ridge and the noise
    variance; ``iterations`` taken and whether the optimizer ``converged``."""

    group_ridge: np.ndarray
    bias_ridge: float
    noise: float
    iterations: int
    converged: bool


def column_groups(feature_names: Sequence[str], d: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Group names and each column's group from feature names like ``"theme[3]"`` (one group when the
    names are missing or do not match the width)."""
    if len(feature_names) != d:
        return ("features",), np.zeros(d, dtype=np.int64)
    names: dict[str, int] = {}
    col = np.array([names.setdefault(n.split("[", 1)[0], len(names)) for n in feature_names], dtype=np.int64)
    return tuple(names), col


def fit_priors(
    data: DataStats,
    column_group: np.ndarray,
    group_ridge: np.ndarray,
    bias_ridge: float,
    max_iter: int = 200,
    tol: float = 0.01,
    learn: np.ndarray | None = None,
    noise: float | None = None,
) -> Priors:
    """Maximize the marginal likelihood over the ridges (the noise profiled out, or fixed at ``noise``),
    starting from the given ridges. Groups whose columns carry no data, and the bias ridge before any
    artwork has data, keep their values (the likelihood does not depend on them); so do groups where
    ``learn`` (one bool per group) is False. ``tol`` is in log evidence (nats): the fit stops when no log
    ridge's derivative of the log evidence exceeds it (``STEP_GAIN_TOL``), far below what changes a
    prediction.

    A fixed ``noise`` serves a model without one: for a logistic model, ``data`` holds its Laplace
    approximation (the Hessian at the mode, and precision x mode as the linear term), so this is MacKay's
    evidence framework for classification (MacKay 1992, "The evidence framework applied to
    classification networks") with noise 1."""
    d = data.xx.shape[0]
    col = np.asarray(column_group, dtype=np.int64)
    ridge_g = np.asarray(group_ridge, dtype=np.float64)
    if (
        col.shape != (d,)
        or ridge_g.ndim != 1
        or col.max(initial=-1) >= ridge_g.size
        or col.min(initial=0) < 0
    ):
        raise ValidationError("column_group must give each of the d columns a group of group_ridge.")
    lo, hi = RIDGE_RANGE
    ridge_g, r_b = np.clip(ridge_g, lo, hi), float(np.clip(bias_ridge, lo, hi))
    seen = data.aa > 0
    if data.n <= 0 or not seen.any():
        return Priors(ridge_g, r_b, INITIAL_NOISE if noise is None else noise, 0, False)
    seen_data = DataStats(data.xx, data.xa[seen], data.aa[seen], data.xr, data.ar[seen], data.rr, data.n)
    free = np.bincount(col, weights=np.diag(data.xx) > 0, minlength=ridge_g.size) > 0
    seen_data, col = _touched(seen_data, col)  # once, not at every evaluation
    if learn is not None:
        free &= np.asarray(learn, dtype=bool)
    x0 = np.log(np.append(ridge_g[free], r_b))

    def unpack(x: np.ndarray) -> tuple[np.ndarray, float]:
        g = ridge_g.copy()
        g[free] = np.exp(x[:-1])
        return g, float(np.exp(x[-1]))

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        g, b = unpack(x)
        value, grad_g, grad_b, _ = _profiled_evidence(seen_data, col, g, b, noise)
        return -value / data.n, -np.append(grad_g[free], grad_b) / data.n

    result = scipy.optimize.minimize(
        objective,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(np.log(lo), np.log(hi))] * x0.size,
        # the objective is the log evidence per event: stop when no log ridge's gradient exceeds ``tol``
        options={
            "maxiter": max_iter,
            "ftol": tol / data.n if STEP_GAIN_TOL is None else STEP_GAIN_TOL,
            "gtol": tol / data.n,
        },
    )
    g, b = unpack(result.x)
    s2 = _profiled_evidence(seen_data, col, g, b, noise)[3]
    return Priors(g, b, s2, int(result.nit), bool(result.success))


def log_evidence(
    data: DataStats,
    column_group: np.ndarray,
    group_ridge: np.ndarray,
    bias_ridge: float,
    noise: float | None = None,
) -> float:
    """The log marginal likelihood of the rewards at these ridges and the best noise for them, or the
    given ``noise`` (up to a constant that depends on the data only)."""
    col, ridge = np.asarray(column_group), np.asarray(group_ridge, dtype=np.float64)
    return _profiled_evidence(*_touched(data, col), ridge, float(bias_ridge), noise)[0]


def _touched(data: DataStats, col: np.ndarray) -> tuple[DataStats, np.ndarray]:
    """The statistics and column groups of the columns some event touched (a nonzero in the data's Gram,
    artwork sums or x . r). The others add log ridge_j - log ridge_j = 0 to the log evidence and 0 to its
    gradient, so the evidence is computed on these alone: O(c^3 + m c^2) for c of them, not d."""
    cols = np.flatnonzero(np.any(data.xx != 0, axis=0) | np.any(data.xa != 0, axis=0) | (data.xr != 0))
    if cols.size == col.size:
        return data, col
    xx = data.xx[np.ix_(cols, cols)]
    return DataStats(xx, data.xa[:, cols], data.aa, data.xr[cols], data.ar, data.rr, data.n), col[cols]


def _profiled_evidence(
    data: DataStats, col: np.ndarray, ridge_g: np.ndarray, r_b: float, noise: float | None = None
) -> tuple[float, np.ndarray, float, float]:
    """Log evidence maximized over the noise, its gradient in the log ridges (per group, bias) and the
    noise. With the prior scaled by the noise, the posterior mean does not depend on it and the best noise
    is s2 = E / n, E = |r - Z mu|^2 + sum ridge mu^2 = sum w r^2 - mu . Z'r; the evidence is then
    -n/2 log s2 + 1/2 log|ridges| - 1/2 log|Z'Z + ridges| (+ a constant), and its derivative in log ridge_j
    is 1/2 (1 - ridge_j Sigma_jj - ridge_j mu_j^2 / s2): the terms of MacKay's fixed point. With ``noise``
    given, s2 is that and the first term is -E / (2 s2) - n/2 log s2."""
    ridge_cols = ridge_g[col]
    P_d = data.aa + r_b
    U = data.xa / P_d[:, None]
    M = data.xx + np.diag(ridge_cols) - weighted_gram(data.xa, 1.0 / P_d)
    R, sigma = spd_factor_inverse(M)
    mu_s = sigma @ (data.xr - U.T @ data.ar)
    mu_a = data.ar / P_d - U @ mu_s
    energy = data.rr - mu_s @ data.xr - mu_a @ data.ar
    s2 = max(energy / data.n, NOISE_FLOOR) if noise is None else float(noise)
    fit = -0.5 * data.n * np.log(s2) - (0.5 * data.n if noise is None else 0.5 * energy / s2)
    logdet = 2.0 * np.log(np.diag(R)).sum() + np.log(P_d).sum()
    value = fit + 0.5 * (np.log(ridge_cols).sum() + P_d.size * np.log(r_b) - logdet)
    W = scipy.linalg.solve_triangular(R, U.T, trans="T", check_finite=False)  # R^-T U^T: U Sigma U^T = W^T W
    diag_a = 1.0 / P_d + np.einsum("da,da->a", W, W)
    grad_cols = 0.5 * (1.0 - ridge_cols * np.diag(sigma) - ridge_cols * mu_s**2 / s2)
    grad_b = 0.5 * float((1.0 - r_b * diag_a - r_b * mu_a**2 / s2).sum())
    return float(value), np.bincount(col, weights=grad_cols, minlength=ridge_g.size), grad_b, s2
