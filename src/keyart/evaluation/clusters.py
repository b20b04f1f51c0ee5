"""Clusters of events (members) and cross-fitting folds: what the intervals, the diagnostics, the tuning
and the reward models share (a module below all of them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from keyart.errors import ValidationError
from keyart.evaluation.data import BanditLog


@dataclass(frozen=True)
class _Clusters:
    """Each event's cluster code in 0..g-1, and the events grouped by cluster (to resample clusters)."""

    codes: np.ndarray  # (n,)
    g: int
    order: np.ndarray  # event indices sorted by cluster
    starts: np.ndarray  # (g,) where each cluster's events start in ``order``
    counts: np.ndarray  # (g,) events per cluster

    @classmethod
    def of(cls, log: BanditLog) -> _Clusters | None:
        if log.cluster is None:
            return None
        _, codes = np.unique(log.cluster, return_inverse=True)  # dense codes, also for sub-logs
        codes = codes.reshape(-1)
        counts = np.bincount(codes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(codes, int(counts.size), np.argsort(codes, kind="stable"), starts, counts)

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
    """A seeded balanced assignment of n events to ``n_folds`` folds."""
    return np.random.default_rng(seed).permutation(n) % n_folds


def _folds(log: BanditLog, clusters: _Clusters | None, n_folds: int, seed: int) -> np.ndarray | None:
    """Cross-fitting folds: seeded per event, or per cluster (a cluster's events share a fold)."""
    if n_folds <= 1:
        return None
    if clusters is None:
        return fold_ids(log.n, n_folds, seed)
    if n_folds > clusters.g:
        raise ValidationError(
            f"n_folds ({n_folds}) must not exceed the number of clusters ({clusters.g}): "
            "cross-fitting keeps each cluster in one fold."
        )
    return fold_ids(clusters.g, n_folds, seed)[clusters.codes]
