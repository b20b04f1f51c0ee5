"""Does adding the artwork ``keyart insights`` suggests raise a title's true take fraction more than adding
an artwork drawn like the existing ones? Over many titles and seeds of the simulator, with intervals.

Usage: ``python benchmarks/bench_insights.py [--seeds 5] [--titles 10] [--requests 6000] [--jobs 1]``

Per seed: the world of ``keyart.simulation.design.insights_config``, a uniform exploration log of
``--requests`` pages written as a service writes it, the insights' model (linear TS trained on the log)
and, for the ``--titles`` most shown titles, the suggested artwork (``analyse_title``). Each title then gets
two candidate additions, both honest and with the same hidden own appeal (one draw of the world's
base-appeal distribution): the suggestion, and an artwork drawn like the title's pool
(``draw_like_existing``). The true take fraction of a title is the world's expected P(quality play) when
each of the title's logged members (on their primary device) is shown their truly best artwork of the
pool, averaged over them; a gain is that value with the addition less without it. Printed: the mean gains
and their difference over all titles, with 95% t intervals over titles and over seeds (seed means).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from keyart.insights.data import load_logs, load_model  # noqa: E402
from keyart.insights.model import ModelView  # noqa: E402
from keyart.insights.segments import member_segments  # noqa: E402
from keyart.insights.suggestions import analyse_title  # noqa: E402
from keyart.simulation.design import (  # noqa: E402
    add_artwork,
    draw_like_existing,
    insights_config,
    true_takes,
    write_world_logs,
)
from keyart.simulation.world import World  # noqa: E402


def one_seed(seed: int, titles: int, requests: int) -> list[tuple[str, float, float]]:
    """(title, true gain of the suggestion, true gain of a drawn artwork) for one seed's top titles."""
    world = World(insights_config(seed))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E6]))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_world_logs(world, Path(tmp) / "events.duckdb", requests, seed)
        logs = load_logs(path, world.catalog)
        policy, _ = load_model(path, world.catalog, seed=seed)
    view = ModelView(policy, world.catalog)
    segments = member_segments(logs.contexts, logs.title, world.catalog)
    names, counts = np.unique(logs.title, return_counts=True)
    out = []
    for t in [str(x) for x in names[np.argsort(-counts, kind="stable")][:titles]]:
        found = analyse_title(view, logs, segments, t, seed=seed)
        if found.suggestion is None:
            continue
        pool = list(found.artworks)
        members = [world.member_index[m] for m in logs.member[logs.rows_of(t)]]
        base = float(rng.normal(0.0, world.config.base_appeal_sd))
        suggested = add_artwork(world, t, found.suggestion.artwork, base=base)
        drawn = add_artwork(world, t, draw_like_existing(world, t, rng), base=base)
        takes = true_takes(world, t, members, [*pool, suggested, drawn])
        now = takes[:, : len(pool)].max(1)
        gain_s = float((np.maximum(now, takes[:, -2]) - now).mean())
        gain_d = float((np.maximum(now, takes[:, -1]) - now).mean())
        out.append((t, gain_s, gain_d))
    return out


def _interval(x: np.ndarray) -> str:
    if x.size < 2:
        return "n/a"
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return f"[{x.mean() - half:.5f}, {x.mean() + half:.5f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--titles", type=int, default=10)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    seeds = list(range(args.seeds))
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(one_seed, seeds, [args.titles] * len(seeds), [args.requests] * len(seeds)))
    else:
        runs = [one_seed(s, args.titles, args.requests) for s in seeds]
    print(f"# {' '.join(sys.argv)}")
    load = os.getloadavg()[0]
    print(
        f"# python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, load {load:.1f}"
    )
    print("seed  titles  suggested gain  drawn gain  difference  suggested better")
    row = "{:>4}  {:6d}  {:14.5f}  {:10.5f}  {:10.5f}  {:16.0%}"
    diffs, seed_means = [], []
    for s, rows in zip(seeds, runs, strict=True):
        g = np.array([[a, b] for _, a, b in rows])
        d = g[:, 0] - g[:, 1]
        diffs.append(d)
        seed_means.append(d.mean())
        print(row.format(s, len(rows), g[:, 0].mean(), g[:, 1].mean(), d.mean(), (d > 0).mean()))
    allg = np.array([[a, b] for rows in runs for _, a, b in rows])
    d = np.concatenate(diffs)
    print(row.format("all", d.size, allg[:, 0].mean(), allg[:, 1].mean(), d.mean(), (d > 0).mean()))
    print(f"95% interval of the mean difference over titles: {_interval(d)}")
    print(f"95% interval of the mean difference over seeds (seed means): {_interval(np.array(seed_means))}")
    print(f"95% interval of the mean gain over titles: suggested {_interval(allg[:, 0])}")
    print(f"95% interval of the mean gain over titles: drawn {_interval(allg[:, 1])}")
    print(f"# {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
