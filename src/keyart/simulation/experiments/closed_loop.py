"""The long closed-loop comparison of every policy of ``POLICY_SUITE`` on the same request stream, and its
command line: ``python -m keyart.simulation.experiments closed-loop --requests 200000`` (see
``benchmarks/bench_closed_loop.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keyart.simulation.experiments.suite import NON_CONTEXTUAL, POLICY_SUITE, make_suite_policy
from keyart.simulation.runner import PolicyAgent, RunResult, run_closed_loop
from keyart.simulation.world import World


@dataclass(frozen=True)
class ClosedLoopComparison:
    """Every policy on the same request stream: take fraction of the last part, ratio, gap captured."""

    runs: dict[str, RunResult]
    last: float = 0.2
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        start = 1.0 - self.last
        bandit = self.runs["Bandit"].take_fraction(start) if "Bandit" in self.runs else math.nan
        rows = []
        for name, r in self.runs.items():
            tf = r.take_fraction(start)
            rows.append(
                {
                    "policy": name,
                    "take_fraction": tf,
                    "take_fraction_drawn": r.take_fraction(start, expected=False),
                    "ratio_to_bandit": tf / bandit,
                    "gap_captured": r.gap_captured(start),
                    "random": r.random_take_fraction(start),
                    "oracle": r.oracle_take_fraction(start),
                    "requests_per_second": r.requests_per_second,
                }
            )
        return rows

    def best_contextual(self) -> str:
        names = [n for n in self.runs if n not in NON_CONTEXTUAL]
        return max(names, key=lambda n: self.runs[n].take_fraction(1.0 - self.last))


def compare_closed_loop(
    world: World,
    n_requests: int,
    *,
    policies: Sequence[str] = tuple(POLICY_SUITE),
    seed: int = 0,
    update_every: int = 1000,
    progress: Callable[[str, int], None] | None = None,
) -> ClosedLoopComparison:
    """Run each named policy of ``POLICY_SUITE`` for ``n_requests`` on the same stream and luck."""
    runs = {}
    for name in policies:
        agent = PolicyAgent(make_suite_policy(name, seed), name=name)
        cb = None if progress is None else (lambda k, _n=name: progress(_n, k))
        runs[name] = run_closed_loop(
            world, agent, n_requests, update_every=update_every, seed=seed, progress=cb
        )
    return ClosedLoopComparison(runs)


def format_table(rows: Sequence[Mapping[str, Any]], digits: int = 4) -> str:
    """A plain-text table (for benchmarks and logs)."""
    if not rows:
        return ""
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    body = [[cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join(
        [line, sep] + ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keyart.simulation.experiments closed-loop --requests N --seed S [--policies a,b]``."""
    import argparse
    import sys
    import time

    from keyart.simulation.config import demo_config

    parser = argparse.ArgumentParser(prog="python -m keyart.simulation.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    cl = sub.add_parser("closed-loop", help="every policy in closed loop on the demo world")
    cl.add_argument("--requests", type=int, default=200_000)
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--update-every", type=int, default=1000)
    cl.add_argument("--policies", default=",".join(POLICY_SUITE))
    args = parser.parse_args(argv)
    world = World(demo_config(seed=args.seed))
    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    t0 = time.perf_counter()
    cmp_ = compare_closed_loop(
        world, args.requests, policies=names, seed=args.seed, update_every=args.update_every
    )
    print(f"$ python -m keyart.simulation.experiments {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"world: {world!r}, page size {world.config.page_size}, {args.requests:,} requests "
        f"({args.requests * world.config.page_size:,} decisions), update every {args.update_every}"
    )
    print(format_table(cmp_.table()))
    print(f"best contextual: {cmp_.best_contextual()}; wall time {time.perf_counter() - t0:.0f}s")
    return 0
