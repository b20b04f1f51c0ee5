"""Cold start from the pixels, over several image worlds: the share of oracle on brand-new artworks (pixels
only, no tags) in the requests after their release, with and without visual features, against each
variant's own steady state on the same pools; means over seeds with Student t 95% intervals.

Each seed is an image world (``keyart.simulation.images``) whose release comes ``--release`` requests into
the run; ``keyart.simulation.experiments.cold_start`` runs the policy once per featurizer variant on the
same request stream. Columns: the share over the first tenth of the horizon and over the first
``--horizon`` requests after the release, the
share over the horizon's last quarter (the level reached by then), the steady share (requests
``--steady`` after the release) and the two ratios. Held-out seeds (``IMAGE_HELD_OUT_SEEDS``) unless
``--dev``; nothing is chosen on them.

    python benchmarks/bench_vision_cold_start.py [--seeds 5] [--jobs 2] [--quick] [--dev]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from keyart.simulation.experiments import format_table  # noqa: E402
from keyart.simulation.experiments.cold_start import (  # noqa: E402
    COLD_START_POLICY,
    WITH_VISUAL,
    WITHOUT_VISUAL,
    cold_start,
    policy_params,
    reference_shares,
)
from keyart.simulation.images import (  # noqa: E402
    IMAGE_DEV_SEEDS,
    IMAGE_HELD_OUT_SEEDS,
    ImageWorld,
    image_world_config,
)

METRICS = (
    "share_first_bin",
    "share_first_horizon",
    "share_reached",
    "share_steady",
    "early_of_steady",
    "reached_of_steady",
)


def one_seed(task: dict[str, Any]) -> dict[str, Any]:
    """One world: build it (images under ``task['images']``), run both variants, return their rows."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    t0 = time.perf_counter()
    c = image_world_config(task["seed"], arrival_day=task["release"] / 20_000.0, **task["world"])
    world = ImageWorld(c, Path(task["images"]) / str(task["seed"]))
    if task["features"]:
        return {"seed": task["seed"], "params": {}, "features": feature_spread(world)}
    if task["reference"]:
        return {
            "seed": task["seed"],
            "params": policy_params(task["policy"], task["params"]),
            "reference": reference_shares(world, seed=task["seed"]),
        }
    result = cold_start(
        world,
        horizon=task["horizon"],
        steady=tuple(task["steady"]),
        seed=task["seed"],
        update_every=task["update_every"],
        policy=task["policy"],
        params=task["params"],
    )
    curves = {name: c.share.tolist() for name, c in result.curves.items()}
    return {
        "seed": task["seed"],
        "params": policy_params(task["policy"], task["params"]),
        "rows": result.table(),
        "curves": curves,
        "seconds": time.perf_counter() - t0,
    }


def feature_spread(world: ImageWorld) -> dict[str, list[float]]:
    """Mean and standard deviation of each embedding column over the launch artworks' pictures, with the
    fixed centre and scale of ``FEATURES`` (embedding version 1) and with the world's own ``Scaling``
    (version 2: fitted to the launch artworks, as ``keyart vision extract`` fits it to a catalog)."""
    from keyart.vision import Scaling, image_features

    launch = np.flatnonzero(~world.new_artworks)
    values = np.array([image_features(world.images / world.image_name(a)).values for a in launch])
    fixed, fitted = Scaling.fixed().apply(values), world.extraction.scaling.apply(values)
    return {
        "v1_mean": fixed.mean(0).tolist(),
        "v1_sd": fixed.std(0).tolist(),
        "v2_mean": fitted.mean(0).tolist(),
        "v2_sd": fitted.std(0).tolist(),
    }


