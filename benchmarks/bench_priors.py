"""Fits of the learned priors: projected Newton on the exact Hessian against L-BFGS-B, side by side.

A policy learns in closed loop on development worlds of the zoo (its own refits as it runs); at each update
that crosses a refit point (``keyart.policies.shared.refit_points``) the benchmark takes the problem that
refit solves (``refit_problem()``: the data's statistics, the starting ridges) and fits it with both
methods, one after the other: evidence evaluations, seconds, and the log evidence each reaches (both stop
on the same rule: no log ridge's derivative above ``tol`` nats).

    .venv/bin/python benchmarks/bench_priors.py --worlds 3,6 --requests 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "src"))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from keyart import priors  # noqa: E402
from keyart.policies.shared import refit_points  # noqa: E402
from keyart.simulation.experiments import format_table, make_suite_policy  # noqa: E402
from keyart.simulation.runner import PolicyAgent, run_closed_loop  # noqa: E402
from keyart.simulation.zoo import DEV_SEEDS, zoo_world  # noqa: E402

METHODS = ("lbfgs", "newton")


class RecordingAgent(PolicyAgent):
    """A policy in the loop that keeps, after each update crossing a refit point, the problem of a refit."""

    def __init__(self, policy: Any, name: str) -> None:
        super().__init__(policy, name=name)
        self.problems: list[dict[str, Any]] = []

    def learn(self, batch: Any, chosen: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> None:
        before = self.policy.events_
        super().learn(batch, chosen, propensity, reward)
        if self.policy.events_ >= refit_points(before):
            self.problems.append(self.policy.refit_problem(restart=True))


def time_fit(problem: dict[str, Any], method: str) -> dict[str, Any]:
    """One fit: evidence evaluations, seconds, log evidence reached, iterations, converged."""
    calls = 0
    init = priors._Evidence.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        init(self, *args, **kwargs)

    priors._Evidence.__init__ = counted  # type: ignore[method-assign]
    try:
        t = time.perf_counter()
        fit = priors.fit_priors(**problem, method=method)
        seconds = time.perf_counter() - t
    finally:
        priors._Evidence.__init__ = init  # type: ignore[method-assign]
    value = priors.log_evidence(
        problem["data"], problem["column_group"], fit.group_ridge, fit.bias_ridge, problem["noise"]
    )
    return {"evals": calls, "s": seconds, "evidence": value, "iter": fit.iterations, "ok": fit.converged}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="3,6", help="development seeds, comma-separated")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--policy", default="LinUCB", help="a POLICY_SUITE name with learned priors")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.worlds.split(",")]
    if not set(seeds) <= set(DEV_SEEDS):
        parser.error("development seeds only (keyart.simulation.zoo.DEV_SEEDS)")
    threadpool_limits(1)
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, BLAS threads 1; {args.policy}, "
        f"{args.requests:,} requests per world, update every 200; each refit's problem fitted by both methods"
    )
    rows, totals = [], {m: {"evals": 0, "s": 0.0} for m in METHODS}
    for seed in seeds:
        agent = RecordingAgent(make_suite_policy(args.policy, args.seed), args.policy)
        run_closed_loop(zoo_world(seed), agent, args.requests, update_every=200, seed=args.seed)
        for problem in agent.problems:
            data = problem["data"]
            fits = {m: time_fit(problem, m) for m in METHODS}
            for m in METHODS:
                totals[m]["evals"] += fits[m]["evals"]
                totals[m]["s"] += fits[m]["s"]
            rows.append(
                {
                    "world": seed,
                    "events": int(data.n),
                    "columns": int(np.count_nonzero(np.diag(data.xx))),
                    "artworks": int(np.count_nonzero(data.aa)),
                    **{f"{m} evals": fits[m]["evals"] for m in METHODS},
                    **{f"{m} s": round(fits[m]["s"], 2) for m in METHODS},
                    "newton - lbfgs nats": round(fits["newton"]["evidence"] - fits["lbfgs"]["evidence"], 4),
                    "converged": "/".join(str(fits[m]["ok"]) for m in METHODS),
                }
            )
    print(format_table(rows))
    lb, nt = totals["lbfgs"], totals["newton"]
    gaps = [r["newton - lbfgs nats"] for r in rows]
    print(
        f"all {len(rows)} fits: L-BFGS-B {lb['evals']} evaluations, {lb['s']:.1f} s; Newton {nt['evals']} "
        f"evaluations, {nt['s']:.1f} s ({lb['s'] / max(nt['s'], 1e-9):.2f}x faster); Newton's evidence "
        f"minus L-BFGS-B's: median {np.median(gaps):+.4f}, min {min(gaps):+.4f}, max {max(gaps):+.4f} nats"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
