"""What to add to a title's pool, and what in it is redundant, from the shared model.

For each segment of the title's audience, the model predicts the take fraction of every artwork in the
pool and of every attribute combination the pool lacks (each theme genre of the title x none or one of its
cast featured x each style of the catalog). Each segment's combination is the one with the highest lower
bound of its gain over the segment's best existing artwork; the segment is poorly served when that whole
interval is above zero.
The title's suggestion is the combination that raises the model's predicted take of the whole audience the
most, each member getting their best artwork of the pool with it, less z posterior standard deviations of
its predicted take (so a combination the data say little about does not win on a wide prior); the
interval of that gain comes from draws of the posterior (the maximum over a pool is not linear in the
scores). An artwork is redundant
when no segment prefers it and it is the best for under ``redundant_share`` of the title's members.

Caveats (also in docs/insights.md): a combination's own appeal is unknown (the prior's, so its interval is
wide), and picking the best of many combinations favours ones whose prediction happens to be high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keyart.catalog import Artwork
from keyart.insights.data import InsightLogs
from keyart.insights.model import ModelView, design
from keyart.insights.segments import segment_list


@dataclass(frozen=True)
class SegmentGap:
    """How well one segment is served by a title's pool, and the combination that would serve it best."""

    title_id: str
    family: str
    segment: str
    rows: int
    best_artwork: str
    best_take: float
    design: str
    design_take: float
    gain: float
    gain_lower: float
    gain_upper: float

    @property
    def poorly_served(self) -> bool:
        return self.gain_lower > 0


@dataclass(frozen=True)
class Suggestion:
    """The artwork a title's pool most lacks: its attributes and the predicted gain of adding it."""

    title_id: str
    artwork: Artwork  # a design: id ``~design:...``
    description: str
    take_now: float  # predicted take, each member shown their best artwork of the pool
    take_with: float  # the same with the design added
    gain: float
    gain_lower: float
    gain_upper: float
    rows: int


@dataclass(frozen=True)
class PoolUse:
    """One artwork of a title's pool: for how many members and segments it is the best."""

    title_id: str
    artwork_id: str
    best_for_share: float  # of the title's members (rows)
    segments_preferring: int
    redundant: bool


@dataclass(frozen=True)
class TitleAnalysis:
    """Everything the model says about one title's pool."""

    title_id: str
    segments: list[tuple[str, str]]  # (family, segment)
    artworks: list[str]  # the pool
    takes: np.ndarray  # (S, K) predicted take per segment x pool artwork
    gaps: list[SegmentGap]
    suggestion: Suggestion | None
    uses: list[PoolUse]

    def preferred(self, family: str, segment: str) -> str:
        """The pool artwork the model predicts best for a segment."""
        return self.artworks[int(np.argmax(self.takes[self.segments.index((family, segment))]))]


def describe(a: Artwork) -> str:
    """An artwork's attributes in words: 'romance theme, featuring Ana Lima, moody style'."""
    parts = [f"{' and '.join(a.theme_genres)} theme"] if a.theme_genres else []
    if a.featured_cast:
        parts.append("featuring " + " and ".join(a.featured_cast))
    else:
        parts.append("no cast featured")
    if a.style:
        parts.append(f"{a.style} style")
    if a.tags:
        parts.append("tags " + ", ".join(a.tags))
    return ", ".join(parts)


def combinations(view: ModelView, title_id: str, max_cast: int = 6) -> list[Artwork]:
    """The attribute combinations the title's pool lacks: one theme genre of the title (or of its pool;
    no theme too when some of the pool has none), none or one of its first ``max_cast`` cast members, one
    of the catalog's styles."""
    cat = view.catalog
    title = cat.title(title_id)
    pool = cat.pool(title_id)
    themes: list[tuple[str, ...]] = [
        (g,) for g in title.genres or sorted({g for a in pool for g in a.theme_genres})
    ]
    if any(not a.theme_genres for a in pool):  # untagged pools: their untagged kind too
        themes.append(())
    styles = sorted({a.style for a in cat.artworks.values() if a.style}) or [""]
    have = {(tuple(sorted(a.theme_genres)), tuple(sorted(a.featured_cast)), a.style) for a in pool}
    out = []
    for g in themes:
        for c in [(), *((x,) for x in title.cast[:max_cast])]:
            for s in styles:
                if (g, c, s) not in have:
                    out.append(design(title_id, f"{len(out)}", theme_genres=g, featured_cast=c, style=s))
    return out


