"""Clickbait: artworks that win plays but not quality plays.

Within a title, an artwork's play share (its plays / the title's plays) against its quality share (its
quality plays / the title's quality plays). Their ratio is the artwork's quality plays per play against
the rest of the pool's: an honest artwork's plays turn into quality plays about as often as the others'
(ratio near 1), a clickbait one's far less often. The ratio's interval is the log-scale (Katz) interval of
a ratio of two proportions; an artwork is flagged when the whole interval is below ``threshold`` (its
plays are confidently worth less than ``threshold`` of the pool's) and it has at least ``min_plays``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from keyart.evaluation.intervals import _wilson
from keyart.insights.data import InsightLogs


@dataclass(frozen=True)
class Clickbait:
    """One artwork's plays against its quality plays, within its title."""

    title_id: str
    artwork_id: str
    plays: int
    quality_plays: int
    play_share: float
    play_share_lower: float
    play_share_upper: float
    quality_share: float
    quality_share_lower: float
    quality_share_upper: float
    ratio: float  # quality plays per play, against the rest of the pool's
    ratio_lower: float
    ratio_upper: float
    flagged: bool


def _ratio_interval(x1: float, n1: float, x2: float, n2: float, z: float) -> tuple[float, float, float]:
    """(x1/n1) / (x2/n2) with its Katz log interval (half a count added to empty cells)."""
    if min(x1, x2) == 0 or x1 == n1 or x2 == n2:
        x1, n1, x2, n2 = x1 + 0.5, n1 + 1.0, x2 + 0.5, n2 + 1.0
    p1, p2 = x1 / n1, x2 / n2
    r = p1 / p2
    se = math.sqrt((1 - p1) / x1 + (1 - p2) / x2)
    return r, r * math.exp(-z * se), r * math.exp(z * se)


def clickbait(
    logs: InsightLogs, *, threshold: float = 0.6, min_plays: int = 10, alpha: float = 0.05
) -> list[Clickbait]:
    """Every artwork with at least one play, of every title with plays by at least two artworks; flagged
    ones first, then by ratio."""
    z = float(stats.norm.ppf(1 - alpha / 2))
    out = []
    for t in np.unique(logs.title[logs.played]).tolist():
        rows = logs.rows_of(t)
        arts = logs.artwork[rows]
        played = logs.played[rows]
        quality = logs.reward[rows] > 0
        P, Q = int(played.sum()), int(quality.sum())
        names = np.unique(arts[played]).tolist()
        if len(names) < 2:
            continue
        for a in names:
            mine = arts == a
            p, q = int((played & mine).sum()), int((quality & mine).sum())
            r, lo, hi = _ratio_interval(q, p, Q - q, P - p, z)
            ps = _wilson(p, P, z)
            qs = _wilson(q, Q, z) if Q else (0.0, 1.0)
            out.append(
                Clickbait(
                    t,
                    a,
                    p,
                    q,
                    p / P,
                    *ps,
                    q / Q if Q else math.nan,
                    *qs,
                    r,
                    lo,
                    hi,
                    bool(p >= min_plays and hi < threshold),
                )
            )
    return sorted(out, key=lambda c: (not c.flagged, c.ratio))
