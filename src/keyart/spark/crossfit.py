"""The cross-fitted reward model of DM and the DR family on Spark, from per-fold sums.

An event's fold is a keyed hash of its member id and the seed (``keyart.evaluation.clusters.cluster_fold``),
so each executor knows it from the row alone. One pass over the joined rows reduces each partition to
per-fold sufficient statistics (``FoldSums``; tree-aggregated, model-sized: never an event row):

- the linear ridge (``LinearRewardModel`` on keyart logs: intercept, the shown artwork's features x and
  the artwork's one-hot): n, sum r, sum x, X^T X, X^T r, and per artwork its count, sum of r and sum of x
  (the one-hot block of the Gram matrix is diagonal);
- the tabular model (``TabularRewardModel``): per artwork its count and sum of r.

The driver adds the other folds' sums for each fold and fits what ``model.fit`` fits on those events
(the same Gram matrix and solve, the same shrunk table, the same clip range), as the very fitted objects
of ``keyart.evaluation.reward_models``, which the executors then use to predict each event's fold.

Arms are coded as ``BanditLog`` codes them on one machine (``keyart.evaluation.feedback_to_log``): the
rank of the artwork id among every id of the log's pools, with '' (the padding of shorter pools) first
when pools differ in size; a fold's model knows the arms up to the largest code of its training events,
as ``fit`` on the sub-log does. The logistic reward model has no place on keyart logs (one action set per
log; keyart pools are per title), as ``keyart evaluate`` says too.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from keyart.errors import ValidationError
from keyart.evaluation.clusters import check_folds, cluster_fold
from keyart.evaluation.compare import feedback_to_log
from keyart.evaluation.data import BanditLog
from keyart.evaluation.reward_models import (
    LinearRewardModel,
    LogisticRewardModel,
    RewardModel,
    TabularRewardModel,
    _FittedLinear,
    _FittedTable,
)
from keyart.feedback import LoggedFeedback
from keyart.spark.train import FEEDBACK_COLUMNS, _blob, _featurizer, feedback

#: The reward models Spark cross-fits (``auto``: linear, as on one machine for logs with features).
SPARK_REWARD_MODELS = ("auto", "tabular", "linear")


def spark_reward_model(model: str | RewardModel) -> LinearRewardModel | TabularRewardModel:
    """The reward model named (or given): linear (also ``auto``) or tabular; logistic is refused."""
    if isinstance(model, (LinearRewardModel, TabularRewardModel)):
        return model
    if model == "logistic" or isinstance(model, LogisticRewardModel):
        raise ValidationError(
            "The logistic reward model is for logs with one action set (tabular, obd); keyart logs "
            "have per-title pools: use tabular, linear or auto."
        )
    if model in ("auto", "linear"):
        return LinearRewardModel()
    if model == "tabular":
        return TabularRewardModel()
    raise ValidationError(f"reward_model must be one of {', '.join(SPARK_REWARD_MODELS)}. Got {model!r}.")


@dataclass(frozen=True)
class ArmCodes:
    """Each artwork id's code (its rank among the log's pool ids, '' first when pools are padded)."""

    code: dict[str, int]

    @classmethod
    def of(cls, rows: DataFrame) -> ArmCodes:
        """The codes of the ids in the rows' pools (collects the distinct ids: catalog-sized)."""
        ids = [r[0] for r in rows.select(F.explode("pool").alias("a")).distinct().collect()]
        sizes = rows.agg(F.min(F.size("pool")), F.max(F.size("pool"))).first()
        padded = sizes is not None and sizes[0] is not None and int(sizes[0]) < int(sizes[1])
        names = sorted(set(ids) | ({""} if padded else set()))
        return cls({a: i for i, a in enumerate(names)})

    def __len__(self) -> int:
        return len(self.code)

    def keys(self, artwork_ids: np.ndarray) -> np.ndarray:
        """(n, K) codes of a batch's artwork ids (an id the log never pooled: -1, unknown to every fold)."""
        get = self.code.get
        flat = [get(a, -1) for a in np.asarray(artwork_ids, dtype=object).ravel().tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(np.shape(artwork_ids))


@dataclass(frozen=True)
class FoldSums:
    """Per fold (first axis) sufficient statistics of the reward models (see the module docstring)."""

    n: np.ndarray  # (F,)
    sr: np.ndarray  # (F,) sum of rewards
    rmin: np.ndarray  # (F,)
    rmax: np.ndarray  # (F,)
    max_key: np.ndarray  # (F,) largest arm code in the fold's pools (-1: none)
    arm_n: np.ndarray  # (F, A) events per shown arm
    arm_r: np.ndarray  # (F, A) rewards per shown arm
    sx: np.ndarray  # (F, d) (linear only; empty otherwise)
    xtx: np.ndarray  # (F, d, d)
    xr: np.ndarray  # (F, d)
    arm_x: np.ndarray  # (F, min(A, max_arms), d): the ridge's one-hot block exists only up to max_arms

    @classmethod
    def zeros(cls, n_folds: int, n_arms: int, d: int, x_arms: int = 0) -> FoldSums:
        """Empty sums; ``x_arms``: how many arms' feature sums to keep (codes past it: no one-hot block
        can use them, as ``LinearRewardModel`` drops the block beyond ``max_arms`` arms)."""
        f = n_folds
        return cls(
            np.zeros(f),
            np.zeros(f),
            np.full(f, np.inf),
            np.full(f, -np.inf),
            np.full(f, -1, dtype=np.int64),
            np.zeros((f, n_arms)),
            np.zeros((f, n_arms)),
            np.zeros((f, d)),
            np.zeros((f, d, d)),
            np.zeros((f, d)),
            np.zeros((f, x_arms, d)),
        )

    def merge(self, other: FoldSums) -> FoldSums:
        """The sums of both (added; min, max and the largest code combined)."""
        out = {}
        for fd in fields(self):
            a, b = getattr(self, fd.name), getattr(other, fd.name)
            op = {"rmin": np.minimum, "rmax": np.maximum, "max_key": np.maximum}.get(fd.name, np.add)
            out[fd.name] = op(a, b)
        return FoldSums(**out)

    def add_events(
        self, fold: np.ndarray, keys: np.ndarray, chosen: np.ndarray, x: np.ndarray | None, r: np.ndarray
    ) -> None:
        """Add events (in place): their folds, pool codes (n, K), shown index, shown features, rewards."""
        shown = keys[np.arange(keys.shape[0]), chosen]
        for f in np.unique(fold).tolist():
            rows = fold == f
            rf, kf = r[rows], shown[rows]
            self.n[f] += rows.sum()
            self.sr[f] += rf.sum()
            self.rmin[f] = min(self.rmin[f], rf.min())
            self.rmax[f] = max(self.rmax[f], rf.max())
            self.max_key[f] = max(self.max_key[f], int(keys[rows].max()))
            self.arm_n[f] += np.bincount(kf, minlength=self.arm_n.shape[1])
            self.arm_r[f] += np.bincount(kf, weights=rf, minlength=self.arm_n.shape[1])
            if x is not None:
                xf = x[rows]
                self.sx[f] += xf.sum(axis=0)
                self.xtx[f] += xf.T @ xf
                self.xr[f] += xf.T @ rf
                kept = kf < self.arm_x.shape[1]
                np.add.at(self.arm_x[f], kf[kept], xf[kept])

    def training(self, f: int) -> FoldSums:
        """The sums of every fold but ``f`` (the events its model is fit on), as a one-fold ``FoldSums``."""
        others = [i for i in range(self.n.shape[0]) if i != f]
        out = self._fold(others[0])
        for i in others[1:]:
            out = out.merge(self._fold(i))
        return out

    def _fold(self, i: int) -> FoldSums:
        return FoldSums(**{fd.name: getattr(self, fd.name)[i : i + 1] for fd in fields(self)})


def _merge(a: FoldSums | None, b: FoldSums | None) -> FoldSums | None:
    if a is None or b is None:
        return b if a is None else a
    return a.merge(b)


def event_folds(member_ids: Any, n_folds: int, seed: int, cache: dict[str, int]) -> np.ndarray:
    """(n,) each event's fold from its member id (``cluster_fold``; ``cache`` keeps the worker's hashes)."""
    out = np.empty(len(member_ids), dtype=np.int64)
    for i, m in enumerate(member_ids):
        f = cache.get(m)
        if f is None:
            f = cache[m] = cluster_fold(m, n_folds, seed)
        out[i] = f
    return out


def keyart_log(fb: LoggedFeedback, codes: ArmCodes | None) -> BanditLog:
    """A featurized batch as the ``BanditLog`` ``feedback_to_log`` gives on one machine, with the arms
    coded over the whole log, not the batch; without ``codes``, only what the model-free estimators read
    (no features, no arms)."""
    log = feedback_to_log(fb)
    if codes is None:
        return replace(log, action_context=None, arm=None)
    return replace(log, arm=np.maximum(codes.keys(fb.batch.artwork_ids), 0))


def fold_sums(
    spark: Any,
    rows: DataFrame,
    features: Any,
    codes: ArmCodes,
    n_folds: int,
    seed: int,
    linear: LinearRewardModel | None,
) -> FoldSums:
    """The per-fold sums of the joined rows, one pickled ``FoldSums`` per partition, tree-aggregated."""
    x_arms = -1 if linear is None else min(len(codes), linear.max_arms)
    shared = spark.sparkContext.broadcast((codes, n_folds, seed, x_arms))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = _featurizer(features)
        arm_codes, nf, s, x_arms = shared.value
        lin = x_arms >= 0
        acc, cache = None, {}
        for batch in batches:
            if not batch.num_rows:
                continue
            fb = feedback(batch, featurizer)
            if acc is None:
                acc = FoldSums.zeros(nf, len(arm_codes), fb.batch.d if lin else 0, max(x_arms, 0))
            fold = event_folds(batch.column("member_id").to_pylist(), nf, s, cache)
            x = fb.batch.shown_X(fb.chosen) if lin else None
            acc.add_events(fold, np.maximum(arm_codes.keys(fb.batch.artwork_ids), 0), fb.chosen, x, fb.reward)
        if acc is not None:
            yield _blob(acc)

    sums = rows.select("member_id", *FEEDBACK_COLUMNS).mapInArrow(run, "sums binary")
    total = sums.rdd.map(lambda row: pickle.loads(row[0])).treeAggregate(None, _merge, _merge, depth=2)
    if total is None:
        raise ValidationError("No joined row to evaluate on.")
    return total


def fit_folds(
    model: LinearRewardModel | TabularRewardModel, sums: FoldSums
) -> list[_FittedLinear | _FittedTable | None]:
    """Each fold's model fitted on the other folds' sums (None for a fold without events)."""
    used = [f for f in range(sums.n.shape[0]) if sums.n[f] > 0]
    check_folds(len(used), sums.n.shape[0])
    return [
        (
            _fit_linear(model, sums.training(f))
            if isinstance(model, LinearRewardModel)
            else _fit_table(model, sums.training(f))
        )
        if f in used
        else None
        for f in range(sums.n.shape[0])
    ]


def _fit_linear(model: LinearRewardModel, s: FoldSums) -> _FittedLinear:
    """``LinearRewardModel.fit`` from sums: the ridge on [1, x, one-hot of the arm] of the fold's events."""
    n_arms = int(s.max_key[0]) + 1
    use_arms = n_arms <= model.max_arms
    d = s.sx.shape[1]
    p = 1 + d + (n_arms if use_arms else 0)
    gram = np.zeros((p, p))
    rhs = np.zeros(p)
    gram[0, 0] = s.n[0]
    gram[0, 1 : 1 + d] = gram[1 : 1 + d, 0] = s.sx[0]
    gram[1 : 1 + d, 1 : 1 + d] = s.xtx[0]
    rhs[0], rhs[1 : 1 + d] = s.sr[0], s.xr[0]
    if use_arms:
        arms = slice(1 + d, p)
        gram[0, arms] = gram[arms, 0] = s.arm_n[0, :n_arms]
        gram[1 : 1 + d, arms] = s.arm_x[0, :n_arms].T
        gram[arms, 1 : 1 + d] = s.arm_x[0, :n_arms]
        gram[arms, arms] = np.diag(s.arm_n[0, :n_arms])
        rhs[arms] = s.arm_r[0, :n_arms]
    reg = np.full(p, model.alpha)
    reg[0] = 1e-8  # do not shrink the intercept
    coef = np.linalg.solve(gram + np.diag(reg), rhs)
    return _FittedLinear(coef, n_arms, use_arms, float(s.rmin[0]), float(s.rmax[0]))


def _fit_table(model: TabularRewardModel, s: FoldSums) -> _FittedTable:
    """``TabularRewardModel.fit`` from sums: each arm's shrunk mean (one position)."""
    n_arms = int(s.max_key[0]) + 1
    cnt, tot = s.arm_n[0, :n_arms, None], s.arm_r[0, :n_arms, None]
    pos_mean = np.array([s.sr[0] / s.n[0]])
    m = float(model.prior_strength)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = (tot + m * pos_mean) / (cnt + m)
    return _FittedTable(table=np.where(cnt + m > 0, table, pos_mean), fallback=pos_mean)


def broadcast_models(spark: Any, fitted: list[Any], codes: ArmCodes, n_folds: int, seed: int) -> Any:
    """The fitted fold models, the arm codes and the fold rule, broadcast under a fresh token."""
    return spark.sparkContext.broadcast((uuid.uuid4().hex, fitted, codes, n_folds, seed))


def predict(
    fb: LoggedFeedback, member_ids: list[str], shared: Any, cache: dict[str, int]
) -> tuple[BanditLog, np.ndarray]:
    """The batch's ``BanditLog`` and its cross-fitted q-hat (n, K, 1): each event predicted by the model
    of its fold (fit on the other folds)."""
    _, fitted, codes, n_folds, seed = shared.value
    log = keyart_log(fb, codes)
    fold = event_folds(member_ids, n_folds, seed, cache)
    q = np.empty((log.n, log.n_actions, 1))
    for f in np.unique(fold).tolist():
        rows = np.flatnonzero(fold == f)
        q[rows] = fitted[f].predict(log.take(rows))
    return log, q


__all__ = [
    "SPARK_REWARD_MODELS",
    "ArmCodes",
    "FoldSums",
    "broadcast_models",
    "event_folds",
    "fit_folds",
    "fold_sums",
    "keyart_log",
    "predict",
    "spark_reward_model",
]
