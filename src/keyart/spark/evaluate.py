"""Off-policy evaluation on Spark from partition sums: IPS and SNIPS with member-clustered intervals.

Each executor featurizes its Arrow batches (``keyart.spark.train.feedback``) and asks the broadcast
candidate policy for its probabilities over the logged pools, giving each event its importance weight
w = pi(a | x) / p. The estimators have keyart's form theta = mean(B) / mean(C) (``keyart.evaluation``:
IPS B = w r (w clipped at ``ips_clip``), C = 1; SNIPS B = w r, C = w); their cluster-robust standard
error sums the influence values within each member, so the events are summed per member (a shuffle by
member), and two aggregations give the totals, then sum_g S_g^2 with S_g = (B_g - theta C_g) / mean(C):
the same estimates, standard errors and normal intervals as ``keyart.evaluation.estimate`` with
``ci="normal"`` on the same events. The model-based estimators (DM and the DR family: their cross-fitted
reward model), replay and the bootstrap intervals are not computed here.
"""

from __future__ import annotations

import math
import pickle
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import stats

from keyart.catalog import Catalog
from keyart.errors import ValidationError
from keyart.evaluation.compare import candidate_distribution
from keyart.policies import Policy, model_features
from keyart.policies.registry import restore_policy
from keyart.spark.train import FEEDBACK_COLUMNS, _featurizer, broadcast_catalog, feedback

#: The estimators computed from partition sums.
SPARK_ESTIMATORS = ("ips", "snips")
_CANDIDATES: dict[str, Policy] = {}  # restored on an executor's worker, by broadcast token


@dataclass(frozen=True)
class PartitionEstimate:
    """One estimator's value with its member-clustered standard error and normal interval, and the
    importance weights' summary (as in ``keyart.evaluation.Estimate``)."""

    estimator: str
    value: float
    lower: float
    upper: float
    se: float
    n: int
    n_clusters: int
    ess: float
    max_weight: float
    mean_weight: float


def _candidate(broadcast: Any) -> Policy:
    token, snapshot = broadcast.value
    policy = _CANDIDATES.get(token)
    if policy is None:
        policy = _CANDIDATES[token] = restore_policy(pickle.loads(snapshot))
    return policy


def weights(rows: DataFrame, catalog: Catalog, candidate: Policy) -> DataFrame:
    """Per joined row: ``member_id``, the candidate's importance weight ``w`` and the ``reward`` (computed
    on the executors, featurized as the candidate was trained: ``model_features``)."""
    spark = rows.sparkSession
    features = broadcast_catalog(spark, catalog, model_features(candidate))
    policy = spark.sparkContext.broadcast((uuid.uuid4().hex, pickle.dumps(candidate.snapshot())))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer, cand = _featurizer(features), _candidate(policy)
        for batch in batches:
            if not batch.num_rows:
                continue
            fb = feedback(batch, featurizer)  # its member_id column is not read
            dist = candidate_distribution(cand, fb)
            w = dist[np.arange(fb.n), fb.chosen] / fb.propensity
            yield pa.RecordBatch.from_arrays(
                [batch.column("member_id"), pa.array(w), pa.array(fb.reward)],
                names=["member_id", "w", "reward"],
            )

    return rows.select("member_id", *FEEDBACK_COLUMNS).mapInArrow(
        run, "member_id string, w double, reward double"
    )


def estimate(
    rows: DataFrame,
    catalog: Catalog,
    candidate: Policy,
    estimators: Sequence[str] = SPARK_ESTIMATORS,
    *,
    alpha: float = 0.05,
    ips_clip: float | None = None,
) -> list[PartitionEstimate]:
    """The candidate's value on joined rows by each estimator, from per-member and total sums."""
    names = list(estimators)
    unknown = [n for n in names if n not in SPARK_ESTIMATORS]
    if not names or unknown:
        raise ValidationError(
            f"estimators must name some of {', '.join(SPARK_ESTIMATORS)} on Spark. Got {names}."
        )
    if not 0 < alpha < 1:
        raise ValidationError(f"alpha must be in (0, 1). Got {alpha!r}.")
    w = weights(rows, catalog, candidate).persist()
    try:
        return _estimates(w, names, alpha, ips_clip)
    finally:
        w.unpersist()


def _estimates(
    w: DataFrame, names: list[str], alpha: float, ips_clip: float | None
) -> list[PartitionEstimate]:
    wc = F.col("w") if ips_clip is None else F.least(F.col("w"), F.lit(float(ips_clip)))
    totals = w.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("w").alias("sw"),
        F.sum(F.col("w") * F.col("w")).alias("sw2"),
        F.max("w").alias("max_w"),
    ).first()
    n = int(totals["n"])
    if n == 0:
        raise ValidationError("No joined row to evaluate on.")
    terms = {  # estimator -> (B, C) per event
        "ips": (wc * F.col("reward"), F.lit(1.0)),
        "snips": (F.col("w") * F.col("reward"), F.col("w")),
    }
    per_member = (
        w.groupBy("member_id")
        .agg(*[F.sum(terms[e][i]).alias(f"{e}_{bc}") for e in names for i, bc in enumerate("bc")])
        .persist()
    )
    try:
        sums = per_member.agg(
            F.count(F.lit(1)).alias("g"),
            *[F.sum(f"{e}_{bc}").alias(f"{e}_{bc}") for e in names for bc in "bc"],
        ).first()
        g = int(sums["g"])
        z = float(stats.norm.ppf(1 - alpha / 2))
        sw, sw2 = float(totals["sw"]), float(totals["sw2"])
        out = []
        for e in names:
            mb, mc = float(sums[f"{e}_b"]) / n, float(sums[f"{e}_c"]) / n
            theta = mb / mc if mc > 0 else math.nan
            s2 = per_member.agg(
                F.sum(F.pow((F.col(f"{e}_b") - F.lit(theta) * F.col(f"{e}_c")) / F.lit(mc), 2))
            ).first()[0]
            se = math.sqrt(float(s2) * g / (g - 1)) / n if g >= 2 and mc > 0 else math.nan
            out.append(
                PartitionEstimate(
                    e,
                    theta,
                    theta - z * se,
                    theta + z * se,
                    se,
                    n,
                    g,
                    sw * sw / sw2 if sw2 > 0 else 0.0,
                    float(totals["max_w"]),
                    sw / n,
                )
            )
        return out
    finally:
        per_member.unpersist()


__all__ = ["SPARK_ESTIMATORS", "PartitionEstimate", "estimate", "weights"]
