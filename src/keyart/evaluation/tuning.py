"""Choosing lambda of Switch-DR and DR-os from the log by SLOPE.

SLOPE (Su, Srinath and Krishnamurthy 2020, "Adaptive Estimator Selection for Off-Policy Evaluation",
ICML; in the form Open Bandit Pipeline implements it, ``obp/ope/estimators_tuning.py``,
``BaseOffPolicyEstimatorTuning._tune_hyperparam_with_slope``, Saito et al. 2021) picks one estimator
from a family ordered from high variance / low bias to low variance / high bias. For each candidate k
it computes the point value theta_k and the width cnf_k = t_{1-delta, n-1} * s.e._k of a one-sided
Student-t bound (OBP's ``estimate_student_t_lower_bound``: s.e. = sqrt(var(x) / (n - 1)) of the
per-event values x). Candidates are visited in decreasing width; candidate i is accepted while
|theta_j - theta_i| <= cnf_i + C cnf_j for every accepted j, with C = sqrt(6) - 1; the last accepted
one is chosen (all of them, if none is refused: the narrowest).

On a clustered log the s.e. is the cluster-robust one (``intervals._se``) with g - 1 degrees of
freedom; without clusters it is OBP's formula exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy import stats

from keyart.evaluation.clusters import _Clusters, _se
from keyart.evaluation.components import _components, importance_weights
from keyart.evaluation.config import ESTIMATORS, EstimatorConfig
from keyart.evaluation.data import BanditLog

#: SLOPE's constant (Su et al. 2020, Theorem 1; OBP's ``C``).
SLOPE_C = math.sqrt(6) - 1
#: Which config field holds each tuned estimator's lambda.
TUNED = {"switch_dr": "switch_lambda", "dr_os": "dr_os_lambda"}


def slope_select(values: Sequence[float], widths: Sequence[float]) -> int:
    """Index of the candidate SLOPE chooses, given each candidate's value and confidence width.

    Candidates are visited in decreasing width (ties: in the given order); see the module docstring.
    """
    theta = np.asarray(values, dtype=np.float64)
    cnf = np.asarray(widths, dtype=np.float64)
    order = np.argsort(-cnf, kind="stable")
    kept: list[int] = []
    for pos, i in enumerate(order.tolist()):
        if kept and not np.all(np.abs(theta[kept] - theta[i]) <= cnf[i] + SLOPE_C * cnf[kept]):
            return int(order[pos - 1])
        kept.append(i)
    return int(order[-1])


def slope_lambda(
    name: str,
    log: BanditLog,
    dist: np.ndarray,
    w: np.ndarray,
    q_hat: np.ndarray,
    cfg: EstimatorConfig,
    clusters: _Clusters | None = None,
) -> float:
    """The lambda of ``cfg.lambda_grid`` that SLOPE chooses for ``name`` (``switch_dr`` or ``dr_os``)."""
    field = TUNED[name]
    dof = (log.n if clusters is None else clusters.g) - 1
    t = float(stats.t.ppf(1 - cfg.slope_delta, max(dof, 1)))
    values, widths = [], []
    for lam in cfg.lambda_grid:
        a, b, _, _ = _components(name, log, dist, w, q_hat, replace(cfg, **{field: float(lam)}))
        x = a + b  # per-event values (the normalizer is 1 for both estimators)
        values.append(float(x.mean()))
        se = _se(x - x.mean(), clusters)
        widths.append(t * se if math.isfinite(se) else math.inf)
    return float(cfg.lambda_grid[slope_select(values, widths)])


def resolve_lambdas(
    names: Sequence[str],
    log: BanditLog,
    dist: np.ndarray,
    w: np.ndarray,
    q_hat: np.ndarray | None,
    cfg: EstimatorConfig,
    clusters: _Clusters | None = None,
) -> tuple[EstimatorConfig, dict[str, str]]:
    """``cfg`` with every ``"slope"`` lambda of the requested estimators replaced by SLOPE's choice, and
    how each tuned estimator's lambda was set (``"slope"`` or ``"fixed"``)."""
    how: dict[str, str] = {}
    for name, field in TUNED.items():
        if name not in names:
            continue
        if getattr(cfg, field) == "slope":
            assert q_hat is not None
            cfg = replace(cfg, **{field: slope_lambda(name, log, dist, w, q_hat, cfg, clusters)})
            how[name] = "slope"
        else:
            how[name] = "fixed"
    for field in TUNED.values():  # untouched "slope" fields (estimator not asked): any valid number
        if getattr(cfg, field) == "slope":
            cfg = replace(cfg, **{field: math.inf})
    return cfg, how


def point_estimate(
    name: str,
    log: BanditLog,
    action_dist: np.ndarray,
    estimated_rewards: np.ndarray | None = None,
    config: EstimatorConfig | None = None,
) -> float:
    """One estimator's point value, no interval or flags: the fast path the benchmark measures (a
    ``"slope"`` lambda is tuned on these inputs first, unclustered).

    ``action_dist`` and ``estimated_rewards`` must already be validated (n, K, L) arrays.
    """
    cfg = config or EstimatorConfig()
    w = importance_weights(log, action_dist)
    cfg, _ = resolve_lambdas([name], log, action_dist, w, estimated_rewards, cfg)
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
