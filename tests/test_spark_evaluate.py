"""Evaluation on Spark from partition sums (keyart.spark.evaluate): IPS and SNIPS estimates, their
member-clustered standard errors and intervals equal keyart.evaluation's to 1e-9 on the same events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keyart.catalog import Catalog
from keyart.errors import ValidationError
from keyart.evaluation import (
    EstimatorConfig,
    LinearRewardModel,
    TabularRewardModel,
    estimate,
    feedback_to_log,
)
from keyart.evaluation.compare import candidate_distribution
from keyart.evaluation.config import ESTIMATORS
from keyart.features import Featurizer
from keyart.policies import make_policy, model_features
from keyart.rewards import join_store
from keyart.spark import evaluate as se
from keyart.spark.io import read_events
from keyart.spark.join import join_range
from keyart.store import EventStore
from keyart.train import train
from logs_helpers import write_logs
from test_spark_support import spark

__all__ = ["spark"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """Logs of a skewed logger (the 'face' artwork shown 60% of the time: weights differ from 1)."""
    return write_logs(tmp_path_factory.mktemp("spark-eval"), face_probability=0.6)


@pytest.fixture(scope="module")
def candidate(logs):
    catalog = Catalog.load(logs / "catalog.json")
    policy, _ = train([logs / "export"], catalog, make_policy("linucb", seed=5, floor=0.1))
    return policy


@pytest.mark.parametrize("clip", [None, 2.0], ids=["unclipped", "clipped"])
def test_spark_estimates_equal_keyart_evaluation(spark, logs, candidate, clip):
    catalog = Catalog.load(logs / "catalog.json")
    with EventStore(logs / "events.duckdb", read_only=True) as store:
        joined = join_store(store)
    fb = joined.to_feedback(Featurizer(catalog, model_features(candidate)))
    config = EstimatorConfig(ci="normal", ips_clip=clip, alpha=0.1)
    expected = estimate(
        feedback_to_log(fb), candidate_distribution(candidate, fb), ["ips", "snips"], config=config
    )
    decisions, outcomes = read_events(spark, logs / "export")
    rows = join_range(decisions, outcomes).table
    got = se.estimate(rows, catalog, candidate, ["ips", "snips"], alpha=0.1, ips_clip=clip)
    assert [g.estimator for g in got] == ["ips", "snips"]
    for g, e in zip(got, expected, strict=True):
        assert (g.n, g.n_clusters) == (e.n, e.n_clusters) == (1200, 400)
        for field in ("value", "lower", "upper", "se", "ess", "max_weight", "mean_weight"):
            np.testing.assert_allclose(getattr(g, field), getattr(e, field), rtol=0, atol=1e-9, err_msg=field)
    assert got[0].max_weight > 1.0 and got[0].se > 0


def test_bad_arguments_are_refused(spark, logs, candidate):
    catalog = Catalog.load(logs / "catalog.json")
    decisions, outcomes = read_events(spark, logs / "export")
    rows = join_range(decisions, outcomes).table
    with pytest.raises(ValidationError, match="estimators must name"):
        se.estimate(rows, catalog, candidate, ["drr"])
    with pytest.raises(ValidationError, match="logistic reward model is for logs with one action set"):
        se.estimate(rows, catalog, candidate, ["dr"], reward_model="logistic")
    with pytest.raises(ValidationError, match="n_folds"):
        se.estimate(rows, catalog, candidate, ["dr"], n_folds=1)
    with pytest.raises(ValidationError, match="dr_clip"):
        se.estimate(rows, catalog, candidate, ["dr"], dr_clip=-1.0)
    with pytest.raises(ValidationError, match="alpha"):
        se.estimate(rows, catalog, candidate, alpha=1.5)


@pytest.mark.parametrize("floor", [0.1, 0.0], ids=["drawn", "deterministic"])
def test_spark_replay_equals_keyart_evaluation(spark, logs, candidate, floor):
    """Replay's matches (drawn from one seeded stream in (timestamp, event_id) order for a stochastic
    candidate, its action for a one-hot one), estimate, clustered s.e. and Wilson interval."""
    catalog = Catalog.load(logs / "catalog.json")
    if floor == 0.0:  # (the module's candidate is linucb with seed 5 and floor 0.1)
        candidate, _ = train([logs / "export"], catalog, make_policy("linucb", seed=5, floor=floor))
    with EventStore(logs / "events.duckdb", read_only=True) as store:
        joined = join_store(store)
    fb = joined.to_feedback(Featurizer(catalog, model_features(candidate)))
    dist = candidate_distribution(candidate, fb)
    config = EstimatorConfig(ci="normal", alpha=0.1, replay_seed=3)
    (expected,) = estimate(feedback_to_log(fb), dist, ["replay"], config=config)
    decisions, outcomes = read_events(spark, logs / "export")
    rows = join_range(decisions, outcomes).table.repartition(3)  # several partitions to number across
    (got,) = se.estimate(rows, catalog, candidate, ["replay"], alpha=0.1, replay_seed=3)
    assert (got.n, got.n_clusters, got.n_matches) == (expected.n, expected.n_clusters, expected.n_matches)
    assert got.ci_method == expected.ci_method == "wilson"
    for field in ("value", "lower", "upper", "se", "ess", "max_weight", "mean_weight"):
        np.testing.assert_allclose(
            getattr(got, field), getattr(expected, field), rtol=0, atol=1e-9, err_msg=field
        )
    one_hot = bool(np.all((dist == 0) | (dist == 1)))
    assert one_hot == (floor == 0.0) and 0 < got.n_matches < got.n


MODEL_ESTIMATORS = ["dm", "dr", "sndr", "switch_dr", "dr_os"]
FIELDS = ("value", "lower", "upper", "se", "ess", "max_weight", "mean_weight")


def _single_machine(logs, candidate, names, config, **kw):
    """keyart.evaluation.estimate on the store's events (the logged pools), as the reference."""
    catalog = Catalog.load(logs / "catalog.json")
    with EventStore(logs / "events.duckdb", read_only=True) as store:
        joined = join_store(store)
    fb = joined.to_feedback(Featurizer(catalog, model_features(candidate)))
    return estimate(feedback_to_log(fb), candidate_distribution(candidate, fb), names, config=config, **kw)


