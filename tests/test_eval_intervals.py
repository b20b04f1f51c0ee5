"""Percentile and BCa bootstrap intervals against ``scipy.stats.bootstrap`` on the same resamples (same
seed, same draws) and a plain per-cluster reference; a skewed estimate whose normal interval goes below 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from keyart.evaluation import BanditLog, EstimatorConfig, estimate


def _log(seed: int, n: int = 300, k: int = 4, cluster=None):
    rng = np.random.default_rng(seed)
    action = rng.integers(0, k, n)
    pscore = rng.choice([0.05, 0.25, 0.7], size=n)
    reward = rng.binomial(1, 0.3, n).astype(float)
    dist = rng.dirichlet(np.ones(k), size=n)
    log = BanditLog.from_arrays(reward, action, pscore, n_actions=k, cluster=cluster)
    w = dist[np.arange(n), action] / pscore
    return log, dist, w, reward


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("seed", [0, 1])
def test_ips_and_snips_intervals_equal_scipy_bootstrap(method: str, seed: int) -> None:
    log, dist, w, r = _log(seed)
    cfg = EstimatorConfig(ci=method, n_bootstrap=999)
    ips, snips = estimate(log, dist, ["ips", "snips"], config=cfg, seed=seed)
    scipy_method = "BCa" if method == "bca" else "percentile"
    ref = stats.bootstrap(
        (w * r,), np.mean, n_resamples=999, method=scipy_method, rng=np.random.default_rng(seed)
    )
    assert (ips.lower, ips.upper) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-10
    )
    ref2 = stats.bootstrap(
        (w * r, w),
        lambda x, y, axis: x.mean(axis=axis) / y.mean(axis=axis),
        paired=True,
        n_resamples=999,
        method=scipy_method,
        rng=np.random.default_rng(seed),
    )
    assert (snips.lower, snips.upper) == pytest.approx(
        (ref2.confidence_interval.low, ref2.confidence_interval.high), rel=1e-10
    )
    assert ips.ci_method == f"bootstrap-{'BCa' if method == 'bca' else 'percentile'}(B=999)"


def _reference_cluster_bca(x_num, x_den, cl, seed, b, alpha):
    """Plain per-cluster BCa of sum(num) / sum(den): clusters resampled, jackknife leaving out a cluster."""
    groups = sorted(set(cl))
    num = {g: sum(v for v, c in zip(x_num, cl, strict=True) if c == g) for g in groups}
    den = {g: sum(v for v, c in zip(x_den, cl, strict=True) if c == g) for g in groups}
    g_n = len(groups)
    theta = sum(num.values()) / sum(den.values())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g_n, size=(b, g_n))
    reps = []
    for row in idx:
        reps.append(sum(num[groups[i]] for i in row) / sum(den[groups[i]] for i in row))
    reps = np.array(reps)
    jack = [(sum(num.values()) - num[g]) / (sum(den.values()) - den[g]) for g in groups]
    mean_j = sum(jack) / g_n
    u = [mean_j - j for j in jack]
    accel = sum(x**3 for x in u) / (6 * sum(x**2 for x in u) ** 1.5)
    share = (sum(1 for v in reps if v < theta) + sum(1 for v in reps if v <= theta)) / (2 * b)
    z0 = special.ndtri(share)
    out = []
    for z in (special.ndtri(alpha / 2), special.ndtri(1 - alpha / 2)):
        out.append(np.percentile(reps, 100 * special.ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))))
    return out


def test_clustered_bca_equals_a_plain_per_cluster_reference() -> None:
    n = 240
    cl = np.repeat(np.arange(40), 6)
    log, dist, w, r = _log(5, n=n, cluster=cl)
    (snips,) = estimate(log, dist, ["snips"], config=EstimatorConfig(ci="bca", n_bootstrap=500), seed=3)
    lo, hi = _reference_cluster_bca(w * r, w, cl.tolist(), 3, 500, 0.05)
    assert (snips.lower, snips.upper) == pytest.approx((lo, hi), rel=1e-10)


def test_skewed_estimate_normal_goes_below_zero_bootstrap_does_not() -> None:
    # 400 events; 2 clicks, both on events of weight 20 (propensity 0.05, candidate 1.0): IPS = 2 * 20 /
    # 400 = 0.1, skewed right, with a s.e. near its size
    n = 400
    action = np.zeros(n, dtype=int)
    action[:40] = 1
    pscore = np.where(action == 1, 0.05, 0.95)
    reward = np.zeros(n)
    reward[:2] = 1.0
    dist = np.zeros((n, 2))
    dist[:, 1] = 1.0
    log = BanditLog.from_arrays(reward, action, pscore, n_actions=2)
    out = {}
    for ci in ("normal", "percentile", "bca"):
        (e,) = estimate(log, dist, ["ips"], config=EstimatorConfig(ci=ci, n_bootstrap=2000), seed=0)
        out[ci] = e
    assert out["normal"].value == pytest.approx(0.1)
    assert out["normal"].lower < 0
    assert out["percentile"].lower >= 0 and out["bca"].lower >= 0
    assert out["bca"].upper > out["percentile"].lower
    assert math.isfinite(out["bca"].upper)


def test_refit_bootstrap_names_its_method(tmp_path) -> None:
    log, dist, _, _ = _log(2, n=200)
    for ci, kind in (("percentile", "percentile"), ("bca", "BCa")):
        cfg = EstimatorConfig(ci=ci, n_refit=20, n_bootstrap=200)
        dm, ips = estimate(log, dist, ["dm", "ips"], config=cfg)
        assert dm.ci_method == f"bootstrap-refit-{kind}(B=20)" and dm.lower <= dm.upper
        assert ips.ci_method == f"bootstrap-{kind}(B=200)"


def test_evaluate_command_names_the_interval_method(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from keyart.evaluate_cli import evaluate

    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 300)
    pacsv.write_csv(
        pa.table({"action": a, "propensity": np.full(300, 0.5), "reward": rng.binomial(1, 0.3, 300)}),
        tmp_path / "log.csv",
    )
    res = evaluate(tmp_path / "log.csv", out=tmp_path / "o", estimator=["ips", "snips"], ci="bca", quiet=True)
    assert "Intervals: bootstrap-BCa(B=1000) (ips, snips)." in res.markdown
    assert pacsv.read_csv(res.table_path).column("ci").to_pylist() == ["bootstrap-BCa(B=1000)"] * 2
