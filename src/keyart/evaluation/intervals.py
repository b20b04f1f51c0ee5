"""Uncertainty of an estimate: clusters, delta-method standard errors, Wilson and bootstrap intervals (the
refit bootstrap refits the cross-fitted reward model on each resample), and the cross-fitting folds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from keyart.evaluation.clusters import _Clusters
from keyart.evaluation.components import _components, importance_weights
from keyart.evaluation.config import EstimatorConfig
from keyart.evaluation.data import BanditLog
from keyart.evaluation.reward_models import RewardModel, cross_fit


def _ratio_stat(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[float, np.ndarray]:
    """theta = mean(a) + mean(b)/mean(c), and its influence values."""
    mc = c.mean()
    if mc <= 0:
        return math.nan, np.full(a.shape, math.nan)
    ratio = b.mean() / mc
    theta = a.mean() + ratio
    psi = (a - a.mean()) + (b - ratio * c) / mc
    return float(theta), psi


def _wilson(successes: float, trials: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (valid with 0 or n successes, unlike the CLT)."""
    p = successes / trials
    den = 1 + z * z / trials
    mid = (p + z * z / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    lo = 0.0 if successes == 0 else max(0.0, min(p, mid - half))
    hi = 1.0 if successes == trials else min(1.0, max(p, mid + half))
    return lo, hi


def _bootstrap_replicates(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    cfg: EstimatorConfig,
    seed: int,
    clusters: _Clusters | None = None,
) -> np.ndarray:
    """``cfg.n_bootstrap`` replicates of mean(a) + mean(b) / mean(c), events (or whole clusters)
    resampled with replacement (chunked; non-finite replicates, from an all-zero mean(c), dropped).

    The indices are ``default_rng(seed).integers(0, units, (B, units))`` (in chunks only when B x units
    exceeds 2e7), the draws ``scipy.stats.bootstrap`` makes with the same generator."""
    n = a.shape[0]
    rng = np.random.default_rng(seed)
    units = n if clusters is None else clusters.g
    chunk = max(1, int(2e7 // max(units, 1)))
    if clusters is not None:  # per-cluster totals: a resample of clusters sums them
        sa, sb, sc = clusters.sums(a), clusters.sums(b), clusters.sums(c)
        cnt = clusters.counts.astype(np.float64)
    vals = []
    done = 0
    while done < cfg.n_bootstrap:
        m = min(chunk, cfg.n_bootstrap - done)
        idx = rng.integers(0, units, size=(m, units))
        with np.errstate(invalid="ignore", divide="ignore"):
            if clusters is None:
                vals.append(a[idx].mean(axis=1) + b[idx].mean(axis=1) / c[idx].mean(axis=1))
            else:
                mean_a = sa[idx].sum(axis=1) / cnt[idx].sum(axis=1)
                vals.append(mean_a + sb[idx].sum(axis=1) / sc[idx].sum(axis=1))
        done += m
    v = np.concatenate(vals)
    return v[np.isfinite(v)]


def _jackknife(a: np.ndarray, b: np.ndarray, c: np.ndarray, clusters: _Clusters | None) -> np.ndarray:
    """Leave-one-out values of mean(a) + mean(b) / mean(c): one event (or one whole cluster) left out
    at a time, in closed form from the totals."""
    if clusters is None:
        na, nb, nc, cnt = a, b, c, np.ones(a.shape[0])
    else:
        na, nb, nc = clusters.sums(a), clusters.sums(b), clusters.sums(c)
        cnt = clusters.counts.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a.sum() - na) / (a.shape[0] - cnt) + (b.sum() - nb) / (c.sum() - nc)
    return out[np.isfinite(out)]


def _acceleration(jack: np.ndarray) -> float:
    """BCa's acceleration from jackknife values (Efron and Tibshirani 1993, eq. 14.15; as
    ``scipy.stats.bootstrap``): sum(U^3) / (6 sum(U^2)^(3/2)) with U = mean(jack) - jack."""
    u = jack.mean() - jack
    den = float(np.square(u).sum())
    return float((u**3).sum() / (6 * den**1.5)) if den > 0 else 0.0


def _percentile_interval(v: np.ndarray, alpha: float) -> tuple[float, float]:
    """The alpha/2 and 1 - alpha/2 quantiles of the replicates (linear interpolation)."""
    return float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))


