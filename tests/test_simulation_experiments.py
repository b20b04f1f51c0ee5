"""Experiments 1-4 on small seeded worlds, checked against the world's truth with sound bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from keyart.errors import ValidationError
from keyart.features import Featurizer
from keyart.simulation import World, demo_config, small_config
from keyart.simulation.experiments import (
    DEFAULT_SUITE_POLICY,
    POLICY_SUITE,
    ab_test,
    batch_vs_online,
    format_table,
    lift_interval,
    make_suite_policy,
    offline_replay,
    taste_showcase,
)
from keyart.simulation.runner import stream_windows

CANDIDATES = ("Random", "Bandit", "LinUCB", "Epsilon-greedy")


@pytest.fixture(scope="module")
def replay_runs() -> list:
    """Experiment 2 on four independent seeds (world and log)."""
    return [
        offline_replay(World(small_config(seed=s)), 1_500, seed=s, candidates=CANDIDATES, window=250)
        for s in range(4)
    ]


@pytest.mark.slow
def test_replay_intervals_cover_the_truth(replay_runs: list) -> None:
    """Every interval should cover its policy's true value; misses must stay within what a 95% level
    allows: at most the 99.9% quantile of Binomial(#intervals, 0.05)."""
    rows = [r for res in replay_runs for r in res.rows]
    misses = sum(not r.covered for r in rows)
    bound = int(stats.binom.ppf(0.999, len(rows), replay_runs[0].alpha))
    assert misses <= bound, [(r.policy, r.lower, r.truth, r.upper) for r in rows if not r.covered]


def test_replay_table_shape(replay_runs: list) -> None:
    res = replay_runs[0]
    assert [r.policy for r in res.rows] == list(CANDIDATES)
    assert res.n_train_events > res.n_test_events > 0
    assert res.train_share == pytest.approx(0.7)  # 1,050 of 1,500 pages, though windows hold 250
    for r in res.rows:
        assert r.lower <= r.estimate <= r.upper and 0 < r.truth < 1
    assert "policy" in format_table(res.table())


@pytest.mark.parametrize(("n_requests", "window"), [(600, 250), (1_000, 300)])
def test_replay_split_and_member_clusters(n_requests: int, window: int) -> None:
    """The log is split after exactly the asked share of pages, and the held-out log is clustered by the
    members of its events (the same stream, read back in one window)."""
    world = World(small_config(seed=0))
    res = offline_replay(world, n_requests, seed=0, window=window, candidates=("Random",))
    n_train = round(0.7 * n_requests)
    page = world.config.page_size
    assert (res.n_train_events, res.n_test_events) == (n_train * page, (n_requests - n_train) * page)
    world.reset()
    featurizer = Featurizer(world.catalog)
    [w] = stream_windows(world, n_requests, window=n_requests, seed=0, featurizer=featurizer)
    members = w.batch.member_ids[n_train * page :]
    _, codes = np.unique(members, return_inverse=True)
    assert res.log.cluster is not None
    np.testing.assert_array_equal(res.log.cluster, codes)
    assert 1 < codes.max() + 1 < res.log.n  # members ask for several pages


def test_replay_truth_orders_policies(replay_runs: list) -> None:
    """The true value of the trained contextual policy beats Random on every seed."""
    for res in replay_runs:
        truth = {r.policy: r.truth for r in res.rows}
        assert truth["LinUCB"] > truth["Random"]


@pytest.mark.slow
def test_showcase_differs_the_way_the_world_says() -> None:
    """Comedy fans get more comedy-themed artwork than romance fans, and vice versa, as the oracle does."""
    world = World(demo_config(seed=0))
    res = offline_replay(world, 4_000, seed=0, candidates=("LinUCB",), train_fraction=0.75, window=500)
    show = taste_showcase(world, res.policies["LinUCB"], n_members=200, seed=0)
    assert min(show.n_members) >= 100
    comedy, romance = 0, 1
    for theme, fan, other in (("comedy", comedy, romance), ("romance", romance, comedy)):
        assert show.theme_share(fan, theme, "oracle") > show.theme_share(other, theme, "oracle")
        diff = show.theme_share(fan, theme) - show.theme_share(other, theme)
        se = math.hypot(show.theme_share_se(fan, theme), show.theme_share_se(other, theme))
        assert diff - 3 * se > 0, (theme, diff, se)
    np.testing.assert_allclose(show.policy_share.sum(1), 1.0)
    np.testing.assert_allclose(show.oracle_share.sum(1), 1.0)
    assert len(show.table()) == 2 * len(show.artwork_ids)


def test_lift_interval_coverage() -> None:
    """The clustered log-ratio interval covers a known lift at about its level (binomial bound)."""
    rng = np.random.default_rng(0)
    reps, misses = 200, 0
    for _ in range(reps):
        members = rng.integers(0, 400, 8_000)
        arm = members % 2
        base = rng.beta(2, 30, 400)[members]  # member-level heterogeneity: clustered outcomes
        p = base * np.where(arm == 1, 1.3, 1.0)
        y = (rng.random(members.size) < p).astype(float)
        true = 1.3 * base[arm == 1].mean() / base[arm == 0].mean() - 1  # lift on these members
        _, _, _, lo, hi = lift_interval(y, arm, members)
        misses += not (lo <= true <= hi)
    assert misses <= stats.binom.ppf(0.999, reps, 0.05)


def test_ab_test_runs_and_reports_segments() -> None:
    world = World(small_config(seed=2))
    res = ab_test(world, 1_500, seed=2, update_every=250)
    assert [x.segment for x in res.lifts] == ["all", "no prior interaction", "prior interaction"]
    total = res.lifts[0]
    assert total.n_control + total.n_treatment == int(0.75 * res.run.n_decisions + 0.5)
    for x in res.lifts:
        assert x.lower <= x.lift <= x.upper
    assert res.lifts[1].n_control + res.lifts[2].n_control == total.n_control


def test_batch_cycle_pays_more_regret_than_online() -> None:
    world = World(small_config(seed=3))
    res = batch_vs_online(world, 2_400, seed=3, update_every=200)
    batch, online = res.runs["Batch cycle"], res.runs[f"Online {DEFAULT_SUITE_POLICY}"]
    diff = (online.oracle - online.expected) - (batch.oracle - batch.expected)  # same stream: paired
    per_page = diff.reshape(-1, batch.page_size).sum(1)
    upper = per_page.mean() + 3 * per_page.std(ddof=1) / math.sqrt(per_page.size)
    assert upper < 0
    assert [p for _, p in res.phases][:3] == ["collect", "ab_test", "rollout"]


def test_suite_and_errors() -> None:
    for name in POLICY_SUITE:
        assert make_suite_policy(name, seed=0).name
    with pytest.raises(ValidationError, match="Unknown policy 'nope'"):
        make_suite_policy("nope", seed=0)
    world = World(small_config(seed=1))
    with pytest.raises(ValidationError, match="train_fraction"):
        offline_replay(world, 100, train_fraction=1.5)
    with pytest.raises(ValidationError, match="warmup"):
        ab_test(world, 100, warmup=1.0)
    with pytest.raises(ValidationError, match="title_id 'x'"):
        taste_showcase(world, make_suite_policy("Random", 0), title_id="x")


@pytest.mark.slow
def test_closed_loop_command_prints_the_headline_table(capsys: pytest.CaptureFixture[str]) -> None:
    from keyart.simulation.experiments import main

    assert (
        main(
            [
                "closed-loop",
                "--requests",
                "300",
                "--update-every",
                "100",
                "--policies",
                "Random,Bandit,LinUCB",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "ratio_to_bandit" in out and "gap_captured" in out and "best contextual: LinUCB" in out
