"""Off-policy evaluation on Spark from partition sums: every estimator of ``keyart.evaluation`` (replay,
IPS, SNIPS, DM, DR, SNDR, Switch-DR, DR-os) with member-clustered intervals.

Each executor featurizes its Arrow batches (``keyart.spark.train.feedback``) and asks the broadcast
candidate policy for its probabilities over the logged pools, giving each event its importance weight
w = pi(a | x) / p. Every estimator has keyart's form theta = mean(A) + mean(B) / mean(C)
(``keyart.evaluation``; the per-event terms are computed on the executors by the very function the
single-machine estimators use, ``keyart.evaluation.components._components``); its cluster-robust standard
error sums the influence values within each member, so the terms are summed per member (a shuffle by
member), and two aggregations give the totals, then sum_g S_g^2 with
S_g = (A_g - n_g mean(A)) + (B_g - theta_B C_g) / mean(C): the same estimates, standard errors and normal
intervals as ``keyart.evaluation.estimate`` with ``ci="normal"`` on the same events.

DM and the DR family need the cross-fitted reward model (``keyart.spark.crossfit``): an event's fold is
a keyed hash of its member id and the seed (``keyart.evaluation.clusters``), each partition is reduced to
per-fold sufficient statistics (tree-aggregated), the driver fits each fold's model on the other folds'
sums, and the executors predict each event with its fold's model. Switch-DR's and DR-os's lambda is chosen
by SLOPE (``keyart.evaluation.tuning.slope_select``) from the per-member sums of every lambda of the grid,
or fixed. The flags that depend on the estimator alone are given (``model_only``: the interval does not
include the reward model's error, as with ``ci="normal"`` on one machine; ``model_bias``;
``few_reward_events``); the weight diagnostics' flags are not computed here.

Replay (Li et al. 2011) has the same form (B = match r, C = match): the candidate's choice is its action
when every row of its distribution is one-hot, else a draw per event from ``default_rng(replay_seed)``
by inverse CDF, the i-th uniform for the i-th event in (timestamp, event_id) order, as
``keyart.evaluation.replay_match`` draws them: the rows are numbered on the executors (partition sizes
are the only thing collected) and each partition jumps its PCG64 stream to its first row
(``advance``). On 0/1 rewards its interval is Wilson's with the effective number of matches (matches over
the design effect), as ``keyart.evaluation`` gives it.

Not here: the bootstrap intervals (percentile, BCa, and the refit bootstrap of ``ci="auto"``), which
resample whole members with one generator over all of them.
"""

from __future__ import annotations

import math
import pickle
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, TaskContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy import stats

from keyart.catalog import Catalog
from keyart.errors import ValidationError
from keyart.evaluation.clusters import check_fold_count
from keyart.evaluation.compare import candidate_distribution
from keyart.evaluation.components import _components, _q_parts
from keyart.evaluation.config import ESTIMATORS, LAMBDA_GRID, MODEL_BASED, MODEL_DOMINATED, EstimatorConfig
from keyart.evaluation.intervals import _wilson
from keyart.evaluation.reward_models import RewardModel
from keyart.evaluation.tuning import TUNED, slope_select
from keyart.policies import Policy, model_features
from keyart.policies.registry import restore_policy
from keyart.spark import crossfit
from keyart.spark.train import FEEDBACK_COLUMNS, _featurizer, broadcast_catalog, feedback

#: The estimators computed from partition sums: all of ``keyart.evaluation``'s.
SPARK_ESTIMATORS = ESTIMATORS
#: The estimators ``keyart spark evaluate`` computes when none is named.
DEFAULT_ESTIMATORS = ("ips", "snips")
_CANDIDATES: dict[str, Policy] = {}  # restored on an executor's worker, by broadcast token
#: Per estimator: whether A is the model's value q_pi (else 0) and C's column (None: 1 per event).
_SHAPE: dict[str, tuple[bool, str | None]] = {
    "replay": (False, "match"),
    "ips": (False, None),
    "snips": (False, "w"),
    "dm": (True, None),
    "dr": (True, None),
    "sndr": (True, "w"),
    "switch_dr": (True, None),
    "dr_os": (True, None),
}


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
    flags: tuple[str, ...] = ()  # model_only, model_bias, few_reward_events (as keyart.evaluation's)
    lambda_: float | None = None  # Switch-DR's and DR-os's lambda
    lambda_by: str = ""  # "slope" or "fixed"


