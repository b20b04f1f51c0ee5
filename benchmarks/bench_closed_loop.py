"""Every keyart policy in closed loop in the demo world: take fraction, gap captured, throughput.

The headline check of issue 3: over a 200,000-page closed-loop run, the best contextual policy's take
fraction in the last 20% must be at least 1.3x the non-contextual Bandit's and capture at least 75% of the
gap between random and oracle, (policy - random) / (oracle - random). Throughput is per policy:
choose + update, the policy's whole work (featurize + choose + update) and end to end (with the world).

    .venv/bin/python benchmarks/bench_closed_loop.py --requests 200000 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from keyart.simulation.experiments import NON_CONTEXTUAL, POLICY_SUITE, format_table


def _run_one(name: str, n_requests: int, seed: int, update_every: int) -> dict[str, Any]:
    """One policy's closed-loop run in its own process (single-threaded BLAS); returns its numbers."""
    from threadpoolctl import threadpool_limits

    from keyart.simulation.config import demo_config
    from keyart.simulation.experiments import make_suite_policy
    from keyart.simulation.runner import PolicyAgent, run_closed_loop
    from keyart.simulation.world import World

    threadpool_limits(1)
    world = World(demo_config(seed=seed))
    t = time.perf_counter()
    r = run_closed_loop(
        world,
        PolicyAgent(make_suite_policy(name, seed), name=name),
        n_requests,
        update_every=update_every,
        seed=seed,
    )
    wall = time.perf_counter() - t
    s = r.seconds
    return {
        "policy": name,
        "take_fraction": r.take_fraction(0.8),
        "take_fraction_drawn": r.take_fraction(0.8, expected=False),
        "random": r.random_take_fraction(0.8),
        "oracle": r.oracle_take_fraction(0.8),
        "gap_captured": r.gap_captured(0.8),
        "choose_update_rps": n_requests / (s["choose"] + s["update"]),
        "policy_rps": r.requests_per_second,
        "end_to_end_rps": n_requests / wall,
        "seconds": dict(s),
        "wall": wall,
        "curve": r.curve(20),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-every", type=int, default=1000)
    parser.add_argument(
        "--policies", default=",".join(POLICY_SUITE), help="POLICY_SUITE names, comma-separated"
    )
    parser.add_argument("--jobs", type=int, default=1, help="policies run in parallel processes")
    parser.add_argument("--plot", default="", help="write learning curves to this PNG")
    args = parser.parse_args(argv)
    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus, BLAS threads 1, "
        f"{args.jobs} job(s); demo world seed {args.seed}; {args.requests:,} pages of 6 titles "
        f"({6 * args.requests:,} decisions); update every {args.update_every} pages"
    )
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {n: pool.submit(_run_one, n, args.requests, args.seed, args.update_every) for n in names}
        results = {n: f.result() for n, f in futures.items()}
    bandit = results["Bandit"]["take_fraction"] if "Bandit" in results else float("nan")
    quality = [
        {
            "policy": n,
            "take_fraction_last_20pct": r["take_fraction"],
            "drawn": r["take_fraction_drawn"],
            "ratio_to_bandit": r["take_fraction"] / bandit,
            "gap_captured": r["gap_captured"],
        }
        for n, r in results.items()
    ]
    first = next(iter(results.values()))
    print(f"\nlast 20% of the run: random {first['random']:.4f}, oracle {first['oracle']:.4f}")
    print(format_table(quality))
    speed = [
        {
            "policy": n,
            "choose+update req/s": r["choose_update_rps"],
            "policy work req/s": r["policy_rps"],
            "end-to-end req/s": r["end_to_end_rps"],
            "featurize s": r["seconds"]["featurize"],
            "choose s": r["seconds"]["choose"],
            "update s": r["seconds"]["update"],
            "world s": r["seconds"]["world"],
        }
        for n, r in results.items()
    ]
    print("\nthroughput (requests = pages of 6 decisions)")
    print(format_table(speed, digits=1))
    contextual = [n for n in results if n not in NON_CONTEXTUAL]
    if contextual and "Bandit" in results:
        best = max(contextual, key=lambda n: results[n]["take_fraction"])
        b = results[best]
        ok_ratio = b["take_fraction"] >= 1.3 * bandit
        ok_gap = b["gap_captured"] >= 0.75
        print(
            f"\nbest contextual: {best}: {b['take_fraction'] / bandit:.2f}x the Bandit (>= 1.3: {ok_ratio}), "
            f"gap captured {b['gap_captured']:.1%} (>= 75%: {ok_gap})"
        )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        for n, r in results.items():
            ax.plot(*r["curve"], label=n)
        ax.axhline(first["oracle"], color="black", linestyle="--", label="oracle")
        ax.axhline(first["random"], color="grey", linestyle=":", label="random")
        ax.set_xlabel("requests (pages)")
        ax.set_ylabel("expected take fraction")
        ax.legend(fontsize="small", ncol=2)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