def _assert_equal(got, expected):
    assert [g.estimator for g in got] == [e.estimator for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert (g.n, g.n_clusters, g.n_matches) == (e.n, e.n_clusters, e.n_matches), e.estimator
        assert (g.lambda_, g.lambda_by, g.ci_method) == (e.lambda_, e.lambda_by, e.ci_method), e.estimator
        assert g.flags == tuple(f for f in e.flags if f in ("model_only", "model_bias", "few_reward_events"))
        for field in FIELDS:
            np.testing.assert_allclose(
                getattr(g, field), getattr(e, field), rtol=0, atol=1e-9, err_msg=f"{e.estimator} {field}"
            )


@pytest.mark.parametrize(
    ("model", "n_folds", "seed", "names", "fixed"),
    [
        (LinearRewardModel(), 2, 0, ["ips", *MODEL_ESTIMATORS], False),
        (TabularRewardModel(), 3, 7, list(ESTIMATORS), True),
        (LinearRewardModel(alpha=3.0, max_arms=4), 2, 1, ["dm", "dr"], False),  # more arms: no one-hot
    ],
    ids=["linear-slope", "tabular-fixed-all", "linear-no-arms"],
)
def test_spark_dm_and_the_dr_family_equal_keyart_evaluation(
    spark, logs, candidate, model, n_folds, seed, names, fixed
):
    """DM and every DR-family estimator with the reward model cross-fitted from per-fold sums over folds
    hashed from the member ids: values, clustered s.e. and normal intervals equal keyart.evaluation's on
    the same events; Switch-DR's and DR-os's lambda chosen by SLOPE on the members' sums (linear), or
    fixed with clipped IPS and DR, beside replay (tabular, three folds, every estimator)."""
    kw = dict(switch_lambda=2.0, dr_os_lambda=5.0, ips_clip=2.0, dr_clip=1.5, replay_seed=3) if fixed else {}
    config = EstimatorConfig(ci="normal", alpha=0.1, **kw)
    expected = _single_machine(logs, candidate, names, config, reward_model=model, n_folds=n_folds, seed=seed)
    decisions, outcomes = read_events(spark, logs / "export")
    rows = join_range(decisions, outcomes).table.repartition(3)
    catalog = Catalog.load(logs / "catalog.json")
    got = se.estimate(
        rows, catalog, candidate, names, alpha=0.1, reward_model=model, n_folds=n_folds, seed=seed, **kw
    )
    _assert_equal(got, expected)
    by = {g.estimator: g for g in got}
    assert all(g.se > 0 for g in got)
    assert by["dm"].value != by["dr"].value and by["dm"].flags[0] == "model_only"
    assert "switch_dr" not in by or by["switch_dr"].lambda_by == ("fixed" if fixed else "slope")
