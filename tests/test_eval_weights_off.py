"""``weights_off``: fires on wrong propensities and on one dominating weight (the extreme-weight case),
not on sound logs; equal to a plain reference of the documented rule."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from keyart.evaluation import BanditLog, EstimatorConfig, estimate
from test_eval_tuning import _extreme_log


def _reference_weights_off(w: list[float]) -> bool:
    """|mean(w) - 1| > max(0.05, 4 sd(w)/sqrt(n)), or max(w)/n > max(0.05, 4 sd(rest)/sqrt(n - 1)) with
    rest the weights without the largest one."""
    n = len(w)
    if abs(statistics.fmean(w) - 1) > max(0.05, 4 * statistics.stdev(w) / math.sqrt(n)):
        return True
    rest = sorted(w)[:-1]
    return max(w) / n > max(0.05, 4 * statistics.stdev(rest) / math.sqrt(n - 1))


def _flags(log: BanditLog, dist: np.ndarray) -> tuple[str, ...]:
    return estimate(log, dist, ["ips"], config=EstimatorConfig(ci="normal"))[0].flags


def test_fires_on_one_extreme_weight_among_10000() -> None:
    log, dist, _ = _extreme_log()
    w = dist[np.arange(log.n), log.action] / log.pscore
    assert w.max() == pytest.approx(21_739)
    se = w.std(ddof=1) / math.sqrt(w.size)
    assert abs(w.mean() - 1) < 4 * se  # the plain test alone is blind to it
    flags = _flags(log, dist)
    assert {"weights_off", "low_ess", "dominated", "tiny_propensity"} <= set(flags)


def test_does_not_fire_when_that_row_has_its_true_propensity() -> None:
    log, dist, _ = _extreme_log()
    pscore = log.pscore.copy()
    pscore[0] = 1 / 80
    fixed = BanditLog.from_arrays(log.reward, log.action, pscore, n_actions=log.n_actions)
    assert _flags(fixed, dist) == ()


def test_fires_on_wrong_propensities() -> None:
    log, dist, _ = _extreme_log()
    pscore = np.full(log.n, 1 / 40)  # logged as twice the true 1/80: every weight halved
    wrong = BanditLog.from_arrays(log.reward, log.action, pscore, n_actions=log.n_actions)
    assert "weights_off" in _flags(wrong, dist)


@pytest.mark.parametrize("seed", range(20))
def test_does_not_fire_on_sound_uniform_logs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 5000, 20
    action = rng.integers(0, k, n)
    dist = rng.dirichlet(np.full(k, 0.3), size=n)  # peaked candidates: weights up to ~20
    log = BanditLog.from_arrays(rng.binomial(1, 0.2, n).astype(float), action, np.full(n, 1 / k), n_actions=k)
    assert "weights_off" not in _flags(log, dist)


def test_equals_the_plain_rule_on_random_logs() -> None:
    rng = np.random.default_rng(11)
    fired = 0
    for trial in range(150):
        n, k = int(rng.integers(20, 300)), 5
        action = rng.integers(0, k, n)
        pscore = rng.choice([0.2, 0.05, 0.01], size=n, p=[0.9, 0.08, 0.02])
        if trial % 3 == 0:
            pscore[int(rng.integers(0, n))] = 10 ** -float(rng.uniform(3, 6))  # one huge weight
        dist = rng.dirichlet(np.ones(k), size=n)
        log = BanditLog.from_arrays(rng.binomial(1, 0.3, n).astype(float), action, pscore, n_actions=k)
        w = (dist[np.arange(n), action] / pscore).tolist()
        got = "weights_off" in _flags(log, dist)
        assert got == _reference_weights_off(w), trial
        fired += got
    assert 0 < fired < 150  # both outcomes exercised
