"""The Open Bandit Dataset sample (Saito et al. 2021): real logs nobody here generated.

Bernoulli TS's value estimated from the uniform-random logs vs. its on-policy value (mean click of the
BTS logs). Data: ``tests/data/obd`` (the sample, gzipped, with its attribution).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from keyart.evaluation import ESTIMATORS, EstimatorConfig, estimate
from keyart.tabular import OBD_FORMAT, empirical_distribution, load_tabular, main, obd_experiment

OBD = Path(__file__).resolve().parent / "data" / "obd"  # the OBD sample, shipped with its attribution


@pytest.fixture(scope="module")
def logs():
    rand = load_tabular(OBD / "random" / "all" / "all.csv.gz", OBD_FORMAT, n_positions=3)
    bts = load_tabular(
        OBD / "bts" / "all" / "all.csv.gz", OBD_FORMAT, action_ids=rand.action_ids, n_positions=3
    )
    return rand, bts


def test_obd_loads_as_documented(logs) -> None:
    rand, bts = logs
    assert rand.log.n == bts.log.n == 10_000
    assert rand.log.n_actions == 80 and rand.log.n_positions == 3
    np.testing.assert_allclose(rand.log.pscore, 1 / 80)  # uniform random over 80 items
    assert set(np.unique(rand.log.position)) == {0, 1, 2}
    assert (
        rand.log.context.shape[0] == 10_000 and rand.log.context.shape[1] > 80
    )  # affinities + one-hot users


def test_ips_on_obd_equals_a_plain_loop(logs) -> None:
    rand, bts = logs
    freq = empirical_distribution(bts.log)
    dist = np.broadcast_to(freq, (rand.log.n, 80, 3))
    (ips, snips) = estimate(rand.log, dist, ["ips", "snips"])
    num = den = 0.0
    for a, pos, p, r in zip(
        rand.log.action, rand.log.position, rand.log.pscore, rand.log.reward, strict=True
    ):
        w = freq[a, pos] / p
        num += w * r
        den += w
    assert ips.value == pytest.approx(num / rand.log.n)
    assert snips.value == pytest.approx(num / den)


def test_bts_value_from_random_logs_agrees_with_on_policy_value() -> None:
    res = obd_experiment(OBD, config=EstimatorConfig(n_refit=30), seed=0)
    truth, truth_se = res.on_policy_value, res.on_policy_se
    assert truth == pytest.approx(0.0042)  # 42 clicks in 10,000 BTS events
    got = {e.estimator: e for e in res.comparison.estimates}
    assert set(got) == set(ESTIMATORS)
    for name in ("ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os"):
        e = got[name]
        # two independent samples: the difference must be within 1.96 s.e. of the difference
        assert abs(e.value - truth) < 1.96 * math.hypot(e.se, truth_se), name
        assert e.flags == (), (name, e.flags)
        assert e.ess > 1000 and e.unsupported_mass == 0.0
    rep = got["replay"]
    assert rep.n_matches and 60 < rep.n_matches < 250  # about n * sum_a pi(a) / 80 matches
    assert rep.lower <= truth <= rep.upper
    assert "few_reward_events" in rep.flags  # honest: a handful of clicks among the matches
    table = res.comparison.to_arrow()
    assert "relative_error" in table.column_names


def test_module_entry_point_prints_the_readme_table(capsys) -> None:
    assert main(["obd", "--data", str(OBD), "--folds", "2", "--refits", "20"]) == 0
    text = capsys.readouterr().out
    assert (
        "| ips |" in text
        and "| replay (" in text
        and "relative error" in text
        and "python -m keyart.tabular obd" in text
    )
