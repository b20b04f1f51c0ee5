"""What works for whom: how each artwork attribute (theme, featured cast, style, tags, embedding
dimensions) moves the predicted chance of a quality play, per member segment, with an interval from the
shared model's posterior; across the catalog and for one title.

An effect is a difference of predicted take fractions for the same members and titles: an artwork with
the attribute against one without it (featured cast, tag: against none; theme and style, which every
artwork has: against the average of the family's values, so they say which theme or style wins for whom;
an embedding dimension: one standard deviation of the catalog's values against zero). The model is linear
in the features, so the difference averaged over a segment's rows is linear in theta and its variance is
exact under the posterior; the artworks' own biases are left out (they are not attributes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from keyart.catalog import Artwork, Catalog
from keyart.insights.data import InsightLogs
from keyart.insights.model import ModelView, design
from keyart.insights.segments import segment_list

#: Attribute families in the order the report shows them.
ATTRIBUTES = ("Theme", "Featured cast", "Style", "Tag", "Visual feature")
ALL_MEMBERS = ("All members", "all members")
#: Families every artwork has a value of: effects against the family's average value.
CENTRED = ("Theme", "Style")


@dataclass(frozen=True)
class Effect:
    """One attribute value's effect on the predicted take fraction for one segment."""

    scope: str  # "catalog" or a title id
    family: str  # segment family ("All members" for everyone)
    segment: str
    attribute: str  # one of ATTRIBUTES
    value: str
    effect: float  # in take-fraction points (probability of a quality play)
    lower: float
    upper: float
    rows: int  # logged decisions the segment's average is over

    @property
    def clear(self) -> bool:
        """The interval excludes zero."""
        return self.lower > 0 or self.upper < 0


def attribute_values(catalog: Catalog, title_id: str | None = None, top: int = 8) -> list[tuple[str, str]]:
    """(attribute, value) pairs to measure: every theme genre and style of the catalog's artworks, the
    ``top`` most featured cast members (for a title: its own cast) and tags, the embedding dimensions."""
    arts = list(catalog.artworks.values())
    themes = sorted({g for a in arts for g in a.theme_genres})
    styles = sorted({a.style for a in arts if a.style})
    if title_id is None:
        cast = [c for c, _ in Counter(c for a in arts for c in a.featured_cast).most_common(top)]
    else:
        title = catalog.title(title_id)
        themes = sorted(set(title.genres) | {g for a in catalog.pool(title_id) for g in a.theme_genres})
        cast = list(title.cast[:top])
    tags = [t for t, _ in Counter(t for a in arts for t in a.tags).most_common(top)]
    dims = len(next((a.embedding for a in arts if a.embedding is not None), ()))
    return (
        [("Theme", g) for g in themes]
        + [("Featured cast", c) for c in cast]
        + [("Style", s) for s in styles]
        + [("Tag", t) for t in tags]
        + [("Visual feature", f"dimension {j + 1}") for j in range(min(dims, top))]
    )


def _variants(title_id: str, values: Sequence[tuple[str, str]], emb_sd: np.ndarray) -> list[Artwork]:
    """The blank artwork of a title, then one variant per attribute value."""
    out = [design(title_id, "blank")]
    for i, (attr, value) in enumerate(values):
        label = f"v{i}"
        if attr == "Theme":
            out.append(design(title_id, label, theme_genres=(value,)))
        elif attr == "Featured cast":
            out.append(design(title_id, label, featured_cast=(value,)))
        elif attr == "Style":
            out.append(design(title_id, label, style=value))
        elif attr == "Tag":
            out.append(design(title_id, label, tags=(value,)))
        else:
            j = int(value.split()[-1]) - 1
            emb = np.zeros(emb_sd.size)
            emb[j] = emb_sd[j]
            out.append(design(title_id, label, embedding=tuple(emb.tolist())))
    if emb_sd.size:  # every variant of a catalog with embeddings carries one (zeros: none)
        zero = tuple(0.0 for _ in range(emb_sd.size))
        out = [a if a.embedding is not None else _with_embedding(a, zero) for a in out]
    return out


def _with_embedding(a: Artwork, emb: tuple[float, ...]) -> Artwork:
    return replace(a, embedding=emb)


def _contrasts(values: Sequence[tuple[str, str]]) -> np.ndarray:
    """(V, 1 + V) rows turning [blank, variants] means into effects: variant - blank, or for a theme or
    style variant - the average variant of its family."""
    V = len(values)
    C = np.zeros((V, V + 1))
    for i, (attr, _) in enumerate(values):
        C[i, i + 1] = 1.0
        if attr in CENTRED:
            family = [j + 1 for j, (a, _) in enumerate(values) if a == attr]
            C[i, family] -= 1.0 / len(family)
        else:
            C[i, 0] -= 1.0
    return C


def attribute_effects(
    view: ModelView,
    logs: InsightLogs,
    segments: dict[str, np.ndarray],
    title_id: str | None = None,
    *,
    min_rows: int = 50,
    max_rows: int = 300,
    alpha_z: float = 1.959963984540054,
    seed: int = 0,
) -> list[Effect]:
    """Every attribute value's effect for every segment with ``min_rows`` logged decisions (and for all
    members), across the catalog (``title_id`` None) or on one title; each segment's effect averages over
    at most ``max_rows`` of its decisions, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    rows = np.arange(logs.n) if title_id is None else logs.rows_of(title_id)
    if rows.size == 0:
        return []
    values = attribute_values(view.catalog, title_id)
    if not view.features.embedding_dim:  # the model does not read embeddings: nothing to say on them
        values = [(a, v) for a, v in values if a != "Visual feature"]
    if not values:
        return []
    groups = [(*ALL_MEMBERS, rows), *segment_list(segments, rows, min_rows)]
    picked = [np.sort(rng.choice(r, size=min(max_rows, r.size), replace=False)) for _, _, r in groups]
    union = np.unique(np.concatenate(picked))
    position = np.full(logs.n, -1)
    position[union] = np.arange(union.size)
    membership = np.zeros((len(groups), union.size))
    for s, p in enumerate(picked):
        membership[s, position[p]] = 1.0
    embs = [a.embedding for a in view.catalog.artworks.values() if a.embedding is not None]
    emb_sd = np.std(np.asarray(embs), axis=0) if embs else np.zeros(0)
    titles = [str(t) for t in logs.title[union]]
    variants = {t: _variants(t, values, emb_sd) for t in sorted(set(titles))}
    featurizer = view.featurizer([a for vs in variants.values() for a in vs])
    candidates = [[a.artwork_id for a in variants[t]] for t in titles]
    xbar = view.segment_means(featurizer, [logs.contexts[i] for i in union], titles, candidates, membership)
    C = _contrasts(values)
    scope = "catalog" if title_id is None else title_id
    out = []
    for s, (family, segment, _) in enumerate(groups):
        D = C @ xbar[s]  # (V, d): the effects' feature differences
        mean, cov = view.moments(D, [""] * len(values), with_bias=False)
        se = np.sqrt(np.maximum(np.diagonal(cov), 0.0))
        for v, (attr, value) in enumerate(values):
            out.append(
                Effect(
                    scope,
                    family,
                    segment,
                    attr,
                    value,
                    float(mean[v]),
                    float(mean[v] - alpha_z * se[v]),
                    float(mean[v] + alpha_z * se[v]),
                    int(picked[s].size),
                )
            )
    return out
