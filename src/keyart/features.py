"""Turn (member context, titles, pools, catalog) into candidate feature matrices, vectorized over a page.

The featurizer computes the blocks of values that ``keyart.layout`` declares, and the layout turns them
into rows of ``d`` numbers (its terms and crosses are declared there, once):

- context blocks: the member's genre affinity (the play history, recency- and engagement-weighted),
  country, language, device, hour bucket, day of week, prior interaction, recommender score, extras;
- artwork blocks: theme genres, visual style, tags, number of featured cast, optional embedding;
- pair blocks: the cast match (the member's cast affinity against the artwork's featured cast).

Open vocabularies (genres, cast, styles, tags, countries, ...) are hashed with a fixed keyed hash, signed
where the feature is a sum so that collisions cancel in expectation; by default the layout never depends
on the catalog's contents, so a model stays valid as titles and artworks come and go
(``exact_vocabularies`` gives known values buckets of their own instead). The artwork's own identity (its
bias) is not a column: models key it by the exact artwork id.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

import keyart.batch as _batch
from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext
from keyart.errors import DimensionError, UnknownIdError, ValidationError
from keyart.hashing import BucketHasher, artwork_key
from keyart.layout import FeatureConfig

#: Fields whose exact vocabulary is at most this many values get one bucket per value; a field with more
#: keeps its hashed width (the families that cross with others; cast only enters the one-column cast match)
EXACT_MAX = 64
EXACT_MAX_CAST = 1 << 16


def catalog_values(catalog: Catalog) -> dict[str, set[str]]:
    """The genres, cast members, styles and tags a catalog names (titles' and artworks')."""
    titles, arts = catalog.titles.values(), catalog.artworks.values()
    return {
        "genre": {g for t in titles for g in t.genres} | {g for a in arts for g in a.theme_genres},
        "cast": {c for t in titles for c in t.cast} | {c for a in arts for c in a.featured_cast},
        "style": {a.style for a in arts if a.style},
        "tag": {g for a in arts for g in a.tags},
    }


def context_values(contexts: Iterable[MemberContext]) -> dict[str, set[str]]:
    """The countries, languages and devices some of ``contexts`` carry."""
    ctxs = list(contexts)
    return {
        "country": {c.country for c in ctxs if c.country},
        "language": {c.language for c in ctxs if c.language},
        "device": {c.device for c in ctxs if c.device},
    }


def exact_vocabularies(
    catalog: Catalog,
    contexts: Iterable[MemberContext] = (),
    base: FeatureConfig | None = None,
    grow: bool = False,
) -> FeatureConfig:
    """``base`` (default ``FeatureConfig()``) with exact vocabularies: every genre, style, tag and
    featured or credited cast member of the catalog, and every country, language and device that the
    ``contexts`` carry (a sample of requests, e.g. from logs), owns a bucket of its own, in sorted order
    (so the layout does not depend on the order of the catalog). Each field gets one bucket more, shared
    by values first seen later (hashed there), so no two known values collide and an unknown one never
    lands on a known one. A field with more than ``EXACT_MAX`` values (``EXACT_MAX_CAST`` for cast) keeps
    ``base``'s hashed width. The result is part of the model's identity: keep it with the model. With
    ``grow`` (for a ``Featurizer(..., grow=True)``) countries, languages and devices get an exact vocabulary
    even when no context shows one: empty, to grow as values arrive."""
    base = base or FeatureConfig()
    ctxs = list(contexts)
    seen = {**catalog_values(catalog), **context_values(ctxs)}
    vocab, widths = dict(base.vocabularies), {}
    for name, values in seen.items():
        if name in ("country", "language", "device") and not ctxs and not grow:
            continue
        if len(values) <= (EXACT_MAX_CAST if name == "cast" else EXACT_MAX):
            vocab[name] = tuple(sorted(values))
            widths[f"{name}_buckets"] = len(values) + 1
    return dataclasses.replace(base, vocabularies=tuple(vocab.items()), **widths)


def _levels(count: int, levels: int) -> np.ndarray:
    """Indicators of ``count`` = 1, 2, ..., ``levels`` or more (all zeros for 0)."""
    out = np.zeros(levels)
    if count and levels:
        out[min(count, levels) - 1] = 1.0
    return out


class _ArtworkTable:
    """Per-artwork attribute rows in arrays that grow by doubling (row 0: the all-zero padding candidate),
    so a page gathers its candidates with one index and a new artwork costs O(width), not a re-stack."""

    def __init__(self, art_width: int, max_cast: int) -> None:
        self.n = 1
        self._widths = (art_width, max_cast, max_cast)
        self._alloc(64)
        self.row: dict[str, int] = {}

    def _alloc(self, cap: int) -> None:
        old = getattr(self, "_arrays", None)
        arrays = [np.zeros((cap, w)) for w in self._widths]
        arrays[1] = np.zeros((cap, self._widths[1]), dtype=np.int64)  # cast buckets, last = none
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
        """(block, cast buckets, cast signs, keys, ids) of the rows so far: the same arrays
        until a row is added (so callers can cache what they derive from them)."""
        cached = getattr(self, "_views", None)
        if cached is None or cached[0] != self.n:
            cached = (self.n, (*(a[: self.n] for a in self._arrays), self.keys[: self.n], self.ids[: self.n]))
            self._views = cached
        return cached[1]


class Featurizer:
    """The default featurizer: deterministic, vectorized over a page's pools.

    ``page`` featurizes one member's request for several titles; ``events`` featurizes logged events,
    each with its own context and its logged pool. Caches per-title and per-artwork rows in growing
    arrays and drops them whenever the catalog's version changes.

    With no ``config``, every genre, cast member, style and tag of the catalog owns a column
    (``exact_vocabularies(catalog)``: a function of the catalog alone, so two featurizers of one catalog
    agree); countries, languages and devices are hashed, or with ``grow`` get columns of their own as
    requests first carry them (``exact_vocabularies(catalog, grow=True)``: the config then depends on what
    was seen, so featurize for a model with its own, ``model_features``). With a ``config`` (a model's
    recorded one, say) rows are exactly that config's, growing only with ``grow``.
    """

    _max_cast = 8  # featured cast members per artwork that enter the cast match

    def __init__(self, catalog: Catalog, config: FeatureConfig | None = None, *, grow: bool = False) -> None:
        self.catalog = catalog
        self.grow = grow
        self._cache_version = -1
        self._use(config or exact_vocabularies(catalog, grow=grow))

    def _use(self, config: FeatureConfig) -> None:
        """Featurize with ``config`` from now on (its hashers; every cached row dropped)."""
        self.config = c = config
        self._genre = BucketHasher(c.genre_buckets, "genre", c.vocabulary("genre"))
        self._cast = BucketHasher(c.cast_buckets, "cast", c.vocabulary("cast"))
        self._style = BucketHasher(c.style_buckets, "style", c.vocabulary("style"))
        self._tag = BucketHasher(c.tag_buckets, "tag", c.vocabulary("tag"))
        self._country = BucketHasher(c.country_buckets, "country", c.vocabulary("country"))
        self._language = BucketHasher(c.language_buckets, "language", c.vocabulary("language"))
        self._device = BucketHasher(c.device_buckets, "device", c.vocabulary("device"))
        self._extra = BucketHasher(c.extra_buckets, "extra", c.vocabulary("extra"))
        self.__dict__.pop("feature_names", None)
        self._reset_caches()

    # ---- growing vocabularies --------------------------------------------------------------------
    def _grown(self, seen: dict[str, Iterable[str]]) -> None:
        """For ``grow``: every value new to a field with an exact vocabulary gets its own bucket (the
        config grows, ``FeatureConfig.grown``; in sorted order), while the vocabulary holds fewer than
        ``EXACT_MAX`` values (``EXACT_MAX_CAST`` for cast); past that, new values share the hashed buckets.
        Models grow into the wider config when they meet its rows (``SharedModelPolicy.grow_features``)."""
        config, exact = self.config, dict(self.config.vocabularies)
        for name, values in seen.items():
            known = exact.get(name)
            if known is None:
                continue
            room = (EXACT_MAX_CAST if name == "cast" else EXACT_MAX) - len(known)
            new = sorted(set(values).difference(known))[: max(room, 0)]
            if new:
                config = config.grown(name, new)
        if config is not self.config:
            self._use(config)

    def _grow_contexts(self, contexts: Sequence[MemberContext]) -> None:
        """Grow for the countries, languages and devices of a call's contexts (after the catalog's), before
        any of its rows is assembled (so one call's rows share one config)."""
        if self.grow:
            self._check_cache()
            self._grown(context_values(contexts))

    def _reset_caches(self) -> None:
        c = self.config
        self._arts = _ArtworkTable(self.config.layout.artwork_width, self._max_cast)
        self._title_slot: dict[str, int] = {}  # title id -> row of the title tables below
        self._title_genre = np.zeros((64, c.genre_buckets))
        self._title_cast = np.zeros((64, c.cast_buckets))
        self._pool_of: dict[str, tuple[int, np.ndarray]] = {}  # title id -> (slot in pool table, rows)
        self._pool_table = np.zeros((64, 1), dtype=np.int64)  # artwork rows of each pool, 0-padded
        self._pool_size = np.zeros(64, dtype=np.int64)

    @property
    def dim(self) -> int:
        return self.config.dim

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return self.config.layout.feature_names()

    # ---- caches ----------------------------------------------------------------------------------
    def _check_cache(self) -> None:
        if self._cache_version != self.catalog.version:
            self._cache_version = self.catalog.version
            config = self.config
            if self.grow:
                self._grown(catalog_values(self.catalog))
            if self.config is config:
                self._reset_caches()

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
        tags = self._tag.signed(a.tags, c.tags_normalized) if c.tag_buckets else np.zeros(0)
        emb = np.zeros(c.embedding_dim)
        if c.embedding_dim and a.embedding is not None:
            if len(a.embedding) != c.embedding_dim:
                raise DimensionError(
                    f"Artwork {a.artwork_id!r} has an embedding of length {len(a.embedding)}, but "
                    f"FeatureConfig.embedding_dim is {c.embedding_dim}."
                )
            emb[:] = a.embedding
        values = {
            "theme": theme,
            "style": style,
            "tags": tags,
            "featured_cast_count": np.array([math.log1p(len(a.featured_cast))]),
            "cast_count_level": _levels(len(a.featured_cast), c.cast_count_levels),
            "embedding": emb,
        }
        block = np.concatenate([values[name] for name in c.layout.artwork])
        # the featured cast's buckets (cast_buckets = none) and signs, for the member's cast affinity
        bucket = np.full(self._max_cast, c.cast_buckets, dtype=np.int64)
        sign = np.zeros(self._max_cast)
        for i, name in enumerate(a.featured_cast[: self._max_cast]):
            bucket[i], sign[i] = self._cast(name)
        return block, bucket, sign

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
        c = self.config
        lay = c.layout.context
        out = np.zeros(c.layout.context_width)
        out[lay["bias"]] = 1.0
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
    ) -> _batch.CandidateBatch:
        """One batch from contexts (``ctx_index``: context of each row, None for one context), titles, and
        either logged pools or (``pools`` None) each title's active pool from the catalog."""
        layout = self.config.layout
        lay = layout.context
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
        art_block, bucket_t, sign_t, keys, ids_t = self._arts.views()
        tids = title_ids if isinstance(title_ids, list) else list(title_ids)
        one = ctx_index is None
        title_genres = None
        if self.config.title_affinity:
            slots_t = self._title_slots(tids)  # may grow the table: index it only after
            title_genres = self._title_genre[slots_t]
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
            if title_genres is not None:
                ctx_part[:, lay["title_affinity"].start] = title_genres @ member[0][0]
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
            if title_genres is not None:
                genre_aff = np.stack([m[0] for m in member])[ctx_index]
                ctx_part[:, lay["title_affinity"].start] = np.einsum("ij,ij->i", title_genres, genre_aff)
            cast_aff = np.hstack([np.stack([m[1] for m in member]), np.zeros((len(member), 1))])[ctx_index]
            gathered = np.take_along_axis(cast_aff, bucket_t[idx].reshape(n, -1), axis=1).reshape(n, k, -1)
            cast_match = (sign_t[idx] * gathered).sum(axis=2)
            member_ids = np.array([cx.member_id for cx in ctx_of], dtype=object)
            timestamps = np.array([cx.timestamp for cx in ctx_of], dtype=np.float64)
        factors = _batch.PageFactors(
            layout, ctx_part, idx, cast_match[:, :, None], art_block, keys, self._arts
        )
        rids = (
            np.full(n, request_ids, dtype=object)
            if isinstance(request_ids, str)
            else np.array(list(request_ids), dtype=object)
        )
        return _batch.CandidateBatch(
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
    ) -> _batch.CandidateBatch:
        """Features of every active artwork of each title, for one member's page request."""
        if isinstance(title_ids, str):
            raise ValidationError("title_ids must be a list of title ids, not a single string.")
        rid = request_id if request_id is not None else uuid.uuid4().hex
        self._grow_contexts([context])
        return self._assemble([context], None, title_ids, None, rid)

    def pages(
        self,
        contexts: Sequence[MemberContext],
        title_ids: Sequence[Sequence[str]],
        request_ids: Sequence[str] | None = None,
    ) -> _batch.CandidateBatch:
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
        self._grow_contexts(ctxs)
        chunk = 2048  # requests per assembly: bounds the memory of the gathered per-candidate tables
        parts = []
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            a, b = start[lo], start[hi]
            parts.append(self._assemble(ctxs[lo:hi], ctx_index[a:b] - lo, flat[a:b], None, flat_rids[a:b]))
        return parts[0] if len(parts) == 1 else _batch.CandidateBatch.concat(parts)

    def events(
        self,
        contexts: Sequence[MemberContext],
        title_ids: Sequence[str],
        pools: Sequence[Sequence[str]],
        request_ids: Sequence[str] | None = None,
    ) -> _batch.CandidateBatch:
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
        self._grow_contexts(ctxs)
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
        return parts[0] if len(parts) == 1 else _batch.CandidateBatch.concat(parts)


_MOVED_TO_BATCH = ("CandidateBatch", "PageBasis", "PageFactors", "SplitRows", "split_rows")


def __getattr__(name: str) -> Any:
    """Old import paths of the batch types (moved to ``keyart.batch``), kept for one release."""
    if name in _MOVED_TO_BATCH:
        import warnings

        warnings.warn(
            f"keyart.features.{name} moved to keyart.batch.{name}; the old path goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_batch, name)
    raise AttributeError(f"module 'keyart.features' has no attribute {name!r}")
