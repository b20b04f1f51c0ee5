"""Priors of the shared ridge model learned from the data: empirical Bayes (type-II maximum likelihood).

The model is r = x . theta + beta_a + noise, noise ~ N(0, s2), with independent Gaussian priors theta_j ~
N(0, s2 / ridge_g(j)) for each column group g (a feature family of the layout: theme, device x style, ...)
and beta_a ~ N(0, s2 / bias_ridge). How strongly each family and the artworks' own biases are shrunk, and
the noise level s2 itself, are the hyperparameters that maximize the marginal likelihood of the logged
rewards. With the prior scaled by the noise the best noise has a closed form given the ridges, and
``fit_priors`` maximizes the evidence so profiled over the log ridges by projected Newton steps on its
exact Hessian (or L-BFGS-B on the gradient), bounded to ``RIDGE_RANGE`` (a family with no signal goes
to the upper bound, where MacKay's fixed point -- MacKay 1992, "Bayesian interpolation"; Bishop, PRML
3.5.2 -- would creep towards infinity). The gradient holds the fixed point's terms: with the posterior
mean mu and covariance s2 * P^-1,

    d log evidence / d log ridge_j = 1/2 (gamma_j - ridge_j mu_j^2 / s2),  gamma_j = 1 - ridge_j (P^-1)_jj

so at the optimum ridge_g = s2 * sum_g gamma_j / sum_g mu_j^2 and s2 = |r - Z mu|^2 / (n - sum gamma).
Everything is computed from the additive statistics the policy keeps anyway (``keyart.learning``: the
block precision's data part and sum w r^2), through the d x d Schur complement of the diagonal artwork
block, so one evaluation (and the Hessian) costs O(c^3 + m c^2) for the c columns and m artworks that
data touched (the others add nothing to the evidence), and no event is stored. Newton needs about a
quarter of L-BFGS-B's evaluations of it on the zoo's refits (``benchmarks/bench_priors.py``).

With few events the model may fit every reward exactly, and the profiled evidence then grows without bound
as the noise goes to 0: the fit ends with the noise at ``NOISE_FLOOR``, or with sum gamma (the
well-determined parameters) at about n, nothing left to the noise. ``Priors.degenerate`` says so, and a
model does not adopt such a fit (``SharedModelPolicy.refit_priors``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
#: A fit with the noise profiled interpolates when fewer than this share of the events are left to the
#: noise (n - sum gamma, MacKay's residual degrees of freedom): its noise is no estimate. A 20-event draw
#: with 42 parameters left none (``tests/test_priors.py``); sound fits there leave more than 40%.
MIN_RESIDUAL_SHARE = 0.05
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
#: How ``fit_priors`` maximizes: "newton" (projected Newton on the exact Hessian, ``_newton_ascent``) or
#: "lbfgs" (L-BFGS-B on the gradient, the method before: ``benchmarks/bench_priors.py`` compares them)
FIT_METHOD = "newton"
#: The largest change of a log ridge in one Newton step: where the evidence is flat (a family the data
#: barely informs) a full Newton step can leave for the far end of the box
MAX_NEWTON_STEP = 4.0


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
    variance; ``iterations`` taken and whether the optimizer ``converged``; the ``events`` fitted and how
    many parameters they determine (MacKay's sum gamma, ``well_determined``)."""

    group_ridge: np.ndarray
    bias_ridge: float
    noise: float
    iterations: int
    converged: bool
    events: float = 0.0
    well_determined: float = 0.0

    @property
    def degenerate(self) -> bool:
        """For a fit with the noise profiled: it went to 0 (to ``NOISE_FLOOR``), or the events were spent on
        the parameters, fewer than ``MIN_RESIDUAL_SHARE`` of them left to the noise. The evidence then has
        no maximum to adopt."""
        residual = self.events - self.well_determined
        return self.events > 0 and (self.noise <= NOISE_FLOOR or residual < MIN_RESIDUAL_SHARE * self.events)


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
    method: str | None = None,
) -> Priors:
    """Maximize the marginal likelihood over the ridges (the noise profiled out, or fixed at ``noise``),
    starting from the given ridges. Groups whose columns carry no data, and the bias ridge before any
    artwork has data, keep their values (the likelihood does not depend on them); so do groups where
    ``learn`` (one bool per group) is False. ``tol`` is in log evidence (nats): the fit stops when no log
    ridge's derivative of the log evidence exceeds it (``STEP_GAIN_TOL``), far below what changes a
    prediction. ``method``: "newton" or "lbfgs" (default ``FIT_METHOD``).

    A fixed ``noise`` serves a model without one: for a logistic model, ``data`` holds its Laplace
    approximation (the Hessian at the mode, and precision x mode as the linear term), so this is MacKay's
    evidence framework for classification (MacKay 1992, "The evidence framework applied to
    classification networks") with noise 1."""
    method = method or FIT_METHOD
    if method not in ("newton", "lbfgs"):
        raise ValidationError(f"method must be 'newton' or 'lbfgs'. Got {method!r}.")
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

    def at(x: np.ndarray) -> _Evidence:
        return _Evidence(seen_data, col, *unpack(x), noise)

    if method == "newton":
        keep = np.append(free, True)  # the free groups' rows and columns of the Hessian, and the bias's
        x, nit, ok = _newton_ascent(at, keep, x0, (np.log(lo), np.log(hi)), tol, max_iter)
    else:

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            e = at(x)
            return -e.value / data.n, -np.append(e.grad_g[free], e.grad_b) / data.n

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
        x, nit, ok = result.x, int(result.nit), bool(result.success)
    g, b = unpack(x)
    e = at(x)
    return Priors(g, b, e.s2, nit, ok, float(data.n), e.well_determined)


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
    return _Evidence(*_touched(data, col), ridge, float(bias_ridge), noise).value


