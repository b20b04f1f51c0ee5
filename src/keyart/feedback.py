"""The types that flow from policies to logs and back: decisions and logged feedback.

``Decision`` is one choice for one (member, title) with the whole distribution it was drawn from;
``DecisionBatch`` is the decisions of one ``choose`` call kept by column; ``LoggedFeedback`` is what was
shown and what it earned, the input of every learner and off-policy estimator. They depend on the candidate
batch only (``keyart.batch``), so policies, rewards, the event log and the evaluators share them without
depending on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from keyart.batch import CandidateBatch
from keyart.errors import DimensionError, UnknownIdError, ValidationError

if TYPE_CHECKING:
    from keyart.context import MemberContext
    from keyart.features import Featurizer

__all__ = ["Decision", "DecisionBatch", "LoggedFeedback", "decision_id"]


@dataclass(frozen=True)
class Decision:
    """One choice for one (member, title): the shown artwork and the whole distribution it was drawn from."""

    decision_id: str
    request_id: str
    member_id: str
    title_id: str
    timestamp: float
    pool: tuple[str, ...]
    probabilities: tuple[float, ...]
    scores: tuple[float, ...]
    index: int
    artwork_id: str
    propensity: float
    explored: bool
    policy: str
    model_version: int
    fallback: bool = False


def decision_id(request_id: str, row: int) -> str:
    """The id of the decision in row ``row`` of a request: ``<request id>-<row>`` (unique while request
    ids are, and cheap on the serving path)."""
    return f"{request_id}-{row}"


class DecisionBatch(Sequence[Decision]):
    """The decisions of one ``choose`` call, kept by column (cheap to make, to log as Arrow, to send);
    indexing or iterating builds ``Decision`` objects on demand."""

    def __init__(
        self,
        batch: CandidateBatch,
        probabilities: np.ndarray,
        scores: np.ndarray,
        index: np.ndarray,
        explored: np.ndarray,
        policy: str,
        model_version: int,
    ) -> None:
        self.batch = batch
        self.probabilities = probabilities
        self.scores = scores
        self.index = index
        self.explored = explored
        self.policy = policy
        self.model_version = model_version
        rows = np.arange(batch.n)
        self.propensity = probabilities[rows, index]
        self.artwork_ids = batch.artwork_ids[rows, index]
        rids = batch.request_ids.tolist()
        if rids and len(set(rids)) == 1:  # a page: one request
            self.decision_ids = [f"{rids[0]}-{i}" for i in range(len(rids))]
        else:
            self.decision_ids = [decision_id(r, i) for i, r in enumerate(rids)]

    def __len__(self) -> int:
        return self.batch.n

    def _one(self, i: int) -> Decision:
        b = self.batch
        k, j = int(b.mask[i].sum()), int(self.index[i])
        pool = tuple(b.artwork_ids[i, :k].tolist())
        return Decision(
            self.decision_ids[i],
            str(b.request_ids[i]),
            str(b.member_ids[i]),
            str(b.title_ids[i]),
            float(b.timestamps[i]),
            pool,
            tuple(self.probabilities[i, :k].tolist()),
            tuple(self.scores[i, :k].tolist()),
            j,
            pool[j],
            float(self.propensity[i]),
            bool(self.explored[i]),
            self.policy,
            self.model_version,
        )

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self._one(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._one(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DecisionBatch({len(self)} decisions, policy={self.policy!r}, version={self.model_version})"


@dataclass(frozen=True)
class LoggedFeedback:
    """What was shown and what it earned: the events' candidate features, shown index, propensity, reward."""

    batch: CandidateBatch
    chosen: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray

    def __post_init__(self) -> None:
        n = self.batch.n
        chosen = np.asarray(self.chosen)
        propensity = np.asarray(self.propensity, dtype=np.float64)
        reward = np.asarray(self.reward, dtype=np.float64)
        for name, arr in (("chosen", chosen), ("propensity", propensity), ("reward", reward)):
            if arr.shape != (n,):
                raise DimensionError(f"LoggedFeedback.{name} must have shape ({n},). Got {arr.shape}.")
        if n and not np.issubdtype(chosen.dtype, np.integer):
            raise ValidationError(
                f"LoggedFeedback.chosen must hold integer indices. Got dtype {chosen.dtype}."
            )
        chosen = chosen.astype(np.int64)
        if n and (
            (chosen < 0).any()
            or (chosen >= self.batch.k).any()
            or not self.batch.mask[np.arange(n), np.clip(chosen, 0, self.batch.k - 1)].all()
        ):
            raise UnknownIdError("LoggedFeedback.chosen points outside an event's pool (unknown artwork).")
        if not np.isfinite(propensity).all() or (propensity <= 0).any() or (propensity > 1).any():
            raise ValidationError("LoggedFeedback.propensity must be in (0, 1].")
        if not np.isfinite(reward).all():
            raise ValidationError("LoggedFeedback.reward contains NaN or inf.")
        object.__setattr__(self, "chosen", chosen)
        object.__setattr__(self, "propensity", propensity)
        object.__setattr__(self, "reward", reward)

    @property
    def n(self) -> int:
        return self.batch.n

    @property
    def shown_X(self) -> np.ndarray:
        return self.batch.shown_X(self.chosen)

    @property
    def shown_ids(self) -> np.ndarray:
        return self.batch.artwork_ids[np.arange(self.n), self.chosen]

    def take(self, index: np.ndarray | Sequence[int]) -> LoggedFeedback:
        idx = np.asarray(index, dtype=np.int64)
        return LoggedFeedback(self.batch.take(idx), self.chosen[idx], self.propensity[idx], self.reward[idx])

    @classmethod
    def from_events(
        cls,
        featurizer: Featurizer,
        contexts: Sequence[MemberContext],
        title_ids: Sequence[str],
        pools: Sequence[Sequence[str]],
        shown: Sequence[str],
        propensity: Sequence[float] | np.ndarray,
        reward: Sequence[float] | np.ndarray,
    ) -> LoggedFeedback:
        """Feedback from raw logged events: contexts, pools and the shown artwork ids (not indices).
        ``featurizer`` is a ``keyart.features.Featurizer`` or anything with its ``events`` method."""
        n = len(contexts)
        if len(shown) != n:
            raise DimensionError(f"shown must have one artwork id per event ({n}). Got {len(shown)}.")
        chosen = np.empty(n, dtype=np.int64)
        for i, (pool, a) in enumerate(zip(pools, shown, strict=True)):
            try:
                chosen[i] = list(pool).index(a)
            except ValueError:
                raise UnknownIdError(f"shown[{i}] = {a!r} is not in that event's pool.") from None
        batch = featurizer.events(contexts, title_ids, pools)
        return cls(
            batch, chosen, np.asarray(propensity, dtype=np.float64), np.asarray(reward, dtype=np.float64)
        )

    @classmethod
    def from_event(
        cls,
        featurizer: Featurizer,
        context: MemberContext,
        title_id: str,
        pool: Sequence[str],
        shown: str,
        propensity: float,
        reward: float,
    ) -> LoggedFeedback:
        """Feedback of one raw logged event (``from_events`` with one of each)."""
        return cls.from_events(featurizer, [context], [title_id], [pool], [shown], [propensity], [reward])

    @classmethod
    def from_decisions(
        cls, batch: CandidateBatch, decisions: Sequence[Decision], rewards: Sequence[float] | np.ndarray
    ) -> LoggedFeedback:
        if len(decisions) != batch.n:
            raise DimensionError(f"Got {len(decisions)} decisions for a batch of {batch.n} events.")
        if isinstance(decisions, DecisionBatch):
            chosen, propensity = decisions.index, decisions.propensity
        else:
            chosen = np.array([d.index for d in decisions], dtype=np.int64)
            propensity = np.array([d.propensity for d in decisions], dtype=np.float64)
        return cls(batch, chosen, propensity, np.asarray(rewards, dtype=np.float64))
