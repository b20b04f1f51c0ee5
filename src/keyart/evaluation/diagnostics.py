"""The flags an estimate can carry, what each one means, and when the weights earn one."""

from __future__ import annotations

import math

import numpy as np

from keyart.evaluation.clusters import _Clusters, _se
from keyart.evaluation.config import EstimatorConfig
from keyart.evaluation.data import BanditLog

FLAG_TEXT: dict[str, str] = {
    "low_ess": "few effective events: the weights concentrate on a small part of the log",
    "dominated": "the largest 1% of importance weights carry most of the total weight",
    "tiny_propensity": "events with tiny logged propensities (huge weights) that the candidate wants",
    "support_deficiency": "the candidate puts mass on actions the log never shows (estimate biased)",
    "weights_off": "mean importance weight is far from 1, or one weight alone moves it beyond the noise of "
    "the others: wrong propensities, missing support, or a single weight that dominates the log",
    "few_matches": "replay kept few matching events",
    "few_reward_events": "few rewarded events (< 30) with a positive weight carry the estimate (rare "
    "rewards): the normal CI is unreliable",
    "non_uniform_logging": "replay assumes a uniformly random logging policy; this log is not",
    "model_only": "interval conditional on a fixed reward model: it ignores the model's own error",
    "model_bias": "differs from DR by more than its noise: the reward model looks biased, and this "
    "interval does not include that bias",
    "few_clusters": "few clusters (< 30): the cluster-robust interval is unreliable",
}


def _weights_off(w: np.ndarray, clusters: _Clusters | None) -> bool:
    """Whether the mean weight is off: |mean(w) - 1| > max(0.05, 4 s.e.) (its expectation is 1 under
    correct propensities and full support), or the largest weight alone adds more than max(0.05, 4 s.e.
    of the other weights' mean) to mean(w).

    The second test is there because the first cannot see a single huge weight: one weight of 21,739
    among 10,000 others near 1 moves mean(w) by 2.17 and inflates its s.e. to 2.17 too. Judged against
    the noise of the rest of the log (s.e. without that weight; cluster-robust on a clustered log), its
    share of the mean is far out of range."""
    n = w.size
    se = w.std(ddof=1) / math.sqrt(n) if clusters is None else _se(w - w.mean(), clusters)
    if abs(w.mean() - 1) > max(0.05, 4 * se):
        return True
    if n < 3:
        return False
    top = int(np.argmax(w))
    keep = np.ones(n, dtype=bool)
    keep[top] = False
    rest = w[keep]
    if clusters is None:
        se_rest = float(rest.std(ddof=1) / math.sqrt(rest.size))
    else:
        se_rest = _se(np.where(keep, w - rest.mean(), 0.0), clusters) * n / rest.size
    return bool(w[top] / n > max(0.05, 4 * se_rest))


def _flags(
    name: str,
    log: BanditLog,
    w: np.ndarray,
    ess: float,
    unsup: float,
    n_matches: int | None,
    cfg: EstimatorConfig,
    clusters: _Clusters | None,
) -> tuple[str, ...]:
    t = cfg.thresholds
    out: list[str] = []
    if name == "replay":
        if n_matches is not None and n_matches < t.min_matches:
            out.append("few_matches")
        if np.ptp(log.pscore) > 1e-9 * log.pscore.max():
            out.append("non_uniform_logging")
    if name not in ("replay", "dm"):
        if ess < t.min_ess:
            out.append("low_ess")
        k = max(1, math.ceil(0.01 * w.size))
        total = w.sum()
        if total > 0 and np.partition(w, w.size - k)[w.size - k :].sum() / total > t.max_top_share:
            out.append("dominated")
        if ((w > 0) & (log.pscore < t.min_pscore)).any():
            out.append("tiny_propensity")
        if _weights_off(w, clusters):
            out.append("weights_off")
    if unsup > t.max_unsupported:
        out.append("support_deficiency")
    if clusters is not None and clusters.g < t.min_clusters:
        out.append("few_clusters")
    return tuple(out)
