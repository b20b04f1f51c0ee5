"""The candidate batch that flows from the featurizer to policies and learners, and its page forms.

``CandidateBatch`` holds n choice problems (titles of a page, or logged events) padded to the largest pool.
A batch from the default featurizer keeps its rows factored (``PageFactors``): scores are computed from
the factors without building the (n, K, d) rows, and a one-member page has a low-dimensional basis
(``PageBasis``) that makes a posterior's quadratic forms cheap (``keyart.learning.Posterior.page_moments``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from keyart.basis import PageBasis, SplitRows, basis_plan
from keyart.errors import DimensionError, ValidationError
from keyart.hashing import artwork_keys
from keyart.layout import FeatureLayout


@dataclass(frozen=True)
class PageFactors:
    """The default featurizer's rows in factored form: each candidate's row is x = V(c) z, a fixed
    function (``keyart.layout``) of its request's context vector c and its candidate vector z (artwork
    row, pair blocks), so a linear score x . theta is computed without building the (n, K, d) matrix
    (``dot``), and rows are built only when asked (``materialize``).
    """

    layout: FeatureLayout
    ctx: np.ndarray  # (n, context width): context vector, per-title blocks filled in
    idx: np.ndarray  # (n, K) rows of the artwork tables, 0 = padding (all zeros)
    pair: np.ndarray  # (n, K, pair width): member x artwork blocks (the cast match)
    art_block: np.ndarray  # (m, artwork width): the artwork rows
    keys: np.ndarray  # (m,) artwork keys (``keyart.hashing.artwork_key``), 0 for padding
    # the artwork table these rows come from: its rows never change, so of two views of one table the
    # shorter is a prefix of the longer (what ``concat`` relies on)
    table: object = field(default=None, compare=False)

    @property
    def dim(self) -> int:
        return self.layout.dim

    def take(self, rows: np.ndarray) -> PageFactors:
        return replace(self, ctx=self.ctx[rows], idx=self.idx[rows], pair=self.pair[rows])

    @staticmethod
    def concat(parts: Sequence[PageFactors], k: int) -> PageFactors | None:
        """The factors of batches stacked row-wise and padded to ``k`` candidates, when they all come from
        one artwork table (else None: the caller stacks materialized rows)."""
        first = parts[0]
        if first.table is None or any(p.table is not first.table for p in parts):
            return None
        widest = max(parts, key=lambda p: p.keys.size)

        def padded(a: np.ndarray) -> np.ndarray:
            if a.shape[1] == k:
                return a
            return np.pad(a, [(0, 0), (0, k - a.shape[1])] + [(0, 0)] * (a.ndim - 2))

        return replace(
            widest,
            ctx=np.concatenate([p.ctx for p in parts]),
            idx=np.concatenate([padded(p.idx) for p in parts]),
            pair=np.concatenate([padded(p.pair) for p in parts]),
        )

    def materialize(self, chosen: np.ndarray | None = None) -> np.ndarray:
        """(n, K, d) rows, or (n, d) rows of one candidate per request when ``chosen`` (n,) is given."""
        idx, pair = self.idx, self.pair
        if chosen is not None:
            r = np.arange(idx.shape[0])
            idx, pair = idx[r, chosen][:, None], pair[r, chosen][:, None]
        X = self.layout.materialize(self.ctx, self.art_block.take(idx, axis=0), pair, idx == 0)
        return X[:, 0] if chosen is not None else X

    def dot(self, theta: np.ndarray) -> np.ndarray:
        """x . theta for every candidate (n, K) from the factors: O(n K (artwork width)), no (n, K, d)."""
        return self.layout.dot(theta, self.ctx, self.art_block, self.idx, self.pair)

    def basis(self) -> PageBasis | None:
        """The rows' low-dimensional form when every row has the same member and context (a page), up to
        each title's per-title blocks (prior interaction, recommender score); None for batches of several
        members."""
        if not self.layout.same_member(self.ctx):
            return None
        return basis_plan(self.layout).basis_of(self.ctx, self.art_block, self.idx, self.pair)


def split_rows(layout: FeatureLayout, A: np.ndarray) -> SplitRows:
    """``A`` (N, d) in a featurizer's layout, regrouped for ``PageBasis.project``."""
    return basis_plan(layout).split(A)


