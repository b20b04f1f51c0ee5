"""Where the time of a decision goes: a profile table (cProfile, cumulative time per part) of the three hot
situations, so the next speed work is chosen from data.

- ``pages``: 40-title x 12-candidate pages in process, LinUCB (``bench_policies.py``'s pages);
- ``one-title``: one title per request, choose every request and learn every 100 (``bench_one_title.py``);
- ``service``: the service's page path without HTTP (``bench_service.py --inprocess``: parse, featurize,
  choose, log, answer).

Parts nest (``choose`` contains ``moments``...); "ms / request" is the part's cumulative time per request
under the profiler (which inflates per-call overhead, so shares matter more than absolute values).

    python benchmarks/profile_hot_paths.py [--situations pages,one-title,service] [--requests 400]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_policies import logged, members, synthetic_catalog  # noqa: E402
from keyart import kernels  # noqa: E402

#: (part, file suffix, function name): the functions whose cumulative time is each part's
PARTS = (
    ("parse request", "service/parsing.py", "parse_page"),
    ("featurize (Featurizer.page)", "keyart/features.py", "page"),
    ("choose (Policy.choose)", "policies/base.py", "choose"),
    ("  moments", "policies/shared.py", "_moments"),
    ("    model rows of the artworks (RowCache)", "policies/base.py", "rows"),
    ("    page basis of the batch", "keyart/batch.py", "basis"),
    ("    page moments (Posterior.page_moments)", "keyart/learning.py", "page_moments"),
    ("      V at the page's levels (projections)", "keyart/basis.py", "project"),
    ("      candidates' V^T Sigma U (gather kernel)", "kernels/__init__.py", "gather_product"),
    ("    rows of a small batch (materialize)", "keyart/layout.py", "materialize"),
    ("    dense-row moments (small batches)", "keyart/learning.py", "moments"),
    ("    posterior solve", "keyart/learning.py", "posterior"),
    ("    artworks' Sigma U (per posterior)", "keyart/learning.py", "projected_rows"),
    ("  sticky draw (sticky_uniforms)", "keyart/exploration.py", "sticky_uniforms"),
    ("  floor and new share (_explorable)", "policies/base.py", "_explorable"),
    ("  sample (sample_index)", "keyart/exploration.py", "sample_index"),
    ("  decision record (DecisionBatch)", "keyart/feedback.py", "__init__"),
    ("learn (Policy.update)", "policies/base.py", "update"),
    ("log line (page_record + segment)", "service/segments.py", "append"),
    ("answer (page_json)", "service/engine.py", "page_json"),
)


def profile(fn: Callable[[], int]) -> tuple[dict[str, float], float, int]:
    """Run ``fn`` (returns its request count) under cProfile: seconds per part, total, requests."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    n = fn()
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out = dict.fromkeys((p for p, _, _ in PARTS), 0.0)
    for (file, _, func), (_, _, _, cum, _) in stats.items():
        for part, suffix, name in PARTS:
            if func == name and file.endswith(suffix):
                out[part] = max(out[part], cum)  # nested same-name functions: the outer one
    return out, total, n


def pages_situation(requests: int) -> Callable[[], int]:
    from keyart.features import Featurizer
    from keyart.policies import make_policy

    catalog = synthetic_catalog(200, 12, seed=1)
    f = Featurizer(catalog)
    policy = make_policy("linucb", seed=7).update(logged(f, catalog, 20_000, seed=2))
    ms = members(catalog, 25, seed=3)
    rng = np.random.default_rng(4)
    titles = [rng.choice(list(catalog.titles), 40, replace=False).tolist() for _ in range(25)]
    policy.choose(f.page(ms[0], titles[0]))

    def run() -> int:
        for i in range(requests):
            policy.choose(f.page(ms[i % 25], titles[i % 25]))
        return requests

    return run


def one_title_situation(requests: int) -> Callable[[], int]:
    from bench_one_title import KeyartAgent, run_block, truth
    from bench_one_title import requests as make_requests

    catalog = synthetic_catalog(200, 12, seed=1)
    agent = KeyartAgent(catalog, kernels.backend(), 0)
    reqs = make_requests(catalog, 2 * requests, 0)
    p = truth(catalog, 0)
    run_block(agent, reqs[:requests], 0, 100, p, 0)  # the first model and caches

    def run() -> int:
        run_block(agent, reqs[requests:], requests, 100, p, 0)
        return requests

    return run


def service_situation(requests: int, root: Path) -> Callable[[], int]:
    import bench_service
    from keyart.catalog import Catalog
    from keyart.service import catalog_store
    from keyart.service.config import ServiceConfig
    from keyart.service.engine import Engine
    from keyart.service.learner import ensure_initial_generation
    from keyart.service.metrics import Metrics
    from keyart.service.parsing import parse_page

    bench_service.write_catalog(root / "catalog.json")

    config = ServiceConfig(state_dir=str(root / "inprocess"), api_key="bench")
    catalog_store.import_catalog(config.catalog_path, Catalog.load_json(root / "catalog.json"))
    ensure_initial_generation(config)
    engine = Engine(config, Metrics())
    engine.refresh(True)
    bodies = bench_service.bodies()
    for body in bodies:
        engine.decide(parse_page(body, config.limits, time.time()))

    def run() -> int:
        for i in range(requests):
            result = engine.decide(parse_page(bodies[i % len(bodies)], config.limits, time.time()))
            result.page_json()
        return requests

    return run


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--situations", default="pages,one-title,service")
    ap.add_argument("--requests", type=int, default=400)
    args = ap.parse_args(argv)
    kernels.warm_up()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"kernels: {kernels.backend()}; BLAS threads 1; cProfile cumulative times")
    if args.requests < 1:
        raise SystemExit("--requests must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        for situation in args.situations.split(","):
            if situation == "pages":
                fn = pages_situation(args.requests)
            elif situation == "one-title":
                fn = one_title_situation(max(args.requests, 1000))
            else:
                fn = service_situation(args.requests, Path(tmp))
            parts, total, n = profile(fn)
            print(f"\n{situation}: {n:,} requests, {1000 * total / n:.3f} ms / request under the profiler")
            print(f"{'part':48s} {'ms / request':>13s} {'share':>7s}")
            for part, seconds in parts.items():
                if seconds > 0:
                    print(f"{part:48s} {1000 * seconds / n:13.3f} {seconds / total:7.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
