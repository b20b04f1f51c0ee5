"""The feature layout, declared once: the blocks of values and the terms (crosses) made from them.

A candidate's feature row is a list of *terms*. A term multiplies a product of context blocks (their
Kronecker product; none is the constant 1) with one candidate-side block: ``"one"`` (the constant 1, so
the term is context only), an artwork block (from the artwork's attributes) or a pair block (from the
member and the artwork together, e.g. the cast match). ``mode`` says how the two sides combine: "outer"
keeps every product, "diagonal" pairs two blocks of one vocabulary element by element, and "inner" sums
that pairing into one column.

Every row is therefore x = V(c) z: linear in the candidate's vector z = (1, artwork row, pair blocks),
with coefficients that depend on the request's context c only. ``FeatureLayout`` derives from the
declaration everything that reads the layout: the dense rows (``materialize``) and the factored score
x . theta (``dot``); ``keyart.basis`` derives a one-member page's basis from the same resolved terms.
Adding a cross is one ``Term`` in ``TERMS`` (or in ``FeatureConfig.crosses``). ``FeatureConfig``, the
widths and vocabularies that resolve the declaration (part of a model's identity), lives here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np

from keyart.errors import ValidationError
from keyart.params import Interval, OneOf, check_param

HOUR_BUCKETS = 4  # night (0-6), morning (6-12), afternoon (12-18), evening (18-24)
ONE = "one"  # the candidate side of a context-only term
Mode = Literal["outer", "diagonal", "inner"]


@dataclass(frozen=True)
class Block:
    """A named vector of values: its width is fixed or read from a ``FeatureConfig`` field.

    ``per_title``: a context block whose value differs between the titles of one member's page (prior
    interaction, recommender score, title affinity); it has width 1 (or 0: absent).
    """

    name: str
    width: int | str
    per_title: bool = False


@dataclass(frozen=True)
class Term:
    """Columns of the feature row: (Kronecker product of ``context`` blocks) x ``candidate`` block.

    ``Term("device_x_style", ("device",), "style")`` gives device-bucket x style columns (device-major);
    ``Term("theme_match", ("member_genre_affinity",), "theme", "inner")`` gives one column, the member's
    genre affinity summed against the artwork's themes. ``group`` names a run of adjacent terms that the
    layout also answers for as one span.
    """

    name: str
    context: tuple[str, ...] = ()
    candidate: str = ONE
    mode: Mode = "outer"
    group: str | None = None


CONTEXT_BLOCKS = (
    Block("bias", 1),
    Block("member_genre_affinity", "genre_buckets"),
    Block("country", "country_buckets"),
    Block("language", "language_buckets"),
    Block("device", "device_buckets"),
    Block("hour", HOUR_BUCKETS),
    Block("weekday", 7),
    Block("prior_interaction", 1, per_title=True),
    Block("recommender_score", 1, per_title=True),
    # the member's genre affinity . the title's genres: how much the member likes the title itself, so the
    # crosses of taste with the artwork's themes need not stand in for it (``FeatureConfig.title_affinity``)
    Block("title_affinity", "title_affinity", per_title=True),
    Block("extra", "extra_buckets"),
)
ARTWORK_BLOCKS = (
    Block("theme", "genre_buckets"),
    Block("style", "style_buckets"),
    Block("tags", "tag_buckets"),
    Block("featured_cast_count", 1),
    # the featured cast count as levels (1, ..., cast_count_levels or more; none: all zeros): a picture of
    # no one, of one star or of an ensemble differ in kind, so their effects need not be linear in it
    Block("cast_count_level", "cast_count_levels"),
    Block("embedding", "embedding_dim"),
)
PAIR_BLOCKS = (Block("cast_match", 1),)

TERMS = (
    *(Term(b.name, (b.name,)) for b in CONTEXT_BLOCKS),
    *(Term(b.name, (), b.name) for b in ARTWORK_BLOCKS),
    Term("genre_x_theme", ("member_genre_affinity",), "theme", "diagonal"),
    Term("theme_match", ("member_genre_affinity",), "theme", "inner"),
    Term("cast_match", (), "cast_match"),
    Term("device_x_style", ("device",), "style"),
    Term("hour_x_style", ("hour",), "style"),
    Term(
        "prior_x_theme_match",
        ("prior_interaction", "member_genre_affinity"),
        "theme",
        "inner",
        "prior_x_artwork",
    ),
    Term("prior_x_cast_match", ("prior_interaction",), "cast_match", group="prior_x_artwork"),
    Term("prior_x_style", ("prior_interaction",), "style", group="prior_x_artwork"),
    # the member's genre taste x the artwork's embedding (e.g. keyart.vision's image features): a new
    # artwork with pixels but no tags is personalized from its first request; no columns without one
    Term("genre_x_embedding", ("member_genre_affinity",), "embedding"),
)


def all_crosses(declared: Sequence[Term] = TERMS) -> tuple[Term, ...]:
    """Every context family x every artwork family as an outer cross, the analogue of VW's ``-q ::``:
    ``Term("<context>_x_<artwork>", (context,), artwork)`` for each pair that ``declared`` does not already
    hold as an outer term (the intercept is left out: bias x artwork is the artwork block itself). A
    family of width 0 (``tag_buckets=0``, ``embedding_dim=0``, ...) gives a cross of no columns, so the
    crosses of absent families cost nothing. ``FeatureConfig(crosses="all")`` adds them all; with learned
    priors (``keyart.priors``) each cross is a family whose shrinkage is fitted to the data."""
    have = {(t.context, t.candidate) for t in declared if t.mode == "outer"}
    return tuple(
        Term(f"{c.name}_x_{a.name}", (c.name,), a.name)
        for c in CONTEXT_BLOCKS
        if c.name != "bias"
        for a in ARTWORK_BLOCKS
        if ((c.name,), a.name) not in have
    )


def _span(index: np.ndarray) -> slice | np.ndarray:
    """A contiguous index range as a slice (a view, no copy), else the index array."""
    if index.size and (np.diff(index) == 1).all():
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def index(ranges: Sequence[slice]) -> slice | np.ndarray:
    """The columns of some ranges, in order: a slice when contiguous."""
    rng = [np.arange(r.start, r.stop) for r in ranges]
    return _span(np.concatenate(rng) if rng else np.zeros(0, dtype=np.int64))


def kron_rows(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Row-wise Kronecker product of (n, w_i) arrays, (n, 1) ones for none."""
    out = parts[0] if parts else None
    for p in parts[1:]:
        out = (out[:, :, None] * p[:, None, :]).reshape(out.shape[0], -1)  # type: ignore[index]
    return out  # type: ignore[return-value]


