"""How much of a Spark join's time is the session's warm-up: ``join_range`` over one Parquet export, run
several times in one fresh ``local[k]`` session, each run timed (the first pays for the JVM's code
generation and warm-up; ``bench_spark.py`` times a session's first join).

    python benchmarks/bench_spark.py --events 100000 --cores 1 --dir DIR    # writes DIR/export
    python benchmarks/bench_spark_warmup.py DIR/export [--cores 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="A Parquet export (decisions/ and outcomes/ by date).")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    from keyart.spark.io import read_events, session
    from keyart.spark.join import join_range

    spark = session(
        f"local[{args.cores}]", "keyart-warmup", {"spark.sql.shuffle.partitions": str(4 * args.cores)}
    )
    spark.range(1).count()  # start-up done, as bench_spark.py
    print(
        f"$ python benchmarks/bench_spark_warmup.py {args.export} --cores {args.cores} "
        f"--repeats {args.repeats}"
    )
    print(f"{'run':>4}{'join s':>9}{'count s':>9}{'rows':>10}{'ev/s':>10}")
    seconds = []
    try:
        for i in range(args.repeats):
            t = time.perf_counter()
            decisions, outcomes = read_events(spark, args.export)
            joined = join_range(decisions, outcomes)
            t1 = time.perf_counter()
            rows = joined.table.count()
            t2 = time.perf_counter()
            seconds.append(t2 - t)
            print(f"{i + 1:>4}{t1 - t:>9.1f}{t2 - t1:>9.1f}{rows:>10,}{rows / (t2 - t):>10,.0f}", flush=True)
    finally:
        spark.stop()
    return seconds


if __name__ == "__main__":
    main()