@dataclass(frozen=True)
class _Term:
    """One per-event term B of an estimator (at one lambda, or the unclipped DR reference)."""

    column: str
    estimator: str
    config: EstimatorConfig


def _candidate(broadcast: Any) -> Policy:
    token, snapshot = broadcast.value
    policy = _CANDIDATES.get(token)
    if policy is None:
        policy = _CANDIDATES[token] = restore_policy(pickle.loads(snapshot))
    return policy


def _scorer(
    spark: Any, catalog: Catalog, candidate: Policy, terms: Sequence[_Term], models: Any | None
) -> Callable[[pa.RecordBatch, Any], tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """A function of (batch, worker state) -> (the output columns member_id, w, reward[, q_pi] and each
    term's ``b_*``; the candidate's (n, K) distribution; the shown index), run on the executors."""
    features = broadcast_catalog(spark, catalog, model_features(candidate))
    policy = spark.sparkContext.broadcast((uuid.uuid4().hex, pickle.dumps(candidate.snapshot())))

    def score(batch: pa.RecordBatch, cache: dict[str, int]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        fb = feedback(batch, _featurizer(features))  # its member_id column is not read
        dist = candidate_distribution(_candidate(policy), fb)
        w = dist[np.arange(fb.n), fb.chosen] / fb.propensity
        cols: dict[str, Any] = {"member_id": batch.column("member_id"), "w": w, "reward": fb.reward}
        if terms:
            members = batch.column("member_id").to_pylist()
            log, q = (
                crossfit.predict(fb, members, models, cache)
                if models is not None
                else (crossfit.keyart_log(fb, None), None)
            )
            d3 = dist[:, :, None]
            if q is not None:
                cols["q_pi"] = _q_parts(log, d3, q)[0]
            for t in terms:
                cols[t.column] = _components(t.estimator, log, d3, w, q, t.config)[1]
        return cols, dist, fb.chosen

    return score


def _schema(columns: Sequence[str]) -> str:
    return ", ".join(["member_id string"] + [f"{c} double" for c in columns if c != "member_id"])


def weights(
    rows: DataFrame,
    catalog: Catalog,
    candidate: Policy,
    terms: Sequence[_Term] = (),
    models: Any | None = None,
) -> DataFrame:
    """Per joined row: ``member_id``, the candidate's importance weight ``w`` and the ``reward`` (computed
    on the executors, featurized as the candidate was trained: ``model_features``), with ``q_pi`` and the
    estimators' terms ``b_*`` when asked."""
    score = _scorer(rows.sparkSession, catalog, candidate, terms, models)
    names = (
        ["member_id", "w", "reward"] + (["q_pi"] if models is not None else []) + [t.column for t in terms]
    )

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        cache: dict[str, int] = {}
        for batch in batches:
            if batch.num_rows:
                cols, _, _ = score(batch, cache)
                yield pa.RecordBatch.from_arrays([pa.array(cols[c]) for c in names], names=names)

    return rows.select("member_id", *FEEDBACK_COLUMNS).mapInArrow(run, _schema(names))


def replay_rows(
    rows: DataFrame,
    catalog: Catalog,
    candidate: Policy,
    seed: int = 0,
    terms: Sequence[_Term] = (),
    models: Any | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Per joined row: ``member_id``, ``w``, ``reward``, replay's ``match`` (1.0 when the candidate's
    choice is the logged artwork) and the columns ``weights`` adds, the rows numbered in (timestamp,
    event_id) order (see the module docstring); and the persisted scored rows it reads (``unpersist`` them
    when done)."""
    spark = rows.sparkSession
    score = _scorer(spark, catalog, candidate, terms, models)
    extra = (["q_pi"] if models is not None else []) + [t.column for t in terms]
    passed = ["member_id", "w", "reward", *extra]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pid, pos, cache = TaskContext.get().partitionId(), 0, {}
        for batch in batches:
            if not batch.num_rows:
                continue
            cols, dist, chosen = score(batch, cache)
            n = batch.num_rows
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.full(n, pid, dtype=np.int32)),
                    pa.array(np.arange(pos, pos + n, dtype=np.int64)),
                    *[pa.array(cols[c]) for c in passed],
                    pa.array(chosen.astype(np.int32)),
                    pa.ListArray.from_arrays(
                        pa.array(np.arange(n + 1, dtype=np.int32) * dist.shape[1]), pa.array(dist.ravel())
                    ),
                ],
                names=["pid", "pos", *passed, "chosen", "dist"],
            )
            pos += n

    schema = "pid int, pos long, " + _schema(passed) + ", chosen int, dist array<double>"
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
            chosen = batch.column("chosen").to_numpy().astype(np.int64)
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
                [*[batch.column(c) for c in passed], pa.array(match.astype(np.float64))],
                names=[*passed, "match"],
            )

    out = scored.mapInArrow(draw, _schema([*passed, "match"]))
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
    dr_clip: float | None = None,
    switch_lambda: float | str = "slope",
    dr_os_lambda: float | str = "slope",
    lambda_grid: Sequence[float] = LAMBDA_GRID,
    slope_delta: float = 0.05,
    reward_model: str | RewardModel = "auto",
    n_folds: int = 2,
    seed: int = 0,
) -> list[PartitionEstimate]:
    """The candidate's value on joined rows by each estimator, from per-member and total sums.

    The arguments mean what they mean in ``keyart.evaluation.estimate`` and ``EstimatorConfig`` (same
    checks and messages); ``reward_model``: ``"auto"`` (linear), ``"linear"``, ``"tabular"`` or such a
    model, cross-fitted over ``n_folds`` folds hashed from the member ids with ``seed``.
    """
    names = list(estimators)
    unknown = [n for n in names if n not in SPARK_ESTIMATORS]
    if not names or unknown:
        raise ValidationError(
            f"estimators must name some of {', '.join(SPARK_ESTIMATORS)} on Spark. Got {names}."
        )
    if not 0 < alpha < 1:
        raise ValidationError(f"alpha must be in (0, 1). Got {alpha!r}.")
    cfg = EstimatorConfig(
        ips_clip=ips_clip,
        dr_clip=dr_clip,
        switch_lambda=switch_lambda,
        dr_os_lambda=dr_os_lambda,
        lambda_grid=tuple(lambda_grid),
        slope_delta=slope_delta,
        alpha=alpha,
        ci="normal",
        replay_seed=replay_seed,
    )
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValidationError(f"n_folds must be an integer >= 2 on Spark (cross-fitting). Got {n_folds!r}.")
    terms = _terms(names, cfg)
    models = None
    if any(n in MODEL_BASED for n in names):
        models = _fit(rows, catalog, candidate, crossfit.spark_reward_model(reward_model), n_folds, seed)
    scored = None
    if "replay" in names:
        w, scored = replay_rows(rows, catalog, candidate, replay_seed, terms, models)
    else:
        w = weights(rows, catalog, candidate, terms, models)
    w = w.persist()
    try:
        return _estimates(w, names, terms, cfg, n_folds if models is not None else None)
    finally:
        w.unpersist()
        if scored is not None:
            scored.unpersist()


def _terms(names: Sequence[str], cfg: EstimatorConfig) -> list[_Term]:
    """The per-event B terms the estimators need: one per estimator, one per lambda of the grid for a
    SLOPE-tuned one, and DR unclipped (the reference of ``model_bias``) beside DM, Switch-DR or DR-os."""
    out = []
    for name in names:
        if name == "replay":
            continue  # B = match * reward, from the draw pass
        field = TUNED.get(name)
        if field is not None and getattr(cfg, field) == "slope":
            out += [
                _Term(f"b_{name}_{i}", name, replace(cfg, **{field: float(lam)}))
                for i, lam in enumerate(cfg.lambda_grid)
            ]
        else:
            resolved = cfg if field is None else replace(cfg, **{field: float(getattr(cfg, field))})
            out.append(_Term(f"b_{name}", name, resolved))
    if any(n in MODEL_DOMINATED for n in names):
        out.append(_Term("b_dr_ref", "dr", replace(cfg, dr_clip=None)))
    return out


def _fit(
    rows: DataFrame,
    catalog: Catalog,
    candidate: Policy,
    model: Any,
    n_folds: int,
    seed: int,
) -> Any:
    """The cross-fitted reward model's fold models, fit on the driver from per-fold sums, broadcast."""
    spark = rows.sparkSession
    codes = crossfit.ArmCodes.of(rows)
    features = broadcast_catalog(spark, catalog, model_features(candidate))
    linear = model if isinstance(model, crossfit.LinearRewardModel) else None
    sums = crossfit.fold_sums(spark, rows, features, codes, n_folds, seed, linear)
    return crossfit.broadcast_models(spark, crossfit.fit_folds(model, sums), codes, n_folds, seed)


@dataclass(frozen=True)
class _Ratio:
    """mean(A) + mean(B) / mean(C) of one term from its totals, and its per-member influence sum S_g."""

    b: str  # per-member column of B
    a: bool  # A = q_pi (else 0)
    c: str | None  # per-member column of C (None: the member's event count)
    theta: float
    ma: float
    mc: float
    ratio: float

    def influence(self) -> Column:
        """S_g = (A_g - n_g mean A) + (B_g - ratio C_g) / mean C, per member."""
        c = F.col("n") if self.c is None else F.col(self.c)
        s = (F.col(self.b) - F.lit(self.ratio) * c) / F.lit(self.mc)
        return s + (F.col("q_pi") - F.col("n") * F.lit(self.ma)) if self.a else s


def _ratio(b: str, a: bool, c: str | None, sums: Any, n: int) -> _Ratio:
    ma = float(sums["q_pi"]) / n if a else 0.0
    mc = 1.0 if c is None else float(sums[c]) / n
    ratio = float(sums[b]) / n / mc if mc > 0 else math.nan
    return _Ratio(b, a, c, ma + ratio if mc > 0 else math.nan, ma, mc, ratio)


def _estimates(
    w: DataFrame, names: list[str], terms: list[_Term], cfg: EstimatorConfig, n_folds: int | None
) -> list[PartitionEstimate]:
    has_q = "q_pi" in w.columns
    rewarded = F.col("reward") != 0
    totals = w.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("w").alias("sw"),
        F.sum(F.col("w") * F.col("w")).alias("sw2"),
        F.max("w").alias("max_w"),
        F.sum(((F.col("w") > 0) & rewarded).cast("long")).alias("rewarded_w"),
        *(
            [F.sum(((F.col("match") > 0) & rewarded).cast("long")).alias("rewarded_m")]
            if "replay" in names
            else []
        ),
    ).first()
    n = int(totals["n"])
    if n == 0:
        raise ValidationError("No joined row to evaluate on.")
    member_cols = [F.count(F.lit(1)).alias("n"), F.sum("w").alias("w")]
    if has_q:
        member_cols.append(F.sum("q_pi").alias("q_pi"))
    member_cols += [F.sum(t.column).alias(t.column) for t in terms]
    if "replay" in names:
        member_cols += [
            F.sum(F.col("match") * F.col("reward")).alias("replay_b"),
            F.sum("match").alias("replay_c"),
        ]
    per_member = w.groupBy("member_id").agg(*member_cols).persist()
    try:
        sum_cols = [c for c in per_member.columns if c != "member_id"]
        sums = per_member.agg(F.count(F.lit(1)).alias("g"), *[F.sum(c).alias(c) for c in sum_cols]).first()
        g = int(sums["g"])
        if n_folds is not None:
            check_fold_count(n_folds, g)
        ratios = {
            t.column: _ratio(t.column, _SHAPE[t.estimator][0], _SHAPE[t.estimator][1], sums, n) for t in terms
        }
        if "replay" in names:
            ratios["replay_b"] = _ratio("replay_b", False, "replay_c", sums, n)
        finite = [k for k, r in ratios.items() if r.mc > 0]
        squares = [F.sum(F.pow(ratios[k].influence(), 2)).alias(k) for k in finite]
        ref = ratios.get("b_dr_ref")
        if ref is not None and ref.mc > 0:
            squares += [
                F.sum(F.pow(ratios[k].influence() - ref.influence(), 2)).alias(f"diff_{k}")
                for k in finite
                if k != "b_dr_ref"
            ]
        s2 = per_member.agg(*squares).first() if squares else {}

        def se_of(key: str) -> float:
            if g < 2 or key not in finite:
                return math.nan
            return math.sqrt(float(s2[key]) * g / (g - 1)) / n

        z = float(stats.norm.ppf(1 - cfg.alpha / 2))
        sw, sw2 = float(totals["sw"]), float(totals["sw2"])
        out = []
        for e in names:
            key, lam, how = _resolve(e, terms, ratios, se_of, cfg, g)
            r = ratios[key]
            theta, se = r.theta, se_of(key)
            lo, hi, method, matches = theta - z * se, theta + z * se, "normal", None
            flags: tuple[str, ...] = ()
            if e == "replay":
                matches = round(r.mc * n)
                wilson = _replay_wilson(w, per_member, theta, se, matches, z) if matches > 1 else None
                if wilson is not None:
                    (lo, hi), method = wilson, "wilson"
            if e in MODEL_DOMINATED:
                flags += ("model_only",)
                if ref is not None and key in finite and abs(theta - ref.theta) > z * _diff_se(s2, key, g, n):
                    flags += ("model_bias",)
            if e != "dm":
                carrying = totals["rewarded_m"] if e == "replay" else totals["rewarded_w"]
                if int(carrying) < cfg.thresholds.min_reward_events:
                    flags += ("few_reward_events",)
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
                    flags,
                    lam,
                    how,
                )
            )
        return out
    finally:
        per_member.unpersist()


