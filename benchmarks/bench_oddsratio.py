"""Exact conditional odds-ratio inference per 2x2 table: ``keyart.insights.oddsratio`` against scipy's
``odds_ratio(kind="conditional")`` (MLE and 95% interval), on the clickbait detector's tables of an
insights world (each artwork's quality and short plays against its pool's), side by side in one run.

    .venv/bin/python benchmarks/bench_oddsratio.py [--pages 24000] [--seed 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy
from scipy.stats.contingency import odds_ratio
from threadpoolctl import threadpool_limits

from bench_insights import drawn
from keyart.insights.oddsratio import conditional_odds_ratio
from keyart.simulation.design import insights_config
from keyart.simulation.world import World


def tables(pages: int, seed: int) -> list[np.ndarray]:
    """Each played artwork's table [[quality, short], [pool's quality, pool's short]]."""
    world = World(insights_config(seed))
    logs = drawn(world, pages, seed)[0]
    quality, played = logs.reward > 0, logs.played
    out = []
    for t in np.unique(logs.title[played]):
        rows = logs.title == t
        P, Q = int(played[rows].sum()), int(quality[rows].sum())
        for a in np.unique(logs.artwork[rows & played]):
            mine = rows & (logs.artwork == a)
            p, q = int(played[mine].sum()), int(quality[mine].sum())
            out.append(np.array([[q, p - q], [Q - q, (P - p) - (Q - q)]]))
    return out


def _scipy(table: np.ndarray) -> tuple[float, float, float]:
    res = odds_ratio(table, kind="conditional")
    ci = res.confidence_interval(0.95)
    return float(res.statistic), float(ci.low), float(ci.high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=24_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    threadpool_limits(1)
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"BLAS threads 1; load average {os.getloadavg()[0]:.2f}"
    )
    ts = tables(args.pages, args.seed)
    plays = np.array([t[0].sum() for t in ts])
    print(
        f"{len(ts)} tables (artworks with plays) from {args.pages:,} pages of insights world {args.seed}; "
        f"plays per artwork: median {np.median(plays):.0f}, max {plays.max()}; "
        f"{args.rounds} rounds, interleaved"
    )
    times: dict[str, list[float]] = {"scipy": [], "keyart": []}
    worst = 0.0
    for _ in range(args.rounds):  # interleaved rounds
        for name, fn in (("scipy", _scipy), ("keyart", conditional_odds_ratio)):
            t0 = time.perf_counter()
            results = [fn(t) for t in ts]
            times[name].append(time.perf_counter() - t0)
            if name == "scipy":
                ref = np.array(results)
            else:
                got = np.array(results)
                fin = np.isfinite(ref) & (ref != 0)
                worst = max(worst, float(np.max(np.abs(got[fin] / ref[fin] - 1.0), initial=0.0)))
    print(f"\n{'implementation':<16}{'ms per table':>14}{'x scipy':>10}")
    base = statistics.median(times["scipy"])
    for name, ts_ in times.items():
        med = statistics.median(ts_)
        print(f"{name:<16}{1000 * med / len(ts):>14.3f}{base / med:>9.1f}x")
    print(f"largest relative difference from scipy (MLE and interval ends): {worst:.1e}")


if __name__ == "__main__":
    main()
