"""One title per request, in closed loop: keyart LinUCB against the 100-line numpy LinUCB reference.

Each request holds one (member, title) — a Personalizer-style Rank call, or the seed's per-asset request:
featurize it, choose, draw the member's response from a hidden truth, and learn every ``--update-every``
requests from the events since the last update (both agents at the same cadence). The reference is
``benchmarks/reference_linucb.py``: one-hot context x one-hot artwork, every context x artwork cross, one
shared ridge regression inverted after each update. keyart runs with each kernel backend
(``KEYART_KERNELS``: numba and numpy). Rounds are interleaved (each round runs every agent on the same
block of requests), BLAS pinned to one thread; the table gives the median requests/s over rounds, and the
ratio to the reference in the same run.

    python benchmarks/bench_one_title.py [--requests 2000] [--rounds 5] [--update-every 100] [--quick]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_policies import members, synthetic_catalog  # noqa: E402
from keyart import kernels  # noqa: E402
from keyart.batch import CandidateBatch  # noqa: E402
from keyart.catalog import Catalog  # noqa: E402
from keyart.context import MemberContext  # noqa: E402
from keyart.features import Featurizer  # noqa: E402
from keyart.feedback import LoggedFeedback  # noqa: E402
from keyart.policies import make_policy  # noqa: E402
from reference_linucb import ReferenceFeaturizer, ReferenceLinUCB  # noqa: E402


def requests(catalog: Catalog, n: int, seed: int) -> list[tuple[MemberContext, str]]:
    """n (member context, title) requests: 500 members with scores from a recommender, titles at random."""
    rng = np.random.default_rng(seed)
    titles = list(catalog.titles)
    ms = [
        replace(m, recommender_scores={t: float(rng.random()) for t in rng.choice(titles, 20)})
        for m in members(catalog, 500, seed)
    ]
    who, what = rng.integers(0, len(ms), n), rng.integers(0, len(titles), n)
    return [(ms[i], titles[j]) for i, j in zip(who.tolist(), what.tolist(), strict=True)]


def truth(catalog: Catalog, seed: int) -> dict[tuple[str, str], float]:
    """P(quality play) per (member device, artwork): the hidden truth both agents learn."""
    rng = np.random.default_rng([seed, 1])
    return {(d, a): float(rng.uniform(0.02, 0.3)) for d in ("tv", "mobile", "web") for a in catalog.artworks}


class KeyartAgent:
    """keyart LinUCB on its own featurizer, with one kernel backend."""

    def __init__(self, catalog: Catalog, backend: str, seed: int) -> None:
        self.name, self.backend = f"keyart linucb ({backend})", backend
        self.featurizer = Featurizer(catalog)
        self.policy = make_policy("linucb", seed=seed)

    def act(self, ctx: MemberContext, title: str, rid: str) -> tuple[CandidateBatch, int, float, str]:
        batch = self.featurizer.page(ctx, [title], request_id=rid)
        d = self.policy.choose(batch)
        return batch, int(d.index[0]), float(d.propensity[0]), str(d.artwork_ids[0])

    def learn(self, events: list[tuple[CandidateBatch, int, float, float]]) -> None:
        batch = CandidateBatch.concat([e[0] for e in events])
        chosen = np.array([e[1] for e in events])
        prop, reward = np.array([e[2] for e in events]), np.array([e[3] for e in events])
        self.policy.update(LoggedFeedback(batch, chosen, prop, reward))


class ReferenceAgent:
    """The 100-line numpy LinUCB of ``reference_linucb.py`` on its one-hot featurizer."""

    backend = "numpy"

    def __init__(self, catalog: Catalog, seed: int) -> None:
        self.name = "reference LinUCB (numpy)"
        self.featurizer = ReferenceFeaturizer(catalog)
        self.policy = ReferenceLinUCB(seed)

    def act(self, ctx: MemberContext, title: str, rid: str) -> tuple[Any, int, float, str]:
        batch = self.featurizer.pages([ctx], [[title]], [rid])
        chosen, prop = self.policy.act(batch)
        return batch, int(chosen[0]), float(prop[0]), str(batch.artwork_ids[0, chosen[0]])

    def learn(self, events: list[tuple[Any, int, float, float]]) -> None:
        batch = CandidateBatch.concat([e[0] for e in events])
        batch.context = np.concatenate([e[0].context for e in events])  # type: ignore[attr-defined]
        chosen = np.array([e[1] for e in events])
        prop, reward = np.array([e[2] for e in events]), np.array([e[3] for e in events])
        self.policy.learn(batch, chosen, prop, reward)


def run_block(
    agent: Any, block: Sequence[tuple[MemberContext, str]], start: int, update_every: int, p: dict, seed: int
) -> tuple[float, float]:
    """Serve one block of requests (choose each, learn every ``update_every``); (seconds, rewards)."""
    kernels.use(agent.backend)
    rng = np.random.default_rng([seed, start])
    draws = rng.random(len(block))
    events: list[Any] = []
    earned = 0.0
    t0 = time.perf_counter()
    for i, (ctx, title) in enumerate(block):
        batch, chosen, prop, art = agent.act(ctx, title, f"r{start + i}")
        reward = float(draws[i] < p[ctx.device, art])
        earned += reward
        events.append((batch, chosen, prop, reward))
        if len(events) == update_every:
            agent.learn(events)
            events = []
    if events:
        agent.learn(events)
    return time.perf_counter() - t0, earned


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--update-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.rounds = 200, 2
    catalog = synthetic_catalog(200, 12, seed=1)
    p = truth(catalog, args.seed)
    reqs = requests(catalog, args.requests * (args.rounds + 1), args.seed)
    agents: list[Any] = [ReferenceAgent(catalog, args.seed)]
    if kernels.use("auto") == "numba":
        agents.append(KeyartAgent(catalog, "numba", args.seed))
    agents.append(KeyartAgent(catalog, "numpy", args.seed))
    times: dict[str, list[float]] = {a.name: [] for a in agents}
    earned: dict[str, float] = dict.fromkeys(times, 0.0)
    for r in range(args.rounds + 1):  # round 0 warms up (first model, caches); not timed
        block = reqs[r * args.requests : (r + 1) * args.requests]
        for agent in agents:
            seconds, gain = run_block(agent, block, r * args.requests, args.update_every, p, args.seed)
            if r:
                times[agent.name].append(seconds)
                earned[agent.name] += gain
    kernels.use("auto")
    rate = {name: args.requests / statistics.median(t) for name, t in times.items()}
    ref = rate[agents[0].name]
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, BLAS threads 1; "
        f"{args.rounds} rounds x {args.requests:,} requests of one title (12 candidates), "
        f"update every {args.update_every}"
    )
    print(f"{'agent':30s} {'requests/s':>11s} {'x reference':>12s} {'take rate':>10s}")
    served = args.rounds * args.requests
    for name, value in rate.items():
        print(f"{name:30s} {value:11,.0f} {value / ref:11.2f}x {earned[name] / served:10.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
