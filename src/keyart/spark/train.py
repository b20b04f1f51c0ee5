"""Training on Spark from per-partition sums: the snapshot ``keyart train`` writes, from a Parquet export.

The catalog is broadcast; each executor featurizes its Arrow batches with keyart's own ``Featurizer``
(``RewardTable.to_feedback``) and reduces them to model-sized sums with keyart's own functions: the
linear models' ``LinearStats``, the count baselines' successes and trials per artwork, the logistic
model's Newton sums (``keyart.logistic.logistic_partition_sums``) at each step of the fit. The sums are
tree-aggregated (``RDD.treeAggregate``): the driver holds the model and a few sums per partition, never an
event row, whatever the number of events.

The result equals ``keyart.train.train`` on the same events (same rows: the join, the learnable filter of
``keyart.service.training.learnable``, the closed windows), for every registered policy that learns: the
sums are the same (to rounding: they are added in another order), so are the learned priors (fitted from
the constructor's values on the data alone, ``keyart.train._final_priors``) and, for the logistic model,
the sequence of Newton fits between the refit points (``refit_points``: its Laplace posterior depends on
where the priors were refitted, so the rows are numbered in the store's (timestamp, event_id) order).
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from keyart.catalog import Catalog
from keyart.errors import ValidationError
from keyart.features import Featurizer
from keyart.feedback import LoggedFeedback
from keyart.layout import FeatureConfig
from keyart.learning import ArtworkIndex, BlockGaussian, LinearStats
from keyart.logistic import _loglik, logistic_partition_sums, newton_from_prior
from keyart.policies import Policy
from keyart.policies.counts import UniformPolicy, _PerArtworkCounts
from keyart.policies.linear import RidgePolicy
from keyart.policies.logistic import LogisticModel
from keyart.policies.shared import refit_points
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS, JoinReport, QualityRule, RewardTable
from keyart.spark.io import arrow_table, read_events
from keyart.spark.join import join_range
from keyart.train import TrainingInfo, _final_priors, training_features

#: The columns of a joined row that featurizing it reads (``RewardTable.to_feedback``).
FEEDBACK_COLUMNS = (
    "event_id",
    "request_id",
    "timestamp",
    "title_id",
    "context_json",
    "pool",
    "chosen_index",
    "artwork_id",
    "propensity",
    "reward",
)
_FEEDBACK_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("request_id", pa.string()),
        ("timestamp", pa.float64()),
        ("title_id", pa.string()),
        ("context_json", pa.string()),
        ("pool", pa.list_(pa.string())),
        ("chosen_index", pa.int32()),
        ("artwork_id", pa.string()),
        ("propensity", pa.float64()),
        ("reward", pa.float64()),
    ]
)
_NO_REPORT = JoinReport(*([0] * 14))
_SUMS = "sums binary"
#: featurizers built on an executor's Python worker, by the broadcast's token (one per training job)
_FEATURIZERS: dict[str, Featurizer] = {}


def learnable(table: DataFrame, catalog: Catalog, end: float) -> DataFrame:
    """``keyart.service.training.learnable`` as a filter: rows before ``end``, drawn from a policy (no
    fallback), whose pool names only artworks the catalog knows."""
    known = F.array(*[F.lit(a) for a in catalog.artworks]).cast("array<string>")
    return table.where(
        (F.col("timestamp") < F.lit(float(end)))
        & ~F.coalesce(F.col("fallback"), F.lit(False))
        & (F.size(F.array_except(F.col("pool"), known)) == 0)
    )


def _featurizer(broadcast: Any) -> Featurizer:
    """The executor's featurizer of a broadcast (token, catalog, feature config), built once per worker."""
    token, catalog, config = broadcast.value
    f = _FEATURIZERS.get(token)
    if f is None:
        f = _FEATURIZERS[token] = Featurizer(catalog, config)
    return f


def broadcast_catalog(spark: Any, catalog: Catalog, config: FeatureConfig) -> Any:
    """The catalog and feature configuration broadcast to the executors, under a fresh token."""
    return spark.sparkContext.broadcast((uuid.uuid4().hex, catalog, config))


def feedback(batch: pa.RecordBatch, featurizer: Featurizer) -> LoggedFeedback:
    """An Arrow batch of joined rows (``FEEDBACK_COLUMNS``) as ``LoggedFeedback``, featurized by keyart."""
    return RewardTable(arrow_table(batch, _FEEDBACK_SCHEMA), _NO_REPORT).to_feedback(featurizer)


def _blob(value: Any) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([pickle.dumps(value)], pa.binary())], names=["sums"])


