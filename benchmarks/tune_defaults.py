"""Choose defaults on the zoo's development worlds (never the held-out ones): variants side by side.

Each variant is a policy, its hyperparameters and the upper bound of the learned ridges
(``keyart.priors.RIDGE_RANGE``, set in the worker process). Every variant runs the same closed loop on the
same request stream per world (``bench_worlds.run_one``: share of the oracle's take fraction over the last
20% of the run). The seeds must be development seeds (``keyart.simulation.zoo.DEV_SEEDS``): this script
refuses held-out ones, so nothing chosen here has seen them.

    .venv/bin/python benchmarks/tune_defaults.py --worlds 1,2,3,4,5 --requests 50000 --jobs 2 \\
        --variants eb,eb-cap1e8,eb-cap1e3,eb-a0.5,fixed,ts-eb,ts-eb-s1,ts-fixed

``--profile N`` runs the first variant on the first world in this process under ``cProfile`` instead and
prints the N functions that took the most time of their own (BLAS pinned to one thread), so a claim about
where the time goes has a command:

    .venv/bin/python benchmarks/tune_defaults.py --worlds 3 --requests 20000 --variants eb-all-lag \\
        --profile 25

``--results FILE`` keeps every finished run (JSON Lines) and reuses those of the same code, variant and
settings (``bench_worlds.fingerprint``), so a long sweep at 200,000 requests can be made over sittings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

BENCH_DIR = str(Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from keyart.simulation.experiments import format_table  # noqa: E402
from keyart.simulation.zoo import DEV_SEEDS  # noqa: E402


class Variant(NamedTuple):
    """A policy (registry name) and its hyperparameters, the upper bound of the learned ridges, and
    optionally ``FeatureConfig`` fields, the refits' tolerance in nats (``_prior_tol``), whether they
    stop on a step's small gain (``keyart.priors.STEP_GAIN_TOL`` None) rather than on the gradient, and
    how they maximize (``keyart.priors.FIT_METHOD``; the gain rule is L-BFGS-B's)."""

    policy: str
    params: dict[str, Any]
    cap: float = 1e4
    features: dict[str, Any] | None = None
    prior_tol: float | None = None
    gain_stop: bool = False
    fit_method: str | None = None


VARIANTS: dict[str, Variant] = {
    "eb": Variant("linucb", {}),
    "eb-cap1e8": Variant("linucb", {}, 1e8),
    "eb-cap1e3": Variant("linucb", {}, 1e3),
    "eb-a0.5": Variant("linucb", {"alpha": 0.5}),
    "eb-a2": Variant("linucb", {"alpha": 2.0}),
    "fixed": Variant("linucb", {"alpha": 0.3, "priors": "fixed"}),
    "ts-eb": Variant("linear_ts", {"mc_points": 512}),
    "ts-eb-s1": Variant("linear_ts", {"mc_points": 512, "scale": 1.0}),
    "ts-fixed": Variant("linear_ts", {"mc_points": 512, "scale": 0.25, "priors": "fixed"}),
    "lts-eb": Variant("logistic_ts", {"mc_points": 512}),
    "lts-eb-s1": Variant("logistic_ts", {"mc_points": 512, "scale": 1.0}),
    "lts-fixed": Variant("logistic_ts", {"mc_points": 512, "scale": 1.0, "priors": "fixed"}),
    "lts-eb-tol0.01": Variant("logistic_ts", {"mc_points": 512}, prior_tol=0.01),  # the default
    "lts-eb-tol1e-4": Variant("logistic_ts", {"mc_points": 512}, prior_tol=1e-4),  # the default before
    # every context family x every artwork family (keyart.layout.all_crosses)
    "eb-all": Variant("linucb", {}, features={"crosses": "all"}),
    "ts-eb-all": Variant("linear_ts", {"mc_points": 512}, features={"crosses": "all"}),
    "lts-eb-all": Variant("logistic_ts", {"mc_points": 512}, features={"crosses": "all"}),
    # the exploration's (co)variances recomputed when the events grow by 10% (covariance_refresh)
    "eb-lag": Variant("linucb", {"covariance_refresh": 0.1}),
    "eb-all-lag": Variant("linucb", {"covariance_refresh": 0.1}, features={"crosses": "all"}),
    "eb-all-lag-exact": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all", "exact_vocabularies": True}
    ),
    # the catalog's exact vocabularies, the context fields hashed (Featurizer(catalog); the closed loop's
    # default before its featurizer grew: now each country, language and device gets a column as it
    # arrives, Featurizer(catalog, grow=True))
    "eb-all-lag-nogrow": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all", "nogrow": True}
    ),
    # every field hashed (no exact vocabulary: the default featurization before Featurizer(catalog) took
    # the catalog's values)
    "eb-all-lag-hashed": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all", "hashed": True}
    ),
    # without the featured cast count's levels (FeatureConfig.cast_count_levels)
    "eb-all-lag-nocc": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all", "cast_count_levels": 0}
    ),
    # an artwork's tags divided by their number (FeatureConfig.tags_normalized, the rows before)
    "eb-all-lag-tagmean": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all", "tags_normalized": True}
    ),
    "lts-eb-all-lag": Variant(
        "logistic_ts", {"mc_points": 512, "covariance_refresh": 0.1}, features={"crosses": "all"}
    ),
    # each refit of the priors from the current ones (refit_restart=False; the default before: every refit
    # now starts from the constructor's ridges)
    "eb-all-lag-warm": Variant(
        "linucb", {"covariance_refresh": 0.1, "refit_restart": False}, features={"crosses": "all"}
    ),
    # every cross without the per-title title_affinity block (the layout before it)
    "eb-all-lag-noaff": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all", "title_affinity": False}
    ),
    # refits that stop when a step gains under 0.01 nats (keyart.priors.STEP_GAIN_TOL = None: the rule
    # before; now they stop on the gradient)
    "eb-all-lag-gainstop": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all"}, gain_stop=True, fit_method="lbfgs"
    ),
    # refits by L-BFGS-B on the gradient (the method before; now projected Newton on the exact Hessian)
    "eb-all-lag-lbfgs": Variant(
        "linucb", {"covariance_refresh": 0.1}, features={"crosses": "all"}, fit_method="lbfgs"
    ),
    # upper confidence bound on the logistic model's logit (keyart.policies.logistic.LogisticUCB)
    "lucb-all-lag": Variant("logistic_ucb", {"covariance_refresh": 0.1}, features={"crosses": "all"}),
    "lucb-all-lag-a0.5": Variant(
        "logistic_ucb", {"alpha": 0.5, "covariance_refresh": 0.1}, features={"crosses": "all"}
    ),
    "lucb-all-lag-a0.25": Variant(
        "logistic_ucb", {"alpha": 0.25, "covariance_refresh": 0.1}, features={"crosses": "all"}
    ),
    "ts-eb-all-lag": Variant(
        "linear_ts", {"mc_points": 512, "covariance_refresh": 0.1}, features={"crosses": "all"}
    ),
}


