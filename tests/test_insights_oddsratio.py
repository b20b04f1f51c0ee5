"""``keyart.insights.oddsratio`` against scipy, its reference: the conditional MLE odds ratio and its exact
interval (``scipy.stats.contingency.odds_ratio(kind="conditional")``), and the lower tail of Fisher's
noncentral hypergeometric distribution (``scipy.stats.nchypergeom_fisher.cdf``), on seeded random tables of
every size the clickbait detector meets (up to 1,500 a cell), including empty cells, rows and columns."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.stats.contingency import odds_ratio

from keyart.insights.oddsratio import conditional_odds_ratio, lower_tail


def _same(got: tuple[float, ...], want: tuple[float, ...]) -> None:
    for g, w in zip(got, want, strict=True):
        if math.isnan(w) or math.isinf(w) or w == 0:
            assert g == w or (math.isnan(g) and math.isnan(w)), (got, want)
        else:
            assert g == pytest.approx(w, rel=1e-8), (got, want)


def _tables(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        t = rng.integers(0, rng.choice([3, 12, 60, 400, 1_500]), (2, 2))
        if i % 4 == 0:  # an empty cell
            t[rng.integers(2), rng.integers(2)] = 0
        if i % 9 == 0:  # an empty row or column
            t[(0, slice(None)) if i % 2 else (slice(None), 1)] = 0
        out.append(t)
    return out


@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.5])
def test_conditional_odds_ratio_and_interval_equal_scipys(confidence: float) -> None:
    for table in _tables(int(confidence * 100), 40):
        res = odds_ratio(table, kind="conditional")
        ci = res.confidence_interval(confidence)
        _same(
            conditional_odds_ratio(table, confidence), (float(res.statistic), float(ci.low), float(ci.high))
        )


def test_the_ends_of_the_support_and_empty_margins() -> None:
    assert conditional_odds_ratio(np.array([[0, 5], [4, 3]]))[:2] == (0.0, 0.0)  # x at its lowest
    assert conditional_odds_ratio(np.array([[5, 0], [4, 3]]))[::2] == (math.inf, math.inf)  # at its highest
    mle, lo, hi = conditional_odds_ratio(np.array([[0, 0], [4, 3]]))
    assert math.isnan(mle) and (lo, hi) == (0.0, math.inf)


def test_lower_tail_equals_scipys_cdf_including_tiny_p_values() -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 40, 200)
    n = x + rng.integers(1, 80, 200)
    N = x + rng.integers(0, 150, 200)
    M = n + N + rng.integers(0, 300, 200)
    for odds in (0.5, 1.0, 3.0):
        want = stats.nchypergeom_fisher.cdf(x, M, n, N, odds)
        np.testing.assert_allclose(lower_tail(x, M, n, N, odds), want, rtol=1e-9, atol=0)
    tiny = lower_tail(np.array([0]), np.array([2_000]), np.array([400]), np.array([600]), 0.5)
    assert 0 < tiny[0] < 1e-30
    assert tiny[0] == pytest.approx(stats.nchypergeom_fisher.cdf(0, 2_000, 400, 600, 0.5), rel=1e-9)


def test_the_benchmark_runs_and_agrees_with_scipy() -> None:
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_oddsratio.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--pages", "800", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x scipy" in done.stdout
    worst = float(done.stdout.rsplit("scipy (MLE and interval ends): ", 1)[1])
    assert worst < 1e-8
