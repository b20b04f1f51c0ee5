"""How well keyart's features can choose, before any bandit: the model class's ceiling on the zoo's
development worlds, on the probability scale and on the logit scale.

For each world, every candidate of ``--fit`` requests is featurized (``Featurizer`` with the catalog's and
a sample of requests' exact vocabularies, every cross) and the model's weights and artwork biases are
fitted by least squares to the *true* expected reward of that candidate (full information, no noise):
``linear`` to the probability itself (the ridge model of ``linucb``, ``linear_ts``), ``logit`` to its
log-odds (the model of ``logistic_ts``, ``logistic_ucb``). On ``--test`` later requests each fit chooses
its best-scoring candidate; the table gives the expected reward of those choices as a share of the
oracle's (which knows every member's hidden tastes), beside a uniform choice and ``history``: the truth
with the members' hidden tastes replaced by what their play histories predict (style taste at its mean,
genre taste linear in the history's genre shares, each cast member's taste linear in how often they
appear in the history), a proxy of what a choice from observable information could reach.

    .venv/bin/python benchmarks/bench_ceiling.py --worlds 0,1,2,3 --fit 3000 --test 1500 --jobs 2

Development seeds only (``keyart.simulation.zoo.DEV_SEEDS``): it refuses held-out ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = str(Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from bench_worlds import QUICK_OVERRIDES  # noqa: E402
from keyart.simulation.experiments import format_table  # noqa: E402
from keyart.simulation.zoo import DEV_SEEDS, describe  # noqa: E402

SCALES = ("linear", "logit")


def _history_tastes(world: Any) -> tuple[np.ndarray, np.ndarray]:
    """(genre, cast) tastes as the members' play histories predict them, by least squares over members."""
    H = np.c_[world.history_genres, np.ones(len(world.history_genres))]
    genre = H @ np.linalg.lstsq(H, world.genre_taste, rcond=None)[0]
    title = {t: i for i, t in enumerate(world.title_ids)}
    counts = np.zeros_like(world.cast_taste)
    for m, plays in enumerate(world.member_plays):
        for p in plays:
            counts[m] += world.TC[title[p.title_id]] > 0
    c = counts - counts.mean(0)
    t = world.cast_taste - world.cast_taste.mean(0)
    slope = (c * t).sum(0) / np.maximum((c * c).sum(0), 1e-12)
    return genre, world.cast_taste.mean(0) + c * slope


def _chosen(q: np.ndarray, valid: np.ndarray, scores: np.ndarray) -> float:
    """The summed expected reward ``q`` of each row's best-scoring valid candidate."""
    return float(q[np.arange(q.shape[0]), np.where(valid, scores, -np.inf).argmax(1)].sum())


def _expected_with(world: Any, events: Any, tastes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The world's expected rewards with its members' (style, genre, cast) tastes replaced."""
    true = (world.style_taste, world.genre_taste, world.cast_taste)
    world.style_taste, world.genre_taste, world.cast_taste = tastes
    try:
        return world.expected(events)
    finally:
        world.style_taste, world.genre_taste, world.cast_taste = true


def ceiling(
    seed: int, n_fit: int, n_test: int, overrides: dict[str, Any] | None = None, window: int = 25
) -> dict[str, Any]:
    """The shares of the oracle's expected reward of each choice on world ``seed`` (see the module),
    built with the zoo's ``overrides`` (a smaller world for a smoke run)."""
    from threadpoolctl import threadpool_limits

    from bench_worlds import _world
    from keyart.features import FeatureConfig, Featurizer, exact_vocabularies
    from keyart.learning import ArtworkIndex, BlockGaussian, LinearStats
    from keyart.simulation.runner import stream_windows

    threadpool_limits(1)
    t0 = time.perf_counter()
    world = _world(seed, dict(overrides or {}))
    world.reset()
    sample = world.contexts(world.sample_requests(2_000, np.random.default_rng([seed, 7])))
    featurizer = Featurizer(world.catalog, exact_vocabularies(world.catalog, sample, FeatureConfig()))
    stats: dict[str, Any] = dict.fromkeys(SCALES)
    for w in stream_windows(world, n_fit, window=window, seed=101, featurizer=featurizer):
        valid = w.batch.mask
        X, ids = w.batch.X[valid], np.asarray(w.batch.artwork_ids)[valid]
        q = world.expected(w.events)[:, : w.batch.k][valid]
        for scale, target in zip(SCALES, (q, np.log(q / (1.0 - q))), strict=True):
            s = LinearStats.from_events(X, ids, target)
            stats[scale] = s if stats[scale] is None else stats[scale].merge(s)
    fits = {}
    for scale, s in stats.items():
        post = BlockGaussian.from_stats(s, 1e-3, 1e-3).posterior()
        fits[scale] = (post, ArtworkIndex(s.artwork_ids))
    genre, cast = _history_tastes(world)
    history = (np.zeros_like(world.style_taste), genre, cast)
    total = dict.fromkeys(("oracle", "random", *SCALES, "history"), 0.0)
    for w in stream_windows(world, n_test, window=window, seed=202, featurizer=featurizer):
        b = w.batch
        valid = b.mask
        q = world.expected(w.events)[:, : b.k]
        total["oracle"] += _chosen(q, valid, q)
        total["random"] += float((np.where(valid, q, 0.0).sum(1) / valid.sum(1)).sum())
        total["history"] += _chosen(q, valid, _expected_with(world, w.events, history)[:, : b.k])
        for scale, (post, index) in fits.items():
            scores = b.X @ post.theta + post.bias(index.rows(b.artwork_ids))
            total[scale] += _chosen(q, valid, scores)
    out: dict[str, Any] = {"world": seed, "d": featurizer.config.dim}
    out.update({k: v / total["oracle"] for k, v in total.items() if k != "oracle"})
    out["logit - linear"] = out["logit"] - out["linear"]
    out["families"] = describe(seed)["families"]
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="0,1,2,3", help="development seeds, comma-separated")
    parser.add_argument("--fit", type=int, default=3_000, help="requests whose candidates are fitted")
    parser.add_argument("--test", type=int, default=1_500, help="later requests the fits choose on")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: a world of 3k members (bench_worlds.QUICK_OVERRIDES)"
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.worlds.split(",") if s.strip()]
    held_out = [s for s in seeds if s not in DEV_SEEDS]
    if held_out:
        parser.error(f"development seeds only (0-{max(DEV_SEEDS)}); got {held_out}")
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus, BLAS threads 1; "
        f"fit on every candidate of {args.fit:,} requests, choose on {args.test:,} later ones"
    )
    t0 = time.perf_counter()
    overrides = [dict(QUICK_OVERRIDES) if args.quick else {}] * len(seeds)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(ceiling, seeds, [args.fit] * len(seeds), [args.test] * len(seeds), overrides))
    mean = {"world": "mean", "d": "", "families": ""}
    for key in ("random", *SCALES, "history", "logit - linear"):
        mean[key] = float(np.mean([r[key] for r in rows]))
    print("share of the oracle's expected reward, choosing by each (see the module's docstring)")
    print(format_table([*({k: v for k, v in r.items() if k != "seconds"} for r in rows), mean], digits=3))
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
