"""What the closed loop showed: ``count_switches`` against a plain reference, ``ShownLog`` changes
nothing about the run and counts the explored decisions and within-period switches."""

from __future__ import annotations

import numpy as np
import pytest

from keyart.errors import DimensionError
from keyart.exploration import sticky_periods
from keyart.policies import make_policy
from keyart.simulation.config import small_config
from keyart.simulation.experiments import ShownLog, count_switches
from keyart.simulation.runner import PolicyAgent, run_closed_loop
from keyart.simulation.world import World


def _reference(members, titles, periods, shown) -> tuple[int, int]:
    seen: dict[tuple, list] = {}
    for key in zip(members, titles, periods, strict=True):
        seen.setdefault(key, [])
    for m, t, p, a in zip(members, titles, periods, shown, strict=True):
        seen[(m, t, p)].append(a)
    repeated = [v for v in seen.values() if len(v) >= 2]
    return len(repeated), sum(len(set(v)) > 1 for v in repeated)


@pytest.mark.parametrize("seed", range(5))
def test_count_switches_matches_a_plain_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    members = rng.choice([f"m{i}" for i in range(40)], n)
    titles = rng.choice([f"t{i}" for i in range(10)], n)
    periods = rng.integers(0, 3, n)
    shown = rng.choice(["a", "b", "c"], n, p=[0.9, 0.05, 0.05])
    got = count_switches(members, titles, periods, shown)
    assert got == _reference(members.tolist(), titles.tolist(), periods.tolist(), shown.tolist())
    assert 0 < got[1] < got[0]


def test_count_switches_edge_cases() -> None:
    empty = np.array([], dtype=object)
    assert count_switches(empty, empty, np.array([], dtype=np.int64), empty) == (0, 0)
    one = np.array(["m", "m", "m"])
    t = np.array(["t", "t", "t"])
    assert count_switches(one, t, np.array([0, 0, 1]), np.array(["a", "a", "b"])) == (1, 0)
    assert count_switches(one, t, np.array([0, 0, 0]), np.array(["a", "a", "b"])) == (1, 1)
    with pytest.raises(DimensionError, match="same length"):
        count_switches(one, t[:2], np.array([0, 0, 0]), one)


def test_shown_log_changes_nothing_and_counts_what_was_shown() -> None:
    world = World(small_config(1))
    plain = run_closed_loop(world, PolicyAgent(make_policy("linucb", seed=4)), 400, update_every=50, seed=2)
    shown = ShownLog(make_policy("linucb", seed=4), name="LinUCB")
    logged = run_closed_loop(world, PolicyAgent(shown), 400, update_every=50, seed=2)
    np.testing.assert_array_equal(plain.chosen, logged.chosen)
    np.testing.assert_array_equal(plain.propensity, logged.propensity)
    s = shown.stickiness()
    assert s.policy == "LinUCB" and s.decisions == logged.n_decisions
    assert 0 < s.explored < s.decisions and s.explored_share == s.explored / s.decisions
    # every decision of the run was recorded once (ShownLog sees them per pool-size bucket), and the
    # counts are the plain reference's over the recorded decisions and the policy's own periods
    members, titles, times, art, _ = (np.concatenate(c) for c in zip(*shown._parts, strict=True))
    assert sorted(members.tolist()) == sorted(world.member_ids[m] for m in logged.member)
    assert sorted(titles.tolist()) == sorted(world.title_ids[t] for t in logged.title)
    periods = sticky_periods(4, members.tolist(), times, 86_400.0)
    ref = _reference(members.tolist(), titles.tolist(), periods.tolist(), art.tolist())
    assert (s.repeated, s.switched) == ref
    assert s.repeated > 0 and 0 <= s.switch_rate <= 1
    assert ShownLog(make_policy("linucb", seed=4)).stickiness().decisions == 0
