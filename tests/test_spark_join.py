"""The reward join on Spark (keyart.spark.join) gives exactly keyart.rewards' rows and report on the same
events: ties, late, early and unmatched outcomes, several decisions per member and title, every rule."""

from __future__ import annotations

import pytest

from keyart.errors import ValidationError
from keyart.rewards import QualityRule, join_rewards, join_store
from keyart.spark import join as sj
from keyart.spark.io import read_events
from keyart.store import EventStore
from test_spark_support import T0, H, edge_events, frame, rows_of, spark, write_export

__all__ = ["spark"]

RUNTIMES = {"t1": 1200.0, "t2": 5400.0}  # t3's runtime unknown


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    decisions, outcomes = edge_events()
    store, export = write_export(tmp_path_factory.mktemp("spark-join"), decisions, outcomes)
    with EventStore(store, read_only=True) as s:  # the store's order: (timestamp, event_id)
        return s.decisions(), s.outcomes(), store, export


def _expected(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["event_id"])


def test_the_edge_cases_are_there(events):
    d, o, _, _ = events
    report = join_rewards(d, o, runtimes=RUNTIMES).report
    assert min(report.late_outcomes, report.early_outcomes, report.unmatched_outcomes) > 0
    keys = list(zip(d.column("member_id").to_pylist(), d.column("title_id").to_pylist(), strict=True))
    times = list(zip(keys, d.column("timestamp").to_pylist(), strict=True))
    assert len(set(times)) < len(times)  # decisions at one time for one pair
    assert len(set(keys)) < len(keys)  # several decisions per pair


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"rule": QualityRule(min_seconds=None, min_fraction_of_runtime=0.5), "runtimes": RUNTIMES},
        {
            "rule": QualityRule(min_seconds=600, min_fraction_of_runtime=0.4, require="any"),
            "runtimes": RUNTIMES,
        },
        {"require_impression": True, "window_seconds": 2 * H, "runtimes": RUNTIMES},
        {"as_of": T0 + 2 * 24 * H, "until": T0 + 24 * H},
    ],
    ids=["default", "fraction", "any", "impression", "until"],
)
def test_spark_join_gives_the_single_machine_rows_and_report(spark, events, kwargs, tmp_path):
    d, o, _, _ = events
    expected = join_rewards(d, o, **kwargs)
    got = sj.join_rewards(frame(spark, d, tmp_path), frame(spark, o, tmp_path), **kwargs)
    assert got.report == expected.report
    assert rows_of(got.table) == _expected(expected.table)
    assert expected.table.num_rows > 20


@pytest.mark.parametrize(
    "start, end, uri",
    [(None, None, True), (None, T0 + 36 * H, False), (T0 + 12 * H, T0 + 48 * H, False)],
    ids=["all-by-uri", "end", "range"],
)
def test_spark_join_range_on_the_export_equals_join_store(spark, events, start, end, uri):
    _, _, store, export = events
    with EventStore(store, read_only=True) as s:
        expected = join_store(s, start, end, runtimes=RUNTIMES)
    decisions, outcomes = read_events(spark, export.as_uri() if uri else export)
    got = sj.join_range(decisions, outcomes, start, end, runtimes=RUNTIMES)
    assert got.report == expected.report
    assert rows_of(got.table) == _expected(expected.table)


def test_an_outcome_goes_to_the_latest_decision_before_it(spark, events, tmp_path):
    d, o, _, _ = events
    classified = sj.classify(frame(spark, d, tmp_path), frame(spark, o, tmp_path), H)
    c = {r["oid"]: r.asDict() for r in classified.collect()}
    assert c["o-last"]["status"] == "late"
    ts = dict(zip(d.column("event_id").to_pylist(), d.column("timestamp").to_pylist(), strict=True))
    keyed = [r for r in c.values() if r["decision_id"] is None and r["did"] is not None]
    assert keyed
    for r in keyed:  # no decision of the pair lies strictly between the chosen one and the outcome
        pair = [
            t for e, t in ts.items() if e.startswith(f"d-{r['member_id']}-{r['title_id']}-") and t <= r["ots"]
        ]
        assert ts[r["did"]] == max(pair)


def test_bad_inputs_are_refused(spark, events, tmp_path):
    d, o, _, _ = events
    outcomes = frame(spark, o, tmp_path)
    with pytest.raises(ValidationError, match="decisions table is empty"):
        sj.join_rewards(frame(spark, d.slice(0, 0), tmp_path), outcomes)
    with pytest.raises(ValidationError, match="window_seconds"):
        sj.join_rewards(frame(spark, d, tmp_path), outcomes, window_seconds=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="No keyart Parquet export"):
        read_events(spark, tmp_path / "empty")


def _jobs(spark, group: str) -> int:
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_the_report_runs_its_aggregations_only_when_read(spark, events, tmp_path):
    d, o, _, _ = events
    sc = spark.sparkContext
    decisions, outcomes = frame(spark, d, tmp_path), frame(spark, o, tmp_path)
    sc.setJobGroup("lazy-report", "the join's report")
    try:
        got = sj.join_rewards(decisions, outcomes)
        before = _jobs(spark, "lazy-report")  # the checks: an empty decisions table, the latest outcome
        rows_of(got.table)
        with_rows = _jobs(spark, "lazy-report")
        assert with_rows > before
        report = got.report
        read = _jobs(spark, "lazy-report")
        assert read >= with_rows + 2  # the outcomes by status, the decisions' counts
        assert got.report is report and _jobs(spark, "lazy-report") == read  # computed once
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert report == join_rewards(d, o).report