def _touched(data: DataStats, col: np.ndarray) -> tuple[DataStats, np.ndarray]:
    """The statistics and column groups of the columns some event touched (a nonzero in the data's Gram,
    artwork sums or x . r), in group order (the Hessian then sums its groups by slices).
    The others add log ridge_j - log ridge_j = 0 to the log evidence and 0 to its gradient, so the
    evidence is computed on these alone: O(c^3 + m c^2) for c of them, not d."""
    cols = np.flatnonzero(np.any(data.xx != 0, axis=0) | np.any(data.xa != 0, axis=0) | (data.xr != 0))
    cols = cols[np.argsort(col[cols], kind="stable")]
    if cols.size == col.size and np.array_equal(cols, np.arange(col.size)):
        return data, col
    xx = data.xx[np.ix_(cols, cols)]
    return DataStats(xx, data.xa[:, cols], data.aa, data.xr[cols], data.ar, data.rr, data.n), col[cols]


class _Evidence:
    """The log evidence at some ridges, maximized over the noise (or at the given ``noise``), its gradient
    in the log ridges (per group, bias) and the noise; ``hessian()`` the second derivatives.

    With the prior scaled by the noise, the posterior mean does not depend on it and the best noise is
    s2 = E / n, E = |r - Z mu|^2 + sum ridge mu^2 = sum w r^2 - mu . Z'r; the evidence is then -n/2 log s2
    + 1/2 log|ridges| - 1/2 log|Z'Z + ridges| (+ a constant), and its derivative in log ridge_j is 1/2 (1 -
    ridge_j Sigma_jj - ridge_j mu_j^2 / s2): the terms of MacKay's fixed point. With ``noise`` given, s2
    is that and the first term is -E / (2 s2) - n/2 log s2. Sigma and mu are the joint posterior's over
    (theta, beta), through the Schur complement of the diagonal artwork block: Sigma_ss = M^-1, Sigma_sa =
    -Sigma_ss U', Sigma_aa = D^-1 + U Sigma_ss U', U = D^-1 xa, D = diag(aa + bias ridge)."""

    def __init__(
        self, data: DataStats, col: np.ndarray, ridge_g: np.ndarray, r_b: float, noise: float | None = None
    ) -> None:
        self.data, self.col, self.ridge_g, self.r_b, self.noise = data, col, ridge_g, r_b, noise
        self.ridge_cols = ridge_cols = ridge_g[col]
        self.inv_d = inv_d = 1.0 / (data.aa + r_b)
        self.U = U = data.xa * inv_d[:, None]
        R, self.sigma = spd_factor_inverse(data.xx + np.diag(ridge_cols) - weighted_gram(data.xa, inv_d))
        self.mu_s = mu_s = self.sigma @ (data.xr - U.T @ data.ar)
        self.mu_a = mu_a = data.ar * inv_d - U @ mu_s
        energy = data.rr - mu_s @ data.xr - mu_a @ data.ar
        self.s2 = s2 = max(energy / data.n, NOISE_FLOOR) if noise is None else float(noise)
        fit = -0.5 * data.n * np.log(s2) - (0.5 * data.n if noise is None else 0.5 * energy / s2)
        logdet = 2.0 * np.log(np.diag(R)).sum() - np.log(inv_d).sum()
        self.value = float(fit + 0.5 * (np.log(ridge_cols).sum() + inv_d.size * np.log(r_b) - logdet))
        self.UtU = weighted_gram(data.xa, inv_d**2)  # U'U: sum_a Sigma_aa = sum 1 / P_d + tr(Sigma U'U)
        grad_cols = 0.5 * (1.0 - ridge_cols * np.diag(self.sigma) - ridge_cols * mu_s**2 / s2)
        self.grad_g = np.bincount(col, weights=grad_cols, minlength=ridge_g.size)
        trace_aa = inv_d.sum() + np.sum(self.sigma * self.UtU)
        self.grad_b = float(0.5 * (inv_d.size - r_b * trace_aa - r_b * (mu_a @ mu_a) / s2))
        #: sum gamma over the columns and the artworks: how many parameters the data determine
        self.well_determined = float(
            col.size - ridge_cols @ np.diag(self.sigma) + inv_d.size - r_b * trace_aa
        )

    def hessian(self) -> np.ndarray:
        """Second derivatives in the log ridges (the groups', then the bias ridge's), O(c^3 + m c^2).

        Over the joint posterior's coordinates i, j with prior precisions lambda (a group's columns share
        one, the artworks share the bias ridge), since d mu / d lambda_j = -Sigma e_j mu_j and d E / d
        lambda_j = mu_j^2:  d^2 L / d log lambda_i d log lambda_j = kappa a_i a_j + lambda_i lambda_j (mu_i
        mu_j Sigma_ij / s2 + Sigma_ij^2 / 2) + [i = j] (g_i - 1/2), a_i = lambda_i mu_i^2, g_i the
        coordinate's gradient, kappa = 1 / (2 n s2^2) with the noise profiled out (0 with it given); summed
        over each group's coordinates."""
        col, lam, sigma, s2, r_b = self.col, self.ridge_cols, self.sigma, self.s2, self.r_b
        k = self.ridge_g.size
        b = lam * self.mu_s
        pair = sigma * (np.outer(b, b) / s2 + 0.5 * np.outer(lam, lam) * sigma)  # column x column terms
        q = self.U.T @ self.mu_a  # Sigma_sa mu_a = -Sigma q
        # sum_a Sigma_ia^2 = (Sigma U'U Sigma)_ii, |U Sigma U'|_F^2 and tr(D^-1 U Sigma U'), through
        # whichever is smaller: the m x c rows U Sigma (and their m x m products), or c x c products
        if self.inv_d.size < col.size:
            U_sigma = self.U @ sigma
            usu = U_sigma @ self.U.T
            sa_sq, frob_usu = np.einsum("ai,ai->i", U_sigma, U_sigma), np.sum(usu * usu)
            trace_dusu = float(self.inv_d @ np.diag(usu))
        else:
            sig_utu = sigma @ self.UtU
            sa_sq, frob_usu = np.einsum("ij,ij->i", sig_utu, sigma), np.sum(sig_utu * sig_utu.T)
            trace_dusu = np.sum(sigma * weighted_gram(self.data.xa, self.inv_d**3))
        col_bias = r_b * (0.5 * lam * sa_sq - b * (sigma @ q) / s2)
        quad_aa = self.mu_a @ (self.mu_a * self.inv_d) + q @ sigma @ q  # mu_a' Sigma_aa mu_a
        frob_aa = np.sum(self.inv_d**2) + 2.0 * trace_dusu + frob_usu  # |Sigma_aa|_F^2, D^-1 + U Sigma U'
        H = np.empty((k + 1, k + 1))
        H[:-1, :-1] = _group_sums(_group_sums(pair, col, k).T, col, k)
        H[:-1, -1] = H[-1, :-1] = _group_sums(col_bias, col, k)
        H[-1, -1] = r_b**2 * (quad_aa / s2 + 0.5 * frob_aa)
        if self.noise is None:  # the profiled noise's rank-one term
            a = np.append(_group_sums(lam * self.mu_s**2, col, k), r_b * float(self.mu_a @ self.mu_a))
            H += np.outer(a, a) / (2.0 * self.data.n * s2**2)
        counts = np.append(np.bincount(col, minlength=k), self.inv_d.size)
        H[np.diag_indices_from(H)] += np.append(self.grad_g, self.grad_b) - 0.5 * counts
        return H


