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
training on all); the logistic model (``keyart.logistic``) builds its Newton steps from per-partition
gradient and Hessian sums in the same block form. The candidates' (co)variances come from the rows
(``moments``), a one-member page's basis (``page_moments``, ``keyart.basis``) or the layout's Kronecker
form (``kron_moments``, ``keyart.kron``), all equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
import scipy.sparse

from keyart import kernels
from keyart.basis import basis_plan
from keyart.errors import DimensionError, ValidationError
from keyart.hashing import artwork_keys

if TYPE_CHECKING:
    from keyart.basis import PageBasis, SplitRows
    from keyart.kron import KronPlan
    from keyart.layout import FeatureLayout

#: members whose Kronecker quadratics a posterior keeps (``Posterior.kron_moments``): ~60 kB each with every
#: cross declared
MEMBER_CACHE = 1024


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


#: ``weighted_gram`` works on the columns that hold a nonzero when they are at most this share of all: wide
#: layouts leave most columns of a window's rows, and of the artworks' sums, at zero (every cross of a
#: family the rows do not touch)
SPARSE_COLUMNS = 0.8


def weighted_gram(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_i w_i x_i x_i^T by a symmetric rank-k update (half the work of a general product), on the
    columns of X that hold a nonzero (the Gram is zero elsewhere)."""
    d = X.shape[1]
    if X.shape[0] == 0:
        return np.zeros((d, d))
    cols = np.flatnonzero(np.any(X != 0, axis=0))
    if cols.size <= SPARSE_COLUMNS * d:
        out = np.zeros((d, d))
        if cols.size:
            out[np.ix_(cols, cols)] = weighted_gram(X[:, cols], w)
        return out
    if (w < 0).any():
        return (X * w[:, None]).T @ X
    upper = scipy.linalg.blas.dsyrk(1.0, np.asfortranarray(X * np.sqrt(w)[:, None]), trans=1)
    return _symmetric_from_upper(upper)  # dsyrk computes the upper triangle and leaves the lower 0


def _sums_by_row(
    X: np.ndarray, rows: np.ndarray, m: int, w: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(xx, xa, aa, xr, ar, n, rr) of events whose artworks have integer rows 0..m-1."""
    onehot = scipy.sparse.csr_matrix((w, (rows, np.arange(X.shape[0]))), shape=(m, X.shape[0]))
    return (
        weighted_gram(X, w),
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
        """Solve precision @ [s; a] = [rhs_s; rhs_a] through the Schur complement (factored on the coupled
        columns only, ``coupled``)."""
        U = self.P_sa / self.P_d[:, None]
        b = rhs_s - U.T @ rhs_a
        s = b / np.diagonal(self.P_ss)
        cols = self.coupled()
        if cols.size:
            s[cols] = scipy.linalg.cho_solve(scipy.linalg.cho_factor(self.schur(cols)), b[cols])
        return s, rhs_a / self.P_d - U @ s

    def schur(self, cols: np.ndarray | None = None) -> np.ndarray:
        """The Schur complement of the artwork block, P_ss - P_sa^T diag(1 / P_d) P_sa (symmetric), or its
        rows and columns ``cols``."""
        if cols is None:
            return self.P_ss - weighted_gram(self.P_sa, 1.0 / self.P_d)
        return self.P_ss[np.ix_(cols, cols)] - weighted_gram(self.P_sa[:, cols], 1.0 / self.P_d)

    def coupled(self) -> np.ndarray:
        """The columns that the precision ties to another column or to an artwork. Every other column is
        independent of the rest (its precision P_ss[j, j] alone: no data touched it, as for the crosses of
        a family a world never uses), so factoring and inverting run on these only: O(c^3), not O(d^3)."""
        tied = np.count_nonzero(self.P_ss, axis=0) > (np.diagonal(self.P_ss) != 0)
        return np.flatnonzero(tied | np.any(self.P_sa != 0, axis=0))

    def mean_by_cg(
        self, sigma: np.ndarray, theta0: np.ndarray, tol: float = 1e-12, max_iter: int = 200
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The posterior mean (theta, beta) by preconditioned conjugate gradients on the Schur system,
        preconditioned by an earlier posterior's covariance ``sigma`` and started from its ``theta0``:
        O(d^2 + m d) per iteration instead of ``posterior``'s O(m d^2 + d^3). Stops when the residual's
        ``sigma``-norm is ``tol`` of the right-hand side's; None if it does not within ``max_iter``."""
        inv_d = 1.0 / self.P_d
        b = self.eta_s - self.P_sa.T @ (self.eta_a * inv_d)

        def schur_times(v: np.ndarray) -> np.ndarray:
            return self.P_ss @ v - self.P_sa.T @ ((self.P_sa @ v) * inv_d)

        theta = np.array(theta0, dtype=np.float64)
        r = b - schur_times(theta)
        z = sigma @ r
        p, rz = z.copy(), float(r @ z)
        stop = tol * tol * max(float(b @ (sigma @ b)), np.finfo(float).tiny)
        for _ in range(max_iter):
            if rz <= stop:
                return theta, (self.eta_a - self.P_sa @ theta) * inv_d
            q = schur_times(p)
            step = rz / float(p @ q)
            theta += step * p
            r -= step * q
            z = sigma @ r
            rz_next = float(r @ z)
            p = z + (rz_next / rz) * p
            rz = rz_next
        return None

    def posterior(self) -> Posterior:
        U = self.P_sa / self.P_d[:, None]
        cols = self.coupled()
        if cols.size == self.P_ss.shape[0]:
            sigma = spd_inverse(self.schur())
        else:  # the independent columns' variances are 1 / P_ss[j, j]
            sigma = np.diag(1.0 / np.diagonal(self.P_ss))
            if cols.size:
                sigma[np.ix_(cols, cols)] = spd_inverse(self.schur(cols))
        theta = sigma @ (self.eta_s - U.T @ self.eta_a)
        beta = self.eta_a / self.P_d - U @ theta
        return Posterior(theta, beta, sigma, U, 1.0 / self.P_d, None if cols.size == theta.size else cols)


def spd_inverse(M: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix (symmetric), see ``spd_factor_inverse``."""
    return spd_factor_inverse(M)[1]


def spd_factor_inverse(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, M^-1) for a symmetric positive definite M = R^T R (R upper triangular, zero below its
    diagonal), by LAPACK potrf and potri: a third of the work of solving against the identity. Raises
    ``ValidationError`` if M is not positive definite."""
    factor, info = scipy.linalg.lapack.dpotrf(M, lower=False, clean=True)
    if info != 0:
        raise ValidationError("The model's precision matrix is not positive definite.")
    inv, info = scipy.linalg.lapack.dpotri(factor, lower=False)  # the upper part; the lower stays 0
    if info != 0:  # pragma: no cover - a factor from potrf is invertible
        raise ValidationError("The model's precision matrix is not positive definite.")
    return factor, _symmetric_from_upper(inv)


def _symmetric_from_upper(A: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle is A's, for an A that is zero below its diagonal."""
    out = A + A.T
    out.flat[:: A.shape[0] + 1] = np.diagonal(A)
    return out


def bias_at(beta: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The biases ``beta`` at artwork ``rows`` (any shape), 0 (the prior's mean) at unknown rows (-1)."""
    if beta.size == 0:
        return np.zeros(rows.shape)
    return np.where(rows >= 0, beta[np.maximum(rows, 0)], 0.0)


@dataclass(frozen=True)
class Posterior:
    """Solved posterior: mean theta and beta, Sigma (Schur inverse), U rows and 1 / P_d per artwork."""

    theta: np.ndarray
    beta: np.ndarray
    sigma: np.ndarray
    U: np.ndarray
    inv_d: np.ndarray
    #: the columns coupled to others or to artworks (``BlockGaussian.coupled``; None: all). U is zero and
    #: Sigma diagonal outside them, so Sigma U_a lives on them.
    coupled: np.ndarray | None = None

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
        return bias_at(self.beta, rows)

    def moments(
        self,
        X: np.ndarray,
        rows: np.ndarray,
        unknown_inv_d: float,
        covariance: bool = False,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n, K) and variance (n, K), or covariance (n, K, K) of the candidates' scores; ``exact``:
        the (co)variance in float64 (equal to ``page_moments`` to rounding), else in float32."""
        beta, U, inv_d = self.gather(rows, unknown_inv_d)
        n, k, d = X.shape
        mean = X @ self.theta + beta
        # the (co)variance feeds exploration only: float32 halves its cost at no practical loss
        Z = X - U if exact else (X - U).astype(np.float32)
        ZS = (Z.reshape(n * k, d) @ (self.sigma if exact else self._sigma32)).reshape(n, k, d)
        if not covariance:
            return mean, np.einsum("nkd,nkd->nk", ZS, Z).astype(np.float64) + inv_d
        cov = np.matmul(ZS, Z.transpose(0, 2, 1)).astype(np.float64)
        cov[:, np.arange(k), np.arange(k)] += inv_d
        return mean, cov

    @cached_property
    def _sigma32(self) -> np.ndarray:
        return self.sigma.astype(np.float32)

    @cached_property
    def _padded_U(self) -> np.ndarray:
        """U with a zero row appended for unknown artworks (row -1)."""
        return np.vstack([self.U, np.zeros((1, self.theta.size))])

    def projected_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Y, c) with Y[a] = Sigma U_a and c[a] = U_a^T Sigma U_a, computed for the artwork rows asked
        (-1: unknown, zeros) that are not yet cached, and cached: O(d^2) per artwork row the first time."""
        U = self._padded_U
        cache = self.__dict__.get("_y_cache")
        if cache is None:
            cache = self.__dict__["_y_cache"] = (
                np.zeros(U.shape),
                np.zeros(U.shape[0]),
                np.arange(U.shape[0]) == U.shape[0] - 1,
            )
        Y, c, done = cache
        need = np.unique(np.asarray(rows).ravel())
        need = need[~done[need]]
        if need.size:
            cols = self.coupled
            if cols is None:
                Y[need] = U[need] @ self.sigma
            else:  # Y is zero outside the coupled columns (Y rows of the cache start at 0)
                Y[np.ix_(need, cols)] = U[np.ix_(need, cols)] @ self.sigma[np.ix_(cols, cols)]
            c[need] = np.einsum("ad,ad->a", Y[need], U[need])
            done[need] = True
        return Y, c

    @cached_property
    def _projected(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Y, c, U) of every artwork row, each with a zero row appended for unknown artworks (row -1); once
        per posterior (a page's moments read it on every call)."""
        Y, c = self.projected_rows(np.arange(self.U.shape[0]))
        return Y, c, self._padded_U

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

    def kron_moments(
        self,
        plan: KronPlan,
        ctx: np.ndarray,
        Z: np.ndarray,
        rows: np.ndarray,
        unknown_inv_d: float,
        covariance: bool = False,
    ) -> np.ndarray:
        """Variance (n, K) or covariance (n, K, K) of the candidates' scores from the layout's Kronecker
        form (``keyart.kron``): the rows' context vectors ``ctx`` (n, context width) and the candidates'
        basis vectors ``Z`` (n, K, r).

        Equal to ``moments`` on the materialized rows: with x = V(c) z, V(c) = L (c (x) I),
        (x - U_a)^T Sigma (x - U_a) = z^T B(c) z - 2 z^T V(c)^T Sigma U_a + U_a^T Sigma U_a. B costs
        O(|c|^2 r^2) per member of the batch, V(c)^T Sigma U_a O(nnz(L)) per candidate and the artworks'
        Sigma U_a O(d^2) once per posterior.
        """
        n, k = rows.shape
        known = rows >= 0
        safe = np.maximum(rows, 0)
        inv_d = np.where(known, self.inv_d[safe] if self.inv_d.size else 0.0, unknown_inv_d)
        cached = self.__dict__.get("_kron")
        if cached is None or cached[0] is not plan:
            m1, lift_map = self.U.shape[0] + 1, plan.lift_map(self.coupled)
            YJ = np.zeros((m1, lift_map.j.size))
            cached = (plan, plan.project(self.sigma), YJ, np.zeros(m1, dtype=bool), lift_map)
            self.__dict__["_kron"] = cached
        Y, c = self.projected_rows(rows)
        YJ, done, lift_map = cached[2], cached[3], cached[4]  # Y at L's nonzeros (the lift's input)
        need = np.unique(rows)
        need = need[~done[need]]
        YJ[need] = Y[need][:, lift_map.j]
        done[need] = True
        out = np.empty((n, k, k) if covariance else (n, k))
        step = max(1, 2048 // k)  # rows per chunk: bounds the (rows, K, nnz(L)) lift
        for lo in range(0, n, step):
            sl = slice(lo, min(n, lo + step))
            c_members, inverse, levels = plan.members(ctx[sl])
            Q = self._member_quadratics(plan, cached[1], c_members)
            B = plan.quadratic(cached[1], Q, inverse, levels)
            flat = rows[sl].ravel()
            H = plan.lift(YJ[flat], plan.contexts(ctx[sl]), k, lift_map)
            z = Z[sl]
            ZB = z @ B
            if covariance:
                ZH = z @ H.transpose(0, 2, 1)
                cov = ZB @ z.transpose(0, 2, 1) - ZH - ZH.transpose(0, 2, 1)
                cov += Y[flat].reshape(-1, k, Y.shape[1]) @ self._padded_U[rows[sl]].transpose(0, 2, 1)
                cov[:, np.arange(k), np.arange(k)] += inv_d[sl]
                out[sl] = cov
            else:
                out[sl] = np.einsum("nkr,nkr->nk", ZB - 2.0 * H, z) + c[rows[sl]] + inv_d[sl]
        return out

    def _member_quadratics(
        self, plan: KronPlan, blocks: list[list[np.ndarray | None]], c: np.ndarray
    ) -> np.ndarray:
        """``plan.member_quadratics`` of members ``c``, cached per member for this posterior (a member's rows
        come in several batches: one per pool size in a closed loop), at most ``MEMBER_CACHE`` members."""
        cache: dict[bytes, np.ndarray] = self.__dict__.setdefault("_member_q", {})
        keys = [row.tobytes() for row in c]
        missing = [i for i, key in enumerate(keys) if key not in cache]
        if missing:
            if len(cache) + len(missing) > MEMBER_CACHE:
                cache.clear()
                missing = list(range(len(keys)))
            for i, q in zip(missing, plan.member_quadratics(blocks, c[missing]), strict=True):
                cache[keys[i]] = q
        return np.stack([cache[key] for key in keys])

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
        known = rows >= 0
        safe = np.maximum(rows, 0)
        inv_d = np.where(known, self.inv_d[safe] if self.inv_d.size else 0.0, unknown_inv_d)
        levels, group = basis.levels, basis.level_of
        g = levels.shape[0]
        # V (d, r) at every prior level, from the layout's identity rows: then V^T theta, V^T Sigma V and
        # the candidates' V^T Sigma U_a are small dense products
        V = [basis.project(basis.plan.identity, level) for level in levels]
        w = np.stack([self.theta @ v for v in V])
        mean = np.matmul(basis.Z, w[group][:, :, None])[:, :, 0]
        mean += np.where(known, self.beta[safe] if self.beta.size else 0.0, 0.0)
        G = []
        for v in V:  # V is mostly zero (77 of 171 x 36 by default): its nonzero rows only
            nz = np.flatnonzero(v.any(axis=1))
            G.append(v[nz].T @ (self.sigma[np.ix_(nz, nz)] @ v[nz]))
        flat = rows.ravel()
        Z = basis.Z
        common = int(np.bincount(group).argmax()) if g > 1 else 0
        H = kernels.gather_product(Y, flat, V[common]).reshape(n, k, -1)
        ZG = (Z.reshape(n * k, -1) @ G[common]).reshape(n, k, -1)
        for j in range(g):
            if j != common:
                sel = np.flatnonzero(group == j)
                H[sel] = kernels.gather_product(Y, rows[sel].ravel(), V[j]).reshape(sel.size, k, -1)
                ZG[sel] = Z[sel] @ G[j]
        if covariance:
            ZH = Z @ H.transpose(0, 2, 1)
            out = ZG @ Z.transpose(0, 2, 1) - ZH - ZH.transpose(0, 2, 1)
            out += Y.take(flat, axis=0).reshape(n, k, -1) @ U.take(rows, axis=0).transpose(0, 2, 1)
            out[:, np.arange(k), np.arange(k)] += inv_d
            return mean, out
        H *= -2.0
        H += ZG
        out = np.einsum("nkr,nkr->nk", H, Z)
        out += c[rows]
        out += inv_d
        return mean, out
