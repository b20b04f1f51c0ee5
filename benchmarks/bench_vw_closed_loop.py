"""keyart's policies against Vowpal Wabbit's ``cb_explore_adf`` in the same closed loop, world and seed.

VW gets equivalent features: the shared namespace ``S`` holds the context block of keyart's feature rows
(member genre affinity from history, country, language, device, hour, day of week, prior interaction,
recommender score), the action namespace ``A`` the artwork block (theme genres, style, tags, featured
cast count), the member-cast x featured-cast match and the artwork's id (its own bias); ``-q SA`` builds
every shared x action interaction (a superset of keyart's crosses). VW acts through its pmf (sampled with a
seeded generator, propensity = pmf of the shown action) and learns on every window's events with cost =
-reward, at the same cadence as keyart's policies. Throughput counts each agent's own work (featurize,
choose, update); VW's includes building its text examples, which is how its Python API is fed.

    .venv/bin/python benchmarks/bench_vw_closed_loop.py --requests 50000 --seed 0
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from keyart.batch import CandidateBatch
from keyart.simulation.config import demo_config
from keyart.simulation.experiments import format_table, make_suite_policy
from keyart.simulation.runner import PolicyAgent, RunResult, run_closed_loop
from keyart.simulation.world import World

ARTWORK_FAMILIES = ("theme", "style", "tags", "featured_cast_count", "cast_count_level", "embedding")


class VWAgent:
    """A Vowpal Wabbit ``cb_explore_adf`` workspace acting in keyart's closed loop."""

    def __init__(self, args: str, seed: int, name: str) -> None:
        import vowpalwabbit

        self.vw = vowpalwabbit.Workspace(f"{args} --quiet --random_seed {seed}")
        self.name = name
        self.rng = np.random.default_rng([seed, 0x7677])
        self._examples: list[list[str]] = []
        self._names: tuple[str, ...] | None = None

    def _namespaces(self, batch: CandidateBatch) -> None:
        """Which columns of the batch's rows go to the shared namespace S (the context families, up to
        ``extra``) and the action namespace A (the artwork's own families, ``theme`` to ``embedding``), read
        from its feature names: the closed loop's featurizer takes the catalog's vocabularies and grows, so
        the widths vary by world and run."""
        if batch.feature_names == self._names:
            return
        family = [n.split("[", 1)[0] for n in batch.feature_names]
        own = [j for j, f in enumerate(family) if f in ARTWORK_FAMILIES]
        self.shared = slice(0, len(family) - family[::-1].index("extra"))
        self.action = slice(own[0], own[-1] + 1)
        self.cast = family.index("cast_match")
        self._names = batch.feature_names

    @staticmethod
    def _feats(values: np.ndarray, prefix: str) -> str:
        nz = np.flatnonzero(values)
        return " ".join(f"{prefix}{j}:{values[j]:.5g}" for j in nz)

    def _example(self, batch: CandidateBatch, i: int) -> list[str]:
        self._namespaces(batch)
        x = batch.X[i]
        k = int(batch.mask[i].sum())
        lines = [f"shared |S {self._feats(x[0, self.shared], 's')}"]
        for a in range(k):
            feats = self._feats(x[a, self.action], "a")
            lines.append(f"|A {feats} cast:{x[a, self.cast]:.5g} id={batch.artwork_ids[i, a]}")
        return lines

    def act(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        chosen = np.zeros(batch.n, dtype=np.int64)
        prop = np.zeros(batch.n)
        u = self.rng.random(batch.n)
        self._examples = []
        for i in range(batch.n):
            ex = self._example(batch, i)
            pmf = np.asarray(self.vw.predict(ex), dtype=np.float64)
            pmf = pmf / pmf.sum()
            j = min(int(np.searchsorted(np.cumsum(pmf), u[i] * pmf.sum())), pmf.size - 1)
            chosen[i], prop[i] = j, pmf[j]
            self._examples.append(ex)
        return chosen, prop

    def learn(
        self, batch: CandidateBatch, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray
    ) -> None:
        for ex, j, p, r in zip(
            self._examples, chosen.tolist(), propensity.tolist(), reward.tolist(), strict=True
        ):
            lines = list(ex)
            lines[1 + j] = f"0:{-r:g}:{max(p, 1e-6):.6g} {lines[1 + j]}"
            self.vw.learn(lines)

    def close(self) -> None:
        self.vw.finish()


VW_CONFIGS: dict[str, str] = {
    "VW squarecb": "--cb_explore_adf --squarecb -q SA",
    "VW epsilon 0.05": "--cb_explore_adf --epsilon 0.05 -q SA",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-every", type=int, default=1000)
    parser.add_argument(
        "--keyart", default="LinUCB,Epsilon-greedy", help="keyart policies (POLICY_SUITE names)"
    )
    args = parser.parse_args(argv)
    threadpool_limits(1)
    world = World(demo_config(seed=args.seed))
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus, BLAS threads 1; "
        f"{world!r}; {args.requests:,} pages x {world.config.page_size} titles; "
        f"update every {args.update_every}"
    )
    runs: dict[str, RunResult] = {}
    for name in [p.strip() for p in args.keyart.split(",") if p.strip()]:
        t = time.perf_counter()
        runs[f"keyart {name}"] = run_closed_loop(
            world,
            PolicyAgent(make_suite_policy(name, args.seed), name=name),
            args.requests,
            update_every=args.update_every,
            seed=args.seed,
        )
        print(f"  keyart {name}: {time.perf_counter() - t:.0f}s", flush=True)
    for name, vw_args in VW_CONFIGS.items():
        agent = VWAgent(vw_args, args.seed, name)
        t = time.perf_counter()
        runs[name] = run_closed_loop(
            world, agent, args.requests, update_every=args.update_every, seed=args.seed
        )
        agent.close()
        print(f"  {name} ({vw_args}): {time.perf_counter() - t:.0f}s", flush=True)
    rows = []
    for name, r in runs.items():
        rows.append(
            {
                "policy": name,
                "take_fraction_last_20pct": r.take_fraction(0.8),
                "gap_captured": r.gap_captured(0.8),
                "take_fraction_all": r.take_fraction(),
                "requests_per_s": r.requests_per_second,
                "choose_s": r.seconds["choose"],
                "update_s": r.seconds["update"],
            }
        )
    print(format_table(rows))
    best_k = max((n for n in runs if n.startswith("keyart")), key=lambda n: runs[n].take_fraction(0.8))
    best_v = max((n for n in runs if n.startswith("VW")), key=lambda n: runs[n].take_fraction(0.8))
    k, v = runs[best_k], runs[best_v]
    print(
        f"best keyart: {best_k} ({k.take_fraction(0.8):.4f}, {k.requests_per_second:,.0f} req/s); "
        f"best VW: {best_v} ({v.take_fraction(0.8):.4f}, {v.requests_per_second:,.0f} req/s); keyart wins on "
        f"take fraction: {k.take_fraction(0.8) > v.take_fraction(0.8)}, on speed: "
        f"{k.requests_per_second > v.requests_per_second}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
