"""Off-policy estimators on plain arrays: replay, IPS, SNIPS, DM, DR, SNDR, Switch-DR, DR-os.

Point estimates follow Open Bandit Pipeline's definitions (Saito et al. 2021, ``obp/ope/estimators.py``)
so that identical inputs give identical numbers. With importance weight w_i = pi_e(a_i | x_i, l_i) / p_i,
q-hat the (cross-fitted) reward model and q_pi(x_i) = sum_a pi_e(a | x_i, l_i) q-hat(x_i, a, l_i):

- ``ips``       mean(w r)                               (optional clipping: w <- min(w, lambda))
- ``snips``     mean(w r) / mean(w)
- ``dm``        mean(q_pi)
- ``dr``        mean(q_pi + w (r - q-hat(a_i)))         (optional clipping as IPS)
- ``sndr``      mean(q_pi) + mean(w (r - q-hat(a_i))) / mean(w)
- ``switch_dr`` mean(q_pi + 1[w <= lambda] w (r - q-hat(a_i)))   (OBP >= 0.5 form)
- ``dr_os``     mean(q_pi + w' (r - q-hat(a_i))), w' = lambda w / (w^2 + lambda)
- ``replay``    Li et al. (2011): mean reward over events where the candidate's choice (its action for a
                deterministic candidate, a seeded draw otherwise) equals the logged action.

Every estimator here has the form theta = mean(A) + mean(B) / mean(C). Intervals are normal (CLT) with
the delta-method influence psi_i = (A_i - mean A) + (B_i - (mean B / mean C) C_i) / mean C, so the
self-normalized ones get a correct standard error; replay on 0/1 rewards uses the Wilson interval;
``ci="bootstrap"`` resamples events and recomputes the ratio (OBP resamples per-round values with the
normalizer held fixed; the point estimate is the same).
The error of DM, Switch-DR and DR-os is mostly the reward model's, which the influence form cannot see: by
default (``ci="auto"``) their standard error comes from a bootstrap that refits the cross-fitted model on
each resample (normal interval with that s.e.). With precomputed ``estimated_rewards`` no refit is
possible; they are then flagged ``model_only``. A refit bootstrap sees the model's variance, not its bias:
DM, Switch-DR and DR-os are flagged ``model_bias`` when they differ from DR by more than z standard errors
of the (paired) difference.

Clustered logs (``BanditLog.cluster``, e.g. member ids): standard errors sum the influence values within
each cluster (the cluster-robust sandwich with the g / (g - 1) small-sample factor, g clusters), both
bootstraps resample whole clusters, cross-fitting folds keep a cluster together, and replay's Wilson
interval uses the effective number of matches (matches / design effect). Without clusters every event is
its own cluster, which is the i.i.d. formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

from keyart.errors import ValidationError
from keyart.evaluation.data import BanditLog, as_action_dist
from keyart.evaluation.reward_models import RewardModel, cross_fit, default_reward_model, fold_ids
from keyart.params import Interval, OneOf, check_param

ESTIMATORS: tuple[str, ...] = ("replay", "ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os")
MODEL_BASED = frozenset({"dm", "dr", "sndr", "switch_dr", "dr_os"})
#: Estimators whose error is mostly the reward model's: their interval must refit the model.
MODEL_DOMINATED = frozenset({"dm", "switch_dr", "dr_os"})


@dataclass(frozen=True)
class DiagnosticThresholds:
    """When an estimate is flagged. Defaults are deliberately conservative; every flag is explained.

    ``min_ess``: effective sample size (sum w)^2 / sum w^2 below this -> ``low_ess``.
    ``max_top_share``: the largest 1% of weights carry more than this share of sum w -> ``dominated``.
    ``min_pscore``: a logged propensity below this on an event the candidate wants -> ``tiny_propensity``.
    ``max_unsupported``: candidate mass on actions the log never shows above this -> ``support_deficiency``.
    ``min_matches``: replay with fewer matched events -> ``few_matches``.
    ``min_reward_events``: fewer events with a positive weight carry a nonzero reward (e.g. clicks) ->
    ``few_reward_events``: the normal interval is then unreliable.
    ``min_clusters``: a clustered log with fewer clusters -> ``few_clusters``: the cluster-robust s.e. is
    then unreliable.
    """

    min_ess: float = 100.0
    max_top_share: float = 0.5
    min_pscore: float = 1e-3
    max_unsupported: float = 0.01
    min_matches: int = 100
    min_reward_events: int = 30
    min_clusters: int = 30


FLAG_TEXT: dict[str, str] = {
    "low_ess": "few effective events: the weights concentrate on a small part of the log",
    "dominated": "the largest 1% of importance weights carry most of the total weight",
    "tiny_propensity": "events with tiny logged propensities (huge weights) that the candidate wants",
    "support_deficiency": "the candidate puts mass on actions the log never shows (estimate biased)",
    "weights_off": "mean importance weight is far from 1: wrong propensities or missing support",
    "few_matches": "replay kept few matching events",
    "few_reward_events": "few rewarded events (< 30) with a positive weight carry the estimate (rare "
    "rewards): the normal CI is unreliable",
    "non_uniform_logging": "replay assumes a uniformly random logging policy; this log is not",
    "model_only": "interval conditional on a fixed reward model: it ignores the model's own error",
    "model_bias": "differs from DR by more than its noise: the reward model looks biased, and this "
    "interval does not include that bias",
    "few_clusters": "few clusters (< 30): the cluster-robust interval is unreliable",
}


@dataclass(frozen=True)
class Estimate:
    """One estimator's value with its 95% (or ``1 - alpha``) interval and weight diagnostics.

    ``n_clusters``: the independent units the interval rests on (``n`` when the log has no clusters).
    """

    estimator: str
    value: float
    lower: float
    upper: float
    se: float
    n: int
    ci_method: str
    max_weight: float
    ess: float
    mean_weight: float
    unsupported_mass: float
    n_matches: int | None = None
    flags: tuple[str, ...] = ()
    policy: str = ""
    n_clusters: int | None = None

    def as_row(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "estimator": self.estimator,
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "se": self.se,
            "n": self.n,
            "n_clusters": self.n_clusters,
            "ess": self.ess,
            "max_weight": self.max_weight,
            "mean_weight": self.mean_weight,
            "unsupported_mass": self.unsupported_mass,
            "n_matches": self.n_matches,
            "ci": self.ci_method,
            "flags": ",".join(self.flags),
        }


@dataclass(frozen=True)
class EstimatorConfig:
    """Hyperparameters: clipping for IPS/DR (``None`` = none), Switch-DR's threshold, DR-os's lambda.

    ``ci``: ``"auto"`` (default) gives normal intervals for replay, IPS, SNIPS, DR and SNDR, and a refit
    bootstrap s.e. (``n_refit`` resamples, the reward model cross-fitted again on each; normal interval)
    for DM, Switch-DR and DR-os, whose error is mostly the reward model's; ``"normal"`` normal everywhere;
    ``"bootstrap"``
    percentile bootstrap everywhere (``n_bootstrap`` resamples; refit for the model-based estimators).
    On a clustered log every resample draws whole clusters.
    """

    ips_clip: float | None = None
    dr_clip: float | None = None
    switch_lambda: float = 100.0
    dr_os_lambda: float = 100.0
    alpha: float = 0.05
    ci: str = "auto"
    n_bootstrap: int = 1000
    n_refit: int = 200
    replay_seed: int = 0
    thresholds: DiagnosticThresholds = field(default_factory=DiagnosticThresholds)

    def __post_init__(self) -> None:
        for name in ("ips_clip", "dr_clip"):
            v = getattr(self, name)
            if v is not None:
                check_param("EstimatorConfig", name, v, Interval(0, None, closed="neither"))
        for name in ("switch_lambda", "dr_os_lambda"):  # math.inf allowed: no switching / no shrinkage
            v = getattr(self, name)
            if not (isinstance(v, float) and v == math.inf):
                check_param("EstimatorConfig", name, v, Interval(0, None))
        check_param("EstimatorConfig", "alpha", self.alpha, Interval(0, 1, closed="neither"))
        check_param("EstimatorConfig", "ci", self.ci, OneOf(("auto", "normal", "bootstrap")))
        check_param("EstimatorConfig", "n_bootstrap", self.n_bootstrap, Interval(10, None, integer=True))
        check_param("EstimatorConfig", "n_refit", self.n_refit, Interval(10, None, integer=True))


# ---- pieces -------------------------------------------------------------------------------------


def importance_weights(log: BanditLog, action_dist: np.ndarray) -> np.ndarray:
    """w_i = pi_e(a_i | x_i, l_i) / pscore_i."""
    rows = np.arange(log.n)
    return action_dist[rows, log.action, log.position] / log.pscore


def _q_parts(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q_pi (n,), q-hat of the logged action (n,)) at each event's logged position."""
    rows = np.arange(log.n)
    q_at = q_hat[rows, :, log.position]
    pi_at = action_dist[rows, :, log.position]
    q_pi = np.einsum("nk,nk->n", q_at, pi_at)
    return q_pi, q_at[rows, log.action]


