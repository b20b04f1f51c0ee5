"""Off-policy evaluation on Spark from partition sums: replay, IPS and SNIPS with member-clustered
intervals.

Each executor featurizes its Arrow batches (``keyart.spark.train.feedback``) and asks the broadcast
candidate policy for its probabilities over the logged pools, giving each event its importance weight
w = pi(a | x) / p. The estimators have keyart's form theta = mean(B) / mean(C) (``keyart.evaluation``:
IPS B = w r (w clipped at ``ips_clip``), C = 1; SNIPS B = w r, C = w); their cluster-robust standard
error sums the influence values within each member, so the events are summed per member (a shuffle by
member), and two aggregations give the totals, then sum_g S_g^2 with S_g = (B_g - theta C_g) / mean(C):
the same estimates, standard errors and normal intervals as ``keyart.evaluation.estimate`` with
``ci="normal"`` on the same events.

Replay (Li et al. 2011) has the same form (B = match r, C = match): the candidate's choice is its action
when every row of its distribution is one-hot, else a draw per event from ``default_rng(replay_seed)``
by inverse CDF, the i-th uniform for the i-th event in (timestamp, event_id) order, as
``keyart.evaluation.replay_match`` draws them: the rows are numbered on the executors (partition sizes
are the only thing collected) and each partition jumps its PCG64 stream to its first row
(``advance``). On 0/1 rewards its interval is Wilson's with the effective number of matches (matches over
the design effect), as ``keyart.evaluation`` gives it.

Not here: DM and the DR family. Their reward model is cross-fitted over folds of members drawn by one
``permutation`` of all members (``keyart.evaluation.clusters.fold_ids``): reproducing it needs every
member id on the driver, in order (memory in the number of members, not the model), and the linear
model's per-fold ridge sums then need that fold of each event on the executors. The bootstrap intervals
resample whole clusters with one generator over the clusters: the same obstacle.
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
from pyspark import StorageLevel, TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import stats

from keyart.catalog import Catalog
from keyart.errors import ValidationError
from keyart.evaluation.compare import candidate_distribution
from keyart.evaluation.intervals import _wilson
from keyart.policies import Policy, model_features
from keyart.policies.registry import restore_policy
from keyart.spark.train import FEEDBACK_COLUMNS, _featurizer, broadcast_catalog, feedback

#: The estimators computed from partition sums.
SPARK_ESTIMATORS = ("replay", "ips", "snips")
#: The estimators ``keyart spark evaluate`` computes when none is named.
DEFAULT_ESTIMATORS = ("ips", "snips")
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
    ci_method: str = "normal"
    n_matches: int | None = None  # replay: events where the candidate's choice is the logged one


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


def replay_rows(
    rows: DataFrame, catalog: Catalog, candidate: Policy, seed: int = 0
) -> tuple[DataFrame, DataFrame]:
    """Per joined row: ``member_id``, ``w``, ``reward`` and replay's ``match`` (1.0 when the candidate's
    choice is the logged artwork), the rows numbered in (timestamp, event_id) order (see the module
    docstring); and the persisted scored rows it reads (``unpersist`` them when done)."""
    spark = rows.sparkSession
    features = broadcast_catalog(spark, catalog, model_features(candidate))
    policy = spark.sparkContext.broadcast((uuid.uuid4().hex, pickle.dumps(candidate.snapshot())))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer, cand, pid, pos = (
            _featurizer(features),
            _candidate(policy),
            TaskContext.get().partitionId(),
            0,
        )
        for batch in batches:
            if not batch.num_rows:
                continue
            fb = feedback(batch, featurizer)
            dist = candidate_distribution(cand, fb)
            n = fb.n
            rows_ = np.arange(n)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.full(n, pid, dtype=np.int32)),
                    pa.array(np.arange(pos, pos + n, dtype=np.int64)),
                    batch.column("member_id"),
                    pa.array(dist[rows_, fb.chosen] / fb.propensity),
                    pa.array(fb.reward),
                    pa.array(fb.chosen.astype(np.int32)),
                    pa.ListArray.from_arrays(
                        pa.array(np.arange(n + 1, dtype=np.int32) * dist.shape[1]), pa.array(dist.ravel())
                    ),
                ],
                names=["pid", "pos", "member_id", "w", "reward", "chosen", "dist"],
            )
            pos += n

    schema = "pid int, pos long, member_id string, w double, reward double, chosen int, dist array<double>"
    ordered = rows.select("member_id", *FEEDBACK_COLUMNS).orderBy("timestamp", "event_id")
    scored = ordered.mapInArrow(run, schema)
    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    one_hot = F.forall("dist", lambda p: (p == 0) | (p == 1))
    sizes = dict(scored.groupBy("pid").count().collect())  # one row per partition
    deterministic = scored.where(~one_hot).limit(1).count() == 0
    offsets, total = {}, 0
    for pid in sorted(sizes):
        offsets[pid], total = total, total + int(sizes[pid])

    def draw(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if not batch.num_rows:
                continue
            chosen = batch.column("chosen").to_numpy()
            dist_col = batch.column("dist")
            offs = dist_col.offsets.to_numpy()
            k = np.diff(offs)
            flat = dist_col.values.to_numpy()[offs[0] : offs[-1]]
            start = offs[:-1] - offs[0]
            if deterministic:
                match = flat[start + chosen] == 1.0
            else:  # the batch's first row's place in the single stream of draws
                pid, pos = int(batch.column("pid")[0].as_py()), int(batch.column("pos")[0].as_py())
                rng = np.random.default_rng(seed)
                rng.bit_generator.advance(offsets[pid] + pos)
                u = rng.random(batch.num_rows)
                width = int(k.max())
                pad = np.zeros((batch.num_rows, width))
                cols = np.arange(width)
                mask = cols[None, :] < k[:, None]
                pad[mask] = flat
                cdf = np.cumsum(pad, axis=1)
                below = (cdf < u[:, None] * cdf[:, -1:]).sum(axis=1)
                match = np.minimum(below, k - 1) == chosen
            yield pa.RecordBatch.from_arrays(
                [
                    batch.column("member_id"),
                    batch.column("w"),
                    batch.column("reward"),
                    pa.array(match.astype(np.float64)),
                ],
                names=["member_id", "w", "reward", "match"],
            )

    out = scored.mapInArrow(draw, "member_id string, w double, reward double, match double")
    return out, scored


def estimate(
    rows: DataFrame,
    catalog: Catalog,
    candidate: Policy,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    *,
    alpha: float = 0.05,
    ips_clip: float | None = None,
    replay_seed: int = 0,
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
    scored = None
    if "replay" in names:
        w, scored = replay_rows(rows, catalog, candidate, replay_seed)
    else:
        w = weights(rows, catalog, candidate)
    w = w.persist()
    try:
        return _estimates(w, names, alpha, ips_clip)
    finally:
        w.unpersist()
        if scored is not None:
            scored.unpersist()


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
        "replay": (F.col("match") * F.col("reward"), F.col("match")),
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
            lo, hi, method, matches = theta - z * se, theta + z * se, "normal", None
            if e == "replay":
                matches = round(mc * n)
                wilson = _replay_wilson(w, per_member, theta, se, matches, z) if matches > 1 else None
                if wilson is not None:
                    (lo, hi), method = wilson, "wilson"
            out.append(
                PartitionEstimate(
                    e,
                    theta,
                    lo,
                    hi,
                    se,
                    n,
                    g,
                    sw * sw / sw2 if sw2 > 0 else 0.0,
                    float(totals["max_w"]),
                    sw / n,
                    method,
                    matches,
                )
            )
        return out
    finally:
        per_member.unpersist()


def _replay_wilson(
    w: DataFrame, per_member: DataFrame, p: float, se: float, matches: int, z: float
) -> tuple[float, float] | None:
    """Replay's Wilson interval on 0/1 matched rewards (None otherwise), with the effective number of
    matches (``keyart.evaluation.intervals._effective_matches``): matches over the design effect, or the
    members with a match when the matched rewards are all 0 or all 1."""
    other = w.where((F.col("match") > 0) & ~F.col("reward").isin(0.0, 1.0)).limit(1).count()
    if other:
        return None
    if 0 < p < 1 and se > 0:
        trials = float(min(matches, p * (1 - p) / (se * se)))
    else:
        trials = float(per_member.where(F.col("replay_c") != 0).count())
    return _wilson(p * trials, trials, z)  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_ESTIMATORS",
    "SPARK_ESTIMATORS",
    "PartitionEstimate",
    "estimate",
    "replay_rows",
    "weights",
]