@dataclass
class Plan:
    """One term, resolved: its columns, its context factors and its candidate block."""

    term: Term
    cols: slice  # its columns of x
    context: list[slice]  # its context factors' slices of c
    fixed: tuple[str, ...]  # its factors that are the same for every title of a page
    level: tuple[int, ...]  # positions (among the level blocks) of its crossed per-title factors
    side: str  # "one", "art" or "pair"
    cand: slice  # slice of the artwork row or of the pair vector (0:1 for "one")
    target: slice  # its candidate block's columns of the basis vector z
    width_p: int
    width_s: int

    @property
    def mode(self) -> Mode:
        return self.term.mode


class FeatureLayout(Mapping[str, slice]):
    """The resolved declaration: term (or group) name -> its columns, and the maths derived from it.

    Iterating gives the terms in column order. ``context`` / ``artwork`` / ``pair`` map block names to
    their columns in the context vector c, the artwork row and the pair vector.
    """

    def __init__(self, config: FeatureConfig, terms: Sequence[Term] = TERMS) -> None:
        self.config = config  # what the columns mean (a model records it: ``SharedModelPolicy.features_``)

        def place(blocks: Sequence[Block]) -> dict[str, slice]:
            out, start = {}, 0
            for b in blocks:
                w = b.width if isinstance(b.width, int) else int(getattr(config, b.width))
                out[b.name] = slice(start, start + w)
                start += w
            return out

        self.context, self.artwork, self.pair = (
            place(CONTEXT_BLOCKS),
            place(ARTWORK_BLOCKS),
            place(PAIR_BLOCKS),
        )
        self.context_width = next(reversed(self.context.values())).stop
        self.artwork_width = next(reversed(self.artwork.values())).stop
        self.pair_width = next(reversed(self.pair.values())).stop
        self.terms = tuple(terms)
        widths = self._check_terms()
        per_title = [
            b.name
            for b in CONTEXT_BLOCKS
            if b.per_title and self.context[b.name].stop > self.context[b.name].start
        ]
        crossed = {n for t in self.terms for n in t.context if t.context != (n,) or t.candidate != ONE}
        # per-title blocks that only appear alone become coordinates of z; crossed ones are levels of V
        self.z_blocks = [n for n in per_title if n not in crossed]
        self.level_blocks = [n for n in per_title if n in crossed]
        self.level_cols = [self.context[n].start for n in self.level_blocks]
        self.per_title_cols = [self.context[n].start for n in per_title]
        self.art_offset = 1 + len(self.z_blocks)
        self.pair_offset = self.art_offset + self.artwork_width
        self.basis_width = self.pair_offset + self.pair_width
        self._compile(widths)

    # ---- the declaration, resolved -------------------------------------------------------------
    def _check_terms(self) -> list[tuple[int, int]]:
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValidationError(f"Feature terms need distinct names. Repeated: {', '.join(dup)}.")
        widths = []
        for t in self.terms:
            if t.mode not in ("outer", "diagonal", "inner"):
                raise ValidationError(
                    f"Term {t.name!r}: mode must be outer, diagonal or inner. Got {t.mode!r}."
                )
            unknown = [n for n in t.context if n not in self.context]
            if unknown:
                raise ValidationError(
                    f"Term {t.name!r} names unknown context block {unknown[0]!r}; "
                    f"known: {', '.join(self.context)}."
                )
            if len(set(t.context)) != len(t.context):
                raise ValidationError(f"Term {t.name!r} repeats a context block.")
            cand = {ONE: slice(0, 1), **self.artwork, **self.pair}.get(t.candidate)
            if cand is None:
                known = ", ".join([ONE, *self.artwork, *self.pair])
                raise ValidationError(
                    f"Term {t.name!r} names unknown candidate block {t.candidate!r}; known: {known}."
                )
            wp = int(np.prod([self.context[n].stop - self.context[n].start for n in t.context]))
            ws = cand.stop - cand.start
            if t.mode != "outer" and wp != ws:
                raise ValidationError(
                    f"Term {t.name!r} ({t.mode}) pairs a context product of width {wp} with "
                    f"{t.candidate!r} of width {ws}; they must be equal."
                )
            widths.append((wp, ws))
        return widths

    def _plan(self, t: Term, cols: slice, wp: int, ws: int) -> Plan:
        side = ONE if t.candidate == ONE else "art" if t.candidate in self.artwork else "pair"
        if side == ONE:
            cand = slice(0, 1)
            z = self.z_blocks.index(t.context[0]) + 1 if t.context and t.context[0] in self.z_blocks else 0
            target = slice(z, z + 1)
        else:
            cand = self.artwork[t.candidate] if side == "art" else self.pair[t.candidate]
            off = self.art_offset if side == "art" else self.pair_offset
            target = slice(off + cand.start, off + cand.stop)
        per_title = set(self.z_blocks) | set(self.level_blocks)
        return Plan(
            t,
            cols,
            [self.context[n] for n in t.context],
            tuple(n for n in t.context if n not in per_title),
            tuple(self.level_blocks.index(n) for n in t.context if n in self.level_blocks),
            side,
            cand,
            target,
            wp,
            ws,
        )

    def _compile(self, widths: list[tuple[int, int]]) -> None:
        self._slices: dict[str, slice] = {}
        plans: list[Plan] = []
        start = 0
        for t, (wp, ws) in zip(self.terms, widths, strict=True):
            w = ws if t.mode == "diagonal" else 1 if t.mode == "inner" else wp * ws
            self._slices[t.name] = slice(start, start + w)
            plans.append(self._plan(t, slice(start, start + w), wp, ws))
            start += w
        self.dim = start
        self.plans = plans
        self._groups: dict[str, slice] = {}
        for t in self.terms:
            if t.group is not None:
                s, g = self._slices[t.name], self._groups.get(t.group)
                if g is not None and g.stop != s.start:
                    raise ValidationError(f"The terms of group {t.group!r} must be adjacent.")
                self._groups[t.group] = slice(s.start if g is None else g.start, s.stop)
        clash = set(self._groups) & set(self._slices)
        if clash:
            raise ValidationError(f"Group names clash with term names: {', '.join(sorted(clash))}.")

        # dense rows and scores: plain terms (one block, nothing crossed) are gathered in one step per side
        plain_ctx = self.plain_context = [p for p in plans if p.side == ONE and len(p.context) == 1]
        plain_art = [p for p in plans if p.side == "art" and not p.context]
        plain_pair = [p for p in plans if p.side == "pair" and not p.context]
        plain = {id(p) for p in (*plain_ctx, *plain_art, *plain_pair)}
        self._crossed = [p for p in plans if id(p) not in plain]
        # for scores, element-wise terms of one candidate block and one product of wide context blocks
        # share one coefficient row per request; their width-1 context factors scale it (prior x theme)
        by_key: dict[tuple[object, ...], list[Plan]] = {}
        for p in self._crossed:
            wide = tuple(n for n, sl in zip(p.term.context, p.context, strict=True) if sl.stop - sl.start > 1)
            elementwise = p.mode != "outer" or len(wide) == 0
            key = (wide, p.side, p.cand.start, p.cand.stop) if elementwise else (id(p),)
            by_key.setdefault(key, []).append(p)
        self._score_groups = [
            (
                [self.context[n] for n in key[0]] if len(key) > 1 else p[0].context,
                [[sl for sl in q.context if sl.stop - sl.start == 1] for q in p],
                p,
            )
            for key, p in by_key.items()
        ]
        self._ctx_x, self._ctx_c = (
            index([p.cols for p in plain_ctx]),
            index([p.context[0] for p in plain_ctx]),
        )
        self._art_x, self._art_a = index([p.cols for p in plain_art]), index([p.cand for p in plain_art])
        self._pair_x, self._pair_p = index([p.cols for p in plain_pair]), index([p.cand for p in plain_pair])

    def __getitem__(self, name: str) -> slice:
        hit = self._slices.get(name)
        if hit is None:
            hit = self._groups.get(name)
        if hit is None:
            raise KeyError(name)
        return hit

    def __iter__(self) -> Iterator[str]:
        return iter(self._slices)

    def __len__(self) -> int:
        return len(self._slices)

    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"{name}[{i}]" for name, sl in self._slices.items() for i in range(sl.stop - sl.start))

    # ---- dense rows and scores -----------------------------------------------------------------
    def materialize(self, ctx: np.ndarray, art: np.ndarray, pair: np.ndarray, pad: np.ndarray) -> np.ndarray:
        """Dense rows (n, K, d) from contexts (n, context width), the candidates' artwork rows (n, K,
        artwork width) and pair blocks (n, K, pair width); rows where ``pad`` (n, K) are zero."""
        n, k = pad.shape
        X = np.empty((n, k, self.dim))
        X[:, :, self._ctx_x] = ctx[:, None, self._ctx_c]
        X[:, :, self._art_x] = art[:, :, self._art_a]
        X[:, :, self._pair_x] = pair[:, :, self._pair_p]
        for p in self._crossed:
            P = kron_rows([ctx[:, s] for s in p.context]) if p.context else np.ones((n, 1))
            if p.side == ONE:
                X[:, :, p.cols] = P[:, None, :]
                continue
            S = art[:, :, p.cand] if p.side == "art" else pair[:, :, p.cand]
            if p.mode == "outer":
                X[:, :, p.cols] = (P[:, None, :, None] * S[:, :, None, :]).reshape(n, k, -1)
            elif p.mode == "diagonal":
                X[:, :, p.cols] = P[:, None, :] * S
            else:
                X[:, :, p.cols] = (P[:, None, :] * S).sum(axis=2, keepdims=True)
        X[pad] = 0.0
        return X

    def weights(self, theta: np.ndarray, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """V(c)^T theta for each context row, as (n,) on the constant, (n, artwork width) on the artwork
        row and (n, pair width) on the pair blocks: x . theta = w_one + art . w_art + pair . w_pair."""
        n = ctx.shape[0]
        w_one = ctx[:, self._ctx_c] @ theta[self._ctx_x]
        w_art = np.zeros((n, self.artwork_width))
        w_art[:, self._art_a] = theta[self._art_x]
        w_pair = np.zeros((n, self.pair_width))
        w_pair[:, self._pair_p] = theta[self._pair_x]
        for wide, scalars, group in self._score_groups:
            p = group[0]
            if p.mode == "outer" and p.width_p > 1 and len(wide) == len(p.context):
                P = ctx[:, wide[0]] if len(wide) == 1 else kron_rows([ctx[:, s] for s in wide])
                contrib = P @ theta[p.cols].reshape(p.width_p, p.width_s)
            else:  # element-wise: one coefficient row per request (an inner term's weight is one number)
                coef: Any = None
                for q, sc in zip(group, scalars, strict=True):
                    t = theta[q.cols] if q.mode != "inner" else theta[q.cols.start]
                    for sl in sc:
                        t = ctx[:, sl] * t
                    coef = t if coef is None else coef + t
                if wide:
                    contrib = coef * (
                        ctx[:, wide[0]] if len(wide) == 1 else kron_rows([ctx[:, s] for s in wide])
                    )
                else:
                    contrib = coef
            if p.side == ONE:
                w_one += contrib[..., 0]
            else:
                (w_art if p.side == "art" else w_pair)[:, p.cand] += contrib
        return w_one, w_art, w_pair

    def dot(
        self, theta: np.ndarray, ctx: np.ndarray, art_block: np.ndarray, idx: np.ndarray, pair: np.ndarray
    ) -> np.ndarray:
        """x . theta (n, K) from the factors (artwork rows ``art_block[idx]``), never building (n, K, d)."""
        w_one, w_art, w_pair = self.weights(theta, ctx)
        out = np.matmul(art_block.take(idx, axis=0), w_art[:, :, None])[:, :, 0]
        out += w_one[:, None]
        out += np.matmul(pair, w_pair[:, :, None])[:, :, 0] if self.pair_width > 1 else pair[:, :, 0] * w_pair
        out[idx == 0] = 0.0
        return out

    # ---- one member's page --------------------------------------------------------------------
    def same_member(self, ctx: np.ndarray) -> bool:
        """Whether every row has one context up to the per-title blocks (one member's page)."""
        same = ctx == ctx[:1]
        same[:, self.per_title_cols] = True
        return bool(same.all())


#: Fields whose default changed or that were added after configs were first saved, with the value that
#: gives the layout of a config saved without them (``from_dict``)
_ADDED_FIELDS: dict[str, Any] = {
    "crosses": (),
    "title_affinity": False,
    "cast_count_levels": 0,
    "tags_normalized": True,
}

HASHED_FIELDS = ("genre", "cast", "style", "tag", "country", "language", "device", "extra")


@dataclass(frozen=True)
class FeatureConfig:
    """Hashing sizes and weighting of the default featurizer; part of a model's identity.

    ``embedding_dim``: the length of every artwork embedding used as features. With 0 (the default)
    embeddings are ignored; otherwise an artwork without one gets zeros there, and one of another length
    is a ``DimensionError``.

    ``crosses``: terms added after the declared ones (``Term``), e.g.
    ``Term("country_x_theme", ("country",), "theme")``, or ``"all"`` (the default) for ``all_crosses()``
    (every context family x every artwork family, each shrunk by its own learned prior: the layout that won
    on the development worlds of the zoo, ``docs/simulation.md``); ``()`` for the declared terms only.
    Checked when the layout is built.

    ``title_affinity``: the per-title context column "member's genre affinity . the title's genres" (False:
    no such column, the layout of configs saved before it existed).

    ``cast_count_levels``: the artwork block "cast_count_level", indicators of the featured cast count
    1, 2, ..., ``cast_count_levels`` or more (2: one star, an ensemble; a picture of no one is all zeros,
    the level the intercept holds), beside its log1p column; 0: no such block (the layout of configs saved
    before it existed).

    ``tags_normalized``: an artwork's tags as a multi-hot vector (False: each tag counts whole, whatever
    else the artwork is tagged with, like a one-hot of each tag) or divided by the number of tags (True:
    the rows of configs saved before this field existed).
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
    crosses: tuple[Term, ...] | str = "all"
    title_affinity: bool = True
    cast_count_levels: int = 2
    tags_normalized: bool = False

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
        "title_affinity": OneOf((True, False)),
        "cast_count_levels": Interval(0, 64, integer=True),
        "tags_normalized": OneOf((True, False)),
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
        crosses = all_crosses() if isinstance(self.crosses, str) and self.crosses == "all" else self.crosses
        if isinstance(crosses, str):
            raise ValidationError(
                f'crosses must be "all" or a sequence of keyart.layout.Term. Got {crosses!r}.'
            )
        object.__setattr__(self, "crosses", tuple(crosses))
        if not all(isinstance(t, Term) for t in self.crosses):
            raise ValidationError("crosses must be a sequence of keyart.layout.Term.")
        self.layout  # noqa: B018  (resolve the declaration now: a bad cross fails here)

    def vocabulary(self, field_name: str) -> tuple[str, ...]:
        """The exact vocabulary of a hashed field (empty: every token is hashed)."""
        return dict(self.vocabularies).get(field_name, ())

    @cached_property
    def layout(self) -> FeatureLayout:
        """Named column ranges of the feature vector, in order, and the maths derived from them: the
        declared terms (``TERMS``) followed by ``crosses``."""
        return FeatureLayout(self, (*TERMS, *self.crosses))

    @property
    def dim(self) -> int:
        return self.layout.dim

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON values (crosses as their terms), for snapshots: ``from_dict`` inverts it."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["vocabularies"] = {k: list(v) for k, v in self.vocabularies}
        out["crosses"] = [
            {
                "name": t.name,
                "context": list(t.context),
                "candidate": t.candidate,
                "mode": t.mode,
                "group": t.group,
            }
            for t in self.crosses
        ]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        """The config ``to_dict`` wrote (fields it lacks take their defaults); a ``ValidationError`` names
        what does not fit."""
        try:
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ValidationError(f"Unknown FeatureConfig fields {unknown}.")
            values = dict(data)
            for name, before in _ADDED_FIELDS.items():  # a config saved before the field existed
                values.setdefault(name, before)
            if "vocabularies" in values:
                values["vocabularies"] = tuple(
                    (str(k), tuple(v)) for k, v in dict(values["vocabularies"]).items()
                )
            if "crosses" in values and not isinstance(values["crosses"], str):
                values["crosses"] = tuple(
                    Term(**{**t, "context": tuple(t.get("context", ()))}) for t in values["crosses"]
                )
            return cls(**values)
        except (TypeError, AttributeError) as exc:
            raise ValidationError(f"Not a FeatureConfig: {exc}.") from exc

    def grown(self, field_name: str, tokens: Sequence[str]) -> FeatureConfig:
        """This config with ``tokens`` appended to the exact vocabulary of ``field_name`` (each owning a new
        bucket, so the hashed buckets of unknown tokens stay as many): a config that extends this one
        (``column_map``). Tokens already in the vocabulary are skipped."""
        vocab = dict(self.vocabularies)
        have = vocab.get(field_name, ())
        new = tuple(dict.fromkeys(t for t in tokens if t not in have))
        if not new:
            return self
        buckets = getattr(self, f"{field_name}_buckets")
        vocab[field_name] = (*have, *new)
        return dataclasses.replace(
            self, vocabularies=tuple(vocab.items()), **{f"{field_name}_buckets": buckets + len(new)}
        )

    def column_map(self, old: FeatureConfig) -> np.ndarray | None:
        """Where each of ``old``'s columns is in this config's rows, when this config extends ``old``: the
        same fields and terms, but exact vocabularies that append tokens (with a bucket each, the hashed
        buckets as many: ``grown``). A row of ``old`` then equals this config's row at those columns, zero
        elsewhere, for any input whose tokens ``old`` knew or hashed: a model of ``old`` grows into one of
        this config exactly. None when this config does not extend ``old``."""
        if self.same_columns(old):
            return np.arange(old.dim)
        a, b = old.to_dict(), self.to_dict()
        entry: dict[str, np.ndarray] = {}
        for name in HASHED_FIELDS:
            for d in (a, b):
                d.pop(f"{name}_buckets")
            was, now = old.vocabulary(name), self.vocabulary(name)
            w_old, w_new = getattr(old, f"{name}_buckets"), getattr(self, f"{name}_buckets")
            if now[: len(was)] != was or w_new - len(now) != w_old - len(was):
                return None
            grew = len(now) - len(was)  # known tokens keep their buckets, hashed ones move past the new
            entry[f"{name}_buckets"] = np.concatenate(
                [np.arange(len(was)), np.arange(len(was), w_old) + grew]
            ).astype(np.int64)
        for d in (a, b):
            d.pop("vocabularies"), d.pop("on_unknown_history")
        if a != b:
            return None
        lo, ln = old.layout, self.layout

        def block_map(block: Block) -> np.ndarray:
            w = block.width
            return np.arange(w) if isinstance(w, int) else entry.get(w, np.arange(getattr(old, w)))

        blocks = {bl.name: bl for bl in (*CONTEXT_BLOCKS, *ARTWORK_BLOCKS, *PAIR_BLOCKS)}
        out = np.empty(old.dim, dtype=np.int64)
        for p_old, p_new in zip(lo.plans, ln.plans, strict=True):
            cand = np.zeros(1, np.int64) if p_old.side == ONE else block_map(blocks[p_old.term.candidate])
            if p_old.mode == "inner":
                cols = np.zeros(1, np.int64)
            elif p_old.mode == "diagonal":
                cols = cand
            else:  # outer: the Kronecker order, context factors first, then the candidate block
                cols = np.zeros(1, np.int64)
                for n in (*p_old.term.context, None):
                    m = cand if n is None else block_map(blocks[n])
                    w = p_new.width_s if n is None else ln.context[n].stop - ln.context[n].start
                    cols = (cols[:, None] * w + m[None, :]).ravel()
            out[p_old.cols] = p_new.cols.start + cols
        return out

    def same_columns(self, other: FeatureConfig) -> bool:
        """Whether rows of ``other`` mean what this config's rows mean: every field equal but
        ``on_unknown_history`` (how featurizing treats an unknown title, not what a column holds)."""
        if self == other:
            return True
        a, b = self.to_dict(), other.to_dict()
        a.pop("on_unknown_history"), b.pop("on_unknown_history")
        return a == b
