"""Turn (member context, titles, pools, catalog) into candidate feature matrices, vectorized over a page.

Every candidate artwork of a title gets one row of ``d`` numbers made of four blocks:

- member: the genre-affinity distribution of the play history (recency- and engagement-weighted);
- context: country, language, device, hour bucket, day of week, prior interaction, recommender score, extras;
- artwork: theme genres, visual style, tags, number of featured cast, optional embedding;
- crosses, which carry personalization: genre affinity x theme (per genre and summed), cast affinity x
  featured cast, device x style, hour bucket x style, prior interaction x (theme match, cast match, style).

Open vocabularies (genres, cast, styles, tags, countries, ...) are hashed with a fixed keyed hash, signed
where the feature is a sum so that collisions cancel in expectation; the layout never depends on the
catalog's contents, so a model stays valid as titles and artworks come and go. The artwork's own identity
(its bias) is not a column: models key it by the exact artwork id.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext
from keyart.errors import DimensionError, UnknownIdError, ValidationError
from keyart.hashing import artwork_key, artwork_keys, stable_hash
from keyart.params import Interval, OneOf, check_param

HOUR_BUCKETS = 4  # night (0-6), morning (6-12), afternoon (12-18), evening (18-24)
HASHED_FIELDS = ("genre", "cast", "style", "tag", "country", "language", "device", "extra")


@dataclass(frozen=True)
class FeatureConfig:
    """Hashing sizes and weighting of the default featurizer; part of a model's identity.

    ``embedding_dim``: the length of every artwork embedding used as features. With 0 (the default)
    embeddings are ignored; otherwise an artwork without one gets zeros there, and one of another length
    is a ``DimensionError``.
    """

    genre_buckets: int = 16
    cast_buckets: int = 256
    style_buckets: int = 8
    tag_buckets: int = 8
    country_buckets: int = 4
    language_buckets: int = 4
    device_buckets: int = 4
    extra_buckets: int = 4
    embedding_dim: int = 0
    recency_half_life_days: float = 60.0
    engaged_saturation_seconds: float = 1800.0
    on_unknown_history: str = "raise"
    vocabularies: tuple[tuple[str, tuple[str, ...]], ...] = ()

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        "genre_buckets": Interval(1, 4096, integer=True),
        "cast_buckets": Interval(1, 1 << 20, integer=True),
        "style_buckets": Interval(1, 1024, integer=True),
        "tag_buckets": Interval(0, 4096, integer=True),
        "country_buckets": Interval(0, 4096, integer=True),
        "language_buckets": Interval(0, 4096, integer=True),
        "device_buckets": Interval(1, 1024, integer=True),
        "extra_buckets": Interval(0, 4096, integer=True),
        "embedding_dim": Interval(0, 4096, integer=True),
        "recency_half_life_days": Interval(0, None, closed="neither"),
        "engaged_saturation_seconds": Interval(0, None, closed="neither"),
        "on_unknown_history": OneOf(("raise", "ignore")),
    }

    def __post_init__(self) -> None:
        for name, constraint in self._parameter_constraints.items():
            check_param("FeatureConfig", name, getattr(self, name), constraint)
        vocab = tuple((str(k), tuple(v)) for k, v in dict(self.vocabularies).items())
        object.__setattr__(self, "vocabularies", vocab)
        for field_name, tokens in vocab:
            if field_name not in HASHED_FIELDS:
                raise ValidationError(
                    f"vocabularies names unknown field {field_name!r}; known: {', '.join(HASHED_FIELDS)}."
                )
            buckets = getattr(self, f"{field_name}_buckets")
            if len(set(tokens)) != len(tokens) or len(tokens) >= buckets:
                raise ValidationError(
                    f"The {field_name} vocabulary needs distinct tokens and fewer of them than "
                    f"{field_name}_buckets ({buckets}), leaving room for unseen tokens. Got {len(tokens)}."
                )

    def vocabulary(self, field_name: str) -> tuple[str, ...]:
        """The exact vocabulary of a hashed field (empty: every token is hashed)."""
        return dict(self.vocabularies).get(field_name, ())

    @cached_property
    def layout(self) -> dict[str, slice]:
        """Named column ranges of the feature vector, in order."""
        g, s = self.genre_buckets, self.style_buckets
        widths = [
            ("bias", 1),
            ("member_genre_affinity", g),
            ("country", self.country_buckets),
            ("language", self.language_buckets),
            ("device", self.device_buckets),
            ("hour", HOUR_BUCKETS),
            ("weekday", 7),
            ("prior_interaction", 1),
            ("recommender_score", 1),
            ("extra", self.extra_buckets),
            ("theme", g),
            ("style", s),
            ("tags", self.tag_buckets),
            ("featured_cast_count", 1),
            ("embedding", self.embedding_dim),
            ("genre_x_theme", g),
            ("theme_match", 1),
            ("cast_match", 1),
            ("device_x_style", self.device_buckets * s),
            ("hour_x_style", HOUR_BUCKETS * s),
            ("prior_x_artwork", 2 + s),
        ]
        out: dict[str, slice] = {}
        start = 0
        for name, w in widths:
            out[name] = slice(start, start + w)
            start += w
        return out

    @property
    def dim(self) -> int:
        return next(reversed(self.layout.values())).stop


@dataclass(frozen=True)
class PageFactors:
    """The default featurizer's rows in factored form: each candidate's row is a fixed function of its
    request's context block and its artwork's attribute rows, so a linear score x . theta can be computed
    without building the (n, K, d) matrix (``dot``), and rows are built only when asked (``materialize``).
    """

    layout: Mapping[str, slice]
    dim: int
    ctx: np.ndarray  # (n, width of bias..extra): context block, prior interaction and score filled in
    idx: np.ndarray  # (n, K) rows of the artwork tables, 0 = padding (all zeros)
    cast_match: np.ndarray  # (n, K)
    art_block: np.ndarray  # (m, width of theme..embedding)
    theme: np.ndarray  # (m, genre buckets)
    style: np.ndarray  # (m, style buckets)
    keys: np.ndarray  # (m,) artwork keys (``keyart.hashing.artwork_key``), 0 for padding
    # the artwork table these rows come from: its rows never change, so of two views of one table the
    # shorter is a prefix of the longer (what ``concat`` relies on)
    table: object = field(default=None, compare=False)

    def take(self, rows: np.ndarray) -> PageFactors:
        return replace(self, ctx=self.ctx[rows], idx=self.idx[rows], cast_match=self.cast_match[rows])

    @staticmethod
    def concat(parts: Sequence[PageFactors], k: int) -> PageFactors | None:
        """The factors of batches stacked row-wise and padded to ``k`` candidates, when they all come from
        one artwork table (else None: the caller stacks materialized rows)."""
        first = parts[0]
        if first.table is None or any(p.table is not first.table for p in parts):
            return None
        widest = max(parts, key=lambda p: p.keys.size)

        def padded(a: np.ndarray) -> np.ndarray:
            return a if a.shape[1] == k else np.pad(a, [(0, 0), (0, k - a.shape[1])])

        return replace(
            widest,
            ctx=np.concatenate([p.ctx for p in parts]),
            idx=np.concatenate([padded(p.idx) for p in parts]),
            cast_match=np.concatenate([padded(p.cast_match) for p in parts]),
        )

    def materialize(self, chosen: np.ndarray | None = None) -> np.ndarray:
        """(n, K, d) rows, or (n, d) rows of one candidate per request when ``chosen`` (n,) is given."""
        lay = self.layout
        idx, cm = self.idx, self.cast_match
        if chosen is not None:
            r = np.arange(idx.shape[0])
            idx, cm = idx[r, chosen][:, None], cm[r, chosen][:, None]
        n, k = idx.shape
        ctx = self.ctx
        prior = ctx[:, lay["prior_interaction"].start]
        theme, style = self.theme[idx], self.style[idx]
        gx = theme * ctx[:, None, lay["member_genre_affinity"]]
        theme_match = gx.sum(axis=2, keepdims=True)
        cast_match = cm[:, :, None]
        device, hour = ctx[:, lay["device"]], ctx[:, lay["hour"]]
        X = np.concatenate(
            [
                np.broadcast_to(ctx[:, None, :], (n, k, ctx.shape[1])),
                self.art_block[idx],
                gx,
                theme_match,
                cast_match,
                (device[:, None, :, None] * style[:, :, None, :]).reshape(n, k, -1),
                (hour[:, None, :, None] * style[:, :, None, :]).reshape(n, k, -1),
                prior[:, None, None] * np.concatenate([theme_match, cast_match, style], axis=2),
            ],
            axis=2,
        )
        X[idx == 0] = 0.0
        return X[:, 0] if chosen is not None else X

    def dot(self, theta: np.ndarray) -> np.ndarray:
        """x . theta for every candidate (n, K) from the factors: O(n K (artwork width)), no (n, K, d)."""
        lay, t, ctx = self.layout, theta, self.ctx
        prior = ctx[:, lay["prior_interaction"].start]
        aff = ctx[:, lay["member_genre_affinity"]]
        px = t[lay["prior_x_artwork"]]
        g, n_style = aff.shape[1], self.style.shape[1]
        # one weight vector per row over the artwork's attribute row: its own block plus the crosses
        w = np.empty((ctx.shape[0], self.art_block.shape[1]))
        w[:] = t[lay["theme"].start : lay["embedding"].stop]
        w[:, :g] += aff * (t[lay["genre_x_theme"]] + t[lay["theme_match"].start] + prior[:, None] * px[0])
        w[:, g : g + n_style] += (
            ctx[:, lay["device"]] @ t[lay["device_x_style"]].reshape(-1, n_style)
            + ctx[:, lay["hour"]] @ t[lay["hour_x_style"]].reshape(-1, n_style)
            + prior[:, None] * px[2:]
        )
        idx = self.idx
        out = np.matmul(self.art_block.take(idx, axis=0), w[:, :, None])[:, :, 0]
        out += (ctx @ t[: ctx.shape[1]])[:, None]
        out += self.cast_match * (t[lay["cast_match"].start] + prior * px[1])[:, None]
        out[idx == 0] = 0.0
        return out

    def basis(self) -> PageBasis | None:
        """The rows' low-dimensional form when every row has the same member and context (a page), up to
        each title's prior interaction and recommender score; None for batches of several members."""
        lay, ctx = self.layout, self.ctx
        p, r = lay["prior_interaction"].start, lay["recommender_score"].start
        same = ctx == ctx[:1]
        same[:, [p, r]] = True
        if not same.all():
            return None
        return PageBasis(self, ctx[:, p].copy(), ctx[:, r].copy())


