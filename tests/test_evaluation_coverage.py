"""Statistical checks on simulated logs with a known truth: 95% intervals cover it about 95% of the time.

R seeded repetitions; the number of covering intervals is Binomial(R, c). We reject "c >= 0.95" only when
the count falls below the 0.1% quantile of Binomial(R, 0.95) (so a correct estimator fails this test
with probability < 0.001 per estimator), and reject absurdly wide intervals symmetrically at the top.
Bias: the mean estimate over repetitions must be within the mean standard error of the truth, and for
the unbiased estimators within 3.5 standard errors of the repetitions' mean.
The ``model_bias`` flag (DM, Switch-DR, DR-os against DR, a level-alpha test) must stay within the 0.1%
quantile of Binomial(R, 0.05) false alarms when the reward model is well specified, and fire when it is not.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from keyart.evaluation import BanditLog, EstimatorConfig, LinearRewardModel, TabularRewardModel, estimate

R = 200
N = 1000
K = 4
D = 3
LOW = int(stats.binom.ppf(0.001, R, 0.95))
HIGH = int(stats.binom.ppf(0.999, R, 0.95))
_rng0 = np.random.default_rng(12345)
BETA = _rng0.uniform(-1, 1, (D, K)) / D  # q(x, a) = 0.5 + 0.35 * x @ beta[:, a] stays in (0.15, 0.85)
LOGGING = _rng0.normal(0, 0.6, (D, K))
TARGET = 4.0 * BETA


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _q(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.35 * (x @ BETA)


def _truth() -> float:
    x = np.random.default_rng(999).uniform(-1, 1, (1_000_000, D))
    return float((_softmax(x @ TARGET) * _q(x)).sum(axis=1).mean())


TRUTH = _truth()


def _simulate(seed: int, uniform: bool, n: int = N) -> tuple[BanditLog, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, D))
    logging = np.full((n, K), 1 / K) if uniform else _softmax(x @ LOGGING)
    u = rng.random(n)[:, None]
    action = np.minimum((np.cumsum(logging, axis=1) < u).sum(axis=1), K - 1)
    reward = rng.binomial(1, _q(x)[np.arange(n), action]).astype(float)
    actx = np.einsum("nd,ka->nkda", x, np.eye(K)).reshape(n, K, D * K)  # well-specified linear features
    log = BanditLog.from_arrays(
        reward, action, logging[np.arange(n), action], n_actions=K, action_context=actx, logging_dist=logging
    )
    return log, _softmax(x @ TARGET)


def _run(uniform: bool, names: list[str]) -> dict[str, np.ndarray]:
    # the refit bootstrap (DM, Switch-DR, DR-os) uses 100 resamples here (default 200) to keep the suite fast
    cfg = EstimatorConfig(switch_lambda=2.0, dr_os_lambda=10.0, n_refit=100)
    out = {n: np.empty((R, 4)) for n in names}
    for rep in range(R):
        log, dist = _simulate(1000 * int(uniform) + rep, uniform)
        for e in estimate(log, dist, names, reward_model=LinearRewardModel(alpha=1.0), config=cfg, seed=rep):
            out[e.estimator][rep] = (e.value, e.lower, e.upper, "model_bias" in e.flags)
    return out


def _check(name: str, res: np.ndarray, unbiased: bool) -> None:
    value, lower, upper = res[:, :3].T
    covered = int(((lower <= TRUTH) & (TRUTH <= upper)).sum())
    assert covered >= LOW, f"{name}: {covered}/{R} intervals cover the truth (needs >= {LOW})"
    assert covered <= HIGH, f"{name}: {covered}/{R} intervals cover the truth: too wide (needs <= {HIGH})"
    se = (upper - lower) / (2 * 1.959963984540054)
    bias = value.mean() - TRUTH
    assert abs(bias) < se.mean(), f"{name}: bias {bias:.4f} exceeds its standard error {se.mean():.4f}"
    if unbiased:
        spread = value.std(ddof=1) / np.sqrt(R)
        assert abs(bias) < 3.5 * spread, f"{name}: bias {bias:.4f} vs Monte Carlo s.e. {spread:.4f}"


ALL = ["ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os"]


@pytest.fixture(scope="module")
def softmax_logging() -> dict[str, np.ndarray]:
    return _run(False, ALL)


UNIFORM = ["replay", "ips", "snips", "dr", "sndr"]


@pytest.fixture(scope="module")
def uniform_logging() -> dict[str, np.ndarray]:
    return _run(True, UNIFORM)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_coverage_and_bias_softmax_logging(softmax_logging, name: str) -> None:
    _check(name, softmax_logging[name], unbiased=name in ("ips", "dr", "dm"))


@pytest.mark.slow
@pytest.mark.parametrize("name", UNIFORM)
def test_coverage_and_bias_uniform_logging(uniform_logging, name: str) -> None:
    _check(name, uniform_logging[name], unbiased=name in ("ips", "dr", "dm", "replay"))


#: False alarms allowed for a level-0.05 test in R repetitions (0.1% quantile of the upper tail).
BIAS_ALARMS = int(stats.binom.ppf(0.999, R, 0.05))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dm", "switch_dr", "dr_os"])
def test_model_bias_quiet_when_the_model_is_well_specified(softmax_logging, name: str) -> None:
    alarms = int(softmax_logging[name][:, 3].sum())
    assert alarms <= BIAS_ALARMS, f"{name}: model_bias in {alarms}/{R} well-specified logs"


@pytest.mark.slow
def test_model_bias_fires_when_the_model_is_misspecified() -> None:
    """A context-free reward model on this contextual world is biased for the candidate (DM's intervals
    miss the truth). The flag must fire well above its false-alarm rate; DR itself is never flagged."""
    reps, n = 100, 4000
    names = ["dm", "switch_dr", "dr_os", "dr"]
    cfg = EstimatorConfig(switch_lambda=2.0, dr_os_lambda=10.0, ci="normal")
    alarms = dict.fromkeys(names, 0)
    for rep in range(reps):
        log, dist = _simulate(5000 + rep, uniform=False, n=n)
        for e in estimate(log, dist, names, reward_model=TabularRewardModel(), config=cfg, seed=rep):
            alarms[e.estimator] += "model_bias" in e.flags
    chance = int(stats.binom.ppf(0.999, reps, 0.05))
    for name in ("dm", "switch_dr", "dr_os"):
        assert alarms[name] > max(chance, reps // 2), f"{name}: model_bias in {alarms[name]}/{reps}"
    assert alarms["dr"] == 0