def replay_match(log: BanditLog, action_dist: np.ndarray, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Boolean (n,): the candidate's choice at the logged position equals the logged action.

    A deterministic candidate (one-hot rows) needs no randomness; otherwise its choice is drawn once per
    event by inverse-CDF sampling with a seeded generator (vectorized).
    """
    rows = np.arange(log.n)
    pi_at = action_dist[rows, :, log.position]
    if np.all((pi_at == 0) | (pi_at == 1)):
        return pi_at[rows, log.action] == 1
    rng = np.random.default_rng(seed)
    u = rng.random(log.n)[:, None]
    cdf = np.cumsum(pi_at, axis=1)
    choice = np.minimum((cdf < u * cdf[:, -1:]).sum(axis=1), log.n_actions - 1)
    return choice == log.action


def unsupported_mass(log: BanditLog, action_dist: np.ndarray) -> float:
    """Share of the candidate's probability on actions the logging policy could not (or did not) show.

    Exact when the log carries the logging policy's full distribution (keyart logs it): mass on
    zero-probability actions. Otherwise an empirical check: mass on (arm, position) pairs never logged.
    """
    rows = np.arange(log.n)
    pi_at = action_dist[rows, :, log.position]
    if log.logging_dist is not None:
        never = log.logging_dist[rows, :, log.position] <= 0
    else:
        keys = log.arm_keys()
        el = log.n_positions
        logged = keys[rows, log.action] * el + log.position
        seen = np.zeros((int(keys.max()) + 1) * el, dtype=bool)
        seen[logged] = True
        never = ~seen[keys * el + log.position[:, None]]
    if log.action_mask is not None:
        never &= log.action_mask
    return float((pi_at * never).sum(axis=1).mean())


@dataclass(frozen=True)
class _Clusters:
    """Each event's cluster code in 0..g-1, and the events grouped by cluster (to resample clusters)."""

    codes: np.ndarray  # (n,)
    g: int
    order: np.ndarray  # event indices sorted by cluster
    starts: np.ndarray  # (g,) where each cluster's events start in ``order``
    counts: np.ndarray  # (g,) events per cluster

    @classmethod
    def of(cls, log: BanditLog) -> _Clusters | None:
        if log.cluster is None:
            return None
        _, codes = np.unique(log.cluster, return_inverse=True)  # dense codes, also for sub-logs
        codes = codes.reshape(-1)
        counts = np.bincount(codes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(codes, int(counts.size), np.argsort(codes, kind="stable"), starts, counts)

    def sums(self, x: np.ndarray) -> np.ndarray:
        """(g,) per-cluster sums of x."""
        return np.bincount(self.codes, weights=x, minlength=self.g)

    def events(self, chosen: np.ndarray) -> np.ndarray:
        """The event indices of the clusters ``chosen`` (repeats allowed), cluster after cluster."""
        lengths = self.counts[chosen]
        ends = np.cumsum(lengths)
        offsets = np.arange(int(ends[-1])) + np.repeat(self.starts[chosen] - (ends - lengths), lengths)
        return self.order[offsets]


def _se(psi: np.ndarray, clusters: _Clusters | None) -> float:
    """Standard error of a mean from centred influence values psi: sqrt(g / (g - 1) sum_g S_g^2) / n with
    S_g the sum of psi over cluster g (each event its own cluster when ``clusters`` is None: the i.i.d.
    ``std(ddof=1) / sqrt(n)``)."""
    n = psi.size
    if clusters is None:
        return float(psi.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    g = clusters.g
    if g < 2:
        return math.nan
    s = clusters.sums(psi)
    return float(math.sqrt(float(s @ s) * g / (g - 1)) / n)


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


def _bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    cfg: EstimatorConfig,
    seed: int,
    clusters: _Clusters | None = None,
) -> tuple[float, float]:
    """Percentile interval of the resampled statistic (events, or whole clusters, resampled with
    replacement, chunked)."""
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
    v = v[np.isfinite(v)]
    return float(np.quantile(v, cfg.alpha / 2)), float(np.quantile(v, 1 - cfg.alpha / 2))


def _components(
    name: str, log: BanditLog, dist: np.ndarray, w: np.ndarray, q_hat: np.ndarray | None, cfg: EstimatorConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    n = log.n
    zeros, ones = np.zeros(n), np.ones(n)
    r = log.reward
    if name == "replay":
        match = replay_match(log, dist, cfg.replay_seed).astype(np.float64)
        return zeros, match * r, match, int(match.sum())
    if name == "ips":
        wc = w if cfg.ips_clip is None else np.minimum(w, cfg.ips_clip)
        return zeros, wc * r, ones, None
    if name == "snips":
        return zeros, w * r, w, None
    assert q_hat is not None
    q_pi, q_a = _q_parts(log, dist, q_hat)
    if name == "dm":
        return q_pi, zeros, ones, None
    if name == "dr":
        wc = w if cfg.dr_clip is None else np.minimum(w, cfg.dr_clip)
        return q_pi, wc * (r - q_a), ones, None
    if name == "sndr":
        return q_pi, w * (r - q_a), w, None
    if name == "switch_dr":
        return q_pi, (w <= cfg.switch_lambda) * w * (r - q_a), ones, None
    if name == "dr_os":
        lam = cfg.dr_os_lambda
        w_os = w if math.isinf(lam) else (lam * w) / (w**2 + lam) if lam > 0 else zeros
        return q_pi, w_os * (r - q_a), ones, None
    raise ValidationError(f"Unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}.")


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
        se_w = w.std() / math.sqrt(w.size) if clusters is None else _se(w - w.mean(), clusters)
        if abs(w.mean() - 1) > max(0.05, 4 * se_w):
            out.append("weights_off")
    if unsup > t.max_unsupported:
        out.append("support_deficiency")
    if clusters is not None and clusters.g < t.min_clusters:
        out.append("few_clusters")
    return tuple(out)


def estimate(
    log: BanditLog,
    action_dist: object,
    estimators: Sequence[str] = ESTIMATORS,
    *,
    estimated_rewards: object | None = None,
    reward_model: RewardModel | None = None,
    n_folds: int = 2,
    config: EstimatorConfig | None = None,
    seed: int = 0,
    policy: str = "",
) -> list[Estimate]:
    """Estimate a candidate's value with each named estimator on one log.

    ``action_dist``: (n, K) or (n, K, L) candidate probabilities. DM and the DR family need
    ``estimated_rewards`` (n, K[, L]); when it is not given, ``reward_model`` (default: linear ridge with
    features, else tabular means) is cross-fitted with ``n_folds`` folds seeded by ``seed`` (whole clusters
    per fold when the log has clusters). Intervals treat the log's clusters as the independent units.
    """
    cfg = config or EstimatorConfig()
    names = list(estimators)
    if not names:
        raise ValidationError("estimators must name at least one estimator.")
    for name in names:
        if name not in ESTIMATORS:
            raise ValidationError(f"Unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}.")
    dist = as_action_dist("action_dist", action_dist, log.n, log.n_actions, log.n_positions)
    if log.action_mask is not None and (dist * ~log.action_mask[:, :, None]).sum() > 0:
        raise ValidationError("action_dist puts probability on padded (masked) candidates.")
    clusters = _Clusters.of(log)
    q_hat = None
    model: RewardModel | None = None
    folds = None
    if any(n in MODEL_BASED for n in names):
        if estimated_rewards is not None:
            q_hat = as_estimated_rewards(estimated_rewards, log)
        else:
            model = reward_model or default_reward_model(log)
            folds = _folds(log, clusters, n_folds, seed)
            q_hat = cross_fit(model, log, n_folds=n_folds, seed=seed, folds=folds)
    w = importance_weights(log, dist)
    sw, sw2 = w.sum(), float(np.square(w).sum())
    ess = float(sw * sw / sw2) if sw2 > 0 else 0.0
    unsup = unsupported_mass(log, dist)
    z = float(stats.norm.ppf(1 - cfg.alpha / 2))
    refit_names = [
        n
        for n in names
        if model is not None
        and n in MODEL_BASED
        and (cfg.ci == "bootstrap" or (cfg.ci == "auto" and n in MODEL_DOMINATED))
    ]
    refit = (
        _refit_bootstrap(log, dist, refit_names, model, n_folds, folds, cfg, seed, clusters)
        if refit_names
        else {}
    )
    dr_ref = None  # DR (unclipped): the reference that reveals a reward model's bias
    if q_hat is not None and any(n in MODEL_DOMINATED for n in names):
        q_pi, q_a = _q_parts(log, dist, q_hat)
        dr_ref = _ratio_stat(q_pi, w * (log.reward - q_a), np.ones(log.n))
    out = []
    for name in names:
        a, b, c, n_matches = _components(name, log, dist, w, q_hat, cfg)
        theta, psi = _ratio_stat(a, b, c)
        se = _se(psi, clusters)
        wilson = None
        if name == "replay" and n_matches is not None and n_matches > 1:
            matched = log.reward[c > 0]
            if clusters is None:
                se = float(matched.std(ddof=1) / math.sqrt(n_matches))
            if np.all((matched == 0) | (matched == 1)):
                if clusters is None:
                    wilson = _wilson(float(matched.sum()), n_matches, z)
                else:
                    trials = _effective_matches(matched, se, c, clusters)
                    wilson = _wilson(float(matched.mean()) * trials, trials, z)
        extra: tuple[str, ...] = ()
        if name in refit:
            se, q_lo, q_hi = refit[name]
            if cfg.ci == "bootstrap":
                lo, hi = q_lo, q_hi
                method = f"bootstrap-refit-percentile(B={cfg.n_refit})"
            else:
                lo, hi = theta - z * se, theta + z * se
                method = f"normal(refit-bootstrap s.e., B={cfg.n_refit})"
        elif cfg.ci == "bootstrap":
            lo, hi = _bootstrap(a, b, c, cfg, seed, clusters)
            method = f"bootstrap-percentile(B={cfg.n_bootstrap})"
        elif wilson is not None:
            lo, hi = wilson
            method = "wilson"
        else:
            lo, hi = theta - z * se, theta + z * se
            method = "normal"
        if name in MODEL_DOMINATED and name not in refit:
            extra = ("model_only",)
        if name in MODEL_DOMINATED and dr_ref is not None:
            theta_dr, psi_dr = dr_ref
            if abs(theta - theta_dr) > z * _se(psi - psi_dr, clusters):
                extra += ("model_bias",)
        if name != "dm":
            carrying = (c > 0) if name == "replay" else (w > 0)  # replay's weight is the match
            if int(np.count_nonzero(carrying & (log.reward != 0))) < cfg.thresholds.min_reward_events:
                extra += ("few_reward_events",)
        out.append(
            Estimate(
                estimator=name,
                value=theta,
                lower=float(lo),
                upper=float(hi),
                se=se,
                n=log.n,
                ci_method=method,
                max_weight=float(w.max()),
                ess=ess,
                mean_weight=float(w.mean()),
                unsupported_mass=unsup,
                n_matches=n_matches,
                flags=_flags(name, log, w, ess, unsup, n_matches, cfg, clusters) + extra,
                policy=policy,
                n_clusters=log.n if clusters is None else clusters.g,
            )
        )
    return out


def _folds(log: BanditLog, clusters: _Clusters | None, n_folds: int, seed: int) -> np.ndarray | None:
    """Cross-fitting folds: seeded per event, or per cluster (a cluster's events share a fold)."""
    if n_folds <= 1:
        return None
    if clusters is None:
        return fold_ids(log.n, n_folds, seed)
    if n_folds > clusters.g:
        raise ValidationError(
            f"n_folds ({n_folds}) must not exceed the number of clusters ({clusters.g}): "
            "cross-fitting keeps each cluster in one fold."
        )
    return fold_ids(clusters.g, n_folds, seed)[clusters.codes]


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
) -> dict[str, tuple[float, float, float]]:
    """(s.e., lower, upper percentile) of a bootstrap that includes the reward model's error: each resample
    of events (of whole clusters on a clustered log) refits the cross-fitted model (duplicates of an event
    stay in its fold) and re-estimates. ``ci="auto"`` uses the s.e. in a normal interval (steadier than
    percentiles at the small B a refit affords); ``ci="bootstrap"`` uses the percentiles."""
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
    out = {}
    for j, name in enumerate(names):
        v = vals[:, j][np.isfinite(vals[:, j])]
        out[name] = (
            float(v.std(ddof=1)),
            float(np.quantile(v, cfg.alpha / 2)),
            float(np.quantile(v, 1 - cfg.alpha / 2)),
        )
    return out


def as_estimated_rewards(values: object, log: BanditLog) -> np.ndarray:
    """Validate q-hat of shape (n, K) or (n, K, L)."""
    q = np.asarray(values, dtype=np.float64)
    if q.ndim == 2:
        q = q[:, :, None]
    if q.ndim != 3 or q.shape[:2] != (log.n, log.n_actions):
        raise ValidationError(
            f"estimated_rewards must have shape (n={log.n}, K={log.n_actions}[, L]), got {np.shape(values)}."
        )
    if q.shape[2] == 1 and log.n_positions > 1:
        q = np.broadcast_to(q, (log.n, log.n_actions, log.n_positions))
    if q.shape[2] != log.n_positions:
        raise ValidationError(
            f"estimated_rewards has {q.shape[2]} positions but the log has {log.n_positions}."
        )
    if not np.all(np.isfinite(q)):
        raise ValidationError("estimated_rewards holds NaN or inf.")
    return q


def point_estimate(
    name: str,
    log: BanditLog,
    action_dist: np.ndarray,
    estimated_rewards: np.ndarray | None = None,
    config: EstimatorConfig | None = None,
) -> float:
    """One estimator's point value, no interval or flags: the fast path the benchmark measures.

    ``action_dist`` and ``estimated_rewards`` must already be validated (n, K, L) arrays.
    """
    cfg = config or EstimatorConfig()
    w = importance_weights(log, action_dist)
    a, b, c, _ = _components(name, log, action_dist, w, estimated_rewards, cfg)
    mc = c.mean()
    return float(a.mean() + b.mean() / mc) if mc > 0 else math.nan


def point_estimates(
    log: BanditLog,
    action_dist: np.ndarray,
    estimated_rewards: np.ndarray,
    config: EstimatorConfig | None = None,
) -> dict[str, float]:
    """Point estimates of every estimator (validated (n, K, L) inputs)."""
    return {name: point_estimate(name, log, action_dist, estimated_rewards, config) for name in ESTIMATORS}


def with_policy(estimates: Sequence[Estimate], policy: str) -> list[Estimate]:
    return [replace(e, policy=policy) for e in estimates]
