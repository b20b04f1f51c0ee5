"""The Spark path against the single-machine path: events/s of the reward join, training (linucb unless
``--policy`` names another) and evaluation (IPS + SNIPS) with 1 and 2 executor cores, and the peak memory
of the driver's Python process.

Simulated events: members see pages of 3 titles from a 200-title catalog (3 artworks each), a uniform
logger chooses, 'face' artworks lead to quality plays most often; written straight to the Parquet export
layout, chunk by chunk (memory bounded whatever the size); the single-machine run imports them into an
event store first (not timed), and runs only up to ``--single-max`` events (it holds them all in memory).
Each configuration runs in its own process (a fresh ``local[k]`` session: k cores for the executors, in
the driver's JVM), so its peak RSS is its own.

    python benchmarks/bench_spark.py [--events 100000] [--cores 1,2] [--dir DIR] [--single-max N]
                                     [--policy linucb]
    python benchmarks/bench_spark.py --events 10000000        # the issue's size (hours on 2 cores)

Rates are decisions joined, trained on or evaluated per second of wall time, start-up of the session
excluded, reading the Parquet export included.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from keyart.catalog import Artwork, Catalog, Title  # noqa: E402
from keyart.context import MemberContext  # noqa: E402
from keyart.events import decisions_from_batch, outcomes_table  # noqa: E402
from keyart.features import Featurizer  # noqa: E402
from keyart.policies import make_policy  # noqa: E402
from keyart.service.parquet_sink import utc_dates  # noqa: E402
from keyart.store import EventStore  # noqa: E402

T0 = 1_760_000_000.0
STYLES = ("dark", "bright", "face")
PLAY = np.array([0.1, 0.2, 0.6])
CHUNK = 50_000


def catalog(n_titles: int = 200) -> Catalog:
    """Titles with three artworks each, one per style."""
    titles = [Title(f"t{t}", genres=(f"g{t % 7}",), runtime_minutes=90) for t in range(n_titles)]
    arts = [Artwork(f"t{t}-a{a}", f"t{t}", style=STYLES[a]) for t in range(n_titles) for a in range(3)]
    return Catalog(titles, arts)


def _write_by_date(table: pa.Table, directory: Path, name: str) -> None:
    """``table``'s rows as ``directory/date=YYYY-MM-DD/name`` files (the export layout)."""
    dates = utc_dates(table.column("timestamp").to_numpy())
    for d in np.unique(dates):
        part = directory / f"date={d}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(dates == d)), part / name)


def simulate(root: Path, events: int, seed: int = 0) -> None:
    """``events`` decisions (3 per member page, one member every second) and their plays, as the Parquet
    export layout under ``root/export``, written chunk by chunk (``CHUNK`` decisions in memory at once,
    whatever ``events`` is)."""
    cat = catalog()
    feat, logger, rng = Featurizer(cat), make_policy("uniform", seed=seed), np.random.default_rng(seed)
    export = root / "export"
    for lo in range(0, events, CHUNK):
        n = min(CHUNK, events - lo)
        idx = np.arange(lo, lo + n)
        member = idx // 3
        ctx = [
            MemberContext(member_id=f"m{m}", country=("FR", "US")[m % 2], timestamp=T0 + float(m))
            for m in member.tolist()
        ]
        titles = [f"t{t}" for t in rng.integers(0, 200, size=n).tolist()]
        batch = feat.events(
            ctx, titles, [cat.pool_ids(t) for t in titles], request_ids=[f"r{i}" for i in idx]
        )
        table = decisions_from_batch(logger.choose(batch), ctx)
        _write_by_date(table, export / "decisions", f"part-{lo:012d}.parquet")
        chosen = table.column("chosen_index").to_numpy()
        played = np.flatnonzero(rng.random(n) < PLAY[chosen])
        ts = table.column("timestamp").to_numpy()
        outcomes = outcomes_table(
            pa.table(
                {
                    "event_id": [f"o{lo + i}" for i in played.tolist()],
                    "member_id": table.column("member_id").take(played),
                    "title_id": table.column("title_id").take(played),
                    "event_type": ["play"] * played.size,
                    "engaged_seconds": np.full(played.size, 1800.0),
                    "timestamp": ts[played] + 60.0,
                }
            )
        )
        _write_by_date(outcomes, export / "outcomes", f"part-{lo:012d}.parquet")
    close = [
        {
            "event_id": "close",
            "member_id": "m0",
            "title_id": "t0",
            "event_type": "stop",
            "timestamp": T0 + events / 3 + 86_400.0,
        }
    ]
    _write_by_date(outcomes_table(close), export / "outcomes", "part-close.parquet")
    cat.save(root / "catalog.json")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def single_machine(root: Path, policy_name: str = "linucb") -> dict[str, float]:
    """Seconds of the join, training and evaluation on one machine (keyart.rewards, keyart.train,
    keyart.evaluation)."""
    from keyart.evaluation import EstimatorConfig, estimate, feedback_to_log
    from keyart.evaluation.compare import candidate_distribution
    from keyart.policies import model_features
    from keyart.rewards import join_store
    from keyart.train import train

    cat = Catalog.load(root / "catalog.json")
    out = {}
    if not (root / "events.duckdb").exists():  # the store the single-machine join reads (not timed)
        with EventStore(root / "events.duckdb") as store:
            store.import_parquet(root / "export")
    t = time.perf_counter()
    with EventStore(root / "events.duckdb", read_only=True) as store:
        joined = join_store(store)
    out["join"], out["rows"] = time.perf_counter() - t, joined.table.num_rows
    t = time.perf_counter()
    policy, info = train([root / "export"], cat, make_policy(policy_name, seed=0))
    out["train"], out["trained"] = time.perf_counter() - t, info.rows
    t = time.perf_counter()
    fb = joined.to_feedback(Featurizer(cat, model_features(policy)))
    estimate(
        feedback_to_log(fb),
        candidate_distribution(policy, fb),
        ["ips", "snips"],
        config=EstimatorConfig(ci="normal"),
    )
    out["evaluate"] = time.perf_counter() - t
    out["peak_mb"] = peak_rss_mb()
    return out


