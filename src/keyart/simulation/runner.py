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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from keyart.batch import CandidateBatch
from keyart.context import SECONDS_PER_DAY, MemberContext
from keyart.errors import ValidationError
from keyart.features import Featurizer
from keyart.simulation.world import Events, Requests, World

ProgressCallback = Callable[[int], None]
"""Called with the number of requests just completed (e.g. a rich progress bar's ``advance``)."""


class Agent(Protocol):
    """Anything that can act in the closed loop: choose one candidate per row, learn from rewards.

    An agent may also have ``next_cut(request: int) -> int``: the first request number after ``request``
    before which it needs the feedback of every earlier request (a batch cycle's training time); the
    runner then ends the update window there.
    """

    name: str

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """(chosen index (n,), propensity of the chosen candidate (n,))."""
        ...

    def learn(
        self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray
    ) -> None:
        """Learn from one window of logged feedback."""
        ...


def decision_arrays(decisions: Any) -> tuple[np.ndarray, np.ndarray]:
    """(chosen index (n,), propensity (n,)) of ``policy.choose``'s result (columns when it has them)."""
    index = getattr(decisions, "index", None)
    if isinstance(index, np.ndarray):
        return index.astype(np.int64), np.asarray(decisions.propensity, dtype=np.float64)
    n = len(decisions)
    return (
        np.fromiter((d.index for d in decisions), dtype=np.int64, count=n),
        np.fromiter((d.propensity for d in decisions), dtype=np.float64, count=n),
    )


POOL_SIZE_EDGES: tuple[int, ...] = (4, 6, 8, 11, 15, 24)
"""Pool-size buckets for choosing: rows are grouped so that a batch is padded to its bucket's size only."""


def pool_size_buckets(
    batch: CandidateBatch, edges: tuple[int, ...] = POOL_SIZE_EDGES
) -> list[tuple[np.ndarray, CandidateBatch]]:
    """Split a batch into (rows, sub-batch) by pool size, each padded only to its own largest pool.

    Row results of every keyart policy depend on that row alone (and, for the Thompson policies' quasi-Monte
    Carlo probabilities, on the padded width, within their error), so choosing per bucket gives the
    decisions of choosing on the whole batch, with far less work on padding (pools range 3 to 24).
    """
    sizes = batch.pool_sizes
    out = []
    lower = 0
    for edge in (*edges, int(sizes.max())):
        rows = np.flatnonzero((sizes > lower) & (sizes <= edge))
        lower = max(lower, edge)
        if rows.size == 0:
            continue
        out.append((rows, batch.take(rows).narrowed(int(sizes[rows].max()))))
    return out


def bucketed_probabilities(policy: Any, batch: CandidateBatch) -> np.ndarray:
    """``policy.probabilities(batch)`` (n, K), computed per pool-size bucket (``pool_size_buckets``): the
    same rows (for the Thompson policies, whose probabilities are quasi-Monte Carlo estimates on points of
    the pools' padded width, the same to within their error), far less work on padding."""
    out = np.zeros((batch.n, batch.k))
    for rows, sub in pool_size_buckets(batch):
        out[rows, : sub.k] = policy.probabilities(sub)
    return out


class PolicyAgent:
    """A keyart policy in the loop: ``policy.choose`` to act, ``policy.update(LoggedFeedback)`` to learn.

    ``bucket``: choose per pool-size bucket (same decisions, less padding work).
    """

    def __init__(self, policy: Any, name: str | None = None, learn: bool = True, bucket: bool = True) -> None:
        self.policy = policy
        self.name = name or str(getattr(policy, "name", type(policy).__name__))
        self.learning = learn
        self.bucket = bucket

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        chosen = np.zeros(batch.n, dtype=np.int64)
        prop = np.zeros(batch.n)
        parts = pool_size_buckets(batch) if self.bucket else [(np.arange(batch.n), batch)]
        for rows, sub in parts:
            chosen[rows], prop[rows] = decision_arrays(self.policy.choose(sub))
        return chosen, prop

    def learn(
        self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray
    ) -> None:
        if not self.learning:
            return
        from keyart.feedback import LoggedFeedback

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
        return slice(round(start * n), round(stop * n))

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