class PageBasis:
    """A page's candidate rows as x[n, k] = V(prior_n) @ z[n, k] with z of width r = 3 + artwork width.

    z = (1, recommender score, artwork attribute row, cast match): every candidate of the page shares V,
    which depends on the member (genre affinity, device, hour) and linearly on the title's prior
    interaction. ``project(A, prior)`` computes A @ V without building V, so a posterior's quadratic forms
    cost O(r^2) per candidate instead of O(d^2) (``keyart.learning.Posterior.moments``).
    """

    def __init__(self, factors: PageFactors, prior: np.ndarray, rec: np.ndarray) -> None:
        lay = factors.layout
        self.prior = prior
        self.layout = lay
        ctx0 = factors.ctx[0].copy()
        ctx0[lay["prior_interaction"].start] = 0.0
        ctx0[lay["recommender_score"].start] = 0.0
        self._ctx0 = ctx0
        self._aff = ctx0[lay["member_genre_affinity"]]
        self._device = [
            (int(b), float(ctx0[lay["device"].start + b])) for b in np.flatnonzero(ctx0[lay["device"]])
        ]
        self._hour = [(int(b), float(ctx0[lay["hour"].start + b])) for b in np.flatnonzero(ctx0[lay["hour"]])]
        idx = factors.idx
        n, k = idx.shape
        art = factors.art_block
        self.width = 3 + art.shape[1]
        Z = np.empty((n, k, self.width))
        Z[:, :, 0] = 1.0
        Z[:, :, 1] = rec[:, None]
        Z[:, :, 2:-1] = art.take(idx, axis=0)
        Z[:, :, -1] = factors.cast_match
        Z[idx == 0] = 0.0
        self.Z = Z
        if prior.any():
            self.levels = np.array(sorted(set(prior.tolist())))
            self.level_of = np.searchsorted(self.levels, prior)
        else:
            self.levels, self.level_of = np.zeros(1), np.zeros(n, dtype=np.int64)

    def project(self, A: SplitRows, prior: float | np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """A[rows] @ V(prior) for row vectors A (N, d) given by ``split_rows``; ``prior`` is one value or
        one per projected row. Only the member's device and hour slots of the crosses are read."""
        pi = np.asarray(prior, dtype=np.float64)
        pic = pi[:, None] if pi.ndim else pi
        a = A if rows is None else A.take(rows)
        g = self._aff.size
        out = np.empty((a.art.shape[0], self.width))
        scal = a.scal
        out[:, 0] = a.ctx @ self._ctx0
        out[:, 0] += pi * scal[:, 0]
        out[:, 1] = scal[:, 1]
        art = out[:, 2:-1]
        art[:] = a.art
        art[:, :g] += (a.gxtm + (pi * scal[:, 2])[:, None]) * self._aff
        style = art[:, g : g + a.pxs.shape[1]]
        style += pic * a.pxs
        for b, v in self._device:
            style += v * (a.dxs[b] if rows is None else A.dxs[b].take(rows, axis=0))
        for h, v in self._hour:
            style += v * (a.hxs[h] if rows is None else A.hxs[h].take(rows, axis=0))
        out[:, -1] = scal[:, 3] + pi * scal[:, 4]
        return out


@dataclass(frozen=True)
class SplitRows:
    """Row vectors (N, d) regrouped into the contiguous blocks that ``PageBasis.project`` reads, so a
    posterior splits its fixed rows once and each page only gathers and combines small blocks."""

    ctx: np.ndarray  # (N, context width)
    art: np.ndarray  # (N, artwork width)
    gxtm: np.ndarray  # (N, genres): genre x theme plus theme match
    pxs: np.ndarray  # (N, styles): prior interaction x style
    dxs: np.ndarray  # (devices, N, styles): one contiguous block per device slot
    hxs: np.ndarray  # (hours, N, styles)
    scal: (
        np.ndarray
    )  # (N, 5): prior interaction, recommender score, prior x theme match, cast match, prior x cast

    def take(self, rows: np.ndarray) -> SplitRows:
        """The blocks of some rows (the crosses' slots are gathered by the caller, one slot each)."""
        return SplitRows(
            self.ctx.take(rows, axis=0),
            self.art.take(rows, axis=0),
            self.gxtm.take(rows, axis=0),
            self.pxs.take(rows, axis=0),
            self.dxs,
            self.hxs,
            self.scal.take(rows, axis=0),
        )


def split_rows(layout: Mapping[str, slice], A: np.ndarray) -> SplitRows:
    """``A`` (N, d) in the default featurizer's layout, regrouped as ``SplitRows``."""
    lay = layout
    n = A.shape[0]
    px = lay["prior_x_artwork"]
    s = px.stop - px.start - 2
    scal = A[
        :,
        [
            lay["prior_interaction"].start,
            lay["recommender_score"].start,
            px.start,
            lay["cast_match"].start,
            px.start + 1,
        ],
    ]
    return SplitRows(
        np.ascontiguousarray(A[:, : lay["extra"].stop]),
        np.ascontiguousarray(A[:, lay["theme"].start : lay["embedding"].stop]),
        A[:, lay["genre_x_theme"]] + A[:, lay["theme_match"].start, None],
        np.ascontiguousarray(A[:, px.start + 2 : px.stop]),
        np.ascontiguousarray(A[:, lay["device_x_style"]].reshape(n, -1, s).transpose(1, 0, 2)),
        np.ascontiguousarray(A[:, lay["hour_x_style"]].reshape(n, -1, s).transpose(1, 0, 2)),
        scal,
    )


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
            else np.isfinite(factors.ctx).all() and np.isfinite(factors.cast_match).all()  # type: ignore[union-attr]
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


class _Hasher:
    """Cached signed feature hashing of strings into a fixed number of buckets.

    Tokens of an exact ``vocabulary`` own the first buckets (sign +1, never colliding); every other token
    is hashed into the remaining ones.
    """

    def __init__(self, buckets: int, salt: str, vocabulary: Sequence[str] = ()) -> None:
        self.buckets, self.salt = buckets, salt
        self._cache: dict[str, tuple[int, float]] = {t: (i, 1.0) for i, t in enumerate(vocabulary)}
        self._open = buckets - len(vocabulary)

    def __call__(self, token: str) -> tuple[int, float]:
        hit = self._cache.get(token)
        if hit is None:
            h = stable_hash(token, self.salt)
            hit = (self.buckets - self._open + h % self._open, 1.0 if (h >> 63) & 1 else -1.0)
            self._cache[token] = hit
        return hit

    def signed(self, tokens: Sequence[str], normalize: bool = True) -> np.ndarray:
        v = np.zeros(self.buckets)
        for t in tokens:
            b, s = self(t)
            v[b] += s
        if normalize and tokens:
            v /= len(tokens)
        return v

    def onehot(self, token: str) -> np.ndarray:
        v = np.zeros(self.buckets)
        if token and self.buckets:
            v[self(token)[0]] = 1.0
        return v


class _ArtworkTable:
    """Per-artwork attribute rows in arrays that grow by doubling (row 0: the all-zero padding candidate),
    so a page gathers its candidates with one index and a new artwork costs O(width), not a re-stack."""

    def __init__(self, art_width: int, genres: int, max_cast: int, styles: int) -> None:
        self.n = 1
        self._widths = (art_width, genres, max_cast, max_cast, styles)
        self._alloc(64)
        self.row: dict[str, int] = {}

    def _alloc(self, cap: int) -> None:
        old = getattr(self, "_arrays", None)
        arrays = [np.zeros((cap, w)) for w in self._widths]
        arrays[2] = np.zeros((cap, self._widths[2]), dtype=np.int64)  # cast buckets, last = none
        keys, ids = np.zeros(cap, dtype=np.int64), np.full(cap, "", dtype=object)
        if old is not None:
            for new, prev in zip([*arrays, keys, ids], [*old, self.keys, self.ids], strict=True):
                new[: self.n] = prev[: self.n]
        self._arrays, self.keys, self.ids = arrays, keys, ids

    def add(self, artwork_id: str, parts: tuple[np.ndarray, ...]) -> int:
        if self.n == self.keys.size:
            self._alloc(2 * self.n)
        r = self.n
        for arr, part in zip(self._arrays, parts, strict=True):
            arr[r] = part
        self.keys[r], self.ids[r] = artwork_key(artwork_id), artwork_id
        self.row[artwork_id] = r
        self.n += 1
        return r

    def views(self) -> tuple[np.ndarray, ...]:
        """(block, theme, cast buckets, cast signs, style, keys, ids) of the rows so far: the same arrays
        until a row is added (so callers can cache what they derive from them)."""
        cached = getattr(self, "_views", None)
        if cached is None or cached[0] != self.n:
            cached = (self.n, (*(a[: self.n] for a in self._arrays), self.keys[: self.n], self.ids[: self.n]))
            self._views = cached
        return cached[1]


class Featurizer:
    """The default featurizer: deterministic, hashed, vectorized over a page's pools.

    ``page`` featurizes one member's request for several titles; ``events`` featurizes logged events,
    each with its own context and its logged pool. Caches per-title and per-artwork rows in growing
    arrays and drops them whenever the catalog's version changes.
    """

    _max_cast = 8  # featured cast members per artwork that enter the cast match

    def __init__(self, catalog: Catalog, config: FeatureConfig | None = None) -> None:
        self.catalog = catalog
        self.config = config or FeatureConfig()
        c = self.config
        self._genre = _Hasher(c.genre_buckets, "genre", c.vocabulary("genre"))
        self._cast = _Hasher(c.cast_buckets, "cast", c.vocabulary("cast"))
        self._style = _Hasher(c.style_buckets, "style", c.vocabulary("style"))
        self._tag = _Hasher(c.tag_buckets, "tag", c.vocabulary("tag"))
        self._country = _Hasher(c.country_buckets, "country", c.vocabulary("country"))
        self._language = _Hasher(c.language_buckets, "language", c.vocabulary("language"))
        self._device = _Hasher(c.device_buckets, "device", c.vocabulary("device"))
        self._extra = _Hasher(c.extra_buckets, "extra", c.vocabulary("extra"))
        self._cache_version = -1
        self._reset_caches()

    def _reset_caches(self) -> None:
        c = self.config
        self._arts = _ArtworkTable(self._art_width, c.genre_buckets, self._max_cast, c.style_buckets)
        self._title_slot: dict[str, int] = {}  # title id -> row of the title tables below
        self._title_genre = np.zeros((64, c.genre_buckets))
        self._title_cast = np.zeros((64, c.cast_buckets))
        self._pool_of: dict[str, tuple[int, np.ndarray]] = {}  # title id -> (slot in pool table, rows)
        self._pool_table = np.zeros((64, 1), dtype=np.int64)  # artwork rows of each pool, 0-padded
        self._pool_size = np.zeros(64, dtype=np.int64)

    @cached_property
    def _art_width(self) -> int:
        lay = self.config.layout
        return lay["embedding"].stop - lay["theme"].start

    @property
    def dim(self) -> int:
        return self.config.dim

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(
            f"{name}[{i}]" for name, sl in self.config.layout.items() for i in range(sl.stop - sl.start)
        )

    # ---- caches ----------------------------------------------------------------------------------
    def _check_cache(self) -> None:
        if self._cache_version != self.catalog.version:
            self._reset_caches()
            self._cache_version = self.catalog.version

    def _title_slots(self, title_ids: Sequence[str]) -> list[int]:
        """Rows of the titles' genre and cast vectors (added on first sight)."""
        slot = self._title_slot
        out = [slot.get(t, -1) for t in title_ids]
        for i, s in enumerate(out):
            if s < 0:
                out[i] = slot.get(title_ids[i]) or self._add_title(self.catalog.titles[title_ids[i]])
        return out

    def _add_title(self, title: Title) -> int:
        s = len(self._title_slot) + 1  # slot 0 stays unused, so a found slot is never falsy
        if s >= self._title_genre.shape[0]:
            self._title_genre = np.vstack([self._title_genre, np.zeros_like(self._title_genre)])
            self._title_cast = np.vstack([self._title_cast, np.zeros_like(self._title_cast)])
        self._title_genre[s] = self._genre.signed(title.genres)
        self._title_cast[s] = self._cast.signed(title.cast)
        self._title_slot[title.title_id] = s
        return s

    def _artwork_parts(self, a: Artwork) -> tuple[np.ndarray, ...]:
        c = self.config
        theme = self._genre.signed(a.theme_genres)
        style = self._style.onehot(a.style)
        tags = self._tag.signed(a.tags) if c.tag_buckets else np.zeros(0)
        emb = np.zeros(c.embedding_dim)
        if c.embedding_dim and a.embedding is not None:
            if len(a.embedding) != c.embedding_dim:
                raise DimensionError(
                    f"Artwork {a.artwork_id!r} has an embedding of length {len(a.embedding)}, but "
                    f"FeatureConfig.embedding_dim is {c.embedding_dim}."
                )
            emb[:] = a.embedding
        ncast = np.array([math.log1p(len(a.featured_cast))])
        block = np.concatenate([theme, style, tags, ncast, emb])
        # the featured cast's buckets (cast_buckets = none) and signs, for the member's cast affinity
        bucket = np.full(self._max_cast, c.cast_buckets, dtype=np.int64)
        sign = np.zeros(self._max_cast)
        for i, name in enumerate(a.featured_cast[: self._max_cast]):
            bucket[i], sign[i] = self._cast(name)
        return block, theme, bucket, sign, style

    def _artwork_rows(self, pool: Sequence[str]) -> np.ndarray:
        """Rows of artworks in the artwork table (added on first sight)."""
        row, arts = self._arts.row, self._arts
        out = [row.get(a, 0) for a in pool]
        for i, r in enumerate(out):
            if r == 0:
                out[i] = row.get(pool[i]) or arts.add(
                    pool[i], self._artwork_parts(self.catalog.artwork(pool[i]))
                )
        return np.asarray(out, dtype=np.int64)

    def _pool_slots(self, title_ids: Sequence[str]) -> list[int]:
        """Rows of the titles' active pools in the pool table (added on first sight)."""
        pool_of = self._pool_of
        out = []
        for t in title_ids:
            hit = pool_of.get(t)
            if hit is None:
                hit = pool_of[t] = self._add_pool(self._artwork_rows(self.catalog.pool_ids(t)))
            out.append(hit[0])
        return out

    def _add_pool(self, rows: np.ndarray) -> tuple[int, np.ndarray]:
        s = len(self._pool_of)
        table = self._pool_table
        n_slots = 2 * table.shape[0] if s == table.shape[0] else table.shape[0]
        width = max(table.shape[1], rows.size)
        if (n_slots, width) != table.shape:
            self._pool_table = np.zeros((n_slots, width), dtype=np.int64)
            self._pool_table[: table.shape[0], : table.shape[1]] = table
            self._pool_size = np.concatenate(
                [self._pool_size, np.zeros(n_slots - self._pool_size.size, np.int64)]
            )
        self._pool_table[s, : rows.size] = rows
        self._pool_size[s] = rows.size
        return s, rows

    # ---- member --------------------------------------------------------------------------------
    def member_vectors(self, context: MemberContext) -> tuple[np.ndarray, np.ndarray]:
        """Recency- and engagement-weighted genre and cast affinity of a member's play history."""
        c = self.config
        self._check_cache()
        plays = context.played
        if not plays:
            return np.zeros(c.genre_buckets), np.zeros(c.cast_buckets)
        titles = self.catalog.titles
        if not all(p.title_id in titles for p in plays):
            if c.on_unknown_history == "raise":
                bad = next(p.title_id for p in plays if p.title_id not in titles)
                raise UnknownIdError(
                    f"Member {context.member_id!r} has unknown title_id {bad!r} in its play history."
                )
            plays = tuple(p for p in plays if p.title_id in titles)
            if not plays:
                return np.zeros(c.genre_buckets), np.zeros(c.cast_buckets)
        half_life = c.recency_half_life_days * 86_400.0
        now = context.timestamp
        w = np.fromiter(
            (
                (1.0 if p.timestamp is None else 0.5 ** (max(now - p.timestamp, 0.0) / half_life))
                * (
                    1.0
                    if p.engaged_seconds is None
                    else min(1.0, p.engaged_seconds / c.engaged_saturation_seconds)
                )
                for p in plays
            ),
            float,
            len(plays),
        )
        total = w.sum()
        if total <= 0:
            return np.zeros(c.genre_buckets), np.zeros(c.cast_buckets)
        slots = self._title_slots([p.title_id for p in plays])
        w /= total
        return w @ self._title_genre[slots], w @ self._title_cast[slots]

    def _context_block(self, ctx: MemberContext, genre_aff: np.ndarray) -> np.ndarray:
        lay, c = self.config.layout, self.config
        out = np.zeros(lay["extra"].stop)
        out[0] = 1.0
        out[lay["member_genre_affinity"]] = genre_aff
        for name, hasher, token in (
            ("country", self._country, ctx.country),
            ("language", self._language, ctx.language),
            ("device", self._device, ctx.device),
        ):
            if token and hasher.buckets:
                out[lay[name].start + hasher(token)[0]] = 1.0
        out[lay["hour"].start + ctx.hour // 6] = 1.0
        out[lay["weekday"].start + ctx.weekday] = 1.0
        if c.extra_buckets:
            extra = lay["extra"].start
            for name, value in ctx.extra.items():
                b, sgn = self._extra(name)
                out[extra + b] += sgn * value
        return out

    # ---- assembly ------------------------------------------------------------------------------
    def _assemble(
        self,
        contexts: Sequence[MemberContext],
        ctx_index: np.ndarray | None,
        title_ids: Sequence[str],
        pools: Sequence[tuple[str, ...]] | None,
        request_ids: Sequence[str] | str,
    ) -> CandidateBatch:
        """One batch from contexts (``ctx_index``: context of each row, None for one context), titles, and
        either logged pools or (``pools`` None) each title's active pool from the catalog."""
        lay = self.config.layout
        n = len(title_ids)
        if n == 0:
            raise ValidationError("title_ids must not be empty.")
        self._check_cache()
        member = [self.member_vectors(ctx) for ctx in contexts]
        if pools is None:
            slots = self._pool_slots(title_ids)
            sizes = self._pool_size[slots]
            k = int(sizes.max())
            idx = self._pool_table[slots, :k]
        else:
            rows = [self._artwork_rows(p) for p in pools]
            sizes = np.fromiter((r.size for r in rows), dtype=np.int64, count=n)
            k = int(sizes.max())
            idx = np.zeros((n, k), dtype=np.int64)
            idx[np.arange(k)[None, :] < sizes[:, None]] = np.concatenate(rows)
        mask = idx != 0
        art_block, theme_t, bucket_t, sign_t, style_t, keys, ids_t = self._arts.views()
        tids = title_ids if isinstance(title_ids, list) else list(title_ids)
        one = ctx_index is None
        ctx_blocks = [self._context_block(ctx, m[0]) for ctx, m in zip(contexts, member, strict=True)]
        if one:
            cx = contexts[0]
            ctx_part = np.repeat(ctx_blocks[0][None, :], n, axis=0)
            if cx.interacted_titles:
                inter = cx.interacted_titles
                ctx_part[:, lay["prior_interaction"].start] = [t in inter for t in tids]
            if cx.recommender_scores:
                get = cx.recommender_scores.get
                ctx_part[:, lay["recommender_score"].start] = [get(t, 0.0) for t in tids]
            cast_aff = np.append(member[0][1], 0.0)  # bucket cast_buckets: no featured cast member
            cast_match = (sign_t.take(idx, axis=0) * cast_aff.take(bucket_t.take(idx, axis=0))).sum(axis=2)
            member_ids = np.full(n, cx.member_id, dtype=object)
            timestamps = np.full(n, cx.timestamp, dtype=np.float64)
        else:
            assert ctx_index is not None
            ctx_of = [contexts[j] for j in ctx_index.tolist()]
            ctx_part = np.stack(ctx_blocks)[ctx_index]
            ctx_part[:, lay["prior_interaction"].start] = [
                t in cx.interacted_titles for t, cx in zip(tids, ctx_of, strict=True)
            ]
            ctx_part[:, lay["recommender_score"].start] = [
                cx.recommender_scores.get(t, 0.0) for t, cx in zip(tids, ctx_of, strict=True)
            ]
            cast_aff = np.hstack([np.stack([m[1] for m in member]), np.zeros((len(member), 1))])[ctx_index]
            gathered = np.take_along_axis(cast_aff, bucket_t[idx].reshape(n, -1), axis=1).reshape(n, k, -1)
            cast_match = (sign_t[idx] * gathered).sum(axis=2)
            member_ids = np.array([cx.member_id for cx in ctx_of], dtype=object)
            timestamps = np.array([cx.timestamp for cx in ctx_of], dtype=np.float64)
        factors = PageFactors(
            lay, self.config.dim, ctx_part, idx, cast_match, art_block, theme_t, style_t, keys, self._arts
        )
        rids = (
            np.full(n, request_ids, dtype=object)
            if isinstance(request_ids, str)
            else np.array(list(request_ids), dtype=object)
        )
        return CandidateBatch(
            None,
            mask,
            ids_t.take(idx),
            np.array(tids, dtype=object),
            member_ids,
            rids,
            timestamps,
            self.feature_names,
            factors,
        )

    def page(
        self, context: MemberContext, title_ids: Sequence[str], request_id: str | None = None
    ) -> CandidateBatch:
        """Features of every active artwork of each title, for one member's page request."""
        if isinstance(title_ids, str):
            raise ValidationError("title_ids must be a list of title ids, not a single string.")
        rid = request_id if request_id is not None else uuid.uuid4().hex
        return self._assemble([context], None, title_ids, None, rid)

    def pages(
        self,
        contexts: Sequence[MemberContext],
        title_ids: Sequence[Sequence[str]],
        request_ids: Sequence[str] | None = None,
    ) -> CandidateBatch:
        """Several members' page requests in one batch, rows request-major: equal to concatenating one
        ``page`` per request, without a per-request assembly (what a simulator's window needs)."""
        n = len(contexts)
        if len(title_ids) != n or (request_ids is not None and len(request_ids) != n):
            raise DimensionError(
                "contexts, title_ids and request_ids must have the same length. "
                f"Got {n}, {len(title_ids)}, {n if request_ids is None else len(request_ids)}."
            )
        for i, t in enumerate(title_ids):
            if isinstance(t, str) or not len(t):
                raise ValidationError(f"title_ids[{i}] must be a non-empty list of title ids. Got {t!r}.")
        rids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in range(n)]
        sizes = np.fromiter((len(t) for t in title_ids), dtype=np.int64, count=n)
        ctx_index = np.repeat(np.arange(n), sizes)
        start = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        flat = [t for titles in title_ids for t in titles]
        flat_rids = [rids[i] for i in ctx_index.tolist()]
        ctxs = list(contexts)
        chunk = 2048  # requests per assembly: bounds the memory of the gathered per-candidate tables
        parts = []
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            a, b = start[lo], start[hi]
            parts.append(self._assemble(ctxs[lo:hi], ctx_index[a:b] - lo, flat[a:b], None, flat_rids[a:b]))
        return parts[0] if len(parts) == 1 else CandidateBatch.concat(parts)

    def events(
        self,
        contexts: Sequence[MemberContext],
        title_ids: Sequence[str],
        pools: Sequence[Sequence[str]],
        request_ids: Sequence[str] | None = None,
    ) -> CandidateBatch:
        """Features of logged events: one context, title and logged pool (artwork ids) per event."""
        n = len(contexts)
        if len(title_ids) != n or len(pools) != n:
            raise DimensionError(
                "contexts, title_ids and pools must have the same length. "
                f"Got {n}, {len(title_ids)}, {len(pools)}."
            )
        tpools = [tuple(p) for p in pools]
        for i, p in enumerate(tpools):
            if not p:
                raise ValidationError(f"pools[{i}] is empty.")
            for a in p:
                art = self.catalog.artwork(a)
                if art.title_id != title_ids[i]:
                    raise ValidationError(
                        f"pools[{i}] holds artwork {a!r} of title {art.title_id!r}, not {title_ids[i]!r}."
                    )
        rids = list(request_ids) if request_ids is not None else [f"event-{i}" for i in range(n)]
        ctxs, tids = list(contexts), list(title_ids)
        chunk = 2048  # bounds the memory of the gathered per-candidate tables
        parts = [
            self._assemble(
                ctxs[i : i + chunk],
                np.arange(min(chunk, n - i)),
                tids[i : i + chunk],
                tpools[i : i + chunk],
                rids[i : i + chunk],
            )
            for i in range(0, n, chunk)
        ]
        return parts[0] if len(parts) == 1 else CandidateBatch.concat(parts)