def _add(a: Any, b: Any) -> Any:
    """Merge two partial sums (None: nothing yet); tuples add element-wise, ``LinearStats`` merge."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, LinearStats):
        return a.merge(b)
    return tuple(x + y for x, y in zip(a, b, strict=True))


def tree_sum(sums: DataFrame, depth: int = 2) -> Any:
    """The sum of a DataFrame of pickled partial sums (one per partition), by ``treeAggregate``: the
    driver receives the merged sums only."""
    return sums.rdd.map(lambda row: pickle.loads(row[0])).treeAggregate(None, _add, _add, depth=depth)


def linear_sums(rows: DataFrame, broadcast: Any) -> DataFrame:
    """One pickled ``LinearStats`` per partition of joined rows, featurized on the executor."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer, acc = _featurizer(broadcast), None
        for batch in batches:
            if batch.num_rows:
                fb = feedback(batch, featurizer)
                acc = _add(acc, LinearStats.from_events(fb.shown_X, fb.shown_ids, fb.reward))
        if acc is not None:
            yield _blob(acc)

    return rows.select(*FEEDBACK_COLUMNS).mapInArrow(run, _SUMS)


def _first_seen(rows: DataFrame, order: str | Sequence[str]) -> DataFrame:
    """Per artwork id: where it first appears in ``order`` (for the single-machine order of the index)."""
    cols = [order] if isinstance(order, str) else list(order)
    return rows.groupBy("artwork_id").agg(F.min(F.struct(*cols)).alias("first"))


def count_state(rows: DataFrame) -> dict[str, Any]:
    """The count baselines' state (successes and trials per artwork, artworks in order of appearance)."""
    agg = (
        rows.groupBy("artwork_id")
        .agg(
            F.sum("reward").alias("s"),
            F.count(F.lit(1)).alias("t"),
            F.min(F.struct("timestamp", "event_id")).alias("first"),
        )
        .collect()
    )
    agg.sort(key=lambda r: (r["first"][0], r["first"][1]))
    return {
        "artwork_ids": [r["artwork_id"] for r in agg],
        "successes": np.array([float(r["s"]) for r in agg]),
        "trials": np.array([float(r["t"]) for r in agg]),
    }


def _learn_linear(
    policy: RidgePolicy, stats: LinearStats, names: Sequence[str], config: FeatureConfig
) -> None:
    """The model ``update_partitions`` builds from the events whose statistics are ``stats`` (then the
    learned priors are fitted from the constructor's values, on the data alone, as ``keyart train`` does;
    the refits at earlier points change only the prior, which that last fit replaces)."""
    policy._add_stats(stats, 1.0, names)
    policy.events_ = round(stats.n)
    policy.features_ = config
    policy.version_ = 1
    _final_priors(policy)


# ---- the logistic model: Newton sums per partition, rows numbered in the store's order ----------------


#: Rows per partition of the featurized rows that the logistic fit passes over (a Spark job per Newton
#: step and line-search point): every task of a job costs a fixed overhead, so few rows go into few
#: partitions (never fewer than the cores), and a partition of 10,000 rows of 1,712 features is 137 MB
ROWS_PER_PARTITION = 10_000


def fit_partitions(n: int, cores: int) -> int:
    """How many partitions ``n`` rows are featurized into for the logistic fit's passes."""
    return max(1, cores, -(-n // ROWS_PER_PARTITION))


def _numbered(rows: DataFrame, broadcast: Any, n: int) -> DataFrame:
    """The ``n`` rows featurized and numbered 0.. in (timestamp, event_id) order: ``idx``,
    ``artwork_id``, ``reward``, ``x`` (the shown features), persisted for the fit's passes, in
    ``fit_partitions`` range partitions (a sort's shuffle would give ``spark.sql.shuffle.partitions``,
    200 unless set, whatever the size)."""
    d = _featurizer_dim(broadcast)
    parts = fit_partitions(n, rows.sparkSession.sparkContext.defaultParallelism)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer, pid, pos = _featurizer(broadcast), TaskContext.get().partitionId(), 0
        for batch in batches:
            if not batch.num_rows:
                continue
            fb = feedback(batch, featurizer)
            n = fb.n
            x = pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32) * d), pa.array(fb.shown_X.ravel())
            )
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.full(n, pid, dtype=np.int32)),
                    pa.array(np.arange(pos, pos + n, dtype=np.int64)),
                    pa.array(fb.shown_ids.astype(str)),
                    pa.array(fb.reward),
                    x,
                ],
                names=["pid", "pos", "artwork_id", "reward", "x"],
            )
            pos += n

    schema = "pid int, pos long, artwork_id string, reward double, x array<double>"
    ordered = (
        rows.select(*FEEDBACK_COLUMNS)
        .repartitionByRange(parts, "timestamp", "event_id")
        .sortWithinPartitions("timestamp", "event_id")
    )
    featurized = ordered.mapInArrow(run, schema).persist(StorageLevel.MEMORY_AND_DISK)
    sizes = dict(featurized.groupBy("pid").count().collect())  # one row per partition
    offsets, total = {}, 0
    for pid in sorted(sizes):
        offsets[pid], total = total, total + int(sizes[pid])
    start = F.create_map(*[F.lit(v) for kv in offsets.items() for v in kv]) if offsets else F.lit(None)
    return featurized.withColumn("idx", start[F.col("pid")] + F.col("pos")).drop("pid", "pos")