def interval(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, lower, upper): Student t 95% interval of the mean over seeds."""
    m = float(np.mean(x))
    if x.size < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, x.size - 1) * np.std(x, ddof=1) / np.sqrt(x.size))
    return m, m - h, m + h


def summarize(results: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Per variant and metric, the mean over seeds with its interval; then the paired difference."""
    by: dict[str, dict[str, np.ndarray]] = {}
    for variant in (WITH_VISUAL, WITHOUT_VISUAL):
        rows = [next(r for r in res["rows"] if r["variant"] == variant) for res in results]
        by[variant] = {m: np.array([r[m] for r in rows]) for m in METRICS}
    out = []
    for variant, values in by.items():
        row = {"variant": variant}
        for m in METRICS:
            mean, lo, hi = interval(values[m])
            row[m] = f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
        out.append(row)
    diff = {"variant": "difference (with - without)"}
    for m in METRICS:
        mean, lo, hi = interval(by[WITH_VISUAL][m] - by[WITHOUT_VISUAL][m])
        diff[m] = f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    out.append(diff)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="worlds: the first N held-out (or --dev) seeds")
    p.add_argument("--dev", action="store_true", help="development seeds instead of held-out ones")
    p.add_argument("--release", type=int, default=5_000, help="requests before the release")
    p.add_argument("--horizon", type=int, default=10_000)
    p.add_argument("--steady", default="15000,20000", help="steady window, requests after the release")
    p.add_argument("--update-every", type=int, default=500)
    p.add_argument("--policy", default=COLD_START_POLICY, help="the experiment's own by default")
    p.add_argument(
        "--params",
        default=None,
        help="policy hyperparameters as JSON (default: the experiment's own for its policy, else none)",
    )
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--images", default=None, help="folder for the worlds' pictures (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 tiny worlds, short horizon")
    p.add_argument(
        "--reference",
        action="store_true",
        help="no policy: print the truth's reference shares on the release pools of each world",
    )
    p.add_argument(
        "--features",
        action="store_true",
        help="no policy: print each embedding column's mean and spread over the launch artworks, "
        "fixed centre and scale (version 1) against the world's own scaling (version 2)",
    )
    p.add_argument("--out", default=None, help="append each world's rows to this JSON Lines file")
    args = p.parse_args(argv)
    world: dict[str, Any] = {}
    if args.quick:
        args.seeds, args.release, args.horizon, args.steady = 2, 200, 400, "400,600"
        world = {"n_titles": 12, "n_cast": 12, "n_members": 300, "max_pool": 5, "mean_extra_pool": 1.0}
        world.update(n_new_titles=3, n_new_artworks=3)
        args.update_every = 100
    seeds = (IMAGE_DEV_SEEDS if args.dev else IMAGE_HELD_OUT_SEEDS)[: args.seeds]
    steady = [int(x) for x in args.steady.split(",")]
    images = args.images or tempfile.mkdtemp(prefix="keyart-cold-start-")
    tasks = [
        {
            "seed": s,
            "release": args.release,
            "horizon": args.horizon,
            "steady": steady,
            "update_every": args.update_every,
            "policy": args.policy,
            "params": None if args.params is None else json.loads(args.params),
            "images": images,
            "world": world,
            "reference": args.reference,
            "features": args.features,
        }
        for s in seeds
    ]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []

    def keep(result: dict[str, Any]) -> None:
        results.append(result)
        if args.out:  # each world as it finishes: a long run's finished worlds are kept
            with Path(args.out).open("a") as f:
                f.write(json.dumps(result) + "\n")

    if args.jobs > 1 and len(tasks) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(tasks)), mp_context=ctx) as pool:
            for future in as_completed([pool.submit(one_seed, t) for t in tasks]):
                keep(future.result())
    else:
        for t in tasks:
            keep(one_seed(t))
    results.sort(key=lambda r: seeds.index(r["seed"]))
    wall = time.perf_counter() - t0
    import cv2

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end; {wall:.0f} s"
    )
    print(
        f"{'development' if args.dev else 'held-out'} seeds {', '.join(map(str, seeds))}; policy "
        f"{args.policy} {json.dumps(results[0]['params'])}; release after {args.release:,} requests; "
        f"horizon {args.horizon:,}; "
        f"steady window {steady[0]:,}-{steady[1]:,} requests after the release"
    )
    if args.features:
        from keyart.vision import FEATURE_NAMES

        print("embedding columns over the launch artworks: mean and standard deviation, averaged over worlds")
        stats_of = {k: np.mean([r["features"][k] for r in results], axis=0) for k in results[0]["features"]}
        print(
            format_table(
                [
                    {"feature": name, **{k: float(v[j]) for k, v in stats_of.items()}}
                    for j, name in enumerate(FEATURE_NAMES)
                ],
                digits=2,
            )
        )
    elif args.reference:
        print("reference shares of oracle on the release pools (hidden truth; 4,000 pages after the release)")
        rows = [{"seed": r["seed"], **r["reference"]} for r in results]
        print(
            format_table(
                [
                    *rows,
                    {
                        "seed": "mean",
                        **{k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"},
                    },
                ],
                digits=3,
            )
        )
    else:
        print("share of oracle on the release pools, mean over seeds [Student t 95% interval]")
        print(format_table(summarize(results)))
    print(
        "command: python benchmarks/bench_vision_cold_start.py "
        + " ".join(sys.argv[1:] if argv is None else argv)
    )


if __name__ == "__main__":
    main()