REFERENCE = "reference"  # the reference LinUCB of benchmarks/reference_linucb.py, for scale


def _pristine() -> dict[str, Any]:
    """The module settings a variant may change, as the code sets them (read before any run changes one)."""
    import keyart.priors
    from keyart.policies import POLICIES

    return {
        "ridge_range": keyart.priors.RIDGE_RANGE,
        "step_gain_tol": keyart.priors.STEP_GAIN_TOL,
        "fit_method": keyart.priors.FIT_METHOD,
        "prior_tol": {name: getattr(cls, "_prior_tol", None) for name, cls in POLICIES.items()},
    }


PRISTINE = _pristine()


def apply_settings(v: Variant) -> None:
    """Set the module settings of variant ``v``, and every other one a variant may change back to the
    code's (``PRISTINE``): a worker process runs many tasks, and one variant's setting must not reach the
    next task's."""
    import keyart.priors
    from keyart.policies import POLICIES

    keyart.priors.RIDGE_RANGE = (PRISTINE["ridge_range"][0], v.cap)
    keyart.priors.STEP_GAIN_TOL = None if v.gain_stop else PRISTINE["step_gain_tol"]
    keyart.priors.FIT_METHOD = v.fit_method or PRISTINE["fit_method"]
    for policy, tol in PRISTINE["prior_tol"].items():
        if tol is not None:
            POLICIES[policy]._prior_tol = tol
    if v.prior_tol is not None:
        POLICIES[v.policy]._prior_tol = v.prior_tol