def analyse_title(
    view: ModelView,
    logs: InsightLogs,
    segments: dict[str, np.ndarray],
    title_id: str,
    *,
    min_rows: int = 30,
    max_rows: int = 400,
    draws: int = 200,
    redundant_share: float = 0.02,
    z: float = 1.959963984540054,
    seed: int = 0,
) -> TitleAnalysis:
    """The model's view of ``title_id``'s pool: predicted take per segment x artwork, each segment's
    gap to the best missing combination, the title's suggestion, and which artworks are redundant. Uses
    at most ``max_rows`` of the title's logged decisions, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    all_rows = logs.rows_of(title_id)
    rows = np.sort(rng.choice(all_rows, size=min(max_rows, all_rows.size), replace=False))
    pool = [a.artwork_id for a in view.catalog.pool(title_id) if a.active]
    designs = combinations(view, title_id)
    ids = pool + [d.artwork_id for d in designs]
    K = len(pool)
    groups = segment_list(segments, rows, min_rows)
    position = {int(r): i for i, r in enumerate(rows)}
    membership = np.zeros((len(groups), rows.size))
    for s, (_, _, r) in enumerate(groups):
        membership[s, [position[int(x)] for x in r]] = 1.0
    featurizer = view.featurizer(designs)
    contexts = [logs.contexts[i] for i in rows]
    titles = [title_id] * rows.size
    X = view.rows(featurizer, contexts, titles, [ids] * rows.size)  # (n, K + D, d)
    xbar = np.einsum("sn,nkd->skd", membership, X) / np.maximum(membership.sum(1), 1.0)[:, None, None]
    gaps, takes = [], np.zeros((len(groups), K))
    for s, (family, segment, r) in enumerate(groups):
        mean, cov = view.moments(xbar[s], ids)
        takes[s] = mean[:K]
        if not designs:
            continue
        b = int(np.argmax(mean[:K]))
        gains = mean[K:] - mean[b]
        ses = np.sqrt(np.maximum(np.diagonal(cov)[K:] + cov[b, b] - 2 * cov[b, K:], 0.0))
        c = K + int(np.argmax(gains - z * ses))  # the surest gain, as for the title's suggestion
        gain, se = float(gains[c - K]), float(ses[c - K])
        gaps.append(
            SegmentGap(
                title_id,
                family,
                segment,
                int(r.size),
                pool[b],
                float(mean[b]),
                describe(designs[c - K]),
                float(mean[c]),
                gain,
                gain - z * se,
                gain + z * se,
            )
        )
    scores = view.member_scores(X, ids)  # (n, K + D)
    best_now = scores[:, :K].max(1)
    suggestion = None
    if designs:
        lift = np.maximum(scores[:, K:] - best_now[:, None], 0.0).mean(0)
        # the combination most surely worth adding: predicted lift less z posterior s.d. of its mean take
        # (a combination the data say nothing about has a wide prior, however high its mean)
        _, cov = view.moments(X[:, K:].mean(0), ids[K:])
        d = int(np.argmax(lift - z * np.sqrt(np.maximum(np.diagonal(cov), 0.0))))
        cols = [*range(K), K + d]
        sampled = view.sample_scores(X[:, cols], [ids[c] for c in cols], draws, rng)
        g = (np.maximum(sampled[:, :, K], sampled[:, :, :K].max(2)) - sampled[:, :, :K].max(2)).mean(1)
        lo, hi = np.quantile(g, [0.025, 0.975])
        suggestion = Suggestion(
            title_id,
            designs[d],
            describe(designs[d]),
            float(best_now.mean()),
            float(np.maximum(best_now, scores[:, K + d]).mean()),
            float(lift[d]),
            float(lo),
            float(hi),
            int(rows.size),
        )
    best = np.bincount(scores[:, :K].argmax(1), minlength=K) / rows.size
    preferring = np.bincount(takes.argmax(1), minlength=K) if groups else np.zeros(K, dtype=np.int64)
    uses = [
        PoolUse(
            title_id,
            a,
            float(best[k]),
            int(preferring[k]),
            bool(preferring[k] == 0 and best[k] < redundant_share),
        )
        for k, a in enumerate(pool)
    ]
    return TitleAnalysis(title_id, [(f, s) for f, s, _ in groups], pool, takes, gaps, suggestion, uses)