def _group_sums(a: np.ndarray, col: np.ndarray, k: int) -> np.ndarray:
    """Sums of ``a``'s rows (first axis) per group ``col`` (k groups; 0 for a group without rows), by
    slices when the rows come in group order (as ``fit_priors`` sorts them), O(size of a)."""
    out = np.zeros((k, *a.shape[1:]))
    if col.size == 0:
        return out
    if np.any(col[1:] < col[:-1]):
        order = np.argsort(col, kind="stable")
        a, col = a[order], col[order]
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    out[col[starts]] = np.add.reduceat(a, starts, axis=0)
    return out


def _newton_ascent(
    at: Callable[[np.ndarray], _Evidence],
    keep: np.ndarray,
    x0: np.ndarray,
    bounds: tuple[float, float],
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, bool]:
    """Maximize the evidence over the log ridges ``x`` in a box by projected Newton steps (Bertsekas 1982,
    "Projected Newton methods for optimization problems with simple constraints"): the coordinates at a
    bound whose gradient points out of the box stay there, the others take a Newton step on the exact
    Hessian (Levenberg-damped where it is not negative definite, at most ``MAX_NEWTON_STEP`` in any log
    ridge), projected into the box and halved until it gains what its first-order term promises (Armijo);
    should the projection turn the step to promise no gain, the gradient is the direction instead.
    Converged when no free coordinate's derivative exceeds ``tol`` (nats), as the L-BFGS-B fit's rule;
    also when a step can gain no more than rounding (``STEP_GAIN_TOL``, relative). (x, iterations,
    converged)."""
    lo, hi = bounds
    eps = 1e-9 * (hi - lo)  # a coordinate this near a bound is at it (a scaled step lands off by rounding)
    x = np.clip(x0, lo, hi)
    e = at(x)
    for it in range(max_iter):
        g = np.append(e.grad_g, e.grad_b)[keep]
        at_lo, at_hi = (x <= lo + eps) & (g < 0), (x >= hi - eps) & (g > 0)
        x, free = np.where(at_lo, lo, np.where(at_hi, hi, x)), ~(at_lo | at_hi)
        if not free.any() or np.abs(g[free]).max() <= tol:
            return x, it, True
        newton = np.zeros_like(x)
        newton[free] = _damped_newton_step(e.hessian()[np.ix_(keep, keep)][np.ix_(free, free)], g[free])
        accepted = None
        for step in (newton, np.where(free, g, 0.0)):  # the gradient if the box turns Newton's away
            step = step * min(1.0, MAX_NEWTON_STEP / np.abs(step).max())
            t = 1.0
            while accepted is None and t >= 1e-10:
                x_new = np.clip(x + t * step, lo, hi)
                promised = g @ (x_new - x)
                if promised <= 0:
                    break
                e_new = at(x_new)
                if e_new.value - e.value >= 1e-4 * promised:
                    accepted = x_new, e_new
                elif promised <= (STEP_GAIN_TOL or 0.0) * abs(e.value):
                    return x, it, True  # no step gains more than rounding
                t *= 0.5
            if accepted is not None:
                break
        if accepted is None:
            return x, it, False
        x, e = accepted
    return x, max_iter, False


def _damped_newton_step(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The ascent step (-H + nu I)^-1 g with the smallest nu >= 0 (0, then growing tenfold from 1e-8 of
    the largest curvature) that makes -H + nu I positive definite (Levenberg); the gradient itself if no
    nu up to 1e12 of it does (a Hessian that is not finite)."""
    A = -H
    nu, scale = 0.0, max(float(np.abs(np.diag(A)).max()), 1e-300)
    while nu <= 1e12 * scale:
        try:
            step = scipy.linalg.cho_solve(scipy.linalg.cho_factor(A + nu * np.eye(len(g))), g)
            if np.all(np.isfinite(step)):
                return step
        except (np.linalg.LinAlgError, ValueError):  # not positive definite; not finite
            pass
        nu = 1e-8 * scale if nu == 0.0 else 10.0 * nu
    return g
