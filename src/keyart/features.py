"""Turn (member context, titles, pools, catalog) into candidate feature matrices, vectorized over a page.

Every candidate artwork of a title gets one row of ``d`` numbers made of four blocks:

- member: the genre-affinity distribution of the play history (recency- and engagement-weighted);
- context: country, language, device, hour bucket, weekend, prior interaction, recommender score, extras;
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
from dataclasses import dataclass, replace
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
    """Hashing sizes and weighting of the default featurizer; part of a model's identity."""

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
            ("weekend", 1),
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

    def take(self, rows: np.ndarray) -> PageFactors:
        return replace(self, ctx=self.ctx[rows], idx=self.idx[rows], cast_match=self.cast_match[rows])

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
        """x . theta for every candidate (n, K) from the factors: O(n K (genres + styles)), no (n, K, d)."""
        lay, t, ctx = self.layout, theta, self.ctx
        prior = ctx[:, lay["prior_interaction"].start]
        aff = ctx[:, lay["member_genre_affinity"]]
        px = t[lay["prior_x_artwork"]]
        w_theme = aff * (t[lay["genre_x_theme"]] + t[lay["theme_match"].start] + prior[:, None] * px[0])
        n_style = self.style.shape[1]
        w_style = (
            ctx[:, lay["device"]] @ t[lay["device_x_style"]].reshape(-1, n_style)
            + ctx[:, lay["hour"]] @ t[lay["hour_x_style"]].reshape(-1, n_style)
            + prior[:, None] * px[2:]
        )
        idx = self.idx
        out = (self.art_block @ t[lay["theme"].start : lay["embedding"].stop])[idx]
        out += (ctx @ t[: ctx.shape[1]])[:, None]
        out += np.einsum("nkg,ng->nk", self.theme[idx], w_theme)
        out += np.einsum("nks,ns->nk", self.style[idx], w_style)
        out += self.cast_match * (t[lay["cast_match"].start] + prior * px[1])[:, None]
        out[idx == 0] = 0.0
        return out


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

        return cls(
            np.concatenate([pad(b.X, 0.0) for b in batches]),
            np.concatenate([pad(b.mask, False) for b in batches]),
            np.concatenate([pad(b.artwork_ids, "") for b in batches]),
            np.concatenate([b.title_ids for b in batches]),
            np.concatenate([b.member_ids for b in batches]),
            np.concatenate([b.request_ids for b in batches]),
            np.concatenate([b.timestamps for b in batches]),
            batches[0].feature_names,
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


class Featurizer:
    """The default featurizer: deterministic, hashed, vectorized over a page's pools.

    ``page`` featurizes one member's request for several titles; ``events`` featurizes logged events,
    each with its own context and its logged pool. Caches per-title and per-artwork vectors and drops them
    whenever the catalog's version changes.
    """

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
        self._title_vecs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._reset_artwork_table()

    def _reset_artwork_table(self) -> None:
        # row 0 is the padding candidate: all zeros
        c = self.config
        self._art_row: dict[str, int] = {}
        self._art_lists: list[list[np.ndarray]] = [
            [np.zeros(self._art_width)],
            [np.zeros(c.genre_buckets)],
            [np.zeros(self._max_cast)],
            [np.zeros(c.style_buckets)],
        ]
        self._art_keys: list[int] = [0]
        self._art_tables: tuple[np.ndarray, ...] | None = None
        self._pool_rows: dict[tuple[str, ...], np.ndarray] = {}

    _max_cast = 8  # featured cast members per artwork that enter the cast match

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
            self._title_vecs.clear()
            self._reset_artwork_table()
            self._cache_version = self.catalog.version

    def _title_vec(self, title: Title) -> tuple[np.ndarray, np.ndarray]:
        hit = self._title_vecs.get(title.title_id)
        if hit is None:
            hit = (self._genre.signed(title.genres), self._cast.signed(title.cast))
            self._title_vecs[title.title_id] = hit
        return hit

    def _artwork_block(self, a: Artwork) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        theme = self._genre.signed(a.theme_genres)
        style = self._style.onehot(a.style)
        tags = self._tag.signed(a.tags) if c.tag_buckets else np.zeros(0)
        emb = np.zeros(c.embedding_dim)
        if c.embedding_dim and a.embedding is not None:
            e = np.asarray(a.embedding[: c.embedding_dim])
            emb[: e.size] = e
        ncast = np.array([math.log1p(len(a.featured_cast))])
        block = np.concatenate([theme, style, tags, ncast, emb])
        cast = np.zeros(self._max_cast)  # signed (bucket + 1) codes of the featured cast, 0-padded
        for i, name in enumerate(a.featured_cast[: self._max_cast]):
            b, sign = self._cast(name)
            cast[i] = sign * (b + 1)
        return block, theme, cast, style

    def _rows_for_pool(self, pool: tuple[str, ...]) -> np.ndarray:
        """Rows of the pool's artworks in the artwork table (added on first sight)."""
        hit = self._pool_rows.get(pool)
        if hit is None:
            rows = []
            for a in pool:
                row = self._art_row.get(a)
                if row is None:
                    for table, part in zip(
                        self._art_lists, self._artwork_block(self.catalog.artwork(a)), strict=True
                    ):
                        table.append(part)
                    row = self._art_row[a] = len(self._art_lists[0]) - 1
                    self._art_keys.append(artwork_key(a))
                    self._art_tables = None
                rows.append(row)
            hit = self._pool_rows[pool] = np.asarray(rows, dtype=np.int64)
        return hit

    def _tables(self) -> tuple[np.ndarray, ...]:
        if self._art_tables is None:
            self._art_tables = (
                *(np.stack(t) for t in self._art_lists),
                np.asarray(self._art_keys, dtype=np.int64),
            )
        return self._art_tables

    # ---- member --------------------------------------------------------------------------------
    def member_vectors(self, context: MemberContext) -> tuple[np.ndarray, np.ndarray]:
        """Recency- and engagement-weighted genre and cast affinity of a member's play history."""
        c = self.config
        g = np.zeros(c.genre_buckets)
        k = np.zeros(c.cast_buckets)
        if not context.played:
            return g, k
        vecs, weights = [], []
        half_life = c.recency_half_life_days * 86_400.0
        for p in context.played:
            title = self.catalog.titles.get(p.title_id)
            if title is None:
                if c.on_unknown_history == "raise":
                    raise UnknownIdError(
                        f"Member {context.member_id!r} has unknown title_id {p.title_id!r} "
                        "in its play history."
                    )
                continue
            w = 1.0
            if p.timestamp is not None:
                w *= 0.5 ** (max(context.timestamp - p.timestamp, 0.0) / half_life)
            if p.engaged_seconds is not None:
                w *= min(1.0, p.engaged_seconds / c.engaged_saturation_seconds)
            vecs.append(self._title_vec(title))
            weights.append(w)
        total = sum(weights)
        if total <= 0:
            return g, k
        wa = np.asarray(weights) / total
        g = wa @ np.stack([v[0] for v in vecs])
        k = wa @ np.stack([v[1] for v in vecs])
        return g, k

    def _context_block(self, ctx: MemberContext, genre_aff: np.ndarray) -> np.ndarray:
        hour_bucket = ctx.hour // 6
        hour = np.zeros(HOUR_BUCKETS)
        hour[hour_bucket] = 1.0
        extras = np.zeros(self.config.extra_buckets)
        for name, value in ctx.extra.items() if self.config.extra_buckets else ():
            b, s = self._extra(name)
            extras[b] += s * value
        return np.concatenate(
            [
                [1.0],
                genre_aff,
                self._country.onehot(ctx.country),
                self._language.onehot(ctx.language),
                self._device.onehot(ctx.device),
                hour,
                [1.0 if ctx.weekday >= 5 else 0.0],
                [0.0],  # prior interaction: per title, filled in later
                [0.0],  # recommender score: per title
                extras,
            ]
        )

    # ---- assembly ------------------------------------------------------------------------------
    def _assemble(
        self,
        contexts: Sequence[MemberContext],
        ctx_index: np.ndarray,
        title_ids: Sequence[str],
        pools: Sequence[tuple[str, ...]],
        request_ids: Sequence[str],
    ) -> CandidateBatch:
        lay = self.config.layout
        n = len(title_ids)
        if n == 0:
            raise ValidationError("title_ids must not be empty.")
        self._check_cache()
        member = [self.member_vectors(ctx) for ctx in contexts]
        ctx_blocks = np.stack(
            [self._context_block(ctx, m[0]) for ctx, m in zip(contexts, member, strict=True)]
        )
        cast_aff = np.stack([m[1] for m in member])[ctx_index]
        pool_rows = [self._rows_for_pool(p) for p in pools]
        sizes = np.fromiter((r.size for r in pool_rows), dtype=np.int64, count=n)
        k = int(sizes.max())
        mask = np.arange(k)[None, :] < sizes[:, None]
        idx = np.zeros((n, k), dtype=np.int64)
        idx[mask] = np.concatenate(pool_rows)
        ids = np.full((n, k), "", dtype=object)
        ids[mask] = [a for p in pools for a in p]
        art_block, theme_t, cast_t, style_t, keys = self._tables()
        tids = list(title_ids)
        ctx_of = [contexts[j] for j in ctx_index.tolist()]
        prior = np.fromiter(
            (1.0 if t in cx.interacted_titles else 0.0 for t, cx in zip(tids, ctx_of, strict=True)), float, n
        )
        rec = np.fromiter(
            (cx.recommender_scores.get(t, 0.0) for t, cx in zip(tids, ctx_of, strict=True)), float, n
        )
        ctx_part = ctx_blocks[ctx_index]
        ctx_part[:, lay["prior_interaction"].start] = prior
        ctx_part[:, lay["recommender_score"].start] = rec
        # cast[n, k, i] = sign * (bucket + 1) of the i-th featured cast member, 0 for none
        cast = cast_t[idx]
        bucket = np.abs(cast).astype(np.int64) - 1
        gathered = np.take_along_axis(cast_aff, np.maximum(bucket, 0).reshape(n, -1), axis=1).reshape(
            bucket.shape
        )
        cast_match = (np.sign(cast) * gathered).sum(axis=2)
        factors = PageFactors(
            lay, self.config.dim, ctx_part, idx, cast_match, art_block, theme_t, style_t, keys
        )
        member_ids = np.array([contexts[j].member_id for j in ctx_index], dtype=object)
        timestamps = np.array([contexts[j].timestamp for j in ctx_index], dtype=np.float64)
        return CandidateBatch(
            None,
            mask,
            ids,
            np.array(list(title_ids), dtype=object),
            member_ids,
            np.array(list(request_ids), dtype=object),
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
        self._check_cache()
        pools = [self.catalog.pool_ids(t) for t in title_ids]
        rid = request_id if request_id is not None else uuid.uuid4().hex
        n = len(title_ids)
        return self._assemble([context], np.zeros(n, dtype=np.int64), title_ids, pools, [rid] * n)

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
