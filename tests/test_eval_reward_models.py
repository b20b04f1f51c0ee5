"""The contextual reward model (per-position logistic regression on context and item features) against a
plain reference fit, the held-out log loss that chooses between it and the shrunk mean, the OBD item
features, and the choice reported in the output."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize

from keyart.errors import DimensionError, ValidationError
from keyart.evaluation import BanditLog, EstimatorConfig, TabularRewardModel, cross_fit
from keyart.evaluation.reward_models import (
    LogisticRewardModel,
    choose_reward_model,
    held_out_log_loss,
)
from keyart.tabular import load_item_context, obd_experiment

OBD = Path(__file__).resolve().parent / "data" / "obd"


def _contextual(seed: int, n: int = 600, k: int = 4, el: int = 2, effect: float = 2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    items = rng.normal(size=(k, 2))
    action = rng.integers(0, k, n)
    position = rng.integers(0, el, n)
    z = -1.0 + effect * x[:, 0] + items[action, 0] - 0.5 * position
    reward = rng.binomial(1, 1 / (1 + np.exp(-z))).astype(float)
    log = BanditLog.from_arrays(
        reward, action, np.full(n, 1 / k), position, n_actions=k, n_positions=el, context=x
    )
    return log, items


def _reference_predictions(log: BanditLog, items: np.ndarray | None, alpha: float) -> np.ndarray:
    """Per position, minimize the penalized log likelihood written plainly with scipy's BFGS; predict."""
    block = np.eye(log.n_actions) if items is None else items
    out = np.empty((log.n, log.n_actions, log.n_positions))
    for pos in range(log.n_positions):
        rows = np.flatnonzero(log.position == pos)

        def loss(b, rows=rows):
            total = 0.0
            for i in rows:
                z = b[0] + log.context[i] @ b[1:4] + block[log.action[i]] @ b[4:]
                total += math.log1p(math.exp(z)) - log.reward[i] * z
            return total + 0.5 * alpha * float(b[1:] @ b[1:]) + 0.5 * 1e-6 * b[0] ** 2

        b = optimize.minimize(loss, np.zeros(4 + block.shape[1]), method="BFGS", options={"gtol": 1e-7}).x
        for i in range(log.n):
            for a in range(log.n_actions):
                z = b[0] + log.context[i] @ b[1:4] + block[a] @ b[4:]
                out[i, a, pos] = 1 / (1 + math.exp(-z))
    return out


@pytest.mark.parametrize("with_items", [True, False])
def test_logistic_model_equals_a_plain_penalized_likelihood_fit(with_items: bool) -> None:
    log, items = _contextual(0, n=240)
    model = LogisticRewardModel(items if with_items else None, alpha=2.0)
    got = model.fit(log).predict(log)
    ref = _reference_predictions(log, items if with_items else None, 2.0)
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_logistic_model_bad_inputs() -> None:
    log, items = _contextual(1, n=50)
    with pytest.raises(DimensionError):
        LogisticRewardModel(items[:3]).fit(log)
    counts = BanditLog.from_arrays(np.arange(50.0), log.action, log.pscore, n_actions=4)
    with pytest.raises(ValidationError, match="0/1 rewards"):
        LogisticRewardModel().fit(counts)
    with pytest.raises(ValidationError):
        LogisticRewardModel(alpha=0.0)


def test_held_out_log_loss_is_a_plain_mean() -> None:
    log, items = _contextual(2, n=100)
    q = cross_fit(LogisticRewardModel(items), log, n_folds=2, seed=0)
    ref = 0.0
    for i in range(log.n):
        p = min(max(q[i, log.action[i], log.position[i]], 1e-6), 1 - 1e-6)
        ref -= log.reward[i] * math.log(p) + (1 - log.reward[i]) * math.log(1 - p)
    assert held_out_log_loss(log, q) == pytest.approx(ref / log.n, rel=1e-12)


@pytest.mark.parametrize(("effect", "expected"), [(2.5, "logistic"), (0.0, "tabular")])
def test_choice_is_the_lower_held_out_log_loss(effect: float, expected: str) -> None:
    log, items = _contextual(3, n=3000, effect=effect)
    models = {"tabular": TabularRewardModel(), "logistic": LogisticRewardModel(items, alpha=1.0)}
    choice = choose_reward_model(log, models, n_folds=2, seed=5)
    ref = {k: held_out_log_loss(log, cross_fit(m, log, n_folds=2, seed=5)) for k, m in models.items()}
    assert dict(choice.log_loss) == pytest.approx(ref, rel=1e-12)
    assert choice.name == min(ref, key=ref.get)
    if effect > 0:
        assert choice.name == expected  # the context carries the reward: the logistic model wins
    assert choice.name in choice.describe() and "held-out log loss" in choice.describe()


def test_item_context_is_one_hot_encoded_in_action_order(tmp_path: Path) -> None:
    (tmp_path / "ic.csv").write_text(
        ",item_id,item_feature_0,item_feature_1\n0,5,0.5,b\n1,3,-1.0,a\n2,9,2.0,b\n"
    )
    f = load_item_context(tmp_path / "ic.csv", [3, 5, 9])
    np.testing.assert_array_equal(f, [[-1.0, 1, 0], [0.5, 0, 1], [2.0, 0, 1]])  # levels a, b: none dropped
    with pytest.raises(ValidationError, match="no features for item"):
        load_item_context(tmp_path / "ic.csv", [3, 4])
    obd = load_item_context(OBD / "random" / "all" / "item_context.csv", list(range(80)))
    assert obd.shape[0] == 80 and set(np.unique(obd[:, 1:])) <= {0.0, 1.0}


def test_obd_auto_reward_model_is_chosen_and_reported() -> None:
    res = obd_experiment(
        OBD, reward_model="auto", estimators=["dm", "dr"], config=EstimatorConfig(ci="normal")
    )
    choice = res.model_choice
    assert choice is not None and set(choice.log_loss) == {"tabular", "logistic"}
    assert res.reward_model == choice.name == min(choice.log_loss, key=choice.log_loss.get)
    from keyart.tabular import obd_report

    assert choice.describe() in obd_report(res, "cmd")
    fixed = obd_experiment(
        OBD, reward_model="tabular", estimators=["dm"], config=EstimatorConfig(ci="normal")
    )
    assert fixed.model_choice is None and "Reward model of DM and the DR family: tabular." in obd_report(
        fixed, "cmd"
    )
    with pytest.raises(ValidationError, match="reward_model must be one of"):
        obd_experiment(OBD, reward_model="forest")


def test_evaluate_command_names_the_reward_model(tmp_path: Path) -> None:
    from keyart.evaluate_cli import evaluate

    res = evaluate(OBD, fmt="obd", estimator=["dr"], ci="normal", out=tmp_path / "o", quiet=True)
    assert "Reward model of DM and the DR family:" in res.markdown and "held-out log loss" in res.markdown


def test_tabular_log_with_the_logistic_model(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from keyart.evaluate_cli import evaluate

    log, _ = _contextual(6, n=400, el=1)
    table = pa.table(
        {
            "action": log.action,
            "propensity": log.pscore,
            "reward": log.reward,
            "x0": log.context[:, 0],
        }
    )
    pacsv.write_csv(table, tmp_path / "log.csv")
    res = evaluate(
        tmp_path / "log.csv",
        estimator=["dm", "dr"],
        reward_model="logistic",
        ci="normal",
        out=tmp_path / "o",
        quiet=True,
    )
    assert "Reward model of DM and the DR family: LogisticRewardModel (cross-fitted)." in res.markdown
