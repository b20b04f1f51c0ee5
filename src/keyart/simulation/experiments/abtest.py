"""Experiment 4, ``ab_test``: an online A/B test of personalized against unpersonalized selection, with the
lift and its interval, split by members with and without prior interaction with the title."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from keyart.errors import ValidationError
from keyart.simulation.agents import ABAgent
from keyart.simulation.experiments.stickiness import ShownLog, Stickiness
from keyart.simulation.experiments.suite import DEFAULT_SUITE_POLICY, make_suite_policy
from keyart.simulation.runner import PolicyAgent, ProgressCallback, RunResult, run_closed_loop
from keyart.simulation.world import World


@dataclass(frozen=True)
class Lift:
    """Take fraction of each arm, the relative lift (treatment / control - 1) and its interval."""

    segment: str
    control: float
    treatment: float
    lift: float
    lower: float
    upper: float
    n_control: int
    n_treatment: int
    true_lift: float


def _clustered_ratio(y: np.ndarray, cluster: np.ndarray) -> tuple[float, float]:
    """Mean of y and the variance of that mean, with events clustered by member (delta method)."""
    _, inv = np.unique(cluster, return_inverse=True)
    sums = np.bincount(inv, weights=y)
    ns = np.bincount(inv).astype(np.float64)
    mean = sums.sum() / ns.sum()
    resid = sums - mean * ns
    g = ns.size
    var = (resid @ resid) * g / max(g - 1, 1) / ns.sum() ** 2
    return float(mean), float(var)


def lift_interval(
    y: np.ndarray, arm: np.ndarray, member: np.ndarray, alpha: float = 0.05
) -> tuple[float, float, float, float, float]:
    """(control mean, treatment mean, lift, lower, upper): log-ratio CI, member-clustered variances."""
    mc, vc = _clustered_ratio(y[arm == 0], member[arm == 0])
    mt, vt = _clustered_ratio(y[arm == 1], member[arm == 1])
    if mc <= 0 or mt <= 0:
        return mc, mt, math.nan, math.nan, math.nan
    z = float(stats.norm.ppf(1 - alpha / 2))
    se = math.sqrt(vc / mc**2 + vt / mt**2)
    log_ratio = math.log(mt / mc)
    return mc, mt, mt / mc - 1, math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1


@dataclass(frozen=True)
class ABResult:
    """Experiment 4: the lifts (overall and by prior interaction), the run behind them and what each arm's
    policy showed (``stickiness``: control, then treatment)."""

    lifts: list[Lift]
    run: RunResult
    arms: np.ndarray
    control: str
    treatment: str
    warmup: float
    stickiness: tuple[Stickiness, ...] = ()
    alpha: float = 0.05  # the intervals are 1 - alpha

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "segment": x.segment,
                "control": x.control,
                "treatment": x.treatment,
                "lift": x.lift,
                "ci_low": x.lower,
                "ci_high": x.upper,
                "true_lift": x.true_lift,
                "n_control": x.n_control,
                "n_treatment": x.n_treatment,
            }
            for x in self.lifts
        ]


def ab_test(
    world: World,
    n_requests: int,
    *,
    seed: int = 0,
    control: str = "Bandit",
    treatment: str = DEFAULT_SUITE_POLICY,
    update_every: int = 250,
    warmup: float = 0.25,
    alpha: float = 0.05,
    progress: ProgressCallback | None = None,
) -> ABResult:
    """Experiment 4: members split by hash; unpersonalized (control) against personalized (treatment).

    Both arms start untrained and learn online from their own traffic; the lift is measured on the
    decisions after the first ``warmup`` fraction of the test, on drawn quality plays, with a
    member-clustered interval. ``true_lift`` uses the world's expected values of the same decisions.
    """
    if not 0 <= warmup < 1:
        raise ValidationError(f"warmup must be in [0, 1). Got {warmup!r}.")
    shown = (
        ShownLog(make_suite_policy(control, seed), name=control),
        ShownLog(make_suite_policy(treatment, seed + 1), name=treatment),
    )
    agent = ABAgent(PolicyAgent(shown[0]), PolicyAgent(shown[1]))
    run = run_closed_loop(world, agent, n_requests, update_every=update_every, seed=seed, progress=progress)
    arms = agent.arms
    keep = np.arange(run.n_decisions) >= int(warmup * run.n_decisions)
    lifts = []
    for segment, sel in (
        ("all", keep),
        ("no prior interaction", keep & ~run.interacted),
        ("prior interaction", keep & run.interacted),
    ):
        y, a, m = run.reward[sel], arms[sel], run.member[sel]
        mc, mt, lift, lo, hi = lift_interval(y, a, m, alpha)
        e = run.expected[sel]
        true_lift = float(e[a == 1].mean() / e[a == 0].mean() - 1)
        lifts.append(Lift(segment, mc, mt, lift, lo, hi, int((a == 0).sum()), int((a == 1).sum()), true_lift))
    return ABResult(lifts, run, arms, control, treatment, warmup, tuple(s.stickiness() for s in shown), alpha)
