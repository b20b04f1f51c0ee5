"""Logistic regression with a Gaussian prior and its Laplace posterior (Chapelle & Li 2011), from sums.

The logistic Thompson policy's model: the same block form as the ridge model (``keyart.learning``), fitted
by damped Newton steps whose gradient and Hessian are sums over partitions, so any partitioning of the
events gives the same fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from keyart.errors import ConvergenceError, ValidationError
from keyart.learning import ArtworkIndex, BlockGaussian, _sums_by_row


def _sigmoid(f: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * f))


def logistic_partition_sums(
    X: np.ndarray,
    rows: np.ndarray,
    m: int,
    rewards: np.ndarray,
    theta: np.ndarray,
    beta: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """One partition's Newton sums at (theta, beta), its artworks given as rows 0..m-1 of beta.

    Returns (H_ss, H_sa, H_d, g_s, g_a, loglik): the data's Hessian blocks (weights w p(1-p)), its
    gradient of the negative log-likelihood (w (p - r)), and its log-likelihood, each event weighted by
    ``weights`` (default 1). Sums add across partitions.
    """
    f = X @ theta + beta[rows]
    p = _sigmoid(f)
    w = np.ones_like(p) if weights is None else weights
    hss, hsa, hd, _, _, _, _ = _sums_by_row(X, rows, m, w * p * (1.0 - p), np.zeros_like(p))
    g = w * (p - rewards)
    g_s = X.T @ g
    g_a = np.bincount(rows, weights=g, minlength=m)
    return hss, hsa, hd, g_s, g_a, _loglik(f, rewards, w)


def _loglik(f: np.ndarray, rewards: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(w * (rewards * f - np.logaddexp(0.0, f))))


LogisticPartition = (
    tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
)


def fit_logistic(
    partitions: Sequence[LogisticPartition],
    prior: BlockGaussian,
    prior_ids: Sequence[str],
    bias_ridge: float,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> tuple[BlockGaussian, tuple[str, ...]]:
    """MAP logistic fit with a Gaussian prior by damped Newton; returns the Laplace posterior.

    ``partitions`` are (X, artwork_ids, rewards in [0, 1]) or (X, artwork_ids, rewards, weights); each
    Newton step sums ``logistic_partition_sums`` over them, so any partitioning gives the same result.
    Steps are halved until the log posterior rises enough (Armijo backtracking), so a prior far from the
    data cannot make Newton cycle. Artworks new to ``prior_ids`` start at the prior N(0, 1 / bias_ridge)
    and are appended in order of appearance. Raises ``ConvergenceError`` if no step below ``tol`` is
    reached in ``max_iter`` iterations, and ``ValidationError`` if the data make the sums non-finite.
    """
    index = ArtworkIndex(prior_ids)
    for part in partitions:
        index.extend(np.asarray(part[1], dtype=object).tolist())
    m = len(index)
    parts = [
        (
            np.asarray(part[0], dtype=np.float64),
            index.rows(np.asarray(part[1], dtype=object)),
            np.asarray(part[2], dtype=np.float64),
            np.ones(len(part[2])) if len(part) == 3 else np.asarray(part[3], dtype=np.float64),  # type: ignore[misc]
        )
        for part in partitions
    ]
    return newton_from_prior(
        prior,
        index,
        bias_ridge,
        lambda theta, beta: sum(_loglik(X @ theta + beta[rows], r, w) for X, rows, r, w in parts),
        lambda theta, beta: _summed(
            [logistic_partition_sums(X, rows, m, r, theta, beta, w)[:5] for X, rows, r, w in parts]
        ),
        max_iter,
        tol,
    )


def _summed(sums: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    return [np.sum([s[i] for s in sums], axis=0) for i in range(5)]


def newton_from_prior(
    prior: BlockGaussian,
    index: ArtworkIndex,
    bias_ridge: float,
    loglik: Callable[[np.ndarray, np.ndarray], float],
    data_sums: Callable[[np.ndarray, np.ndarray], list[np.ndarray]],
    max_iter: int,
    tol: float,
) -> tuple[BlockGaussian, tuple[str, ...]]:
    """The damped Newton fit of ``fit_logistic`` from ``prior``, its artworks grown to ``index`` (new ones
    at N(0, 1 / bias_ridge)), given the data's log-likelihood and Newton sums at (theta, beta) however the
    data are held (arrays in memory, partitions of a Spark DataFrame: ``keyart.spark.train``).
    ``ValidationError`` if the data make the sums non-finite."""
    d, m, m0 = prior.P_ss.shape[0], len(index), prior.P_d.size
    P_sa = np.vstack([prior.P_sa, np.zeros((m - m0, d))])
    P_d = np.concatenate([prior.P_d, np.full(m - m0, float(bias_ridge))])
    eta_a = np.concatenate([prior.eta_a, np.zeros(m - m0)])
    base = BlockGaussian(prior.P_ss, P_sa, P_d, prior.eta_s, eta_a)
    theta0, beta0 = base.solve(base.eta_s, base.eta_a)

    def objective(theta: np.ndarray, beta: np.ndarray) -> float:
        """Negative log posterior, up to a constant."""
        dt, db = theta - theta0, beta - beta0
        prior_part = 0.5 * (dt @ base.P_ss @ dt + db @ (base.P_d * db)) + db @ (base.P_sa @ dt)
        return prior_part - loglik(theta, beta)

    try:
        with np.errstate(over="raise", invalid="raise"):
            return _newton(objective, data_sums, base, theta0, beta0, index, max_iter, tol)
    except FloatingPointError as exc:
        raise ValidationError(
            f"The feedback makes the logistic model's sums non-finite (features too large): {exc}."
        ) from exc


def _newton(
    objective: Callable[[np.ndarray, np.ndarray], float],
    data_sums: Callable[[np.ndarray, np.ndarray], list[np.ndarray]],
    base: BlockGaussian,
    theta0: np.ndarray,
    beta0: np.ndarray,
    index: ArtworkIndex,
    max_iter: int,
    tol: float,
) -> tuple[BlockGaussian, tuple[str, ...]]:
    """``fit_logistic``'s damped Newton iterations and Laplace posterior."""
    theta, beta = theta0.copy(), beta0.copy()
    value = objective(theta, beta)
    for _ in range(max_iter):
        hss, hsa, hd, gs, ga = data_sums(theta, beta)
        dt, db = theta - theta0, beta - beta0  # gradient of the negative log posterior below
        g_s = base.P_ss @ dt + base.P_sa.T @ db + gs
        g_a = base.P_sa @ dt + base.P_d * db + ga
        hess = BlockGaussian(base.P_ss + hss, base.P_sa + hsa, base.P_d + hd, g_s, g_a)
        step_s, step_a = hess.solve(g_s, g_a)
        decrement = float(g_s @ step_s + g_a @ step_a)  # squared Newton decrement: > 0, the step descends
        scale = max(1.0, abs(value))
        if max(np.abs(step_s).max(initial=0.0), np.abs(step_a).max(initial=0.0)) < tol or (
            decrement <= 1e-12 * scale
        ):
            theta, beta = theta - step_s, beta - step_a
            break
        t = 1.0
        while True:
            cand_s, cand_a = theta - t * step_s, beta - t * step_a
            cand = objective(cand_s, cand_a)
            if cand <= value - 1e-4 * t * decrement:  # Armijo: enough decrease
                break
            if t == 1.0 and decrement <= 1e-8 * scale and cand <= value + 1e-12 * scale:
                # next to the mode the predicted decrease is below the objective's rounding: the full step
                # of the quadratic phase is right although no decrease can be seen
                break
            if t < 1e-10:
                raise ConvergenceError("The logistic fit's line search found no decrease.")
            t *= 0.5
        theta, beta, value = cand_s, cand_a, cand
    else:
        raise ConvergenceError(f"The logistic fit did not converge in {max_iter} Newton steps.")
    # Laplace posterior at the mode: precision = the Hessian there (that of the last Newton step, taken
    # within ``tol`` of the mode), eta = precision @ mode
    P_ss, P_sa2, P_d2 = hess.P_ss, hess.P_sa, hess.P_d
    eta_s = P_ss @ theta + P_sa2.T @ beta
    eta_a2 = P_sa2 @ theta + P_d2 * beta
    return BlockGaussian(P_ss, P_sa2, P_d2, eta_s, eta_a2), tuple(index.ids)
