"""What members were actually shown in a closed loop: how often the artwork of a (member, title) changed
within one sticky period, and the share of decisions that explored.

The uniform that draws a (member, title)'s artwork is fixed for the member's period, but the distribution
it is drawn from is not: the model learns between update windows, and the hour-of-day and weekday
features move the scores during the day. ``ShownLog`` wraps a policy in the loop and records every
decision; ``Stickiness`` counts, among the (member, title, period) triples decided at least twice, those
whose shown artwork changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keyart.batch import CandidateBatch
from keyart.errors import DimensionError
from keyart.exploration import sticky_periods
from keyart.feedback import DecisionBatch, LoggedFeedback
from keyart.policies import Policy


@dataclass(frozen=True)
class Stickiness:
    """Counts of one policy's decisions in a closed loop (see the module docstring)."""

    policy: str
    decisions: int
    explored: int  # decisions with explored=True (the shown artwork's score below its pool's best)
    repeated: int  # (member, title, period) triples decided at least twice
    switched: int  # of those, the triples shown more than one artwork

    @property
    def explored_share(self) -> float:
        return self.explored / self.decisions if self.decisions else float("nan")

    @property
    def switch_rate(self) -> float:
        """The within-period switch rate: switched / repeated (nan when no triple was decided twice)."""
        return self.switched / self.repeated if self.repeated else float("nan")


def count_switches(
    member_ids: np.ndarray, title_ids: np.ndarray, periods: np.ndarray, shown: np.ndarray
) -> tuple[int, int]:
    """(triples decided at least twice, of which those shown more than one artwork), over (member, title,
    period) triples; the four arrays are (n,), one entry per decision."""
    n = len(shown)
    if not (len(member_ids) == len(title_ids) == len(periods) == n):
        raise DimensionError("member_ids, title_ids, periods and shown must have the same length.")
    if n == 0:
        return 0, 0
    codes = [np.unique(np.asarray(a), return_inverse=True)[1].ravel() for a in (member_ids, title_ids, shown)]
    keys = np.stack([codes[0], codes[1], np.asarray(periods, dtype=np.int64)], axis=1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.ravel()
    sizes = np.bincount(group)
    order = np.argsort(group, kind="stable")
    art = codes[2][order]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    changed = np.minimum.reduceat(art, starts) != np.maximum.reduceat(art, starts)
    repeated = sizes >= 2
    return int(repeated.sum()), int((changed & repeated).sum())


class ShownLog:
    """A policy for the closed loop that records what it shows (member, title, time, artwork, explored).

    It chooses and learns exactly as the wrapped policy does; ``stickiness()`` then summarizes the run,
    with periods computed as ``choose`` computes them (the policy's seed and ``sticky_seconds``).
    """

    def __init__(self, policy: Policy, name: str | None = None) -> None:
        self.policy = policy
        self.name = name or policy.name
        self._parts: list[tuple[np.ndarray, ...]] = []

    def choose(self, batch: CandidateBatch) -> DecisionBatch:
        decisions = self.policy.choose(batch)
        self._parts.append(
            (batch.member_ids, batch.title_ids, batch.timestamps, decisions.artwork_ids, decisions.explored)
        )
        return decisions

    def update(self, feedback: LoggedFeedback) -> ShownLog:
        self.policy.update(feedback)
        return self

    def stickiness(self) -> Stickiness:
        """Decisions, explored ones, and within-period switches of everything chosen so far."""
        if not self._parts:
            return Stickiness(self.name, 0, 0, 0, 0)
        members, titles, times, shown, explored = (np.concatenate(c) for c in zip(*self._parts, strict=True))
        p = self.policy
        periods = sticky_periods(p.seed, members.tolist(), times, p.sticky_seconds)
        repeated, switched = count_switches(members, titles, periods, shown)
        return Stickiness(self.name, int(shown.size), int(np.count_nonzero(explored)), repeated, switched)
