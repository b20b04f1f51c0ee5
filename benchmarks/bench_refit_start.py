"""Where a refit of the learned priors starts: from the constructor's ridges (``refit_restart=True``, the
default) or from the current priors (``False``), in the closed loop of the service's end-to-end test.

The world is ``tests/test_service_e2e.py``'s (``small_config(3)`` with 40 titles, members' genre taste x
artwork theme worth 4 on the logit), learned as the service learns a new model (the catalog's exact
vocabularies, growing; an update every 100 requests), 2,000 requests a run. Per seed (the request stream
and the policies' keys): the take fraction over the last 35% of the run of LinUCB with each start and of
the non-contextual Beta TS on the same stream, and the paired z of each LinUCB against Beta TS (what the
test asserts > 3). The default was chosen on the zoo's development worlds, not here
(``benchmarks/tune_defaults.py --variants eb-all-lag,eb-all-lag-warm``).

    python benchmarks/bench_refit_start.py [--seeds 8] [--jobs 2]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from keyart.catalog import Catalog  # noqa: E402
from keyart.features import Featurizer  # noqa: E402
from keyart.policies import make_policy  # noqa: E402
from keyart.service.config import ServiceConfig  # noqa: E402
from keyart.simulation import World, small_config  # noqa: E402
from keyart.simulation.experiments import format_table  # noqa: E402
from keyart.simulation.runner import PolicyAgent, RunResult, run_closed_loop  # noqa: E402

N_REQUESTS, UPDATE_EVERY, TAIL = 2_000, 100, 0.35
AGENTS = {
    "Beta TS": ("beta_ts", {}),
    "LinUCB": ("linucb", {}),
    "LinUCB, warm refits": ("linucb", {"refit_restart": False}),
}


def _world() -> World:
    config = small_config(3)
    return World(replace(config, n_titles=40, requests_per_day=2_000, play_intercept=-2.5, theme_weight=4.0))


def _featurizer(catalog: Catalog) -> Featurizer:
    """As the service's learner featurizes a new model (``ServiceConfig.new_model_features``, growing)."""
    return Featurizer(catalog, ServiceConfig(state_dir=".").new_model_features(catalog), grow=True)


def run_seed(seed: int) -> dict[str, np.ndarray]:
    """The expected reward of every decision of each agent on one seed's request stream."""
    world, out = _world(), {}
    for label, (name, params) in AGENTS.items():
        policy = make_policy(name, seed=1000 + seed, **params)
        result: RunResult = run_closed_loop(
            world, PolicyAgent(policy), N_REQUESTS, update_every=UPDATE_EVERY, seed=seed,
            featurizer_factory=_featurizer,
        )  # fmt: skip
        out[label] = result.expected[-round(TAIL * result.expected.size) :]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(run_seed, range(args.seeds)))
    rows = []
    for seed, tails in enumerate(runs):
        row: dict[str, object] = {"seed": seed}
        base = tails["Beta TS"]
        for label, tail in tails.items():
            row[label] = f"{tail.mean():.4f}"
            if label != "Beta TS":
                diff = tail - base
                row[f"z {label}"] = f"{diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size)):.1f}"
        rows.append(row)
    mean = {k: "" for k in rows[0]} | {"seed": "mean"}
    mean |= {label: f"{np.mean([t[label].mean() for t in runs]):.4f}" for label in AGENTS}
    z_low = {k: sum(float(r[k]) <= 3.0 for r in rows) for k in rows[0] if k.startswith("z ")}
    rows.append(mean | {k: f"{n} of {len(runs)} <= 3" for k, n in z_low.items()})
    print(f"Take fraction (expected) over the last {TAIL:.0%} of {N_REQUESTS:,} requests, per seed")
    print(format_table(rows))
    print(f"\n$ python benchmarks/bench_refit_start.py {' '.join(sys.argv[1:] if argv is None else argv)}")


if __name__ == "__main__":
    main()