def run_variant(seed: int, name: str, n_requests: int, update_every: int) -> dict[str, Any]:
    """One variant on one development world, in a worker process."""
    import bench_worlds
    from keyart.simulation.experiments import POLICY_SUITE

    if name == REFERENCE:
        return bench_worlds.run_one(seed, bench_worlds.REFERENCE, n_requests, update_every, 0, {})
    v = VARIANTS[name]
    apply_settings(v)
    POLICY_SUITE[name] = (v.policy, v.params)
    return bench_worlds.run_one(seed, name, n_requests, update_every, 0, {}, v.features)


def profile_variant(seed: int, name: str, n_requests: int, update_every: int, top: int) -> int:
    """One variant's run on one development world under ``cProfile``, in this process:
    its share, wall time and the ``top`` functions by their own time."""
    import cProfile

    from profiling import own_times

    profiler = cProfile.Profile()  # run_variant pins BLAS to one thread (bench_worlds.run_one)
    result = profiler.runcall(run_variant, seed, name, n_requests, update_every)
    print(f"variant {name}, world {seed}, {n_requests:,} requests: share {result['share']:.3f}")
    total, table = own_times(profiler, top)
    print(f"profile: {total:.1f} s in all (own times)")
    print(format_table(table, digits=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="1,2,3,4,5", help="development seeds, comma-separated")
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--update-every", type=int, default=200)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}, {REFERENCE}"
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--results", type=Path, default=None, help="JSON Lines file of runs to keep, reuse")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile the first variant on the first world"
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.worlds.split(",")]
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not set(seeds) <= set(DEV_SEEDS):
        parser.error(
            f"--worlds must be development seeds ({DEV_SEEDS[0]}..{DEV_SEEDS[-1]}): "
            "tuning never reads held-out ones"
        )
    unknown = [v for v in names if v not in VARIANTS and v != REFERENCE]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    if args.profile:
        return profile_variant(seeds[0], names[0], args.requests, args.update_every, args.profile)
    import bench_worlds

    settings = {"requests": args.requests, "update_every": args.update_every, "seed": 0, "overrides": {}}
    keys = {  # the reference's runs are reused across changes to keyart's learning (baseline_fingerprint)
        v: bench_worlds.baseline_fingerprint({**settings, "variant": v})
        if v == REFERENCE
        else bench_worlds.fingerprint({**settings, "variant": repr(VARIANTS[v])}, Path(__file__))
        for v in names
    }
    results: dict[tuple[int, str], dict[str, Any]] = {}
    for v in names:
        done, _ = bench_worlds.load_results(args.results, keys[v])
        results.update({(s, v): r for (s, a), r in done.items() if a == v and s in seeds})
    if args.results is not None:
        print(f"results file {args.results}: {len(results)} runs reused")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            (s, v): pool.submit(run_variant, s, v, args.requests, args.update_every)
            for s in seeds
            for v in names
            if (s, v) not in results
        }
        for key, f in futures.items():
            r = results[key] = {**f.result(), "agent": key[1]}
            if args.results is not None:
                with args.results.open("a") as fh:
                    fh.write(json.dumps({**r, "fingerprint": keys[key[1]]}) + "\n")
    share = {key: r["share"] for key, r in results.items()}
    rows = []
    for v in names:
        policy, cap = (REFERENCE, "-") if v == REFERENCE else (VARIANTS[v].policy, f"{VARIANTS[v].cap:g}")
        row: dict[str, Any] = {"variant": v, "policy": policy, "ridge cap": cap}
        row.update({f"world {s}": share[(s, v)] for s in seeds})
        row["mean"] = float(np.mean([share[(s, v)] for s in seeds]))
        row["wall s"] = round(float(np.mean([results[(s, v)]["wall"] for s in seeds])))
        rows.append(row)
    print(f"share of oracle, last 20% of {args.requests:,} requests, development worlds {args.worlds}")
    print(format_table(rows, digits=3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