def on_spark(root: Path, cores: int, policy_name: str = "linucb") -> dict[str, float]:
    """Seconds of the same work on a ``local[cores]`` Spark session (keyart.spark)."""
    from keyart.spark import evaluate as se
    from keyart.spark import train as st
    from keyart.spark.io import read_events, session
    from keyart.spark.join import join_range

    spark = session(f"local[{cores}]", "keyart-bench", {"spark.sql.shuffle.partitions": str(4 * cores)})
    spark.range(1).count()  # start-up done
    cat = Catalog.load(root / "catalog.json")
    out = {}
    t = time.perf_counter()
    decisions, outcomes = read_events(spark, root / "export")
    joined = join_range(decisions, outcomes)
    out["rows"] = joined.table.count()
    out["quality_plays"] = joined.report.quality_plays  # the counts `keyart spark join` prints
    out["join"] = time.perf_counter() - t
    t = time.perf_counter()
    policy, info = st.train(spark, root / "export", cat, make_policy(policy_name, seed=0))
    out["train"], out["trained"] = time.perf_counter() - t, info.rows
    t = time.perf_counter()
    decisions, outcomes = read_events(spark, root / "export")
    se.estimate(join_range(decisions, outcomes).table, cat, policy)
    out["evaluate"] = time.perf_counter() - t
    out["peak_mb"] = peak_rss_mb()
    spark.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="Simulated decisions.")
    parser.add_argument("--cores", default="1,2", help="Executor cores of the Spark runs, comma-separated.")
    parser.add_argument(
        "--dir", type=Path, default=None, help="Where to write the events (default: a temp dir)."
    )
    parser.add_argument(
        "--single-max",
        type=int,
        default=1_000_000,
        help="Run the single-machine path only up to this many events (it holds them all in memory).",
    )
    parser.add_argument(
        "--policy",
        default="linucb",
        help="The policy trained (and evaluated as the candidate): linucb is one pass over the events; "
        "logistic_ucb, the default policy, a Spark job per Newton step.",
    )
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)  # one configuration, in a child
    args = parser.parse_args()
    if args.run is not None:
        work = (
            single_machine(args.dir, args.policy)
            if args.run == "single"
            else on_spark(args.dir, int(args.run), args.policy)
        )
        print(json.dumps(work))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "export").is_dir():
            t = time.perf_counter()
            simulate(root, args.events)
            print(f"simulated {args.events:,} decisions in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        runs = {}
        single = ["single"] if args.events <= args.single_max else []
        for config in [*single, *args.cores.split(",")]:
            proc = subprocess.run(
                [sys.executable, __file__, "--dir", str(root), "--run", config, "--policy", args.policy],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                sys.exit(f"bench_spark: the {config} run failed:\n{proc.stderr[-3000:]}")
            runs[config] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"command: python benchmarks/bench_spark.py --events {args.events} --cores {args.cores}"
        + ("" if args.single_max == 1_000_000 else f" --single-max {args.single_max}")
        + ("" if args.policy == "linucb" else f" --policy {args.policy}")
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(f"{'path':12s} {'join ev/s':>11s} {'train ev/s':>11s} {'eval ev/s':>11s} {'peak MB':>8s}")
    n = next(iter(runs.values()))["rows"]
    if not single:
        print(f"one machine  (not run: {args.events:,} events > --single-max {args.single_max:,})")
    for config, r in runs.items():
        label = "one machine" if config == "single" else f"spark x{config}"
        print(
            f"{label:12s} {n / r['join']:11,.0f} {r['trained'] / r['train']:11,.0f} "
            f"{n / r['evaluate']:11,.0f} {r['peak_mb']:8.0f}"
        )
    cores = args.cores.split(",")
    if len(cores) > 1:
        a, b = runs[cores[0]], runs[cores[-1]]
        print(
            f"scaling x{cores[-1]} / x{cores[0]}: join {a['join'] / b['join']:.2f}, "
            f"train {a['train'] / b['train']:.2f}, evaluate {a['evaluate'] / b['evaluate']:.2f}"
        )


if __name__ == "__main__":
    main()
