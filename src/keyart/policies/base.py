"""The policy protocol: floors, the sticky draw, validation, versions and snapshots; model-row lookups.

``Policy`` maps a ``CandidateBatch`` to a probability distribution over each pool (``probabilities``);
``choose`` then draws from it with sticky keyed-hash randomness, so the logged propensity is exactly the
probability of the shown artwork. ``update`` learns from a batch of ``LoggedFeedback``; ``snapshot`` (here)
and ``keyart.policies.registry.restore_policy`` reproduce a policy exactly. Constructors store
hyperparameters only; learned state ends in ``_`` (scikit-learn's convention).
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from keyart.batch import CandidateBatch
from keyart.errors import DimensionError, UnknownIdError, ValidationError
from keyart.exploration import apply_floor, apply_new_share, sample_index, sticky_uniforms
from keyart.feedback import DecisionBatch, LoggedFeedback
from keyart.learning import ArtworkIndex
from keyart.params import Interval, Optional_, Seed, get_params, validate_params

SNAPSHOT_FORMAT = 1


class Policy(ABC):
    """Base of every policy: floors, sticky choice, validation, versions and snapshots.

    Subclasses implement ``_distribution`` (before the floor), ``scores`` (the best guess), ``_learn``,
    ``_get_state`` / ``_set_state``, and may override ``_reset`` (where learned and cached state is made).
    Policies over the shared model implement one hook instead of the first two:
    ``SharedModelPolicy._distribution_from_model``.
    """

    name: ClassVar[str] = "policy"
    _parameter_constraints: ClassVar[dict[str, Any]] = {
        "seed": Seed(),
        "floor": Interval(0, 1),
        "sticky_seconds": Interval(0, None, closed="neither", infinite=True),
        "half_life": Optional_(Interval(0, None, closed="neither")),
        "new_share": Interval(0, 1),
        "new_impressions": Interval(0, None, closed="neither"),
    }

    def __init__(
        self,
        *,
        seed: int,
        floor: float = 0.0,
        sticky_seconds: float = 86_400.0,
        half_life: float | None = None,
        new_share: float = 0.0,
        new_impressions: float = 100.0,
    ) -> None:
        self.seed = seed
        self.floor = floor
        self.sticky_seconds = sticky_seconds
        self.new_share = new_share
        self.new_impressions = new_impressions
        self.half_life = half_life
        validate_params(self)
        self._reset()

    def get_params(self) -> dict[str, Any]:
        return get_params(self)

    def clone(self) -> Policy:
        """A fresh, untrained policy with the same hyperparameters."""
        return type(self)(**self.get_params())

    def _reset(self) -> None:
        self.version_ = 0

    # ---- the protocol --------------------------------------------------------------------------
    @abstractmethod
    def _distribution(self, batch: CandidateBatch) -> np.ndarray:
        """(n, K) choice probabilities of a checked batch before the floor (rows sum to 1 on the mask)."""

    @abstractmethod
    def scores(self, batch: CandidateBatch) -> np.ndarray:
        """The policy's estimate of each candidate's value (its best guess is the argmax)."""

    @abstractmethod
    def _learn(
        self, parts: Sequence[LoggedFeedback], decay: float, weights: Sequence[np.ndarray | None]
    ) -> None:
        """Add the partitions' events (event i of part j weighted by ``weights[j][i]``, all 1 when None)
        to the state decayed by ``decay``; validate everything before changing any state."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None: ...

    def _check_batch(self, batch: CandidateBatch) -> None:
        if not isinstance(batch, CandidateBatch):
            raise ValidationError(f"batch must be a CandidateBatch. Got {type(batch).__name__}.")

    def probabilities(self, batch: CandidateBatch) -> np.ndarray:
        """(n, K) choice probabilities: rows sum to 1, 0 on padding, at least floor / K on the pool (and
        ``new_share`` for a new artwork: ``_explorable``)."""
        self._check_batch(batch)
        return self._explorable(batch, self._distribution(batch))

    def _explorable(self, batch: CandidateBatch, distribution: np.ndarray) -> np.ndarray:
        """The distribution with the floor, then new artworks' share: with ``new_share`` > 0, every
        artwork the policy has learned fewer than ``new_impressions`` (weighted) impressions of gets at
        least ``new_share`` of its title's traffic (all new ones together at most all of it), until it has
        them; the shares are part of the probabilities, so propensities stay exact. 0 on padding."""
        p = apply_floor(distribution, batch.mask, self.floor)
        if self.new_share > 0:
            shown = self._impressions(batch)
            if shown is not None:
                p = apply_new_share(p, batch.mask, shown < self.new_impressions, self.new_share)
        return np.where(batch.mask, p, 0.0)

    def _impressions(self, batch: CandidateBatch) -> np.ndarray | None:
        """(n, K) impressions learned of each candidate (weighted and decayed as the model's evidence), for
        ``new_share``; None for a policy that learns nothing per artwork."""
        return None

    def _explored(
        self, scores: np.ndarray, probabilities: np.ndarray, index: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        """Whether each shown artwork is not the policy's best guess: its score (the posterior mean for the
        model policies) is below the best of its pool, whatever the probabilities (LinUCB's upper bound and
        Thompson's draw can show another artwork while the best guess has probability 0)."""
        s = np.where(mask, scores, -np.inf)
        return s[np.arange(s.shape[0]), index] < s.max(axis=1)

    def _evaluate(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """(distribution before the floor, scores) of a checked batch, for ``choose``; a family of policies
        that shares work between the two overrides it once (``SharedModelPolicy``: its model hook)."""
        return self._distribution(batch), self.scores(batch)

    def choose(self, batch: CandidateBatch) -> DecisionBatch:
        """One decision per row of ``batch``, drawn with the sticky keyed-hash uniform of its
        (seed, member, title, period), the member's periods staggered by a keyed offset."""
        self._check_batch(batch)
        dist, s = self._evaluate(batch)
        p = self._explorable(batch, dist)
        s = np.where(batch.mask, s, 0.0)
        members, titles = batch.member_ids.tolist(), batch.title_ids.tolist()
        u, _ = sticky_uniforms(self.seed, members, titles, batch.timestamps, self.sticky_seconds)
        index = sample_index(p, u)
        explored = self._explored(s, p, index, batch.mask)
        return DecisionBatch(batch, p, s, index, explored, self.name, self.version_)

    def _check_feedback(self, feedback: LoggedFeedback) -> None:
        if not isinstance(feedback, LoggedFeedback):
            raise ValidationError(f"feedback must be a LoggedFeedback. Got {type(feedback).__name__}.")
        r = feedback.reward
        if r.size and (r.min() < 0.0 or r.max() > 1.0):
            raise ValidationError(
                f"reward must be in the declared range [0, 1]. Got values in [{r.min():g}, {r.max():g}]."
            )

    def update(self, feedback: LoggedFeedback) -> Policy:
        """Learn from a batch of logged events; the input is never modified. Invalid input changes nothing."""
        return self.update_partitions([feedback])

    def update_partitions(self, parts: Sequence[LoggedFeedback]) -> Policy:
        """Learn from events held in several partitions, in order: the same model as ``update`` on their
        concatenation, built from per-partition sums only (linear statistics, counts, or the logistic
        fit's Newton sums), the way a job over partitioned logs trains (``keyart.spark.train`` on Spark).
        Invalid input changes nothing."""
        parts = self._valid_parts(parts)
        if parts:
            self._learn_parts(parts)
            self.version_ += 1
        return self

    def _valid_parts(self, parts: Sequence[LoggedFeedback]) -> list[LoggedFeedback]:
        """The non-empty partitions, after checking them all (types, feedback, equal widths)."""
        if isinstance(parts, LoggedFeedback) or not isinstance(parts, Sequence):
            raise ValidationError(f"parts must be a sequence of LoggedFeedback. Got {type(parts).__name__}.")
        for fb in parts:
            self._check_feedback(fb)
        parts = [fb for fb in parts if fb.n]
        widths = sorted({fb.batch.d for fb in parts})
        if len(widths) > 1:
            raise DimensionError(f"The partitions' features have different widths {widths}.")
        return parts

    def _learn_parts(self, parts: list[LoggedFeedback]) -> None:
        """Learn from checked, non-empty partitions, with their forgetting weights."""
        n = sum(fb.n for fb in parts)
        if self.half_life is None:
            self._learn(parts, 1.0, [None] * len(parts))
        else:  # an event weighs 0.5 ** (events after it / half_life): one batch = the events one by one
            w = 0.5 ** (np.arange(n - 1, -1, -1, dtype=np.float64) / self.half_life)
            split = np.split(w, np.cumsum([fb.n for fb in parts])[:-1])
            self._learn(parts, 0.5 ** (n / self.half_life), split)

    def learned_priors(self) -> dict[str, Any] | None:
        """The priors the model learned from the data (for ``/v1/model`` and reports); None for a policy
        without a prior to learn."""
        return None

    # ---- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild this policy exactly: name, hyperparameters, version, state."""
        return {
            "format": SNAPSHOT_FORMAT,
            "policy": self.name,
            "params": self.get_params(),
            "version": self.version_,
            "state": self._get_state(),
        }

    def save(self, path: str | Path) -> None:
        """Write the snapshot as one ``.npz`` file (arrays) with a JSON header."""
        snap = self.snapshot()
        arrays = {k: v for k, v in snap["state"].items() if isinstance(v, np.ndarray)}
        header = {**snap, "state": {k: v for k, v in snap["state"].items() if k not in arrays}}
        buf = io.BytesIO()
        np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
        Path(path).write_bytes(buf.getvalue())


class RowCache:
    """A policy's memo of its candidates' model rows in its ``ArtworkIndex`` (-1: unknown artwork).

    Explicit state owned by the policy (made in its ``_reset``, never snapshotted), with two memos: the
    rows of a featurizer's artwork table, mapped once per (table, index version), so a featurized page
    costs one gather; and the rows of the last batch looked up, so the passes of one ``choose`` (scores,
    moments) look them up once. Both are keyed by the index's ``version``, which changes whenever its rows
    do (and is kept by ``ArtworkIndex.copy``, so a model update that adds no artwork keeps the memo).
    """

    __slots__ = ("_last", "_table")

    def __init__(self) -> None:
        self._table: tuple[np.ndarray, int, np.ndarray] | None = None  # (table keys, version, rows)
        self._last: tuple[np.ndarray, int, np.ndarray] | None = None  # (artwork ids, version, rows)

    def clear(self) -> None:
        """Forget both memos (the index was replaced by another one)."""
        self._table = self._last = None

    def rows(self, index: ArtworkIndex, batch: CandidateBatch) -> np.ndarray:
        """(n, K) model rows of the batch's candidates in ``index``."""
        last = self._last
        if last is not None and last[0] is batch.artwork_ids and last[1] == index.version:
            return last[2]
        rows = self._lookup(index, batch)
        self._last = (batch.artwork_ids, index.version, rows)
        return rows

    def _lookup(self, index: ArtworkIndex, batch: CandidateBatch) -> np.ndarray:
        f = batch.factors
        if f is None:
            return index.rows_for_keys(batch.artwork_keys)
        table = self._table
        if table is None or table[0] is not f.keys or table[1] != index.version:
            table = self._table = (f.keys, index.version, index.rows_for_keys(f.keys))
        return table[2][f.idx]


def batch_rows(index: ArtworkIndex, batch: CandidateBatch, cache: RowCache) -> np.ndarray:
    """Model rows (-1: unknown) of a batch's candidates in ``index``, through ``cache`` (the policy's
    ``RowCache``): ``cache.rows(index, batch)``."""
    return cache.rows(index, batch)


def warm_start_rows(index: ArtworkIndex, artwork_id: str, like: Sequence[str]) -> np.ndarray:
    """Rows of the known artworks ``like`` that a new ``artwork_id`` is warm-started from (validated)."""
    if artwork_id in index.ids:
        raise ValidationError(f"Artwork {artwork_id!r} is already known: warm_start is for new artworks.")
    rows = index.rows(np.array(list(like), dtype=object))
    if rows.size == 0:
        raise ValidationError("like must name at least one known artwork.")
    if (rows < 0).any():
        unknown = [a for a, r in zip(like, rows.tolist(), strict=True) if r < 0]
        raise UnknownIdError(f"Unknown artwork_id(s) in like: {unknown}.")
    return rows
