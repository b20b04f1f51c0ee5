"""Throughput of keyart's off-policy estimators: point estimates over 10 million logged events.

Usage: ``python benchmarks/bench_estimators.py [--events 10000000] [--actions 10] [--repeats 3]``

BLAS and OpenMP are pinned to one thread before numpy is imported, so the numbers are per core. Each row
is the median wall time of ``--repeats`` runs on the same synthetic log (uniform-random logging, a random
stochastic candidate, a fixed reward model); events/s = events / seconds.
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
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from keyart.evaluation import (  # noqa: E402
    ESTIMATORS,
    BanditLog,
    EstimatorConfig,
    TabularRewardModel,
    as_action_dist,
    cross_fit,
    estimate,
    point_estimate,
)


def _time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n, k = args.events, args.actions

    rng = np.random.default_rng(args.seed)
    action = rng.integers(0, k, n)
    reward = (rng.random(n) < 0.1 + 0.05 * (action % 3)).astype(np.float64)
    pscore = np.full(n, 1.0 / k)
    dist = rng.dirichlet(np.ones(k), size=n)[:, :, None]
    q_hat = np.broadcast_to(rng.uniform(0, 0.3, k)[None, :, None], (n, k, 1)).copy()
    cfg = EstimatorConfig()

    rows: list[tuple[str, float]] = []
    log = BanditLog.from_arrays(reward, action, pscore, n_actions=k)
    rows.append(
        (
            "validate log (BanditLog.from_arrays)",
            _time(lambda: BanditLog.from_arrays(reward, action, pscore, n_actions=k), args.repeats),
        )
    )
    rows.append(
        (
            "validate candidate (as_action_dist)",
            _time(lambda: as_action_dist("d", dist, n, k, 1), args.repeats),
        )
    )
    for name in ESTIMATORS:
        rows.append(
            (name, _time(lambda name=name: point_estimate(name, log, dist, q_hat, cfg), args.repeats))
        )
    rows.append(
        (
            "reward model: tabular, 2-fold cross-fit",
            _time(lambda: cross_fit(TabularRewardModel(), log, n_folds=2, seed=0), args.repeats),
        )
    )
    rows.append(
        (
            "all 8 with normal CIs + diagnostics (estimate)",
            _time(
                lambda: estimate(
                    log, dist, ESTIMATORS, estimated_rewards=q_hat, config=EstimatorConfig(ci="normal")
                ),
                args.repeats,
            ),
        )
    )

    print("command: python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} cpus, BLAS/OpenMP threads pinned to 1; K={k} actions, median of {args.repeats}"
    )
    print()
    print(f"| {'estimator':48s} | {'events':>10s} | {'seconds':>8s} | {'events/s':>12s} |")
    print(f"|{'-' * 50}|{'-' * 11}:|{'-' * 9}:|{'-' * 13}:|")
    for name, secs in rows:
        print(f"| {name:48s} | {n:>10,d} | {secs:8.3f} | {n / secs:>12,.0f} |")


if __name__ == "__main__":
    main()
