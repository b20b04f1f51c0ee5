"""The closed loop: members ask for pages, a policy chooses artworks, the world answers, the policy learns.

A *request* is one member's page of ``WorldConfig.page_size`` titles, with one decision per title (the
batched API: ``featurizer.page(context, title_ids)`` then ``policy.choose(batch)``). Updates are batched:
every ``update_every`` requests the policy receives one ``LoggedFeedback`` of everything since the last
update, as a production learner retrains on a schedule. Because the policy is frozen between updates,
the pages of one update window are featurized per page and chosen in one call (same decisions, fewer
Python round trips). Regret is measured with expected values under the hidden truth (oracle's
P(quality play) minus the shown artwork's), so curves are smooth; rewards themselves are drawn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from keyart.errors import ValidationError
from keyart.features import CandidateBatch, Featurizer
from keyart.simulation.world import Events, World

ProgressCallback = Callable[[int], None]
"""Called with the number of requests just completed (e.g. a rich progress bar's ``advance``)."""


class Agent(Protocol):
    """Anything that can act in the closed loop: choose one candidate per row, learn from rewards."""

    name: str

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """(chosen index (n,), propensity of the chosen candidate (n,))."""
        ...

    def learn(self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> None:
        """Learn from one window of logged feedback."""
        ...


class PolicyAgent:
    """A keyart policy in the loop: ``policy.choose`` to act, ``policy.update(LoggedFeedback)`` to learn."""

    def __init__(self, policy: Any, name: str | None = None, learn: bool = True) -> None:
        self.policy = policy
        self.name = name or str(getattr(policy, "name", type(policy).__name__))
        self.learning = learn

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        decisions = self.policy.choose(batch)
        chosen = np.fromiter((d.index for d in decisions), dtype=np.int64, count=len(decisions))
        prop = np.fromiter((d.propensity for d in decisions), dtype=np.float64, count=len(decisions))
        return chosen, prop

    def learn(self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> None:
        if not self.learning:
            return
        from keyart.policies import LoggedFeedback

        self.policy.update(LoggedFeedback(batch=batch, chosen=chosen, propensity=propensity, reward=reward))


@dataclass(frozen=True)
class RunResult:
    """Everything a closed-loop run decided and earned, one entry per decision (request-major order)."""

    name: str
    n_requests: int
    page_size: int
    update_every: int
    request: np.ndarray  # (N,) request number
    member: np.ndarray  # (N,) world member index
    title: np.ndarray  # (N,) world title index
    interacted: np.ndarray  # (N,) bool: the member already knew the title
    pool_size: np.ndarray  # (N,)
    chosen: np.ndarray  # (N,) index into the pool
    propensity: np.ndarray  # (N,)
    play: np.ndarray  # (N,) bool, drawn
    reward: np.ndarray  # (N,) float, drawn quality play
    expected: np.ndarray  # (N,) expected reward of the shown artwork
    oracle: np.ndarray  # (N,) expected reward of the best artwork
    random: np.ndarray  # (N,) expected reward of a uniformly random artwork
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_decisions(self) -> int:
        return int(self.chosen.shape[0])

    def _slice(self, start: float, stop: float) -> slice:
        n = self.n_decisions
        return slice(int(round(start * n)), int(round(stop * n)))

    def take_fraction(self, start: float = 0.0, stop: float = 1.0, expected: bool = True) -> float:
        """Mean quality plays per impression over a fraction of the run (expected values by default)."""
        s = self._slice(start, stop)
        return float((self.expected if expected else self.reward)[s].mean())

    def oracle_take_fraction(self, start: float = 0.0, stop: float = 1.0) -> float:
        return float(self.oracle[self._slice(start, stop)].mean())

    def random_take_fraction(self, start: float = 0.0, stop: float = 1.0) -> float:
        return float(self.random[self._slice(start, stop)].mean())

    def gap_captured(self, start: float = 0.0, stop: float = 1.0) -> float:
        """(policy - random) / (oracle - random) over the same decisions."""
        r, o = self.random_take_fraction(start, stop), self.oracle_take_fraction(start, stop)
        return (self.take_fraction(start, stop) - r) / (o - r)

    def cumulative_regret(self) -> np.ndarray:
        """(n_requests,) cumulative expected regret against the oracle after each request."""
        per_request = (self.oracle - self.expected).reshape(self.n_requests, self.page_size).sum(1)
        return np.cumsum(per_request)

    def curve(self, n_points: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """(request at bin end, mean expected take fraction within the bin) for a learning curve."""
        bins = np.array_split(np.arange(self.n_decisions), n_points)
        ends = np.array([(b[-1] + 1) // self.page_size for b in bins if len(b)])
        vals = np.array([self.expected[b].mean() for b in bins if len(b)])
        return ends, vals

    @property
    def requests_per_second(self) -> float:
        """Closed-loop throughput of the policy's own work (featurize + choose + update)."""
        busy = sum(self.seconds.get(k, 0.0) for k in ("featurize", "choose", "update"))
        return self.n_requests / busy if busy > 0 else float("inf")

    def summary(self, last: float = 0.2) -> dict[str, float | str]:
        """Headline numbers of the last ``last`` fraction of the run."""
        start = 1.0 - last
        return {
            "policy": self.name,
            "take_fraction": self.take_fraction(start),
            "take_fraction_drawn": self.take_fraction(start, expected=False),
            "random": self.random_take_fraction(start),
            "oracle": self.oracle_take_fraction(start),
            "gap_captured": self.gap_captured(start),
            "requests_per_second": self.requests_per_second,
        }


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValidationError(f"{name} must be a positive int. Got {value!r}.")
    return int(value)


def run_closed_loop(
    world: World,
    agent: Agent,
    n_requests: int,
    *,
    update_every: int = 500,
    seed: int = 0,
    featurizer_factory: Callable[[Any], Featurizer] | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Run ``agent`` for ``n_requests`` page requests in closed loop against ``world``.

    The world is reset first; the request stream and the outcome draws depend only on ``(world seed,
    seed)``, so every agent run with the same seed faces the same members, pages and luck.
    """
    n_requests = _check_positive_int("n_requests", n_requests)
    update_every = _check_positive_int("update_every", update_every)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"seed must be an int >= 0. Got {seed!r}.")
    world.reset()
    featurizer = (featurizer_factory or Featurizer)(world.catalog)
    ss = np.random.SeedSequence([world.config.seed, seed, 0x6C6F6F70])
    req_rng, out_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    page = world.config.page_size
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "member", "title", "interacted", "pool_size", "chosen", "propensity", "play", "reward", "expected",
        "oracle", "random")}
    seconds = {"world": 0.0, "featurize": 0.0, "choose": 0.0, "update": 0.0}
    done = 0
    while done < n_requests:
        m = min(update_every, n_requests - done)
        t0 = time.perf_counter()
        requests = world.sample_requests(m, req_rng)
        events, pools = world.events(requests)
        contexts = world.contexts(requests)
        t1 = time.perf_counter()
        batch = featurize_pages(featurizer, world, requests, contexts, offset=done)
        t2 = time.perf_counter()
        chosen, propensity = agent.act(batch)
        t3 = time.perf_counter()
        _check_alignment(world, batch, events)
        outcomes = world.draw(events, chosen, out_rng)
        q = world.expected(events)
        mask = events.mask
        best = np.where(mask, q, -1.0).max(1)
        world.advance_to(float(requests.timestamp[-1]))
        t4 = time.perf_counter()
        reward = outcomes.quality.astype(np.float64)
        agent.learn(batch, chosen, propensity, reward)
        t5 = time.perf_counter()
        cols["member"].append(events.member)
        cols["title"].append(events.title)
        cols["interacted"].append(events.interacted)
        cols["pool_size"].append(mask.sum(1))
        cols["chosen"].append(chosen)
        cols["propensity"].append(propensity)
        cols["play"].append(outcomes.play)
        cols["reward"].append(reward)
        cols["expected"].append(outcomes.expected)
        cols["oracle"].append(best)
        cols["random"].append(q.sum(1) / mask.sum(1))
        seconds["world"] += (t1 - t0) + (t4 - t3)
        seconds["featurize"] += t2 - t1
        seconds["choose"] += t3 - t2
        seconds["update"] += t5 - t4
        done += m
        if progress is not None:
            progress(m)
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    return RunResult(
        name=agent.name,
        n_requests=n_requests,
        page_size=page,
        update_every=update_every,
        request=np.repeat(np.arange(n_requests), page),
        seconds=seconds,
        **arrays,
    )


def featurize_pages(
    featurizer: Featurizer, world: World, requests: Any, contexts: list[Any], offset: int = 0
) -> CandidateBatch:
    """One ``featurizer.page`` call per request, concatenated into one batch (rows request-major)."""
    batches = [
        featurizer.page(ctx, [world.title_ids[int(t)] for t in requests.titles[i]], request_id=f"r{offset + i}")
        for i, ctx in enumerate(contexts)
    ]
    return batches[0] if len(batches) == 1 else concat_batches(batches)


def concat_batches(batches: list[CandidateBatch]) -> CandidateBatch:
    """``CandidateBatch.concat`` with one preallocation instead of a pad per batch (same result)."""
    k = max(b.k for b in batches)
    n = sum(b.n for b in batches)
    d = batches[0].d
    X = np.zeros((n, k, d))
    mask = np.zeros((n, k), dtype=bool)
    ids = np.full((n, k), "", dtype=object)
    i = 0
    for b in batches:
        X[i : i + b.n, : b.k] = b.X
        mask[i : i + b.n, : b.k] = b.mask
        ids[i : i + b.n, : b.k] = b.artwork_ids
        i += b.n
    return CandidateBatch(
        X,
        mask,
        ids,
        np.concatenate([b.title_ids for b in batches]),
        np.concatenate([b.member_ids for b in batches]),
        np.concatenate([b.request_ids for b in batches]),
        np.concatenate([b.timestamps for b in batches]),
        batches[0].feature_names,
    )


def _check_alignment(world: World, batch: CandidateBatch, events: Events) -> None:
    """The policy's candidate columns must be the world's pools in the same order (cheap spot check)."""
    k = min(batch.k, events.artworks.shape[1])
    row = 0
    ids = batch.artwork_ids[row, :k]
    want = [world.artwork_ids[a] if a >= 0 else "" for a in events.artworks[row, :k]]
    if list(ids) != want:
        raise ValidationError("The featurizer's candidate columns do not match the world's pools.")