class CandidateBatch:
    """n choice problems (titles of a page, or logged events), padded to K = the largest pool.

    ``X`` (n, K, d) holds every candidate's features (0 on padding); a batch made by the default
    featurizer keeps them in factored form (``factors``) and builds ``X`` only when something asks for it,
    while ``dot`` and ``shown_X`` work from the factors directly. Treat a batch as immutable.
    """

    def __init__(
        self,
        X: np.ndarray | None,
        mask: np.ndarray,
        artwork_ids: np.ndarray,
        title_ids: np.ndarray,
        member_ids: np.ndarray,
        request_ids: np.ndarray,
        timestamps: np.ndarray,
        feature_names: tuple[str, ...] = (),
        factors: PageFactors | None = None,
    ) -> None:
        if X is None and factors is None:
            raise ValidationError("CandidateBatch needs X or factors.")
        self._X = X
        self.mask, self.artwork_ids, self.title_ids = mask, artwork_ids, title_ids
        self.member_ids, self.request_ids, self.timestamps = member_ids, request_ids, timestamps
        self.feature_names, self.factors = feature_names, factors
        if X is not None and X.ndim != 3:
            raise DimensionError(f"CandidateBatch.X must have shape (n, K, d). Got {X.shape}.")
        n, k = mask.shape if mask.ndim == 2 else (-1, -1)
        if (X is not None and X.shape[:2] != (n, k)) or artwork_ids.shape != mask.shape or mask.ndim != 2:
            raise DimensionError(
                f"CandidateBatch.mask and artwork_ids must have shape (n, K) = {(n, k)}. "
                f"Got {mask.shape} and {artwork_ids.shape}."
            )
        for name in ("title_ids", "member_ids", "request_ids", "timestamps"):
            if getattr(self, name).shape != (n,):
                raise DimensionError(
                    f"CandidateBatch.{name} must have shape ({n},). Got {getattr(self, name).shape}."
                )
        if n and not mask.any(axis=1).all():
            raise ValidationError("Every row of a CandidateBatch needs at least one candidate (empty pool).")
        finite = (
            np.isfinite(X).all()
            if X is not None
            else np.isfinite(factors.ctx).all() and np.isfinite(factors.pair).all()  # type: ignore[union-attr]
        )
        if not finite:
            raise ValidationError("CandidateBatch.X contains NaN or inf.")

    @property
    def X(self) -> np.ndarray:
        if self._X is None:
            assert self.factors is not None
            self._X = self.factors.materialize()
        return self._X

    @property
    def n(self) -> int:
        return self.mask.shape[0]

    @property
    def k(self) -> int:
        return self.mask.shape[1]

    @property
    def d(self) -> int:
        return self.factors.dim if self._X is None else self._X.shape[2]  # type: ignore[union-attr]

    @property
    def pool_sizes(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    @property
    def artwork_keys(self) -> np.ndarray:
        """(n, K) stable int64 keys of the artwork ids (0 on padding), for vectorized id lookups."""
        keys = getattr(self, "_keys", None)
        if keys is None:
            f = self.factors
            keys = f.keys[f.idx] if f is not None else artwork_keys(self.artwork_ids)
            self._keys = keys
        return keys

    def pool(self, i: int) -> tuple[str, ...]:
        return tuple(self.artwork_ids[i, : int(self.mask[i].sum())].tolist())

    def dot(self, theta: np.ndarray) -> np.ndarray:
        """(n, K) linear scores x . theta (0 on padding), from the factors when there are any."""
        if self._X is None and self.factors is not None:
            return self.factors.dot(theta)
        return self.X @ theta

    def basis(self) -> PageBasis | None:
        """The low-dimensional form of a one-member page (``PageFactors.basis``), else None; computed
        once per batch."""
        if not hasattr(self, "_basis"):
            self._basis = None if self.factors is None else self.factors.basis()
        return self._basis

    def shown_X(self, chosen: np.ndarray) -> np.ndarray:
        """(n, d) features of one candidate per row (e.g. the shown one)."""
        if self._X is None and self.factors is not None:
            return self.factors.materialize(chosen)
        return self.X[np.arange(self.n), chosen]

    def take(self, index: np.ndarray | Sequence[int]) -> CandidateBatch:
        idx = np.asarray(index, dtype=np.int64)
        return CandidateBatch(
            None if self._X is None else self._X[idx],
            self.mask[idx],
            self.artwork_ids[idx],
            self.title_ids[idx],
            self.member_ids[idx],
            self.request_ids[idx],
            self.timestamps[idx],
            self.feature_names,
            None if self.factors is None else self.factors.take(idx),
        )

    def narrowed(self, k: int) -> CandidateBatch:
        """The same rows padded to ``k`` candidates only (every pool must fit), factors kept."""
        if int(self.pool_sizes.max(initial=0)) > k:
            raise DimensionError(f"A pool of this batch holds more than {k} candidates.")
        factors = self.factors
        if factors is not None:
            factors = replace(factors, idx=factors.idx[:, :k], pair=factors.pair[:, :k])
        return CandidateBatch(
            None if self._X is None else self._X[:, :k],
            self.mask[:, :k],
            self.artwork_ids[:, :k],
            self.title_ids,
            self.member_ids,
            self.request_ids,
            self.timestamps,
            self.feature_names,
            factors,
        )

    @classmethod
    def concat(cls, batches: Sequence[CandidateBatch]) -> CandidateBatch:
        if not batches:
            raise ValidationError("CandidateBatch.concat needs at least one batch.")
        dims = {b.d for b in batches}
        if len(dims) != 1:
            raise DimensionError(f"Cannot concatenate batches of different feature widths {sorted(dims)}.")
        k = max(b.k for b in batches)

        def pad(a: np.ndarray, fill: object) -> np.ndarray:
            width = [(0, 0), (0, k - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
            return np.pad(a, width, constant_values=fill) if a.shape[1] < k else a

        parts = [b.factors for b in batches if b.factors is not None]
        factors = PageFactors.concat(parts, k) if len(parts) == len(batches) else None
        return cls(
            None if factors is not None else np.concatenate([pad(b.X, 0.0) for b in batches]),
            np.concatenate([pad(b.mask, False) for b in batches]),
            np.concatenate([pad(b.artwork_ids, "") for b in batches]),
            np.concatenate([b.title_ids for b in batches]),
            np.concatenate([b.member_ids for b in batches]),
            np.concatenate([b.request_ids for b in batches]),
            np.concatenate([b.timestamps for b in batches]),
            batches[0].feature_names,
            factors,
        )

    def __repr__(self) -> str:
        return f"CandidateBatch(n={self.n}, K={self.k}, d={self.d}, factored={self._X is None})"
