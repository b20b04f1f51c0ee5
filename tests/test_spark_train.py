"""Training on Spark (keyart.spark.train) equals keyart train on the same logs for every registered
policy that learns: the model's statistics to 1e-9, its learned priors to what their fit determines
(test_spark_support.assert_same_state); the driver receives a few sums per partition, never the event
rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyart.catalog import Catalog
from keyart.errors import ValidationError
from keyart.layout import FeatureConfig
from keyart.policies import POLICIES, load_policy, make_policy
from keyart.spark import train as st
from keyart.spark.io import read_events
from keyart.spark.join import join_range
from keyart.train import train
from logs_helpers import T0, write_logs
from test_spark_support import assert_same_state, spark

__all__ = ["spark"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """400 members x 3 titles, 1,200 decisions (logs_helpers), with their Parquet export."""
    return write_logs(tmp_path_factory.mktemp("spark-train"))


def _assert_same_model(got, expected) -> None:
    a, b = got.snapshot(), expected.snapshot()
    assert a["policy"] == b["policy"] and a["params"] == b["params"] and a["version"] == b["version"]
    assert_same_state(a["state"], b["state"])


#: the declared layout (no cross beyond the layout's own): the paths' equality does not depend on the width,
#: and d = 174 instead of 1,712 keeps the Newton and prior fits quick; the default rows are trained in
#: test_spark_train_from_the_export_records_what_it_learned
DECLARED = FeatureConfig(crosses=())

LEARNING = [
    pytest.param(name, marks=pytest.mark.slow) if name.startswith("logistic") else name
    for name in sorted(POLICIES)
    if name != "uniform"
]


@pytest.fixture(scope="module")
def rows(spark, logs):
    """The joined, learnable rows of the export on Spark (persisted for the policies' trainings)."""
    catalog = Catalog.load(logs / "catalog.json")
    decisions, outcomes = read_events(spark, logs / "export")
    latest = T0 + 86_400.0  # logs_helpers' last outcome closes every window
    joined = join_range(decisions, outcomes, None, latest - 3600.0, runtimes=catalog).table
    df = st.learnable(joined, catalog, latest - 3600.0).persist()
    yield df
    df.unpersist()


@pytest.mark.parametrize("name", LEARNING)
def test_spark_training_equals_keyart_train(spark, logs, rows, name):
    catalog = Catalog.load(logs / "catalog.json")
    expected, info = train([logs / "export"], catalog, make_policy(name, seed=3), features=DECLARED)
    got = make_policy(name, seed=3)
    assert st.train_rows(rows, catalog, got, DECLARED) == info.rows == 1200
    _assert_same_model(got, expected)


def test_spark_train_from_the_export_records_what_it_learned(spark, logs):
    catalog = Catalog.load(logs / "catalog.json")
    expected, info = train([logs / "export"], catalog, make_policy("linucb", seed=3))
    got, spark_info = st.train(spark, logs / "export", catalog, make_policy("linucb", seed=3))
    assert spark_info.rows == info.rows and spark_info.learned_until == info.learned_until
    assert spark_info.window_seconds == info.window_seconds
    _assert_same_model(got, expected)


@pytest.mark.slow
def test_fixed_priors_and_a_time_range_equal_keyart_train(spark, logs):
    catalog = Catalog.load(logs / "catalog.json")
    lo, hi = T0 + 500.0, T0 + 3_000.0
    for name in ("logistic_ts", "linucb"):
        policy = make_policy(name, seed=1, priors="fixed")
        expected, info = train([logs / "export"], catalog, policy, start=lo, end=hi, features=DECLARED)
        got, spark_info = st.train(
            spark, logs / "export", catalog, make_policy(name, seed=1, priors="fixed"), start=lo, end=hi,
            features=DECLARED,
        )  # fmt: skip
        assert spark_info.rows == info.rows and 0 < info.rows < 1200
        _assert_same_model(got, expected)


def test_the_driver_receives_sums_per_partition_not_rows(spark, logs, rows, tmp_path):
    catalog = Catalog.load(logs / "catalog.json")
    rows = rows.repartition(3)
    broadcast = st.broadcast_catalog(spark, catalog, FeatureConfig())
    sums = st.linear_sums(rows, broadcast)
    n_rows, n_sums = rows.count(), sums.count()
    assert n_rows == 1200 and n_sums <= 3  # one partial sum per partition reaches the driver
    total = st.tree_sum(sums)
    assert total.n == n_rows
    policy = make_policy("linucb", seed=0)
    st.train_rows(rows, catalog, policy)
    policy.save(tmp_path / "m.npz")
    assert load_policy(tmp_path / "m.npz").snapshot()["state"]["n"] == 1200


def test_the_logistic_fits_rows_are_numbered_in_time_order_in_few_partitions(spark, logs, rows, monkeypatch):
    """The fit's passes run over ``fit_partitions`` range partitions (not the sort's 200 shuffle
    partitions, whose fixed cost per task made a spark-submit of 1,200 rows run for over 15 minutes),
    numbered 0.. in (timestamp, event_id) order across them; the fit over max(3, cores) of them (4 in
    the tests' session) equals keyart train (a Spark job per Newton step and line-search point, each a
    task per partition)."""
    catalog = Catalog.load(logs / "catalog.json")
    cores = spark.sparkContext.defaultParallelism
    assert st.fit_partitions(1_200, cores) == cores and st.fit_partitions(10_000_000, cores) == 1_000
    monkeypatch.setattr(st, "ROWS_PER_PARTITION", 400)
    broadcast = st.broadcast_catalog(spark, catalog, DECLARED)
    numbered = st._numbered(rows, broadcast, 1_200)
    try:
        assert numbered.rdd.getNumPartitions() == max(3, cores)
        got = [r["artwork_id"] for r in numbered.orderBy("idx").select("artwork_id").collect()]
        ordered = rows.orderBy("timestamp", "event_id").select("artwork_id").collect()
        assert got == [r["artwork_id"] for r in ordered]
        assert sorted(r["idx"] for r in numbered.select("idx").collect()) == list(range(1_200))
    finally:
        numbered.unpersist()
        broadcast.unpersist()
    expected, _ = train([logs / "export"], catalog, make_policy("logistic_ucb", seed=3), features=DECLARED)
    fitted = make_policy("logistic_ucb", seed=3)
    assert st.train_rows(rows, catalog, fitted, DECLARED) == 1_200
    _assert_same_model(fitted, expected)


def test_policies_that_do_not_train_from_sums_are_refused(spark, logs):
    catalog = Catalog.load(logs / "catalog.json")
    with pytest.raises(ValidationError, match="half_life"):
        st.train(spark, logs / "export", catalog, make_policy("linucb", seed=0, half_life=100.0))
    with pytest.raises(ValidationError, match="No decision to learn from"):
        st.train(spark, logs / "export", catalog, make_policy("linucb", seed=0), end=1_000_000_000.0)
