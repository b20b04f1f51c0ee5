"""Clickbait: artworks that win plays but not quality plays.

Within a title, an artwork's play share (its plays / the title's plays) against its quality share (its
quality plays / the title's quality plays); their ratio is the artwork's quality plays per play against
the rest of the pool's (shown with its log-scale Katz interval).

The flag compares odds, not rates: the odds that a play on the artwork becomes a quality play against
the odds for a play on the rest of the pool (the odds ratio). A rate ratio cannot say much for titles
whose plays nearly all become quality plays (against a pool converting 95% of plays, an artwork
converting half of its plays has a rate ratio of 0.53 but ten times the pool's share of short plays); the
odds ratio reads both ends alike. An artwork is **flagged** when the one-sided exact conditional test of
"its odds ratio is at least ``odds_ratio``" (the conditional distribution of its quality plays given the
title's play and quality-play counts, Fisher's noncentral hypergeometric: valid for any count) rejects,
with the false-discovery rate of all the artworks tested held at ``fdr`` (Benjamini-Hochberg). So an
honest artwork (odds ratio at least ``odds_ratio``) is flagged only by the chance the test allows, and
among the flagged ones at most a fraction ``fdr`` is expected to be honest.

The baseline is the honest rest of the pool: artworks already flagged are left out of the comparison
of the others (so a pool with two clickbait artworks does not hide the second behind the first), and the
test is repeated until no new flag appears (flags only grow).

How many plays it needs: an exact test cannot flag on a few dozen plays unless the artwork is extreme,
so recall grows with the data; with a median of about 150 plays per clickbait artwork, 95% of them were
flagged and no honest one (``benchmarks/bench_insights.py --clickbait``, docs/insights.md). Too few plays
leave a clickbait artwork unflagged, not an honest one flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from keyart.errors import ValidationError
from keyart.evaluation.intervals import _wilson
from keyart.insights.data import InsightLogs
from keyart.insights.oddsratio import conditional_odds_ratio, lower_tail


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
    odds_ratio: float  # odds of a quality play per play, against the rest of the pool's (conditional MLE)
    odds_ratio_lower: float  # exact conditional interval
    odds_ratio_upper: float
    p_value: float  # one-sided exact test of "odds ratio >= the bar"
    q_value: float  # Benjamini-Hochberg adjusted p-value over all the artworks tested
    flagged: bool


def _ratio_interval(x1: float, n1: float, x2: float, n2: float, z: float) -> tuple[float, float, float]:
    """(x1/n1) / (x2/n2) with its Katz log interval (half a count added to empty cells)."""
    if min(x1, x2) == 0 or x1 == n1 or x2 == n2:
        x1, n1, x2, n2 = x1 + 0.5, n1 + 1.0, x2 + 0.5, n2 + 1.0
    p1, p2 = x1 / n1, x2 / n2
    r = p1 / p2
    se = math.sqrt((1 - p1) / x1 + (1 - p2) / x2)
    return r, r * math.exp(-z * se), r * math.exp(z * se)


def odds_ratio_p_values(
    quality: np.ndarray, plays: np.ndarray, title_quality: np.ndarray, title_plays: np.ndarray, bar: float
) -> np.ndarray:
    """One-sided exact p-values of "the artwork's odds ratio is at least ``bar``", vectorized: the lower
    tail of its quality plays given its plays and its title's plays and quality plays (Fisher's
    noncentral hypergeometric distribution with odds ``bar``)."""
    return lower_tail(quality, title_plays, plays, title_quality, bar)


def _honest_totals(
    code: np.ndarray, p: np.ndarray, q: np.ndarray, P: np.ndarray, Q: np.ndarray, flag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each artwork's title's plays and quality plays without the other flagged artworks of the title
    (the honest rest is the baseline), unless that leaves it no other artwork to compare with."""
    fp = np.bincount(code, weights=p * flag)[code] - p * flag
    fq = np.bincount(code, weights=q * flag)[code] - q * flag
    left = np.bincount(code, weights=~flag)[code] - ~flag
    keep = left > 0
    return np.where(keep, P - fp, P).astype(np.int64), np.where(keep, Q - fq, Q).astype(np.int64)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values): reject those at most the false-discovery rate."""
    p = np.asarray(p, dtype=np.float64)
    n = p.size
    if n == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def clickbait(
    logs: InsightLogs, *, odds_ratio: float = 0.5, fdr: float = 0.05, alpha: float = 0.05
) -> list[Clickbait]:
    """Every artwork with at least one play in ``logs``, of every title with plays by at least two
    artworks; flagged ones first, then by odds ratio (``clickbait_of``)."""
    return clickbait_of(
        logs.title, logs.artwork, logs.played, logs.reward > 0, odds_ratio=odds_ratio, fdr=fdr, alpha=alpha
    )


def clickbait_of(
    title: np.ndarray,
    artwork: np.ndarray,
    played: np.ndarray,
    quality: np.ndarray,
    *,
    odds_ratio: float = 0.5,
    fdr: float = 0.05,
    alpha: float = 0.05,
) -> list[Clickbait]:
    """``clickbait`` from one row per impression: its title, artwork, whether it led to a play and to a
    quality play. ``odds_ratio``: the bar an honest artwork's odds ratio is at least; ``fdr``: the
    false-discovery rate of the flags; ``alpha``: the intervals' level."""
    if not 0 < odds_ratio < 1:
        raise ValidationError(f"odds_ratio must be in (0, 1): the bar below the pool's. Got {odds_ratio!r}.")
    if not 0 < fdr < 1 or not 0 < alpha < 1:
        raise ValidationError(f"fdr and alpha must be in (0, 1). Got fdr={fdr!r}, alpha={alpha!r}.")
    played, quality = np.asarray(played, dtype=bool), np.asarray(quality, dtype=bool)
    if (quality & ~played).any():
        raise ValidationError("A quality play must be a play: some rows have quality without a play.")
    z = float(stats.norm.ppf(1 - alpha / 2))
    cells: list[tuple[str, str, int, int, int, int]] = []  # title, artwork, p, q, P, Q
    for t in np.unique(title[played]).tolist():
        rows = np.flatnonzero(title == t)
        arts, pl, qu = artwork[rows], played[rows], quality[rows]
        P, Q = int(pl.sum()), int(qu.sum())
        names, plays = np.unique(arts[pl], return_counts=True)
        if names.size < 2:
            continue
        good = np.unique(arts[qu], return_counts=True)
        have = dict(zip(good[0].tolist(), good[1].tolist(), strict=True))
        cells += [
            (t, a, int(p), int(have.get(a, 0)), P, Q) for a, p in zip(names.tolist(), plays, strict=True)
        ]
    if not cells:
        return []
    code = np.unique([c[0] for c in cells], return_inverse=True)[1]
    p_, q_, P_, Q_ = (np.asarray([c[i] for c in cells], dtype=np.int64) for i in range(2, 6))
    flag = np.zeros(len(cells), dtype=bool)
    for _ in range(len(cells)):  # flags only grow, so this ends
        base_p, base_q = _honest_totals(code, p_, q_, P_, Q_, flag)
        pv = odds_ratio_p_values(q_, p_, base_q, base_p, odds_ratio)
        qv = benjamini_hochberg(pv)
        grown = flag | (qv <= fdr)
        if (grown == flag).all():
            break
        flag = grown
    out = []
    for (t, a, p, q, P, Q), bp, bq, pval, qval, f in zip(
        cells, base_p.tolist(), base_q.tolist(), pv.tolist(), qv.tolist(), flag.tolist(), strict=True
    ):
        r, lo, hi = _ratio_interval(q, p, bq - q, bp - p, z)
        table = np.array([[q, p - q], [bq - q, (bp - p) - (bq - q)]])
        mle, mle_lo, mle_hi = conditional_odds_ratio(table, 1 - alpha)
        out.append(
            Clickbait(
                t,
                a,
                p,
                q,
                p / P,
                *_wilson(p, P, z),
                q / Q if Q else math.nan,
                *(_wilson(q, Q, z) if Q else (0.0, 1.0)),
                r,
                lo,
                hi,
                mle,
                mle_lo,
                mle_hi,
                pval,
                qval,
                bool(f),
            )
        )
    return sorted(out, key=lambda c: (not c.flagged, np.nan_to_num(c.odds_ratio, nan=np.inf), c.ratio))
