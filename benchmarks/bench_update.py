"""Update throughput of the shared-model policies: events learned per second, by batch size.

Each policy is first trained on 20,000 logged events (pages of the 200-title x 12-artwork synthetic
catalog of ``bench_policies.py``, default featurizer, d = 171), then learns further batches of 1, 100 and
10,000 events (``policy.update``), and the posterior is solved after each (``posterior_``), since the next
decision needs it. Batches of one policy and size alternate with the others' in rounds (the shared
machine's slow spells fall on all alike); the table gives the median events/s over rounds, the learned
events never crossing a refit of the priors inside a timed call. BLAS pinned to one thread.

    python benchmarks/bench_update.py [--rounds 5] [--quick]
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
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_policies import logged, synthetic_catalog  # noqa: E402
from keyart.features import Featurizer  # noqa: E402
from keyart.policies import make_policy  # noqa: E402
from keyart.policies.shared import refit_points  # noqa: E402

POLICIES = ("epsilon_greedy", "softmax", "linucb", "linear_ts", "logistic_ts")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="1,100,10000", help="batch sizes, comma-separated")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.rounds, sizes = 2, [1, 100]
    catalog = synthetic_catalog(200, 12, seed=1)
    f = Featurizer(catalog)
    start = 20_000
    events = logged(f, catalog, start + args.rounds * sum(sizes), seed=2)
    policies = {name: make_policy(name, seed=7) for name in POLICIES}
    for p in policies.values():
        p.update(events.take(np.arange(start)))
        p.posterior_  # noqa: B018 - solve once: the timed calls start from a solved model
    batches = {
        s: [events.take(np.arange(start + i * s, start + (i + 1) * s)) for i in range(args.rounds)]
        for s in sizes
    }
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        for s in sizes:
            for name, p in policies.items():
                if p.events_ + s >= refit_points(p.events_):  # a refit inside would time the prior fit
                    p.refit_priors()
                    p.events_ = refit_points(p.events_)  # next refit far away: not the point here
                t0 = time.perf_counter()
                p.update(batches[s][r])
                p.posterior_  # noqa: B018
                times.setdefault((name, s), []).append(time.perf_counter() - t0)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, BLAS threads 1; "
        f"d = {f.dim}, {len(catalog.artworks):,} artworks, models trained on {start:,} events first; "
        f"median of {args.rounds} rounds"
    )
    print(f"{'policy':16s} " + " ".join(f"{f'batch {s:,} ev/s':>18s}" for s in sizes))
    for name in POLICIES:
        cells = " ".join(f"{s / statistics.median(times[name, s]):18,.0f}" for s in sizes)
        print(f"{name:16s} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
