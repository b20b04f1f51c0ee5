"""Decision and outcome rows as objects: ``DecisionRecord`` (one row of the decision table, whose columns
``keyart.events.rows.DecisionColumns`` builds) and ``OutcomeRecord``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keyart.context import MemberContext
from keyart.events.schema import context_to_json


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as stored. ``from_decision`` builds it from a ``keyart.feedback.Decision``."""

    event_id: str
    timestamp: float
    member_id: str
    title_id: str
    pool: tuple[str, ...]
    probabilities: tuple[float, ...]
    chosen_index: int
    artwork_id: str
    propensity: float
    policy: str
    model_version: int
    explored: bool
    request_id: str | None = None
    page: str | None = None
    position: int | None = None
    context_json: str | None = None
    features: tuple[float, ...] | None = None
    fallback: bool = False

    @classmethod
    def from_decision(
        cls,
        decision: Any,
        context: MemberContext | None = None,
        page: str | None = None,
        position: int | None = None,
        features: Sequence[float] | None = None,
    ) -> DecisionRecord:
        """A record from a policy ``Decision`` (duck-typed on the core API's field names)."""
        return cls(
            event_id=decision.decision_id,
            timestamp=float(decision.timestamp),
            member_id=decision.member_id,
            title_id=decision.title_id,
            pool=tuple(decision.pool),
            probabilities=tuple(float(p) for p in decision.probabilities),
            chosen_index=int(decision.index),
            artwork_id=decision.artwork_id,
            propensity=float(decision.propensity),
            policy=decision.policy,
            model_version=int(decision.model_version),
            explored=bool(decision.explored),
            request_id=getattr(decision, "request_id", None),
            page=page,
            position=position,
            context_json=None if context is None else context_to_json(context),
            features=None if features is None else tuple(float(f) for f in features),
            fallback=bool(getattr(decision, "fallback", False)),
        )


@dataclass(frozen=True)
class OutcomeRecord:
    """One member action. ``decision_id`` when known, else ``keyart.rewards`` matches member and title."""

    event_id: str
    member_id: str
    title_id: str
    event_type: str
    timestamp: float
    decision_id: str | None = None
    engaged_seconds: float | None = None
