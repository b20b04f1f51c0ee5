"""Member segments the insights are split by, from what the logs hold about each member: favourite genre
and favourite cast member (from the play history, through the catalog: what the member plays more than
members on average), device, country, and whether the
member already knew the title (prior interaction)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from keyart.catalog import Catalog
from keyart.context import MemberContext

#: The segment families, in the order the report shows them.
FAMILIES = ("Favourite genre", "Favourite cast member", "Device", "Country", "Prior interaction")
NO_HISTORY = "no play history"
OTHER_CAST = "another cast member"
KNEW = "knew the title"
NEW = "new to the title"


def _shares(ctx: MemberContext, catalog: Catalog) -> tuple[dict[str, float], dict[str, float]]:
    """Genre and cast shares of one member's play history (each play counts 1, split over its title's
    genres; cast by appearances)."""
    genres: Counter[str] = Counter()
    cast: Counter[str] = Counter()
    for play in ctx.played:
        title = catalog.titles.get(play.title_id)
        if title is None:
            continue
        for g in title.genres:
            genres[g] += 1.0 / len(title.genres)
        cast.update(title.cast)
    return ({k: v / total for k, v in genres.items()} if (total := sum(genres.values())) else {}), (
        {k: v / total for k, v in cast.items()} if (total := sum(cast.values())) else {}
    )


def _favourite(shares: list[dict[str, float]]) -> list[str]:
    """Each member's favourite: the name whose share of their history most exceeds its average share
    over all members (what they play more than others do, not what everyone plays most); ties go to the
    name that sorts first."""
    total: Counter[str] = Counter()
    for s in shares:
        total.update(s)
    mean = {k: v / max(len(shares), 1) for k, v in total.items()}
    return [min(s, key=lambda k: (mean[k] - s[k], k)) if s else NO_HISTORY for s in shares]


def member_segments(
    contexts: Sequence[MemberContext], title_ids: Sequence[str], catalog: Catalog, top_cast: int = 6
) -> dict[str, np.ndarray]:
    """Each row's segment in every family (``FAMILIES``): (n,) labels per family. Favourite cast members
    beyond the ``top_cast`` most common are one segment (``OTHER_CAST``)."""
    members: dict[tuple[str, int], int] = {}
    parts: list[tuple[dict[str, float], dict[str, float]]] = []
    which = np.empty(len(contexts), dtype=np.int64)
    for i, ctx in enumerate(contexts):
        key = (ctx.member_id, len(ctx.played))
        if key not in members:
            members[key] = len(parts)
            parts.append(_shares(ctx, catalog))
        which[i] = members[key]
    genre = np.asarray(_favourite([g for g, _ in parts]), dtype=object)[which]
    cast = np.asarray(_favourite([c for _, c in parts]), dtype=object)[which]
    common = [c for c, _ in Counter(c for c in cast.tolist() if c != NO_HISTORY).most_common(top_cast)]
    cast = np.where(np.isin(cast, [*common, NO_HISTORY]), cast, OTHER_CAST)
    knew = np.asarray([t in c.interacted_titles for c, t in zip(contexts, title_ids, strict=True)])
    return {
        FAMILIES[0]: genre,
        FAMILIES[1]: cast,
        FAMILIES[2]: np.asarray([c.device or "unknown" for c in contexts], dtype=object),
        FAMILIES[3]: np.asarray([c.country or "unknown" for c in contexts], dtype=object),
        FAMILIES[4]: np.where(knew, KNEW, NEW).astype(object),
    }


def segment_list(
    segments: dict[str, np.ndarray], rows: np.ndarray, min_rows: int
) -> list[tuple[str, str, np.ndarray]]:
    """(family, segment, row indices) of every segment with at least ``min_rows`` of ``rows``, families in
    ``FAMILIES`` order and segments by size."""
    out = []
    for family in FAMILIES:
        labels = segments[family][rows]
        values, counts = np.unique(labels, return_counts=True)
        for i in np.argsort(-counts, kind="stable"):
            if counts[i] >= min_rows:
                out.append((family, str(values[i]), rows[labels == values[i]]))
    return out
