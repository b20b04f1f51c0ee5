"""Experiment 1, ``batch_vs_online``: a classic batch cycle (collect, train, A/B test, roll out) against a
contextual bandit learning continuously; cumulative regret over time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyart.policies import Policy, make_policy
from keyart.simulation.agents import BatchCycleAgent
from keyart.simulation.experiments.stickiness import ShownLog, Stickiness
from keyart.simulation.experiments.suite import DEFAULT_SUITE_POLICY, POLICY_SUITE, make_suite_policy
from keyart.simulation.runner import PolicyAgent, ProgressCallback, RunResult, run_closed_loop
from keyart.simulation.world import World


@dataclass(frozen=True)
class BatchOnlineResult:
    """Closed-loop runs of the batch cycle and of the online bandit on the same request stream, and what
    the online bandit showed (``stickiness``)."""

    runs: dict[str, RunResult]
    cycle_requests: int
    phases: list[tuple[int, str]]
    stickiness: Stickiness | None = None

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "approach": name,
                "take_fraction": r.take_fraction(),
                "take_fraction_last_20pct": r.take_fraction(0.8),
                "cumulative_regret": float(r.cumulative_regret()[-1]),
            }
            for name, r in self.runs.items()
        ]


def batch_vs_online(
    world: World,
    n_requests: int,
    *,
    seed: int = 0,
    online_policy: str = DEFAULT_SUITE_POLICY,
    batch_model: str = "Epsilon-greedy",
    cycle_requests: int | None = None,
    update_every: int = 250,
    progress: ProgressCallback | None = None,
) -> BatchOnlineResult:
    """Experiment 1: cumulative regret of a batch cycle and of a continuously learning contextual bandit.

    The batch cycle's model is the shared ridge model served greedily (``epsilon = 0``), retrained once
    per cycle on all uniform exploration data collected so far. Both face the same stream and luck.
    """
    cycle = cycle_requests or max(update_every, n_requests // 3)
    registry, params = POLICY_SUITE[batch_model]
    params = {**params, "epsilon": 0.0} if "epsilon" in params else params

    def make_model() -> Policy:
        return make_policy(registry, seed=seed, **params)

    batch_agent = BatchCycleAgent(make_model, world.config.page_size, cycle, seed=seed, name="Batch cycle")
    shown = ShownLog(make_suite_policy(online_policy, seed), name=f"Online {online_policy}")
    online = PolicyAgent(shown, name=shown.name)
    runs = {
        "Batch cycle": run_closed_loop(
            world, batch_agent, n_requests, update_every=update_every, seed=seed, progress=progress
        ),
        f"Online {online_policy}": run_closed_loop(
            world, online, n_requests, update_every=update_every, seed=seed, progress=progress
        ),
    }
    return BatchOnlineResult(runs, cycle, batch_agent.phase_log, shown.stickiness())
