"""Agents for the closed loop beyond a single policy: the classic batch cycle and an A/B split.

Both are built from ordinary keyart policies and act through ``policy.choose``, so every decision they
log carries the exact propensity of the policy that made it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from keyart.batch import CandidateBatch
from keyart.errors import ValidationError
from keyart.feedback import LoggedFeedback
from keyart.hashing import stable_hash
from keyart.policies import Policy, UniformPolicy
from keyart.simulation.runner import Agent, PolicyAgent, decision_arrays


def _choose(
    policy: Policy, batch: CandidateBatch, rows: np.ndarray, chosen: np.ndarray, prop: np.ndarray
) -> None:
    if rows.size == 0:
        return
    chosen[rows], prop[rows] = decision_arrays(policy.choose(batch.take(rows)))


def arm_of(member_ids: np.ndarray, salt: str = "ab") -> np.ndarray:
    """(n,) 0/1 A/B arm per member: a stable keyed hash, so a member stays in one arm for the whole test."""
    cache: dict[str, int] = {}
    out = np.empty(len(member_ids), dtype=np.int64)
    for i, m in enumerate(member_ids.tolist()):
        v = cache.get(m)
        if v is None:
            v = stable_hash(m, salt) & 1
            cache[m] = v
        out[i] = v
    return out


class BatchCycleAgent:
    """The classic batch cycle: collect (uniform exploration), train, A/B test, roll out, repeat.

    Each cycle of ``cycle_requests`` requests spends ``collect`` of it serving uniformly random artwork
    (the training data), then trains a fresh model on all exploration data gathered so far, A/B tests it
    for ``ab_test`` of the cycle (half the members, by hash, keep the production model) and rolls it out
    for the rest of the cycle. Production models serve greedily and do not learn between cycles.

    Training needs the rewards of the whole collect phase, so ``next_cut`` tells the runner to end an
    update window where each collect phase ends (training with feedback missing raises); ``trained_on``
    records how many exploration decisions each new model was trained on.
    """

    def __init__(
        self,
        make_model: Callable[[], Policy],
        page_size: int,
        cycle_requests: int,
        collect: float = 0.2,
        ab_test: float = 0.2,
        seed: int = 0,
        name: str = "batch cycle",
    ) -> None:
        if not 0 < collect < 1 or not 0 <= ab_test < 1 or collect + ab_test >= 1:
            raise ValidationError(
                f"collect and ab_test must be fractions of the cycle with collect + ab_test < 1. "
                f"Got collect={collect!r}, ab_test={ab_test!r}."
            )
        if cycle_requests < 1:
            raise ValidationError(f"cycle_requests must be a positive int. Got {cycle_requests!r}.")
        self.make_model = make_model
        self.page_size = page_size
        self.cycle_requests = cycle_requests
        self.collect = collect
        self.ab_test = ab_test
        self.name = name
        self.explore = UniformPolicy(seed=seed)
        self.production: Policy = UniformPolicy(seed=seed)
        self.candidate: Policy | None = None
        self.log: list[LoggedFeedback] = []
        self.served = 0  # requests served so far
        self.learned = 0  # requests whose feedback has been received
        self.phase_log: list[tuple[int, str]] = []
        self.trained_on: list[int] = []
        self._phase = ""
        self._train_at = self._first_after_collect()

    def _first_after_collect(self) -> int:
        """Position in its cycle of the first request past the collect phase (where training happens)."""
        k = min(max(math.ceil(self.collect * self.cycle_requests) - 1, 0), self.cycle_requests)
        while k < self.cycle_requests and self.phase(k) == "collect":
            k += 1
        while k > 0 and self.phase(k - 1) != "collect":
            k -= 1
        return k

    def phase(self, request: int) -> str:
        """Which phase of its cycle a request number falls in."""
        pos = (request % self.cycle_requests) / self.cycle_requests
        if pos < self.collect:
            return "collect"
        if pos < self.collect + self.ab_test:
            return "ab_test"
        return "rollout"

    def next_cut(self, request: int) -> int:
        """The first request number after ``request`` where a collect phase ends (a new model is trained)."""
        start = request - request % self.cycle_requests + self._train_at
        return start if start > request else start + self.cycle_requests

    def _train(self, first_request: int) -> None:
        """A fresh model trained on every exploration event gathered so far becomes the candidate."""
        if self.learned < first_request:
            raise ValidationError(
                f"BatchCycleAgent trains at request {first_request} but has the feedback of only "
                f"{self.learned} requests: end update windows at next_cut (run_closed_loop does)."
            )
        model = self.make_model()
        for fb in self.log:
            model.update(fb)
        self.candidate = model
        self.trained_on.append(sum(fb.n for fb in self.log))

    def _enter(self, phase: str, first_request: int) -> None:
        if phase == self._phase:
            return
        if self._phase == "collect":
            self._train(first_request)
        if phase == "rollout" and self.candidate is not None:
            self.production = self.candidate
        self._phase = phase
        self.phase_log.append((first_request, phase))

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        n = batch.n
        request = self.served + np.arange(n) // self.page_size
        phases = np.array([self.phase(int(r)) for r in request])
        chosen = np.zeros(n, dtype=np.int64)
        prop = np.ones(n)
        for phase in dict.fromkeys(phases.tolist()):
            rows = np.flatnonzero(phases == phase)
            self._enter(phase, int(request[rows[0]]))
            if phase == "collect":
                _choose(self.explore, batch, rows, chosen, prop)
            elif phase == "ab_test":
                arm = arm_of(batch.member_ids[rows])
                _choose(self.production, batch, rows[arm == 0], chosen, prop)
                _choose(self.candidate or self.production, batch, rows[arm == 1], chosen, prop)
            else:
                _choose(self.production, batch, rows, chosen, prop)
        self._last_phases = phases
        self.served += n // self.page_size
        return chosen, prop

    def learn(
        self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray
    ) -> None:
        rows = np.flatnonzero(self._last_phases == "collect")
        if rows.size:
            self.log.append(LoggedFeedback(batch.take(rows), chosen[rows], propensity[rows], reward[rows]))
        self.learned = self.served


class ABAgent:
    """An online A/B test: members split by a keyed hash, each arm's agent acts and learns on its own traffic.

    ``arms_`` holds the arm of every decision made, in order (0 = ``a``, 1 = ``b``).
    """

    def __init__(
        self, a: Agent | Policy, b: Agent | Policy, salt: str = "ab", name: str | None = None
    ) -> None:
        self.a = a if hasattr(a, "act") else PolicyAgent(a)
        self.b = b if hasattr(b, "act") else PolicyAgent(b)
        self.salt = salt
        self.name = name or f"A/B: {self.a.name} vs {self.b.name}"
        self.arms_: list[np.ndarray] = []

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        arm = arm_of(batch.member_ids, self.salt)
        chosen = np.zeros(batch.n, dtype=np.int64)
        prop = np.ones(batch.n)
        for agent, rows in ((self.a, np.flatnonzero(arm == 0)), (self.b, np.flatnonzero(arm == 1))):
            if rows.size:
                c, p = agent.act(batch.take(rows))
                chosen[rows], prop[rows] = c, p
        self.arms_.append(arm)
        self._arm = arm
        return chosen, prop

    def learn(
        self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray
    ) -> None:
        for agent, rows in (
            (self.a, np.flatnonzero(self._arm == 0)),
            (self.b, np.flatnonzero(self._arm == 1)),
        ):
            if rows.size:
                agent.learn(batch.take(rows), chosen[rows], propensity[rows], reward[rows])

    @property
    def arms(self) -> np.ndarray:
        return np.concatenate(self.arms_) if self.arms_ else np.zeros(0, dtype=np.int64)


__all__ = ["ABAgent", "BatchCycleAgent", "arm_of"]
