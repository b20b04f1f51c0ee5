"""Coverage on a clustered log with a known truth: keyart's sticky exploration (one artwork per member,
title and day, drawn with ``keyed_uniforms``) and member-level reward rates.

Each of M members sees T titles V times in one day; the logged artwork is uniform over K but fixed per
(member, title, day), and a member's rewards share the rate base_m ~ U(0.05, 0.6) plus the artwork's
effect. The candidate always shows artwork 0, whose value is E[base] + eff[0] = 0.525. Intervals
clustered by member must cover it at least as often as the 0.1% quantile of Binomial(R, 0.95) allows;
the same intervals without the clusters treat the V sticky views as independent and must fall below it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from keyart.evaluation import BanditLog, EstimatorConfig, estimate
from keyart.exploration import keyed_uniforms, period_index

R = 200
R_REFIT = 60  # the refit bootstrap costs n_refit model fits per log
M, T, V, K = 150, 6, 6, 3
EFFECT = np.array([0.2, 0.0, 0.1])
TRUTH = (0.05 + 0.6) / 2 + EFFECT[0]
NAMES = ["replay", "ips", "snips", "dr", "sndr"]
BOOT = ["ips", "snips"]


def _low(r: int) -> int:
    return int(stats.binom.ppf(0.001, r, 0.95))


def _high(r: int) -> int:
    return int(stats.binom.ppf(0.999, r, 0.95))


def _sticky_logs(seed: int) -> tuple[BanditLog, BanditLog]:
    """The same log with member clusters and without."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.6, M)
    pair_member = np.repeat(np.arange(M), T)
    pair_title = np.tile(np.arange(T), M)
    ts = 1.7e9 + rng.uniform(0, 3600, M * T)  # all views within one sticky day (one period)
    u = keyed_uniforms(
        seed,
        [f"m{m}" for m in pair_member],
        [f"t{t}" for t in pair_title],
        period_index(ts, 86400.0).tolist(),
    )
    action = np.repeat(np.minimum((u * K).astype(np.int64), K - 1), V)  # the V views see one draw
    member = np.repeat(pair_member, V)
    reward = rng.binomial(1, base[member] + EFFECT[action]).astype(float)
    pscore = np.full(member.size, 1 / K)
    return (
        BanditLog.from_arrays(reward, action, pscore, n_actions=K, cluster=member),
        BanditLog.from_arrays(reward, action, pscore, n_actions=K),
    )


def _covered(estimates) -> dict[str, bool]:
    return {e.estimator: e.lower <= TRUTH <= e.upper for e in estimates}


@pytest.fixture(scope="module")
def coverage() -> dict[str, int]:
    dist = np.tile(np.eye(K)[0], (M * T * V, 1))
    counts: dict[str, int] = {}
    boot = EstimatorConfig(ci="bootstrap", n_bootstrap=200)
    refit = EstimatorConfig(n_refit=30)
    for rep in range(R):
        clustered, plain = _sticky_logs(rep)
        runs = [
            ("clustered", estimate(clustered, dist, NAMES, seed=rep)),
            ("iid", estimate(plain, dist, ["ips", "snips", "dr"], seed=rep)),
            ("bootstrap", estimate(clustered, dist, BOOT, config=boot, seed=rep)),
        ]
        if rep < R_REFIT:
            runs.append(("refit", estimate(clustered, dist, ["dm"], config=refit, seed=rep)))
        for label, es in runs:
            for name, hit in _covered(es).items():
                counts[f"{label}:{name}"] = counts.get(f"{label}:{name}", 0) + int(hit)
            if label == "clustered":
                assert all(e.n_clusters == M and "few_clusters" not in e.flags for e in es)
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("key", [f"clustered:{n}" for n in NAMES] + [f"bootstrap:{n}" for n in BOOT])
def test_member_clustered_intervals_cover(coverage, key: str) -> None:
    assert _low(R) <= coverage[key] <= _high(R), f"{key}: {coverage[key]}/{R} cover the truth"


@pytest.mark.slow
def test_refit_bootstrap_resampling_members_covers(coverage) -> None:
    key = "refit:dm"
    assert _low(R_REFIT) <= coverage[key] <= _high(R_REFIT), f"{key}: {coverage[key]}/{R_REFIT}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ips", "snips", "dr"])
def test_intervals_that_ignore_the_clusters_under_cover(coverage, name: str) -> None:
    assert coverage[f"iid:{name}"] < _low(R), f"iid:{name}: {coverage[f'iid:{name}']}/{R}"