def _bca_interval(v: np.ndarray, theta: float, accel: float, alpha: float) -> tuple[float, float]:
    """Bias-corrected and accelerated percentile interval (Efron 1987; Efron and Tibshirani 1993,
    section 14.3), as ``scipy.stats.bootstrap(method="BCa")`` computes it: z0 = Phi^-1 of the share of
    replicates below theta (ties count half), and the replicates' quantiles at
    Phi(z0 + (z0 + z) / (1 - accel (z0 + z))) for z = Phi^-1(alpha/2) and Phi^-1(1 - alpha/2)."""
    share = (np.count_nonzero(v < theta) + np.count_nonzero(v <= theta)) / (2 * v.size)
    z0 = float(special.ndtri(share))
    if not math.isfinite(z0):  # every replicate on one side of theta: no bias correction possible
        return _percentile_interval(v, alpha)
    ends = []
    for z in (float(special.ndtri(alpha / 2)), float(special.ndtri(1 - alpha / 2))):
        ends.append(float(special.ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))))
    return float(np.percentile(v, 100 * ends[0])), float(np.percentile(v, 100 * ends[1]))


def _bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    cfg: EstimatorConfig,
    seed: int,
    clusters: _Clusters | None = None,
) -> tuple[float, float]:
    """The bootstrap interval ``cfg.ci`` asks for (percentile, or BCa with the jackknife acceleration)
    of mean(a) + mean(b) / mean(c)."""
    v = _bootstrap_replicates(a, b, c, cfg, seed, clusters)
    if cfg.ci != "bca":
        return _percentile_interval(v, cfg.alpha)
    theta = float(a.mean() + b.mean() / c.mean())
    return _bca_interval(v, theta, _acceleration(_jackknife(a, b, c, clusters)), cfg.alpha)


def _effective_matches(matched: np.ndarray, se: float, c: np.ndarray, clusters: _Clusters) -> float:
    """Replay's matches divided by the design effect (clustered over i.i.d. variance, at least 1). When
    the matched rewards are all 0 or all 1 the design effect cannot be estimated: the number of clusters
    with a match is used (a cluster counts once, as if its events were copies: conservative)."""
    p = float(matched.mean())
    if 0 < p < 1 and se > 0:  # n / deff = n / (se^2 / (p (1 - p) / n))
        return float(min(matched.size, p * (1 - p) / (se * se)))
    return float(np.count_nonzero(clusters.sums(c)))


def _refit_bootstrap(
    log: BanditLog,
    dist: np.ndarray,
    names: Sequence[str],
    model: RewardModel,
    n_folds: int,
    folds: np.ndarray | None,
    cfg: EstimatorConfig,
    seed: int,
    clusters: _Clusters | None = None,
) -> dict[str, np.ndarray]:
    """The replicates (finite ones) of a bootstrap that includes the reward model's error: each resample
    of events (of whole clusters on a clustered log) refits the cross-fitted model (duplicates of an event
    stay in its fold) and re-estimates. ``ci="auto"`` uses their s.e. in a normal interval (steadier than
    percentiles at the small B a refit affords); ``ci="percentile"`` / ``"bca"`` their quantiles."""
    rng = np.random.default_rng([seed, 0x5EED])
    vals = np.empty((cfg.n_refit, len(names)))
    for bi in range(cfg.n_refit):
        if clusters is None:
            idx = rng.integers(0, log.n, log.n)
        else:
            idx = clusters.events(rng.integers(0, clusters.g, clusters.g))
        sub, d = log.take(idx), dist[idx]
        q = cross_fit(model, sub, n_folds=n_folds, folds=None if folds is None else folds[idx])
        w = importance_weights(sub, d)
        for j, name in enumerate(names):
            a, b, c, _ = _components(name, sub, d, w, q, cfg)
            vals[bi, j] = a.mean() + b.mean() / c.mean() if c.mean() > 0 else math.nan
    return {name: vals[:, j][np.isfinite(vals[:, j])] for j, name in enumerate(names)}
