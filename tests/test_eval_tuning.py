"""SLOPE's choice of lambda for Switch-DR and DR-os against a plain reference of the rule (Su et al.
2020, as OBP's ``_tune_hyperparam_with_slope`` applies it), and the extreme-weight case."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from keyart.errors import ValidationError
from keyart.evaluation import BanditLog, EstimatorConfig, estimate
from keyart.evaluation.config import LAMBDA_GRID
from keyart.evaluation.tuning import slope_select


def _reference_slope(values: list[float], widths: list[float]) -> int:
    """SLOPE as a plain loop: visit candidates from the widest interval to the narrowest; accept one while
    its distance to every accepted value is at most its width + (sqrt(6) - 1) x that one's width; the
    last accepted candidate is the choice."""
    c = math.sqrt(6) - 1
    order = sorted(range(len(values)), key=lambda k: -widths[k])  # stable: ties keep the given order
    accepted: list[int] = []
    for i in order:
        for j in accepted:
            if abs(values[j] - values[i]) > widths[i] + c * widths[j]:
                return accepted[-1]
        accepted.append(i)
    return accepted[-1]


def test_slope_select_on_hand_made_inputs() -> None:
    # widths 3 > 1 > 0.1: the second is accepted (|0.1 - 0| <= 1 + 1.449 * 3); the third is 5 away from
    # the first, more than 0.1 + 1.449 * 3 = 4.45: SLOPE stops at the second.
    assert slope_select([0.0, 0.1, 5.0], [3.0, 1.0, 0.1]) == 1
    assert slope_select([0.0, 0.1, 1.5], [3.0, 1.0, 0.1]) == 2  # 1.5 <= 4.45 and 1.4 <= 0.1 + 1.449
    assert slope_select([1.0], [0.5]) == 0
    assert slope_select([0.0, 9.0], [0.1, 1.0]) == 1  # the widest first: the second is visited first


def test_slope_select_equals_the_plain_rule_on_random_inputs() -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):
        m = int(rng.integers(1, 9))
        widths = rng.choice([0.1, 0.5, 1.0, 2.0, 4.0], size=m).tolist()  # ties included
        values = rng.normal(0, 2, size=m).tolist()
        assert slope_select(values, widths) == _reference_slope(values, widths)


def _problem(seed: int, n: int = 400, k: int = 4):
    rng = np.random.default_rng(seed)
    action = rng.integers(0, k, n)
    pscore = rng.choice([0.02, 0.1, 0.5], size=n)
    reward = rng.binomial(1, 0.3, n).astype(float)
    dist = rng.dirichlet(np.ones(k), size=n)
    q_hat = rng.uniform(0, 0.6, (n, k))
    return reward, action, pscore, dist, q_hat


def _reference_choice(name, reward, action, pscore, dist, q_hat, grid, delta=0.05):
    """Per-event values of ``name`` at each lambda (plain loops), OBP's Student-t widths, the plain rule."""
    n = len(reward)
    t = stats.t.ppf(1 - delta, n - 1)
    values, widths = [], []
    for lam in grid:
        x = []
        for i in range(n):
            w = dist[i, action[i]] / pscore[i]
            q_pi = sum(dist[i, a] * q_hat[i, a] for a in range(dist.shape[1]))
            if name == "switch_dr":
                wl = w if w <= lam else 0.0
            else:
                wl = w if math.isinf(lam) else lam * w / (w * w + lam)
            x.append(q_pi + wl * (reward[i] - q_hat[i, action[i]]))
        values.append(statistics.fmean(x))
        widths.append(t * statistics.stdev(x) / math.sqrt(n))
    best = _reference_slope(values, widths)
    return grid[best], values[best]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["switch_dr", "dr_os"])
def test_estimate_uses_the_lambda_slope_chooses(name: str, seed: int) -> None:
    reward, action, pscore, dist, q_hat = _problem(seed)
    log = BanditLog.from_arrays(reward, action, pscore, n_actions=dist.shape[1])
    grid = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, math.inf)
    cfg = EstimatorConfig(ci="normal", lambda_grid=grid)
    (e,) = estimate(log, dist, [name], estimated_rewards=q_hat, config=cfg)
    lam, value = _reference_choice(name, reward, action, pscore, dist, q_hat, grid)
    assert e.lambda_ == lam and e.lambda_by == "slope"
    assert e.value == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert e.label == f"{name} (λ={lam:g}, SLOPE)"
    fixed = estimate(
        log,
        dist,
        [name],
        estimated_rewards=q_hat,
        config=EstimatorConfig(
            ci="normal", **{"switch_lambda" if name == "switch_dr" else "dr_os_lambda": 5.0}
        ),
    )[0]
    assert fixed.lambda_ == 5.0 and fixed.lambda_by == "fixed" and "fixed" in fixed.label
    assert e.as_row()["lambda"] == lam and e.as_row()["lambda_by"] == "slope"


