"""The three ways a shared-model policy computes its candidates' score variances, timed side by side.

For the default layout (d = 171) and every cross declared (``FeatureConfig(crosses="all")``, d = 1,584):
the dense rows (``Posterior.moments``: a d x d product per candidate), the one-member page basis
(``Posterior.page_moments``) and the layout's Kronecker form (``Posterior.kron_moments``, ``keyart.kron``),
on a one-member page of 40 titles x 12 candidates and on a batch of 200 members' 8-title pages (what a
simulator or a replay hands a policy). The members have prior interactions and recommender scores: with
every cross declared the score is crossed too, so each title of a page is a level of its own. LinUCB
trained on 3,000 logged events; BLAS pinned to one thread; medians over interleaved rounds.
``keyart.policies.shared.KRON_MIN_DIM``, the width from which policies take the Kronecker form, lies
between the two layouts of this table.

    python benchmarks/bench_moments.py [--quick]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_policies import logged, members, synthetic_catalog  # noqa: E402
from keyart.basis import candidate_vectors  # noqa: E402
from keyart.batch import CandidateBatch  # noqa: E402
from keyart.features import FeatureConfig, Featurizer  # noqa: E402
from keyart.kron import kron_plan  # noqa: E402
from keyart.policies import make_policy  # noqa: E402
from keyart.simulation.experiments import format_table  # noqa: E402

PATHS = ("dense rows", "page basis", "Kronecker form")


def variances(path: str, policy: Any, batch: CandidateBatch) -> np.ndarray:
    """The candidates' score variances by one of the three paths."""
    post, rows, prior_var, F = policy.posterior_, policy._rows(batch), 1.0 / policy.bias_ridge_, batch.factors
    if path == "dense rows":
        return post.moments(F.materialize(), rows, prior_var)[1]
    if path == "page basis":
        return post.page_moments(batch.basis(), rows, prior_var)[1]
    Z = candidate_vectors(F.layout, F.ctx, F.art_block, F.idx, F.pair)
    return post.kron_moments(kron_plan(F.layout), F.ctx, Z, rows, prior_var)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args()
    rounds, n_members, events = (2, 20, 600) if args.quick else (5, 200, 3000)
    catalog = synthetic_catalog(120, 12, seed=0)
    rng = np.random.default_rng(1)
    titles = list(catalog.titles)
    # members who interacted with some titles and carry the recommender's scores (per-title levels)
    ctx = [
        dataclasses.replace(
            m,
            interacted_titles=frozenset(rng.choice(titles, 10, replace=False).tolist()),
            recommender_scores={t: float(s) for t, s in zip(titles, rng.random(len(titles)), strict=True)},
        )
        for m in members(catalog, n_members, seed=3)
    ]
    pages = [rng.choice(titles, 8, replace=False).tolist() for _ in ctx]
    rows = []
    for label, config in (("default", FeatureConfig()), ("all crosses", FeatureConfig(crosses="all"))):
        f = Featurizer(catalog, config)
        policy = make_policy("linucb", seed=0).update(logged(f, catalog, events, seed=2))
        policy.posterior_.projected_rows(np.arange(len(policy.index_)))  # once per posterior, untimed
        batches = {
            "one page, 40 titles": f.page(ctx[0], titles[:40], "r0"),
            f"{n_members} members x 8 titles": f.pages(ctx, pages),
        }
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for shape, b in batches.items():
                for path in PATHS:
                    if path == "page basis" and b.basis() is None:
                        continue
                    t0 = time.perf_counter()
                    variances(path, policy, b)
                    times.setdefault((shape, path), []).append(time.perf_counter() - t0)
        for (shape, path), ts in times.items():
            rows.append(
                {
                    "layout": label,
                    "d": config.dim,
                    "batch": shape,
                    "path": path,
                    "ms (median)": 1e3 * statistics.median(ts),
                }
            )
    print(f"$ python {' '.join(sys.argv)}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, BLAS threads 1, {rounds} rounds")
    print(format_table(rows, digits=2))


if __name__ == "__main__":
    main()