def _featurizer_dim(broadcast: Any) -> int:
    return int(broadcast.value[2].dim)


def _arrays(batch: pa.RecordBatch, index: ArtworkIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, artwork rows, rewards) of a batch of numbered rows."""
    n = batch.num_rows
    x = batch.column("x").flatten().to_numpy(zero_copy_only=False)
    rows = index.rows(np.asarray(batch.column("artwork_id").to_pylist(), dtype=object))
    return x.reshape(n, -1), rows, batch.column("reward").to_numpy(zero_copy_only=False)


def _per_partition(
    rows: DataFrame, ids: list[str], reduce: Callable[[np.ndarray, np.ndarray, np.ndarray], Any]
) -> Any:
    """The tree-aggregated sum over partitions of ``reduce(X, artwork rows, rewards)`` per batch."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        index, acc = ArtworkIndex(ids), None
        for batch in batches:
            if batch.num_rows:
                acc = _add(acc, reduce(*_arrays(batch, index)))
        if acc is not None:
            yield _blob(acc)

    return tree_sum(rows.select("artwork_id", "reward", "x").mapInArrow(run, _SUMS))


def fit_logistic(
    rows: DataFrame,
    prior: BlockGaussian,
    prior_ids: Sequence[str],
    bias_ridge: float,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> tuple[BlockGaussian, tuple[str, ...]]:
    """``keyart.logistic.fit_logistic`` on numbered rows: the same damped Newton iterations
    (``keyart.logistic.newton_from_prior``), each step's gradient, Hessian and log-likelihood summed per
    partition."""
    index = ArtworkIndex(prior_ids)
    first = _first_seen(rows, "idx").collect()
    index.extend(r["artwork_id"] for r in sorted(first, key=lambda r: r["first"][0]))
    m, ids = len(index), list(index.ids)

    def loglik(theta: np.ndarray, beta: np.ndarray) -> float:
        per = _per_partition(rows, ids, lambda X, r, y: (_loglik(X @ theta + beta[r], y, np.ones(y.size)),))
        return float(per[0])

    def data_sums(theta: np.ndarray, beta: np.ndarray) -> list[np.ndarray]:
        sums = _per_partition(rows, ids, lambda X, r, y: logistic_partition_sums(X, r, m, y, theta, beta)[:5])
        return list(sums)

    return newton_from_prior(prior, index, bias_ridge, loglik, data_sums, max_iter, tol)


def _learn_logistic(
    policy: LogisticModel, numbered: DataFrame, n: int, names: Sequence[str], config: FeatureConfig
) -> None:
    """``SharedModelPolicy.update_partitions`` of a fresh logistic model on the numbered rows: a Newton
    fit per stretch between refit points (learned priors) or one fit (fixed priors), the priors refitted
    where the single-machine update refits them."""
    lo = 0
    while lo < n:
        hi = min(n, refit_points(policy.events_)) if policy.priors == "empirical" else n
        segment = numbered.where((F.col("idx") >= lo) & (F.col("idx") < hi))
        prior = policy._decayed(policy._base(config.dim, names), 1.0)
        post, ids = fit_logistic(segment, prior, list(policy.index_.ids), policy.bias_ridge_)
        index = policy.index_.copy()
        index.extend(ids)
        policy._commit(post, index, 1.0)
        policy.n_ += hi - lo
        policy.events_ += hi - lo
        if policy.priors == "empirical" and (hi < n or policy.events_ == refit_points(policy.events_ - 1)):
            policy.refit_priors()
        lo = hi
    # impressions for new-artwork exploration: one per event (no forgetting here), a row per artwork
    counts = {r["artwork_id"]: r["count"] for r in numbered.groupBy("artwork_id").count().collect()}
    policy.shown_ = np.array([float(counts.get(a, 0)) for a in policy.index_.ids])
    policy.features_ = config
    policy.version_ = 1


def check_trainable(policy: Policy) -> None:
    """``ValidationError`` unless ``policy`` is fresh and learns from partition sums (no forgetting: with
    ``half_life`` an event's weight depends on the events after it)."""
    if policy.version_ != 0:
        raise ValidationError("keyart.spark trains a fresh policy (version 0); this one has learned already.")
    if policy.half_life is not None:
        raise ValidationError(
            f"A {policy.name} with half_life weighs events by their order: train it with keyart train."
        )
    if not isinstance(policy, UniformPolicy | _PerArtworkCounts | RidgePolicy | LogisticModel):
        raise ValidationError(f"{policy.name} has no training from partition sums on Spark.")


def train_rows(
    rows: DataFrame, catalog: Catalog, policy: Policy, features: FeatureConfig | None = None
) -> int:
    """Train the fresh ``policy`` on joined, learnable rows (a DataFrame); returns how many it learned.
    ``ValidationError`` for a policy that cannot be trained from partition sums.

    Each pass over ``rows`` recomputes the join: the linear and count models take their number of rows
    from their sums (one pass); the logistic model, which numbers the rows, persists them first."""
    check_trainable(policy)
    config = training_features(policy, catalog, features)
    if isinstance(policy, UniformPolicy):
        n = rows.count()
        if n:
            policy.version_ = 1
        return n
    if isinstance(policy, _PerArtworkCounts):
        state = count_state(rows)
        n = round(float(state["trials"].sum()))
        if n:
            policy._set_state(state)
            policy.version_ = 1
        return n
    if not isinstance(policy, RidgePolicy | LogisticModel):
        raise ValidationError(f"{policy.name} has no training from partition sums on Spark.")
    names = Featurizer(catalog, config).feature_names
    broadcast = broadcast_catalog(rows.sparkSession, catalog, config)
    try:
        if isinstance(policy, RidgePolicy):
            stats = tree_sum(linear_sums(rows, broadcast))
            n = 0 if stats is None else round(stats.n)
            if n:
                _learn_linear(policy, stats, names, config)
            return n
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        try:  # the numbered rows are persisted and counted (materialized) before the joined ones go
            n = rows.count()
            numbered = _numbered(rows, broadcast, n) if n else None
        finally:
            rows.unpersist()
        if numbered is not None:
            try:
                _learn_logistic(policy, numbered, n, names, config)
            finally:
                numbered.unpersist()
        return n
    finally:
        broadcast.unpersist()


def train(
    spark: Any,
    source: str | Path,
    catalog: Catalog,
    policy: Policy,
    *,
    window_seconds: float = ATTRIBUTION_WINDOW_SECONDS,
    quality_seconds: float = QUALITY_SECONDS,
    start: float | None = None,
    end: float | None = None,
    features: FeatureConfig | None = None,
) -> tuple[Policy, TrainingInfo]:
    """``keyart.train.train`` on Spark over the Parquet export at ``source``: the learnable decisions in
    [start, end) whose window has closed, joined and learned from partition sums."""
    check_trainable(policy)
    decisions, outcomes = read_events(spark, source)
    latest = outcomes.agg(F.max("timestamp")).first()[0]
    rows, stop = None, None
    if latest is not None:
        stop = float(latest) - window_seconds
        stop = stop if end is None else min(float(end), stop)
        if start is None or stop > start:
            in_range = decisions.where(F.col("timestamp") < stop)
            if start is not None:
                in_range = in_range.where(F.col("timestamp") >= float(start))
            if not in_range.isEmpty():
                joined = join_range(
                    decisions,
                    outcomes,
                    start,
                    stop,
                    as_of=float(latest),
                    window_seconds=window_seconds,
                    rule=QualityRule(min_seconds=quality_seconds),
                    runtimes=catalog,
                )
                rows = learnable(joined.table, catalog, stop)
    n = 0 if rows is None else train_rows(rows, catalog, policy, features)
    if not n:
        raise ValidationError(
            "No decision to learn from: none has a closed attribution window and a joined reward "
            f"(window {window_seconds:g} s) in the range asked."
        )
    info = TrainingInfo(
        policy.name, n, stop, start, float(window_seconds), float(quality_seconds), (str(source),)
    )
    return policy, info


__all__ = [
    "FEEDBACK_COLUMNS",
    "broadcast_catalog",
    "check_trainable",
    "count_state",
    "feedback",
    "fit_logistic",
    "learnable",
    "linear_sums",
    "train",
    "train_rows",
    "tree_sum",
]
