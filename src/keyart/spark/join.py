"""The reward join on Spark: ``keyart.rewards.join_rewards`` and ``join_store`` as DataFrame operations.

The same rules, row for row: an outcome goes to the decision it names (``decision_id``), else to the
latest decision of its (member, title) at or before it (a window over the pair's decisions and outcomes in
time order, decisions first at equal times; among decisions at one time the smallest event id, the one a
store read in (timestamp, event_id) order gives ``keyart.rewards``' ASOF join); it counts inside the
attribution window only; a decision earns 1 for a quality play. No Python function runs per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from keyart.errors import ValidationError
from keyart.events import DECISION_SCHEMA
from keyart.params import Interval, check_param
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, JoinReport, QualityRule, _runtimes

#: The columns a joined row adds to its decision's (those of ``keyart.rewards.RewardTable``).
REWARD_COLUMNS = ("reward", "engaged_seconds", "played", "n_outcomes")
STATUSES = ("joined", "late", "early", "unmatched")


@dataclass(frozen=True)
class SparkRewards:
    """The joined rows (a DataFrame: the decision's columns and ``REWARD_COLUMNS``) and the join's counts.

    The counts are two aggregations over the whole join, run when ``report`` is first read: a job that
    needs only the rows (training, evaluation) does not pay for them."""

    table: DataFrame
    count: Callable[[], JoinReport]

    @cached_property
    def report(self) -> JoinReport:
        """The join's ``JoinReport`` (computed once)."""
        return self.count()


def classify(decisions: DataFrame, outcomes: DataFrame, window_seconds: float) -> DataFrame:
    """Every outcome with the decision it is attributed to (``did``, ``dts``; null when none) and its
    ``status``: joined, late, early or unmatched (``keyart.rewards``' classification)."""
    o = outcomes.select(
        F.col("event_id").alias("oid"),
        "decision_id",
        "member_id",
        "title_id",
        "event_type",
        "engaged_seconds",
        F.col("timestamp").alias("ots"),
    )
    d = decisions.select(F.col("event_id").alias("did"), F.col("timestamp").alias("dts"))
    by_id = o.where(F.col("decision_id").isNotNull()).join(d, o["decision_id"] == d["did"], "left")
    keyed = o.where(F.col("decision_id").isNull())
    events = keyed.select(
        "member_id",
        "title_id",
        F.col("ots").alias("ts"),
        F.lit(1).alias("kind"),
        F.lit(None).cast("string").alias("order_id"),
        F.lit(None).cast("struct<did:string,dts:double>").alias("dec"),
        "oid",
    ).unionByName(
        decisions.select(
            "member_id",
            "title_id",
            F.col("timestamp").alias("ts"),
            F.lit(0).alias("kind"),
            F.col("event_id").alias("order_id"),
            F.struct(F.col("event_id").alias("did"), F.col("timestamp").alias("dts")).alias("dec"),
            F.lit(None).cast("string").alias("oid"),
        )
    )
    # decisions before outcomes at one time; of decisions at one time, the smallest id comes last
    w = (
        Window.partitionBy("member_id", "title_id")
        .orderBy(F.col("ts"), F.col("kind"), F.col("order_id").desc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    latest = (
        events.withColumn("latest", F.last("dec", ignorenulls=True).over(w))
        .where(F.col("kind") == 1)
        .select("oid", F.col("latest.did").alias("did"), F.col("latest.dts").alias("dts"))
    )
    by_key = keyed.join(latest, "oid")
    u = by_id.unionByName(by_key)
    status = (
        F.when(F.col("did").isNull(), "unmatched")
        .when(F.col("ots") < F.col("dts"), "early")
        .when(F.col("ots") - F.col("dts") > F.lit(float(window_seconds)), "late")
        .otherwise("joined")
    )
    return u.withColumn("status", status)


def _passes(rule: QualityRule, engaged: Column, runtime: Column) -> Column:
    """``QualityRule.passes`` as a column expression."""
    checks = []
    if rule.min_seconds is not None:
        checks.append(engaged >= F.lit(float(rule.min_seconds)))
    if rule.min_fraction_of_runtime is not None:
        checks.append(runtime.isNotNull() & (engaged >= F.lit(float(rule.min_fraction_of_runtime)) * runtime))
    out = checks[0]
    for c in checks[1:]:
        out = (out & c) if rule.require == "all" else (out | c)
    return out


def _runtime_table(decisions: DataFrame, runtimes: Mapping[str, float] | Any | None) -> DataFrame:
    """(title_id, runtime seconds) of the titles with a known runtime, as a small broadcast table."""
    run = _runtimes(runtimes)
    spark = decisions.sparkSession
    rows = [(k, float(v)) for k, v in run.items() if math.isfinite(float(v))]
    return F.broadcast(spark.createDataFrame(rows, "title_id string, runtime double"))


def _sum_if(cond: Column) -> Column:
    return F.coalesce(F.sum(F.when(cond, 1).otherwise(0)), F.lit(0))


def join_rewards(
    decisions: DataFrame,
    outcomes: DataFrame,
    *,
    window_seconds: float = ATTRIBUTION_WINDOW_SECONDS,
    rule: QualityRule | None = None,
    runtimes: Mapping[str, float] | Any | None = None,
    as_of: float | None = None,
    require_impression: bool = False,
    until: float | None = None,
) -> SparkRewards:
    """``keyart.rewards.join_rewards`` on DataFrames of the decision and outcome schemas: the same rows
    (in no particular order) and the same ``JoinReport``. The rows stay a lazy DataFrame; the report's
    counts (two aggregations) run when it is first read."""
    check_param("join_rewards", "window_seconds", window_seconds, Interval(0, None, closed="neither"))
    rule = rule or QualityRule()
    if decisions.isEmpty():
        raise ValidationError("The decisions table is empty: there is nothing to join outcomes to.")
    window = float(window_seconds)
    classified = classify(decisions, outcomes, window)
    if until is not None:  # outcomes of decisions at or after ``until`` are theirs, not this join's
        classified = classified.where(F.col("dts").isNull() | (F.col("dts") < F.lit(float(until))))
    agg = (
        classified.where(F.col("status") == "joined")
        .groupBy("did")
        .agg(
            F.count(F.lit(1)).alias("_n"),
            F.max((F.col("event_type") == "play").cast("int")).alias("_played"),
            F.max((F.col("event_type") == "impression").cast("int")).alias("_displayed"),
            F.max((F.col("event_type") == "complete").cast("int")).alias("_completed"),
            F.max(F.coalesce(F.col("engaged_seconds"), F.lit(0.0))).alias("_engaged"),
        )
    )
    if as_of is None:
        latest = outcomes.agg(F.max("timestamp")).first()[0]
        horizon = -math.inf if latest is None else float(latest)
    else:
        horizon = float(as_of)
    d = decisions.join(agg, decisions["event_id"] == agg["did"], "left").join(
        _runtime_table(decisions, runtimes), "title_id", "left"
    )
    n_out = F.coalesce(F.col("_n"), F.lit(0)).cast("long")
    played = F.coalesce(F.col("_played"), F.lit(0)) == 1
    displayed = F.coalesce(F.col("_displayed"), F.lit(0)) == 1
    completed = F.coalesce(F.col("_completed"), F.lit(0)) == 1
    raw = F.coalesce(F.col("_engaged"), F.lit(0.0))
    runtime = F.col("runtime")
    d = d.select(
        *DECISION_SCHEMA.names,
        n_out.alias("n_outcomes"),
        played.alias("played"),
        displayed.alias("_displayed"),
        F.when(completed & runtime.isNotNull(), F.greatest(raw, runtime))
        .otherwise(raw)
        .alias("engaged_seconds"),
        runtime.alias("_runtime"),
    )
    quality = F.col("played") & _passes(rule, F.col("engaged_seconds"), F.col("_runtime"))
    pending = F.col("timestamp") + F.lit(window) > F.lit(horizon)
    inside = F.lit(True) if until is None else F.col("timestamp") < F.lit(float(until))
    d = d.withColumn("_quality", quality).withColumn("_pending", pending).withColumn("_inside", inside)
    keep = (
        F.col("_inside") & ~F.col("_pending") & (F.col("_displayed") if require_impression else F.lit(True))
    )
    table = d.where(keep).select(
        *DECISION_SCHEMA.names,
        F.col("_quality").cast("double").alias("reward"),
        "engaged_seconds",
        "played",
        "n_outcomes",
    )
    return SparkRewards(table, lambda: _report(d, classified, rule, require_impression))


def _report(d: DataFrame, classified: DataFrame, rule: QualityRule, require_impression: bool) -> JoinReport:
    """The ``JoinReport`` of flagged decisions and classified outcomes (two aggregations)."""
    by_status = {s: 0 for s in STATUSES}
    for status, n in classified.groupBy("status").count().collect():
        by_status[status] = int(n)
    inside, pending, played, quality = (F.col(c) for c in ("_inside", "_pending", "played", "_quality"))
    has = F.col("n_outcomes") > 0
    row = d.agg(
        _sum_if(inside).alias("decisions"),
        _sum_if(inside & has).alias("with"),
        _sum_if(inside & ~has).alias("without"),
        _sum_if(inside & pending).alias("pending"),
        _sum_if(inside & ~F.col("_displayed") & ~pending).alias("not_displayed"),
        _sum_if(inside & played).alias("plays"),
        _sum_if(inside & quality).alias("quality"),
        _sum_if(inside & played & ~quality).alias("below"),
        _sum_if(inside & played & F.col("_runtime").isNull()).alias("unknown"),
    ).first()
    return JoinReport(
        decisions=int(row["decisions"]),
        outcomes=sum(by_status.values()),
        joined_outcomes=by_status["joined"],
        late_outcomes=by_status["late"],
        early_outcomes=by_status["early"],
        unmatched_outcomes=by_status["unmatched"],
        decisions_with_outcome=int(row["with"]),
        decisions_without_outcome=int(row["without"]),
        decisions_pending=int(row["pending"]),
        decisions_not_displayed=int(row["not_displayed"]) if require_impression else 0,
        plays=int(row["plays"]),
        quality_plays=int(row["quality"]),
        plays_below_quality=int(row["below"]),
        runtime_unknown=int(row["unknown"]) if rule.min_fraction_of_runtime is not None else 0,
    )


def join_range(
    decisions: DataFrame,
    outcomes: DataFrame,
    start: float | None = None,
    end: float | None = None,
    **kwargs: Any,
) -> SparkRewards:
    """``keyart.rewards.join_store`` on DataFrames: the decisions in [start, end) and their outcomes, the
    later decisions (up to ``end`` + the window, of pairs with an outcome since ``start``) taking theirs;
    the default ``as_of`` is the latest outcome of all."""
    if kwargs.get("as_of") is None:
        latest = outcomes.agg(F.max("timestamp")).first()[0]
        kwargs["as_of"] = -math.inf if latest is None else float(latest)
    ts = F.col("timestamp")
    if start is not None:
        decisions_from, outcomes_from = (
            decisions.where(ts >= float(start)),
            outcomes.where(ts >= float(start)),
        )
    else:
        decisions_from, outcomes_from = decisions, outcomes
    if end is None:
        return join_rewards(decisions_from, outcomes_from, **kwargs)
    window = float(kwargs.get("window_seconds", ATTRIBUTION_WINDOW_SECONDS))
    inside = decisions_from.where(ts < float(end))
    if inside.isEmpty():
        raise ValidationError("The decisions table is empty: there is nothing to join outcomes to.")
    pairs = outcomes_from.select("member_id", "title_id").distinct()
    later = decisions.where((ts >= float(end)) & (ts < float(end) + window)).join(
        pairs, ["member_id", "title_id"], "left_semi"
    )
    return join_rewards(
        inside.unionByName(later),
        outcomes_from.where(ts < float(end) + window),
        until=float(end),
        **kwargs,
    )


__all__ = ["REWARD_COLUMNS", "SparkRewards", "classify", "join_range", "join_rewards"]