def _extreme_log(seed: int = 0):
    """10,000 uniform-random events over 80 items (OBD-like click rate 0.5%); one row logged with
    propensity 1e-6, clicked, where the candidate's probability 0.021739 makes its weight 21,739."""
    rng = np.random.default_rng(seed)
    n, k = 10_000, 80
    action = rng.integers(0, k, n)
    pscore = np.full(n, 1 / k)
    p_click = rng.uniform(0.001, 0.009, k)
    reward = rng.binomial(1, p_click[action]).astype(float)
    cand = rng.dirichlet(np.ones(k))
    cand = 0.5 * cand + 0.5 / k
    cand[action[0]] = 0.0
    cand = (1 - 0.021739) * cand / cand.sum()
    cand[action[0]] += 0.021739
    pscore[0], reward[0] = 1e-6, 1.0
    truth = float(cand @ p_click)
    return BanditLog.from_arrays(reward, action, pscore, n_actions=k), np.broadcast_to(cand, (n, k)), truth


def test_slope_keeps_switch_dr_sane_on_one_extreme_weight() -> None:
    log, dist, truth = _extreme_log()
    q_hat = np.full((log.n, log.n_actions), float(log.reward[1:].mean()))
    cfg = EstimatorConfig(ci="normal")
    w_max = float(dist[0, log.action[0]] / log.pscore[0])
    assert w_max == pytest.approx(21_739)
    dr = estimate(log, dist, ["dr"], estimated_rewards=q_hat, config=cfg)[0]
    assert dr.value > 1.0  # the one weight carries DR (and Switch-DR at lambda >= 21,739) far off
    inf = EstimatorConfig(ci="normal", switch_lambda=math.inf, dr_os_lambda=math.inf)
    for name in ("switch_dr", "dr_os"):
        (e,) = estimate(log, dist, [name], estimated_rewards=q_hat, config=cfg)
        assert e.lambda_by == "slope" and e.lambda_ is not None and e.lambda_ < w_max
        assert abs(e.value - truth) < 0.01, (name, e.lambda_, e.value, truth)
        assert estimate(log, dist, [name], estimated_rewards=q_hat, config=inf)[0].value > 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"switch_lambda": "mse"},
        {"dr_os_lambda": -1.0},
        {"lambda_grid": ()},
        {"lambda_grid": (1.0, -2.0)},
        {"lambda_grid": (1.0, math.nan)},
        {"slope_delta": 0.0},
    ],
)
def test_bad_lambda_settings_are_validation_errors(kwargs) -> None:
    with pytest.raises(ValidationError):
        EstimatorConfig(**kwargs)


def test_default_grid_is_documented() -> None:
    assert LAMBDA_GRID[0] == 1.0 and LAMBDA_GRID[-1] == math.inf and list(LAMBDA_GRID) == sorted(LAMBDA_GRID)


def _csv_log(tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(3)
    n = 400
    a = rng.integers(0, 3, n)
    pacsv.write_csv(
        pa.table({"action": a, "propensity": np.full(n, 1 / 3), "reward": rng.binomial(1, 0.2 + 0.2 * a)}),
        tmp_path / "log.csv",
    )
    return tmp_path / "log.csv"


def test_evaluate_command_reports_the_lambda_tuned_or_fixed(tmp_path) -> None:
    import pyarrow.csv as pacsv

    from keyart.evaluate_cli import evaluate

    log = _csv_log(tmp_path)
    kw = {"estimator": ["switch_dr", "dr_os"], "ci": "normal", "quiet": True}
    tuned = evaluate(log, out=tmp_path / "t", **kw)
    for e in tuned.comparison.estimates:
        assert e.lambda_by == "slope" and f"| {e.label} |" in tuned.markdown and "SLOPE" in e.label
    fixed = evaluate(log, out=tmp_path / "f", lambda_=5.0, **kw)
    assert "| uniform | switch_dr (λ=5, fixed) |" in fixed.markdown
    assert "| uniform | dr_os (λ=5, fixed) |" in fixed.markdown
    table = pacsv.read_csv(fixed.table_path)
    assert table.column("lambda").to_pylist() == [5.0, 5.0]
    assert table.column("lambda_by").to_pylist() == ["fixed", "fixed"]


def test_cli_lambda_option(tmp_path) -> None:
    from typer.testing import CliRunner

    from keyart.cli import app

    log = _csv_log(tmp_path)
    args = ["evaluate", str(log), "--estimator", "switch_dr", "--ci", "normal", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, [*args, "--lambda", "20"])
    assert res.exit_code == 0, res.output
    assert "switch_dr (λ=20, fixed)" in res.output
    bad = CliRunner().invoke(app, [*args, "--lambda", "-1"])
    assert bad.exit_code != 0