def _diff_se(s2: Any, key: str, g: int, n: int) -> float:
    """The clustered s.e. of (estimator - DR), from the members' squared differences of influence."""
    return math.sqrt(float(s2[f"diff_{key}"]) * g / (g - 1)) / n if g >= 2 else math.nan


def _resolve(
    name: str,
    terms: list[_Term],
    ratios: dict[str, _Ratio],
    se_of: Callable[[str], float],
    cfg: EstimatorConfig,
    g: int,
) -> tuple[str, float | None, str]:
    """The term of ``name`` (for a SLOPE-tuned one: the lambda SLOPE chooses, as
    ``keyart.evaluation.tuning.slope_lambda`` with g - 1 degrees of freedom), its lambda and how it was
    set."""
    if name == "replay":
        return "replay_b", None, ""
    field = TUNED.get(name)
    if field is None:
        return f"b_{name}", None, ""
    if getattr(cfg, field) != "slope":
        return f"b_{name}", float(getattr(cfg, field)), "fixed"
    grid = [t for t in terms if t.estimator == name and t.column != "b_dr_ref"]
    t_q = float(stats.t.ppf(1 - cfg.slope_delta, max(g - 1, 1)))
    values = [ratios[t.column].theta for t in grid]
    widths = []
    for t in grid:
        se = se_of(t.column)
        widths.append(t_q * se if math.isfinite(se) else math.inf)
    best = grid[slope_select(values, widths)]
    return best.column, float(getattr(best.config, field)), "slope"


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