REQUEST_BLOCK = 50
"""Requests per block of the request stream. Each block draws its requests and its outcome uniforms from
its own generator, keyed by (world seed, run seed, block number), and the world's clock (with the
catalog's arrivals) moves only between blocks; so the stream depends neither on how it is cut into update
windows nor on the run's length."""


@dataclass(frozen=True)
class Window:
    """One update window of the request stream: the pages, the world's view and the policy's view."""

    start: int  # number of requests before this window
    requests: Requests
    events: Events
    contexts: list[MemberContext]
    batch: CandidateBatch
    uniforms: np.ndarray  # (events.n, 2): the outcome draws' uniforms (``world.draw(..., uniforms=)``)
    seconds_world: float
    seconds_featurize: float


@dataclass(frozen=True)
class _Rows:
    """Generated requests not yet handed out: the world's view, contexts and outcome uniforms."""

    requests: Requests
    events: Events
    contexts: list[MemberContext]
    uniforms: np.ndarray

    @property
    def n(self) -> int:
        return self.requests.n

    def split(self, m: int, page: int) -> tuple[_Rows, _Rows]:
        """(the first ``m`` requests, the rest)."""
        head, tail = slice(0, m), slice(m, None)
        return (
            _Rows(
                self.requests.take(head),
                self.events.take(slice(0, m * page)),
                self.contexts[:m],
                self.uniforms[: m * page],
            ),
            _Rows(
                self.requests.take(tail),
                self.events.take(slice(m * page, None)),
                self.contexts[m:],
                self.uniforms[m * page :],
            ),
        )

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        if len(parts) == 1:
            return parts[0]
        return _Rows(
            Requests.concat([p.requests for p in parts]),
            Events.concat([p.events for p in parts]),
            [c for p in parts for c in p.contexts],
            np.concatenate([p.uniforms for p in parts]),
        )


def _block(world: World, entropy: list[int], block: int, t_start: float) -> _Rows:
    """Block ``block`` of the stream, drawn from its own generators under the world's current catalog.

    With ``world.block_cache`` set to a dict (off by default), blocks are kept there and handed to the
    next run of the same stream (a benchmark running several agents on one world); they are immutable.
    """
    cache = world.block_cache
    key = (tuple(entropy), block, t_start, world.catalog.version)
    if cache is not None and key in cache:
        return cache[key]  # type: ignore[no-any-return]
    s_requests, s_luck = np.random.SeedSequence(entropy, spawn_key=(block,)).spawn(2)
    dt = SECONDS_PER_DAY / world.config.requests_per_day
    requests = world.sample_requests(
        REQUEST_BLOCK, np.random.default_rng(s_requests), start=t_start + block * REQUEST_BLOCK * dt
    )
    events, _ = world.events(requests)
    uniforms = np.random.default_rng(s_luck).random((events.n, 2))
    rows = _Rows(requests, events, world.contexts(requests), uniforms)
    if cache is not None:
        cache[key] = rows
    return rows


def _trim(events: Events) -> Events:
    """Events padded only to their own largest pool (the width of their candidate batch)."""
    k = int(events.mask.sum(1).max())
    if k == events.artworks.shape[1]:
        return events
    return replace(events, artworks=events.artworks[:, :k])


