"""Thompson sampling over the shared model, and the machinery that makes its propensities exact to log.

``thompson_distribution`` turns a row's score mean and covariance into P(each candidate has the highest
sampled score) by conditional randomized quasi-Monte Carlo over fixed scrambled Sobol normals
(``sobol_normals``); ``ThompsonPolicy`` feeds it the shared model's posterior. Its policies: ``linear_ts``
(the ridge model) and ``logistic_ts`` (Bayesian logistic regression with a Laplace posterior, Chapelle & Li
2011).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.special

from keyart.batch import CandidateBatch
from keyart.params import Interval, OneOf
from keyart.policies.linear import RidgePolicy
from keyart.policies.logistic import LogisticModel
from keyart.policies.shared import SharedModelPolicy


def thompson_distribution(
    mean: np.ndarray,
    cov: np.ndarray,
    mask: np.ndarray,
    normals: np.ndarray,
    prune_tol: float,
) -> np.ndarray:
    """P(candidate k has the highest sampled score) for scores ~ N(mean, cov) per row, by Monte Carlo.

    Candidates whose chance to beat the best mean is below ``prune_tol`` (bounded exactly with the
    pairwise normal tail) get 0 and are left out of the simulation; the rest share the ``normals``
    block (float32, K x M draws, fixed per policy seed), so the estimate is deterministic.

    Conditional (Rao-Blackwellized) Monte Carlo: the candidate with the largest variance is put last in
    the Cholesky order, so its last normal moves only its own score; given the other draws it wins with
    probability Phi((c - m) / sigma) (m: the others' best, c and sigma: its conditional mean and standard
    deviation), which is added exactly instead of being sampled. Error: at most ``K * prune_tol`` from
    pruning plus the (quasi-)Monte Carlo error of M draws of the smoothed estimator.
    """
    n, k = mask.shape
    m_ = np.where(mask, mean, -np.inf)
    best = m_.argmax(axis=1)
    rows = np.arange(n)
    cbb = cov[rows, best, best][:, None]
    diag = np.diagonal(cov, axis1=1, axis2=2)
    var_diff = np.maximum(cbb + diag - 2.0 * cov[rows, best, :], 1e-300)
    beat = scipy.special.ndtr((m_ - m_[rows, best][:, None]) / np.sqrt(var_diff))
    keep = mask & (beat > prune_tol)
    keep[rows, best] = True
    out = np.zeros((n, k))
    counts = keep.sum(axis=1)
    single = counts == 1
    out[rows[single], best[single]] = 1.0
    multi = np.flatnonzero(~single)
    if multi.size == 0:
        return out
    kk = int(counts[multi].max())
    keep_m, mean_m = keep[multi], m_[multi]
    # the largest-variance kept candidate goes last; the others first by mean, then padding
    last = np.where(keep_m, diag[multi], -np.inf).argmax(axis=1)
    is_last = np.zeros_like(keep_m)
    is_last[np.arange(multi.size), last] = True
    head = np.argsort(np.where(keep_m & ~is_last, -mean_m, np.inf), axis=1, kind="stable")[:, : kk - 1]
    order = np.concatenate([head, last[:, None]], axis=1)
    valid = np.concatenate(
        [np.take_along_axis(keep_m & ~is_last, head, axis=1), np.ones((multi.size, 1), dtype=bool)], axis=1
    )
    mu = np.where(valid, np.take_along_axis(mean_m, order, axis=1), -np.inf)
    c = cov[multi][np.arange(multi.size)[:, None, None], order[:, :, None], order[:, None, :]]
    eye = np.eye(kk)
    c = np.where(valid[:, :, None] & valid[:, None, :], c, eye)
    scale = np.maximum(np.diagonal(c, axis1=1, axis2=2).max(axis=1), 1e-300)[:, None, None]
    L = _safe_cholesky(c / scale + 1e-9 * eye) * np.sqrt(scale)
    L32, mu32 = L.astype(np.float32), mu.astype(np.float32)
    head_L, tail_L = L32[:, : kk - 1, : kk - 1], L32[:, kk - 1 : kk, : kk - 1]
    tail_sd = L32[:, kk - 1, kk - 1][:, None]
    certain = tail_sd[:, 0] == 0  # the last candidate's draw is fixed given the others': no smoothing
    tail_sd = np.where(certain[:, None], np.float32(1.0), tail_sd)
    # Two head candidates with the same factor row and mean draw equal scores every time and share their
    # wins; any other float32 tie has probability ~2^-24 (and would count for both).
    head_mu = np.where(valid[:, : kk - 1], mu32[:, : kk - 1], np.nan)  # padding never ties
    exact_ties = bool(((head_mu[:, :, None] == head_mu[:, None, :]).sum(axis=2) > 1).any())
    if exact_ties:  # equal means: are the factor rows equal too?
        same = (head_L[:, :, None, :] == head_L[:, None, :, :]).all(axis=3)
        exact_ties = bool(((same & (head_mu[:, :, None] == head_mu[:, None, :])).sum(axis=2) > 1).any())
    wins = np.zeros((multi.size, kk))
    n_draws = normals.shape[1]
    chunk = max(256, (1 << 17) // (multi.size * kk))  # keep each block of draws cache-resident
    for start in range(0, n_draws, chunk):
        z = normals[None, : kk - 1, start : start + chunk]
        draws = np.matmul(head_L, z)  # (rows, kk - 1, chunk): every candidate but the last
        draws += mu32[:, : kk - 1, None]
        top = draws.max(axis=1)
        tail = np.matmul(tail_L, z)[:, 0] + mu32[:, kk - 1 : kk]
        p_tail = scipy.special.ndtr((tail - top) / tail_sd)
        is_top = (draws == top[:, None, :]).astype(np.float32)
        if certain.any():  # a tie with the head's best shares the win among all tied
            n_top = is_top[certain].sum(axis=1)
            t, b = tail[certain], top[certain]
            p_tail[certain] = np.where(t > b, 1.0, np.where(t == b, 1.0 / (1.0 + n_top), 0.0))
        rest = 1.0 - p_tail
        if exact_ties:
            rest /= is_top.sum(axis=1)
        wins[:, : kk - 1] += np.matmul(is_top, rest[:, :, None])[:, :, 0]
        wins[:, kk - 1] += p_tail.sum(axis=1)
    freq = wins / wins.sum(axis=1, keepdims=True)
    r, j = np.nonzero(valid)
    out[multi[r], order[r, j]] = freq[r, j]
    return out


def _safe_cholesky(c: np.ndarray) -> np.ndarray:
    """Cholesky factors of a stack of covariances; a row that is not numerically positive definite gets a
    square root from its clipped eigen-decomposition. Row by row, so a row's factor (and so its
    probabilities) never depends on the other rows of the batch."""
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        out = np.empty_like(c)
        for i in range(c.shape[0]):
            try:
                out[i] = np.linalg.cholesky(c[i])
            except np.linalg.LinAlgError:
                w, v = np.linalg.eigh(c[i])
                out[i] = v * np.sqrt(np.clip(w, 1e-12, None))[None, :]
        return out


NORMALS_BLOCK = 64  # dimensions per scrambled Sobol block: pools of up to 64 artworks share one joint block


def sobol_normals(dims: int, points: int, seed: int, block: int = 0) -> np.ndarray:
    """(dims, points) float32 standard normals from scrambled Sobol points (randomized QMC); ``block``
    selects an independent scrambling."""
    from scipy.stats import qmc  # here: scipy.stats costs a serving process ~1 s of start-up

    sobol = qmc.Sobol(d=dims, scramble=True, seed=np.random.default_rng([seed, 0x7453, block]))
    u = np.clip(sobol.random_base2(int(np.log2(points))), 1e-12, 1 - 1e-12)
    return np.ascontiguousarray(scipy.special.ndtri(u).T, dtype=np.float32)


class ThompsonPolicy(SharedModelPolicy):
    """Thompson sampling over the shared model. Its choice probabilities come from randomized
    quasi-Monte Carlo (``mc_points`` scrambled Sobol points turned normal, seeded by the policy seed, so
    deterministic; see ``thompson_distribution``); the draw is then made from those probabilities with
    the sticky uniform, so the logged propensity is exactly the probability of the shown artwork.

    Accuracy against ideal Thompson sampling: with the default 1,024 points of the conditional estimator,
    at most 0.01 absolute error per probability at 95% (checked against exact and simulated answers in the
    tests); plain Monte Carlo needs 9,604 draws for the same bound.

    ``scale`` multiplies the posterior's standard deviations when sampling (1: the posterior itself). The
    default 0.5 was chosen on the zoo's development worlds, for the linear and the logistic model alike
    (``benchmarks/tune_defaults.py``, docs/simulation.md, "How the defaults were chosen").
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **SharedModelPolicy._parameter_constraints,
        "scale": Interval(0, None, closed="neither"),
        "mc_points": OneOf(tuple(2**i for i in range(8, 17))),
    }

    def __init__(self, *, seed: int, scale: float = 0.5, mc_points: int = 1024, **kwargs: Any) -> None:
        self.scale = scale
        self.mc_points = mc_points
        super().__init__(seed=seed, **kwargs)

    def _reset(self) -> None:
        super()._reset()
        self._normals_cache: np.ndarray | None = None  # rows of ``_normals``, a function of the params

    def _normals(self, k: int) -> np.ndarray:
        """At least ``k`` rows of normals. Row j depends only on (seed, mc_points, j): rows come in blocks
        of ``NORMALS_BLOCK`` dimensions, each its own scrambled Sobol sequence, so serving a wider pool
        adds blocks and never changes the probabilities of narrower ones."""
        cached = self._normals_cache
        have = 0 if cached is None else cached.shape[0]
        if have < k:
            blocks = [cached] if cached is not None else []
            blocks += [
                sobol_normals(NORMALS_BLOCK, self.mc_points, self.seed, block=b)
                for b in range(have // NORMALS_BLOCK, -(-k // NORMALS_BLOCK))
            ]
            cached = self._normals_cache = np.ascontiguousarray(np.vstack(blocks))
        return cached

    def _distribution_from_model(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        mean, cov = self._mean_and_cov(batch)
        cov *= self.scale**2
        return thompson_distribution(mean, cov, batch.mask, self._normals(batch.k), 0.0005 / batch.k), mean


class LinearThompson(ThompsonPolicy, RidgePolicy):
    """Linear Thompson sampling: scores ~ N(mean, scale^2 * posterior covariance) of the ridge model (the
    noise level included, so scale 1 is Thompson sampling from the posterior itself)."""

    name = "linear_ts"
    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **ThompsonPolicy._parameter_constraints,
        **RidgePolicy._parameter_constraints,
    }


class LogisticThompson(ThompsonPolicy, LogisticModel):
    """Thompson sampling over Bayesian logistic regression with a Laplace posterior (Chapelle & Li 2011):
    scores are logits, sampled from N(mean, scale^2 * the Laplace covariance); the model is
    ``keyart.policies.logistic.LogisticModel``'s."""

    name = "logistic_ts"
