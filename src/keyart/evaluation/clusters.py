"""Clusters of events (members) and cross-fitting folds: what the intervals, the diagnostics, the tuning
and the reward models share (a module below all of them).

The fold rule. On a clustered log (keyart: clustered by member) a cluster's fold is a keyed hash of its
id and the seed, ``stable_hash(f"{seed}:{id}", "fold") % n_folds`` (64-bit BLAKE2b, the same in every
process and machine, ``cluster_fold``): any process computes an event's fold from its member id alone,
which is what lets Spark cross-fit the reward model from per-fold sums (``keyart.spark.evaluate``). A
cluster's events share its fold. The folds are not balanced (each holds about 1 / n_folds of the
clusters, binomially): a fold that no cluster hashes to is simply absent and the model is cross-fitted
over the others; when every cluster hashes to one fold (a tiny log) cross-fitting is impossible and a
``ValidationError`` says so. A log without clusters has no stable event id in ``BanditLog``: its folds
stay a seeded balanced permutation of the events (``fold_ids``), as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from keyart.errors import ValidationError
from keyart.evaluation.data import BanditLog
from keyart.hashing import stable_hash


@dataclass(frozen=True)
class _Clusters:
    """Each event's cluster code in 0..g-1, and the events grouped by cluster (to resample clusters)."""

    codes: np.ndarray  # (n,)
    g: int
    order: np.ndarray  # event indices sorted by cluster
    starts: np.ndarray  # (g,) where each cluster's events start in ``order``
    counts: np.ndarray  # (g,) events per cluster
    names: np.ndarray  # (g,) each cluster's id as text (what its fold hashes)

    @classmethod
    def of(cls, log: BanditLog) -> _Clusters | None:
        if log.cluster is None:
            return None
        present, codes = np.unique(log.cluster, return_inverse=True)  # dense codes, also for sub-logs
        codes = codes.reshape(-1)
        counts = np.bincount(codes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        names = (
            np.array([str(c) for c in present.tolist()], dtype=object)
            if log.cluster_names is None
            else log.cluster_names[present]
        )
        return cls(codes, int(counts.size), np.argsort(codes, kind="stable"), starts, counts, names)

    def sums(self, x: np.ndarray) -> np.ndarray:
        """(g,) per-cluster sums of x."""
        return np.bincount(self.codes, weights=x, minlength=self.g)

    def events(self, chosen: np.ndarray) -> np.ndarray:
        """The event indices of the clusters ``chosen`` (repeats allowed), cluster after cluster."""
        lengths = self.counts[chosen]
        ends = np.cumsum(lengths)
        offsets = np.arange(int(ends[-1])) + np.repeat(self.starts[chosen] - (ends - lengths), lengths)
        return self.order[offsets]


def _se(psi: np.ndarray, clusters: _Clusters | None) -> float:
    """Standard error of a mean from centred influence values psi: sqrt(g / (g - 1) sum_g S_g^2) / n with
    S_g the sum of psi over cluster g (each event its own cluster when ``clusters`` is None: the i.i.d.
    ``std(ddof=1) / sqrt(n)``)."""
    n = psi.size
    if clusters is None:
        return float(psi.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    g = clusters.g
    if g < 2:
        return math.nan
    s = clusters.sums(psi)
    return float(math.sqrt(float(s @ s) * g / (g - 1)) / n)


def fold_ids(n: int, n_folds: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A seeded balanced assignment of n events to ``n_folds`` folds (logs without clusters)."""
    return np.random.default_rng(seed).permutation(n) % n_folds


def cluster_fold(name: str, n_folds: int, seed: int) -> int:
    """The fold of the cluster whose id reads ``name``: ``stable_hash(f"{seed}:{name}", "fold") % n_folds``
    (the same in every process: Spark's executors compute it from an event's member id)."""
    return stable_hash(f"{int(seed)}:{name}", "fold") % n_folds


def check_folds(used: int, n_folds: int) -> None:
    """Refuse hashed folds that leave fewer than two folds with a cluster in them: no cross-fitting."""
    if used < 2:
        raise ValidationError(
            f"Every cluster hashed to one of the {n_folds} cross-fitting folds: the reward model cannot be "
            "cross-fitted (too few clusters; try another seed or more data)."
        )


def check_fold_count(n_folds: int, g: int) -> None:
    """Refuse more folds than clusters (cross-fitting keeps each cluster in one fold)."""
    if n_folds > g:
        raise ValidationError(
            f"n_folds ({n_folds}) must not exceed the number of clusters ({g}): "
            "cross-fitting keeps each cluster in one fold."
        )


def _folds(log: BanditLog, clusters: _Clusters | None, n_folds: int, seed: int) -> np.ndarray | None:
    """Cross-fitting folds: a seeded permutation of the events, or per cluster a keyed hash of its id and
    the seed (a cluster's events share a fold; see the module docstring)."""
    if n_folds <= 1:
        return None
    if clusters is None:
        return fold_ids(log.n, n_folds, seed)
    check_fold_count(n_folds, clusters.g)
    per_cluster = np.fromiter(
        (cluster_fold(name, n_folds, seed) for name in clusters.names.tolist()),
        dtype=np.int64,
        count=clusters.g,
    )
    check_folds(np.unique(per_cluster).size, n_folds)
    return per_cluster[clusters.codes]
