"""The shared model's learning: additive sufficient statistics and Gaussian posteriors with artwork biases.

Every contextual policy shares one model across titles: reward ~ x . theta + beta_a, where x is the
candidate's feature row and beta_a the artwork's own bias. The parameters' Gaussian posterior has a
precision matrix of block form [[P_ss, P_sa^T], [P_sa, diag(P_d)]] (each event touches exactly one
artwork, so the artwork-artwork block is diagonal), which keeps memory at O(d^2 + m d) for m artworks and
lets every solve go through the d x d Schur complement. With U_a = P_sa[a] / P_d[a]:

    mean score  = x . theta + beta_a
    variance    = (x - U_a)^T Sigma (x - U_a) + 1 / P_d[a],       Sigma = (P_ss - P_sa^T U)^-1
    covariance  = (x_i - U_i)^T Sigma (x_j - U_j)                  (two different artworks)

Statistics are sums over events, so partitions merge exactly (training on two halves and merging equals
training on all); the logistic model's Newton steps are built from per-partition gradient and Hessian
sums, so the same fit runs on one core, on DuckDB or on Spark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
import scipy.sparse

from keyart.basis import basis_plan
from keyart.errors import ConvergenceError, DimensionError, ValidationError
from keyart.hashing import artwork_keys

if TYPE_CHECKING:
    from keyart.basis import PageBasis, SplitRows
    from keyart.layout import FeatureLayout


class ArtworkIndex:
    """Stable rows for artwork ids, growing as new artworks appear (row order = first appearance)."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._by_key: tuple[int, np.ndarray, np.ndarray] | None = None  # (version, sorted keys, rows)
        self.version = 0  # changes whenever rows change, so callers can cache row lookups
        self.extend(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, ids: Iterable[str]) -> int:
        """Add unseen ids; returns how many were new."""
        before = len(self.ids)
        for a in ids:
            if a not in self._rows:
                self._rows[a] = len(self.ids)
                self.ids.append(a)
        self.version += len(self.ids) != before
        return len(self.ids) - before

    def rows(self, ids: np.ndarray, missing: int = -1) -> np.ndarray:
        """Row of each id (any shape); ``missing`` for ids never seen."""
        get = self._rows.get
        flat = [get(a, missing) for a in np.asarray(ids, dtype=object).ravel().tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(np.shape(ids))

    def rows_for_keys(self, keys: np.ndarray) -> np.ndarray:
        """Rows for ``keyart.hashing.artwork_key`` keys (any shape), -1 for unknown: vectorized lookups."""
        if self._by_key is None or self._by_key[0] != self.version:
            k = artwork_keys(np.array(self.ids, dtype=object)) if self.ids else np.zeros(0, dtype=np.int64)
            order = np.argsort(k)
            self._by_key = (self.version, k[order], order.astype(np.int64))
        _, sorted_keys, order = self._by_key
        if sorted_keys.size == 0:
            return np.full(np.shape(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
        return np.where(sorted_keys[pos] == keys, order[pos], -1)

    def copy(self) -> ArtworkIndex:
        """An independent index with the same rows and version (so row caches keyed by it stay valid)."""
        out = ArtworkIndex()
        out.ids, out._rows, out._by_key, out.version = (
            list(self.ids),
            dict(self._rows),
            self._by_key,
            self.version,
        )
        return out

    def remove(self, artwork_id: str) -> int:
        """Drop an id and return the row it had (callers delete that row of their arrays)."""
        row = self._rows.pop(artwork_id)
        del self.ids[row]
        self.version += 1
        for a in self.ids[row:]:
            self._rows[a] -= 1
        return row


@dataclass
class LinearStats:
    """Additive sufficient statistics of weighted least squares with per-artwork biases.

    ``xx = sum w x x^T``, ``xa[a] = sum_{a} w x``, ``aa[a] = sum_{a} w``, ``xr = sum w r x``,
    ``ar[a] = sum_{a} w r``, ``n = sum w``, ``rr = sum w r^2`` (for the noise level; statistics made
    elsewhere without it count binary rewards, for which sum w r^2 = sum w r); rows of the artwork arrays
    follow ``artwork_ids``.
    """

    artwork_ids: tuple[str, ...]
    xx: np.ndarray
    xa: np.ndarray
    aa: np.ndarray
    xr: np.ndarray
    ar: np.ndarray
    n: float = 0.0
    rr: float = 0.0

    @classmethod
    def empty(cls, d: int, artwork_ids: Sequence[str] = ()) -> LinearStats:
        m = len(artwork_ids)
        return cls(
            tuple(artwork_ids), np.zeros((d, d)), np.zeros((m, d)), np.zeros(m), np.zeros(d), np.zeros(m)
        )

    @classmethod
    def from_events(
        cls,
        X: np.ndarray,
        artwork_ids: np.ndarray,
        rewards: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> LinearStats:
        """Statistics of n events: shown features X (n, d), shown artwork ids (n,), rewards (n,)."""
        X = np.asarray(X, dtype=np.float64)
        r = np.asarray(rewards, dtype=np.float64)
        if X.ndim != 2 or r.shape != (X.shape[0],) or np.shape(artwork_ids) != (X.shape[0],):
            raise DimensionError(
                f"X must be (n, d) with artwork_ids and rewards of length n. "
                f"Got {X.shape}, {np.shape(artwork_ids)}, {r.shape}."
            )
        w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        uniq, inv = np.unique(np.asarray(artwork_ids, dtype=object).astype(str), return_inverse=True)
        return cls(tuple(uniq.tolist()), *_sums_by_row(X, inv, uniq.size, w, r))

    def aligned(self, index: ArtworkIndex) -> LinearStats:
        """The same statistics with artwork rows in ``index`` order (ids missing from index are added)."""
        index.extend(self.artwork_ids)
        m, d = len(index), self.xx.shape[0]
        rows = index.rows(np.array(self.artwork_ids, dtype=object))
        xa, aa, ar = np.zeros((m, d)), np.zeros(m), np.zeros(m)
        xa[rows], aa[rows], ar[rows] = self.xa, self.aa, self.ar
        return LinearStats(tuple(index.ids), self.xx, xa, aa, self.xr, ar, self.n, self.rr)

    def merge(self, other: LinearStats) -> LinearStats:
        """Statistics of the union of both event sets."""
        if other.xx.shape != self.xx.shape:
            raise DimensionError(
                f"Cannot merge statistics of width {self.xx.shape[0]} and {other.xx.shape[0]}."
            )
        index = ArtworkIndex(self.artwork_ids)
        a, b = self.aligned(index), other.aligned(index)
        a = a.aligned(index)
        return LinearStats(
            tuple(index.ids),
            a.xx + b.xx,
            a.xa + b.xa,
            a.aa + b.aa,
            a.xr + b.xr,
            a.ar + b.ar,
            a.n + b.n,
            a.rr + b.rr,
        )

    def scaled(self, gamma: float) -> LinearStats:
        """Every sum multiplied by gamma (exponential forgetting)."""
        return LinearStats(
            self.artwork_ids,
            self.xx * gamma,
            self.xa * gamma,
            self.aa * gamma,
            self.xr * gamma,
            self.ar * gamma,
            self.n * gamma,
            self.rr * gamma,
        )


def _weighted_gram(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_i w_i x_i x_i^T by a symmetric rank-k update (half the work of a general product)."""
    if X.shape[0] == 0:
        return np.zeros((X.shape[1], X.shape[1]))
    if (w < 0).any():
        return (X * w[:, None]).T @ X
    upper = scipy.linalg.blas.dsyrk(1.0, np.asfortranarray(X * np.sqrt(w)[:, None]), trans=1)
    return np.triu(upper) + np.triu(upper, 1).T


def _sums_by_row(
    X: np.ndarray, rows: np.ndarray, m: int, w: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(xx, xa, aa, xr, ar, n, rr) of events whose artworks have integer rows 0..m-1."""
    onehot = scipy.sparse.csr_matrix((w, (rows, np.arange(X.shape[0]))), shape=(m, X.shape[0]))
    return (
        _weighted_gram(X, w),
        np.asarray(onehot @ X),
        np.bincount(rows, weights=w, minlength=m),
        X.T @ (w * r),
        np.bincount(rows, weights=w * r, minlength=m),
        float(w.sum()),
        float(w @ (r * r)),
    )


@dataclass(frozen=True)
class BlockGaussian:
    """A Gaussian over (theta, beta) in natural form: block precision and eta = precision @ mean."""

    P_ss: np.ndarray
    P_sa: np.ndarray
    P_d: np.ndarray
    eta_s: np.ndarray
    eta_a: np.ndarray

    @classmethod
    def prior(cls, d: int, m: int, ridge: float | np.ndarray, bias_ridge: float) -> BlockGaussian:
        """The prior: ``ridge`` is one precision for every column or one per column."""
        return cls(
            np.diag(np.broadcast_to(np.asarray(ridge, dtype=np.float64), (d,))),
            np.zeros((m, d)),
            np.full(m, float(bias_ridge)),
            np.zeros(d),
            np.zeros(m),
        )

    @classmethod
    def from_stats(cls, stats: LinearStats, ridge: float, bias_ridge: float) -> BlockGaussian:
        """Ridge posterior (up to the noise scale) from least-squares statistics."""
        d = stats.xx.shape[0]
        return cls(stats.xx + ridge * np.eye(d), stats.xa, stats.aa + bias_ridge, stats.xr, stats.ar)

    def solve(self, rhs_s: np.ndarray, rhs_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve precision @ [s; a] = [rhs_s; rhs_a] through the Schur complement."""
        U = self.P_sa / self.P_d[:, None]
        M = self.P_ss - self.P_sa.T @ U
        s = scipy.linalg.cho_solve(scipy.linalg.cho_factor(M), rhs_s - U.T @ rhs_a)
        return s, rhs_a / self.P_d - U @ s

    def posterior(self) -> Posterior:
        U = self.P_sa / self.P_d[:, None]
        M = self.P_ss - self.P_sa.T @ U
        M = 0.5 * (M + M.T)
        try:
            c = scipy.linalg.cho_factor(M)
        except np.linalg.LinAlgError as exc:  # pragma: no cover - guarded by ridge > 0
            raise ValidationError("The model's precision matrix is not positive definite.") from exc
        sigma = scipy.linalg.cho_solve(c, np.eye(M.shape[0]))
        sigma = 0.5 * (sigma + sigma.T)
        theta = sigma @ (self.eta_s - U.T @ self.eta_a)
        beta = self.eta_a / self.P_d - U @ theta
        return Posterior(theta, beta, sigma, U, 1.0 / self.P_d)


@dataclass(frozen=True)
class Posterior:
    """Solved posterior: mean theta and beta, Sigma (Schur inverse), U rows and 1 / P_d per artwork."""

    theta: np.ndarray
    beta: np.ndarray
    sigma: np.ndarray
    U: np.ndarray
    inv_d: np.ndarray

    def gather(self, rows: np.ndarray, unknown_inv_d: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-candidate beta, U rows and 1/P_d, with the prior's values for unknown artworks (row -1)."""
        known = rows >= 0
        safe = np.where(known, rows, 0)
        if self.beta.size == 0:
            shape = rows.shape
            return np.zeros(shape), np.zeros((*shape, self.theta.size)), np.full(shape, unknown_inv_d)
        beta = self.bias(rows)
        U = self.U[safe] * known[..., None]
        inv_d = np.where(known, self.inv_d[safe], unknown_inv_d)
        return beta, U, inv_d

    def bias(self, rows: np.ndarray) -> np.ndarray:
        """Posterior mean bias of each candidate's artwork (0, the prior's, for unknown artworks)."""
        if self.beta.size == 0:
            return np.zeros(rows.shape)
        return np.where(rows >= 0, self.beta[np.maximum(rows, 0)], 0.0)

    def moments(
        self, X: np.ndarray, rows: np.ndarray, unknown_inv_d: float, covariance: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n, K) and variance (n, K), or covariance (n, K, K) of the candidates' scores."""
        beta, U, inv_d = self.gather(rows, unknown_inv_d)
        n, k, d = X.shape
        mean = X @ self.theta + beta
        # the (co)variance feeds exploration only: float32 halves its cost at no practical loss
        Z = (X - U).astype(np.float32)
        ZS = (Z.reshape(n * k, d) @ self._sigma32).reshape(n, k, d)
        if not covariance:
            return mean, np.einsum("nkd,nkd->nk", ZS, Z).astype(np.float64) + inv_d
        cov = np.matmul(ZS, Z.transpose(0, 2, 1)).astype(np.float64)
        cov[:, np.arange(k), np.arange(k)] += inv_d
        return mean, cov

    @cached_property
    def _sigma32(self) -> np.ndarray:
        return self.sigma.astype(np.float32)

    @cached_property
    def _projected(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Y, c, U) with Y[a] = Sigma U_a and c[a] = U_a^T Sigma U_a, each with a zero row appended for
        unknown artworks (row -1)."""
        d = self.theta.size
        U = np.vstack([self.U, np.zeros((1, d))])
        Y = U @ self.sigma
        return Y, np.einsum("ad,ad->a", Y, U), U

    def split(self, layout: FeatureLayout) -> tuple[SplitRows, SplitRows]:
        """[Sigma; theta] (d + 1 rows) and the Y rows split for a featurizer layout (``keyart.basis``),
        cached."""
        cached = self.__dict__.get("_splits")
        if cached is None or cached[0] is not layout:
            Y = self._projected[0]
            sigma_theta = np.vstack([self.sigma, self.theta[None, :]])
            plan = basis_plan(layout)
            cached = (layout, plan.split(sigma_theta), plan.split(Y))
            self.__dict__["_splits"] = cached
        return cached[1], cached[2]

    def page_moments(
        self, basis: PageBasis, rows: np.ndarray, unknown_inv_d: float, covariance: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n, K) and variance (n, K) or covariance (n, K, K) of a page's candidate scores.

        Equal to ``moments`` on the materialized rows, at O(d^2 r + n K (d r + r^2)) instead of
        O(n K d^2): with x = V z, (x - U_a)^T Sigma (x - U_a) = z^T (V^T Sigma V) z - 2 z^T V^T Sigma U_a
        + U_a^T Sigma U_a, and x . theta = z . (V^T theta).
        """
        Y, c, U = self._projected
        n, k = rows.shape
        d, r = Y.shape[1], basis.width
        known = rows >= 0
        safe = np.maximum(rows, 0)
        inv_d = np.where(known, self.inv_d[safe] if self.inv_d.size else 0.0, unknown_inv_d)
        levels, group = basis.levels, basis.level_of
        g = levels.shape[0]
        sigma_theta, y_split = self.split(basis.layout)
        # [Sigma; theta] V(prior) at every prior level: Sigma V, and V^T theta in its last row
        P = [basis.project(sigma_theta, level) for level in levels]
        w = np.stack([p[d] for p in P])
        mean = np.matmul(basis.Z, w[group][:, :, None])[:, :, 0]
        mean += np.where(known, self.beta[safe] if self.beta.size else 0.0, 0.0)
        # V^T Sigma V per level, and V(prior_n)^T Sigma U_a per candidate
        T = np.concatenate([p[:d] for p in P]).reshape(g, d, r).transpose(0, 2, 1).reshape(g * r, d)
        G = basis.project(basis.plan.split(T), np.repeat(levels, r, axis=0)).reshape(g, r, r)
        flat = rows.ravel()
        per_row = np.repeat(basis.prior, k, axis=0) if g > 1 else levels[0]
        H = basis.project(y_split, per_row, flat).reshape(n, k, r)
        Z = basis.Z
        common = int(np.bincount(group).argmax()) if g > 1 else 0
        ZG = (Z.reshape(n * k, r) @ G[common]).reshape(n, k, r)
        for j in range(g):
            if j != common:
                sel = np.flatnonzero(group == j)
                ZG[sel] = Z[sel] @ G[j]
        if covariance:
            ZH = Z @ H.transpose(0, 2, 1)
            out = ZG @ Z.transpose(0, 2, 1) - ZH - ZH.transpose(0, 2, 1)
            out += Y.take(flat, axis=0).reshape(n, k, d) @ U.take(rows, axis=0).transpose(0, 2, 1)
            out[:, np.arange(k), np.arange(k)] += inv_d
            return mean, out
        H *= -2.0
        H += ZG
        out = np.einsum("nkr,nkr->nk", H, Z)
        out += c[rows]
        out += inv_d
        return mean, out


# ---- logistic regression with a Laplace posterior (Chapelle & Li 2011), from partition sums -------


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
    d = prior.P_ss.shape[0]
    index = ArtworkIndex(prior_ids)
    for part in partitions:
        index.extend(np.asarray(part[1], dtype=object).tolist())
    m, m0 = len(index), len(prior_ids)
    parts = [
        (
            np.asarray(part[0], dtype=np.float64),
            index.rows(np.asarray(part[1], dtype=object)),
            np.asarray(part[2], dtype=np.float64),
            np.ones(len(part[2])) if len(part) == 3 else np.asarray(part[3], dtype=np.float64),  # type: ignore[misc]
        )
        for part in partitions
    ]
    P_sa = np.vstack([prior.P_sa, np.zeros((m - m0, d))])
    P_d = np.concatenate([prior.P_d, np.full(m - m0, float(bias_ridge))])
    eta_a = np.concatenate([prior.eta_a, np.zeros(m - m0)])
    base = BlockGaussian(prior.P_ss, P_sa, P_d, prior.eta_s, eta_a)
    theta0, beta0 = base.solve(base.eta_s, base.eta_a)

    def objective(theta: np.ndarray, beta: np.ndarray) -> float:
        """Negative log posterior, up to a constant."""
        dt, db = theta - theta0, beta - beta0
        prior_part = 0.5 * (dt @ base.P_ss @ dt + db @ (base.P_d * db)) + db @ (base.P_sa @ dt)
        return prior_part - sum(_loglik(X @ theta + beta[rows], r, w) for X, rows, r, w in parts)

    def data_sums(theta: np.ndarray, beta: np.ndarray) -> list[np.ndarray]:
        sums = [logistic_partition_sums(X, rows, m, r, theta, beta, w)[:5] for X, rows, r, w in parts]
        return [np.sum([s[i] for s in sums], axis=0) for i in range(5)]

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
