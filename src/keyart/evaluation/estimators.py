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
  (lambda of both: fixed, or by default chosen on the log by SLOPE, ``keyart.evaluation.tuning``)
- ``replay``    Li et al. (2011): mean reward over events where the candidate's choice (its action for a
                deterministic candidate, a seeded draw otherwise) equals the logged action.

Every estimator here has the form theta = mean(A) + mean(B) / mean(C). Intervals are normal (CLT) with
the delta-method influence psi_i = (A_i - mean A) + (B_i - (mean B / mean C) C_i) / mean C, so the
self-normalized ones get a correct standard error; replay on 0/1 rewards uses the Wilson interval;
``ci="percentile"`` (alias ``"bootstrap"``) resamples events and recomputes the ratio (OBP resamples
per-round values with the normalizer held fixed; the point estimate is the same); ``ci="bca"`` takes the
bias-corrected and accelerated quantiles of the same replicates (Efron 1987), acceleration from the
closed-form jackknife, as ``scipy.stats.bootstrap(method="BCa")``.
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

Layout: the estimators' names and ``EstimatorConfig`` live in ``keyart.evaluation.config``, the per-event
terms and point values in ``components``, standard errors and intervals in ``intervals``, the flags in
``diagnostics``; this module assembles them into ``Estimate``s, and every name is importable from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from keyart.errors import ValidationError
from keyart.evaluation.clusters import _Clusters, _folds, _se
from keyart.evaluation.components import (
    _components,
    _q_parts,
    as_estimated_rewards,
    importance_weights,
    replay_match,
    unsupported_mass,
)
from keyart.evaluation.config import (
    BOOTSTRAP_CIS,
    ESTIMATORS,
    MODEL_BASED,
    MODEL_DOMINATED,
    DiagnosticThresholds,
    EstimatorConfig,
)
from keyart.evaluation.data import BanditLog, as_action_dist
from keyart.evaluation.diagnostics import FLAG_TEXT, _flags
from keyart.evaluation.intervals import (
    _acceleration,
    _bca_interval,
    _bootstrap,
    _effective_matches,
    _jackknife,
    _percentile_interval,
    _ratio_stat,
    _refit_bootstrap,
    _wilson,
)
from keyart.evaluation.reward_models import RewardModel, cross_fit, default_reward_model
from keyart.evaluation.tuning import TUNED, point_estimate, point_estimates, resolve_lambdas

__all__ = [
    "ESTIMATORS",
    "FLAG_TEXT",
    "MODEL_BASED",
    "MODEL_DOMINATED",
    "DiagnosticThresholds",
    "Estimate",
    "EstimatorConfig",
    "as_estimated_rewards",
    "estimate",
    "importance_weights",
    "point_estimate",
    "point_estimates",
    "replay_match",
    "unsupported_mass",
    "with_policy",
]


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
    lambda_: float | None = None
    lambda_by: str = ""

    @property
    def label(self) -> str:
        """The estimator's name with its lambda and how it was set, e.g. ``switch_dr (λ=10, SLOPE)``."""
        if self.lambda_ is None:
            return self.estimator
        how = "SLOPE" if self.lambda_by == "slope" else "fixed"
        return f"{self.estimator} (λ={self.lambda_:g}, {how})"

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
            "lambda": self.lambda_,
            "lambda_by": self.lambda_by,
            "flags": ",".join(self.flags),
        }


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
    features, else tabular means) is cross-fitted with ``n_folds`` folds seeded by ``seed`` (on a clustered
    log a cluster's fold is a keyed hash of its id and ``seed``: ``keyart.evaluation.clusters``).
    Intervals treat the log's clusters as the independent units. Switch-DR's and DR-os's lambda, when
    ``"slope"`` (the default), is chosen by SLOPE on this log and q-hat (``keyart.evaluation.tuning``) and
    reported in ``Estimate.lambda_``; their intervals are conditional on that lambda (the refit bootstrap
    keeps it fixed).
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
    cfg, lambda_by = resolve_lambdas(names, log, dist, w, q_hat, cfg, clusters)
    sw, sw2 = w.sum(), float(np.square(w).sum())
    ess = float(sw * sw / sw2) if sw2 > 0 else 0.0
    unsup = unsupported_mass(log, dist)
    z = float(stats.norm.ppf(1 - cfg.alpha / 2))
    refit_names = [
        n
        for n in names
        if model is not None
        and n in MODEL_BASED
        and (cfg.ci in BOOTSTRAP_CIS or (cfg.ci == "auto" and n in MODEL_DOMINATED))
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
            reps = refit[name]
            se = float(reps.std(ddof=1))
            if cfg.ci == "bca":  # acceleration from the jackknife with the cross-fitted q-hat held fixed
                accel = _acceleration(_jackknife(a, b, c, clusters))
                lo, hi = _bca_interval(reps, theta, accel, cfg.alpha)
                method = f"bootstrap-refit-BCa(B={cfg.n_refit})"
            elif cfg.ci in BOOTSTRAP_CIS:
                lo, hi = _percentile_interval(reps, cfg.alpha)
                method = f"bootstrap-refit-percentile(B={cfg.n_refit})"
            else:
                lo, hi = theta - z * se, theta + z * se
                method = f"normal(refit-bootstrap s.e., B={cfg.n_refit})"
        elif cfg.ci in BOOTSTRAP_CIS:
            lo, hi = _bootstrap(a, b, c, cfg, seed, clusters)
            kind = "BCa" if cfg.ci == "bca" else "percentile"
            method = f"bootstrap-{kind}(B={cfg.n_bootstrap})"
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
                lambda_=float(getattr(cfg, TUNED[name])) if name in TUNED else None,
                lambda_by=lambda_by.get(name, ""),
            )
        )
    return out


def with_policy(estimates: Sequence[Estimate], policy: str) -> list[Estimate]:
    return [replace(e, policy=policy) for e in estimates]
