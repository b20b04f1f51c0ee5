"""Per title: each artwork's share of impressions and take fraction, its IPS estimate with an interval,
who it is shown to (by segment), and how its share moved over time.

The take fraction (quality plays / impressions) is what the artwork earned under the logging policy's
choices, with a Wilson interval. The IPS estimate (self-normalized, ``keyart.evaluation``) is what the
title would earn if this artwork were shown to everyone who was shown the title: it reweights each
impression by the logged propensity, so members the logging policy sent to this artwork more often do not
count more; its interval is clustered by member.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from keyart.evaluation import BanditLog, EstimatorConfig, estimate
from keyart.evaluation.intervals import _wilson
from keyart.insights.data import InsightLogs
from keyart.insights.segments import segment_list


@dataclass(frozen=True)
class ArtworkShare:
    """One artwork of one title in the logs."""

    title_id: str
    artwork_id: str
    impressions: int
    share: float  # of the title's impressions
    plays: int
    quality_plays: int
    take_fraction: float
    take_lower: float
    take_upper: float
    ips: float  # estimated take fraction if shown to all of the title's audience
    ips_lower: float
    ips_upper: float
    ips_ess: float  # effective sample size of the estimate


def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2))


def title_log(logs: InsightLogs, rows: np.ndarray) -> tuple[BanditLog, list[tuple[str, ...]]]:
    """The bandit log of some rows (one title's): actions are positions in each row's logged pool."""
    pools = [logs.pools[i] for i in rows]
    k = max(len(p) for p in pools)
    mask = np.zeros((rows.size, k), dtype=bool)
    dist = np.zeros((rows.size, k))
    for j, (p, probs) in enumerate(zip(pools, (logs.probabilities[i] for i in rows), strict=True)):
        mask[j, : len(p)] = True
        dist[j, : len(p)] = probs
    action = np.asarray([p.index(a) for p, a in zip(pools, logs.artwork[rows], strict=True)], dtype=np.int64)
    log = BanditLog.from_arrays(
        logs.reward[rows],
        action,
        logs.propensity[rows],
        n_actions=k,
        action_mask=mask,
        logging_dist=dist[:, :, None],
        cluster=logs.member[rows],
    )
    return log, pools


def artwork_shares(logs: InsightLogs, alpha: float = 0.05) -> list[ArtworkShare]:
    """Every logged artwork of every title, titles by impressions (most first), artworks by share."""
    z = _z(alpha)
    titles, counts = np.unique(logs.title, return_counts=True)
    out: list[ArtworkShare] = []
    for t in titles[np.argsort(-counts, kind="stable")]:
        rows = logs.rows_of(str(t))
        log, pools = title_log(logs, rows)
        arts, n_imp = np.unique(logs.artwork[rows], return_counts=True)
        for a in arts[np.argsort(-n_imp, kind="stable")].tolist():
            shown = logs.artwork[rows] == a
            n = int(shown.sum())
            q = float(logs.reward[rows][shown].sum())
            lo, hi = _wilson(q, n, z)
            ips = _ips(log, pools, a, alpha)
            out.append(
                ArtworkShare(
                    str(t),
                    a,
                    n,
                    n / rows.size,
                    int(logs.played[rows][shown].sum()),
                    int(q),
                    q / n,
                    lo,
                    hi,
                    *ips,
                )
            )
    return out


def _ips(
    log: BanditLog, pools: list[tuple[str, ...]], artwork: str, alpha: float
) -> tuple[float, float, float, float]:
    """Self-normalized IPS of "always show ``artwork``" on the rows whose pool held it."""
    held = np.asarray([artwork in p for p in pools])
    sub = log.take(np.flatnonzero(held))
    target = np.asarray([p.index(artwork) for p, h in zip(pools, held, strict=True) if h], dtype=np.int64)
    if not (sub.action == target).any():  # never shown here: nothing to estimate from
        return math.nan, math.nan, math.nan, 0.0
    dist = np.zeros((sub.n, sub.n_actions))
    dist[np.arange(sub.n), target] = 1.0
    [e] = estimate(sub, dist, ["snips"], config=EstimatorConfig(alpha=alpha))
    if not math.isfinite(e.value):
        return math.nan, math.nan, math.nan, 0.0
    return e.value, max(0.0, e.lower), min(1.0, e.upper), e.ess


def shown_to(
    logs: InsightLogs, segments: dict[str, np.ndarray], title_id: str, min_rows: int = 1
) -> list[dict[str, object]]:
    """Who each artwork of ``title_id`` is shown to: per segment (of every family), the share of the
    segment's impressions of the title that went to each artwork."""
    rows = logs.rows_of(title_id)
    arts = np.unique(logs.artwork[rows]).tolist()
    out: list[dict[str, object]] = []
    for family, segment, seg_rows in segment_list(segments, rows, min_rows):
        shown = logs.artwork[seg_rows]
        for a in arts:
            k = int((shown == a).sum())
            out.append(
                {
                    "title_id": title_id,
                    "family": family,
                    "segment": segment,
                    "artwork_id": a,
                    "impressions": k,
                    "share": k / seg_rows.size,
                    "segment_impressions": int(seg_rows.size),
                }
            )
    return out


def _snips_terms(log: BanditLog, pools: list[tuple[str, ...]], artwork: str) -> tuple[float, np.ndarray]:
    """Self-normalized IPS of "always show ``artwork``" (on the rows whose pool held it) and each row's
    term of its linearization (its error is the sum of the terms): ``w_i (r_i - V) / sum(w)``."""
    shown = np.asarray([p[a] == artwork for p, a in zip(pools, log.action.tolist(), strict=True)])
    w = np.where(shown, 1.0 / log.pscore, 0.0)
    if w.sum() <= 0:
        return math.nan, np.zeros(log.n)
    value = float(w @ log.reward / w.sum())
    return value, w * (log.reward - value) / w.sum()


def _clustered_se(terms: np.ndarray, cluster: np.ndarray | None) -> float:
    """Standard error of a sum of linearization terms, rows of one cluster (member) summed first."""
    if cluster is None:
        sums = terms
    else:
        sums = np.bincount(cluster, weights=terms)
    g = sums.size
    return float(np.sqrt(g / max(g - 1, 1) * (sums**2).sum()))


def segment_estimates(
    logs: InsightLogs, segments: dict[str, np.ndarray], title_id: str, min_rows: int = 50, alpha: float = 0.05
) -> list[dict[str, object]]:
    """Which artwork of ``title_id`` works for whom, from the logs alone: for every segment with
    ``min_rows`` of the title's decisions, each artwork's IPS estimate (self-normalized, member-clustered
    interval) of the segment's take fraction were it shown to the whole segment; ``best`` marks the
    segment's highest estimate, ``margin`` (with ``margin_lower``, ``margin_upper``) its lead over the
    runner-up, and ``clear`` a best that beats every other artwork of the segment: each difference's
    one-sided interval, Bonferroni-corrected over the others at level ``alpha / 2`` in all, above zero (so
    a clear best is the wrong one with probability at most ``alpha / 2``). Unbiased whatever the model,
    noisy for small segments (see the intervals)."""
    rows = logs.rows_of(title_id)
    out: list[dict[str, object]] = []
    for family, segment, seg_rows in segment_list(segments, rows, min_rows):
        log, pools = title_log(logs, seg_rows)
        found = []
        arts = sorted({x for p in pools for x in p})
        terms = []
        for a in arts:
            value, lower, upper, ess = _ips(log, pools, a, alpha)
            terms.append(_snips_terms(log, pools, a))
            found.append(
                {
                    "title_id": title_id,
                    "family": family,
                    "segment": segment,
                    "artwork_id": a,
                    "estimate": value,
                    "lower": lower,
                    "upper": upper,
                    "ess": ess,
                    "shown": int((logs.artwork[seg_rows] == a).sum()),
                    "decisions": int(seg_rows.size),
                }
            )
        order = np.argsort([-np.nan_to_num(v, nan=-1.0) for v, _ in terms], kind="stable")
        top = int(order[0])
        margin = lower_m = upper_m = math.nan
        clear = False
        if len(arts) > 1 and math.isfinite(terms[top][0]):
            z = _z(alpha)
            z_each = float(stats.norm.ppf(1 - alpha / (2 * (len(arts) - 1))))
            diffs = [
                (terms[top][0] - terms[k][0], _clustered_se(terms[top][1] - terms[k][1], log.cluster))
                for k in order[1:].tolist()
            ]
            clear = all(math.isfinite(d) and d - z_each * se > 0 for d, se in diffs)
            margin, se = diffs[0]
            lower_m, upper_m = margin - z * se, margin + z * se
        for i, r in enumerate(found):
            r["best"] = i == top
            r["clear"] = bool(i == top and clear)
            r["margin"], r["margin_lower"], r["margin_upper"] = (
                (margin, lower_m, upper_m) if i == top else (math.nan, math.nan, math.nan)
            )
        out += found
    return out


def over_time(logs: InsightLogs, title_id: str, periods: int = 6) -> list[dict[str, object]]:
    """How the impression share of each artwork of ``title_id`` moved: the logged span cut into
    ``periods`` equal periods, each artwork's share of the title's impressions in each."""
    rows = logs.rows_of(title_id)
    ts = logs.timestamp[rows]
    edges = np.linspace(ts.min(), ts.max(), periods + 1)
    period = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, periods - 1)
    arts = np.unique(logs.artwork[rows]).tolist()
    out: list[dict[str, object]] = []
    for p in range(periods):
        in_p = period == p
        n = int(in_p.sum())
        for a in arts:
            k = int((logs.artwork[rows][in_p] == a).sum())
            out.append(
                {
                    "title_id": title_id,
                    "period": p + 1,
                    "start": float(edges[p]),
                    "end": float(edges[p + 1]),
                    "artwork_id": a,
                    "impressions": k,
                    "share": k / n if n else math.nan,
                    "period_impressions": n,
                }
            )
    return out