def stream_windows(
    world: World,
    n_requests: int,
    *,
    window: int,
    seed: int,
    featurizer: Featurizer,
    cut: Callable[[int], int] | None = None,
) -> Iterator[Window]:
    """The request stream of a run from the world's clock (reset the world first), one window at a time.

    Requests and outcome uniforms depend only on ``(world seed, seed)`` and the request's number: they
    are drawn in fixed blocks of ``REQUEST_BLOCK`` requests, so every window size, and every agent, sees
    the same members, pages and luck. A window holds ``window`` requests, and ends early at the request
    number ``cut(start)`` returns (an agent's phase change, a train/test split) and where the catalog
    changes: the clock moves between blocks, and titles and artworks whose time has come enter the
    catalog there, before the next window (``featurizer`` must be built on ``world.catalog``).
    """
    n_requests = _check_positive_int("n_requests", n_requests)
    window = _check_positive_int("update_every", window)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"seed must be an int >= 0. Got {seed!r}.")
    entropy = [world.config.seed, seed, 0x6C6F6F70]
    page = world.config.page_size
    t_start = world.now
    pending: list[_Rows] = []
    buffered = 0
    block = 0
    clock: float | None = None  # end of the last generated block: where the clock moves next
    done = 0
    while done < n_requests:
        m = min(window, n_requests - done)
        if cut is not None:
            stop = int(cut(done))
            if done < stop < done + m:
                m = stop - done
        t0 = time.perf_counter()
        while buffered < m:
            if clock is not None:
                if buffered and world.arrivals_due(clock):
                    m = buffered  # the catalog changes after these rows: the window ends here
                    break
                world.advance_to(clock)
            rows = _block(world, entropy, block, t_start)
            pending.append(rows)
            buffered += rows.n
            block += 1
            clock = float(rows.requests.timestamp[-1])
        rows = _Rows.concat(pending)
        if rows.n > m:
            rows, rest = rows.split(m, page)
            pending = [rest]
        else:
            pending = []
        buffered -= m
        events = _trim(rows.events)
        t1 = time.perf_counter()
        batch = featurize_pages(featurizer, world, rows.requests, rows.contexts, offset=done)
        t2 = time.perf_counter()
        _check_alignment(world, batch, events)
        yield Window(done, rows.requests, events, rows.contexts, batch, rows.uniforms, t1 - t0, t2 - t1)
        done += m
        last = float(rows.requests.timestamp[-1])
    world.advance_to(last)


def _learner_featurizer(catalog: Any) -> Featurizer:
    """The closed loop's default featurizer, the one a service's learner gives a new model
    (``ServiceConfig.new_model_features``): the catalog's exact vocabularies, and countries, languages and
    devices that get columns of their own as requests first carry them, all growing as values arrive."""
    return Featurizer(catalog, grow=True)


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
    seed)`` (not on ``update_every``), so every agent run with the same seed faces the same members, pages
    and luck. The agent learns every ``update_every`` requests, and also where its ``next_cut`` (if it has
    one) says it needs the feedback so far, and where new titles or artworks arrive.
    """
    n_requests = _check_positive_int("n_requests", n_requests)
    update_every = _check_positive_int("update_every", update_every)
    world.reset()
    featurizer = (featurizer_factory or _learner_featurizer)(world.catalog)
    page = world.config.page_size
    cols: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "member",
            "title",
            "interacted",
            "pool_size",
            "chosen",
            "propensity",
            "play",
            "reward",
            "expected",
            "oracle",
            "random",
        )
    }
    seconds = {"world": 0.0, "featurize": 0.0, "choose": 0.0, "update": 0.0}
    cut = getattr(agent, "next_cut", None)
    for w in stream_windows(
        world, n_requests, window=update_every, seed=seed, featurizer=featurizer, cut=cut
    ):
        t2 = time.perf_counter()
        chosen, propensity = agent.act(w.batch)
        t3 = time.perf_counter()
        events = w.events
        outcomes = world.draw(events, chosen, uniforms=w.uniforms)
        q = world.expected(events)
        mask = events.mask
        best = np.where(mask, q, -1.0).max(1)
        reward = outcomes.quality.astype(np.float64)
        t4 = time.perf_counter()
        agent.learn(w.batch, chosen, propensity, reward)
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
        seconds["world"] += w.seconds_world + (t4 - t3)
        seconds["featurize"] += w.seconds_featurize
        seconds["choose"] += t3 - t2
        seconds["update"] += t5 - t4
        if progress is not None:
            progress(w.requests.n)
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
    featurizer: Featurizer, world: World, requests: Requests, contexts: list[MemberContext], offset: int = 0
) -> CandidateBatch:
    """Every request's page in one batch (rows request-major), request ids ``r<offset + i>``."""
    titles = [[world.title_ids[int(t)] for t in row] for row in requests.titles.tolist()]
    return featurizer.pages(contexts, titles, [f"r{offset + i}" for i in range(len(contexts))])


def _check_alignment(world: World, batch: CandidateBatch, events: Events) -> None:
    """The policy's candidate columns must be the world's pools in the same order (cheap spot check)."""
    k = min(batch.k, events.artworks.shape[1])
    row = 0
    ids = batch.artwork_ids[row, :k]
    want = [world.artwork_ids[a] if a >= 0 else "" for a in events.artworks[row, :k]]
    if list(ids) != want:
        raise ValidationError("The featurizer's candidate columns do not match the world's pools.")
