"""Every keyart policy, the reference LinUCB and Vowpal Wabbit on the held-out worlds of the zoo.

For each world (``keyart.simulation.zoo``; ``--dev`` for the development seeds, which tuning scripts use;
by default the held-out seeds, which nothing tunes on) and each agent, one closed-loop run on the same
request stream and luck; the agent's share of the oracle is its expected take fraction over the last 20% of
the run divided by the oracle's over the same decisions. Printed per agent: the median and 10th percentile
of that share over the worlds, and on how many worlds it beats the reference LinUCB
(``benchmarks/reference_linucb.py``: one-hot features, every context x artwork cross) and VW
``cb_explore_adf --squarecb -q SA`` on the reference's one-hot namespaces (skipped with a note when
``vowpalwabbit`` is not installed). Every process runs with single-threaded BLAS.

    .venv/bin/python benchmarks/bench_worlds.py --jobs 2                 # 20 held-out worlds, 200k requests
    .venv/bin/python benchmarks/bench_worlds.py --worlds 3 --requests 50000 --jobs 2
    .venv/bin/python benchmarks/bench_worlds.py --quick                  # smoke run
    .venv/bin/python benchmarks/bench_worlds.py --dev --worlds 10       # development worlds (tuning)
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy

BENCH_DIR = str(Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

from bench_vw_closed_loop import VWAgent as KeyartVWAgent  # noqa: E402
from keyart.simulation.experiments import POLICY_SUITE, format_table  # noqa: E402
from keyart.simulation.zoo import DEV_SEEDS, HELD_OUT_SEEDS, ZOO_VERSION, describe  # noqa: E402

REFERENCE = "reference LinUCB"
VW = "VW squarecb"
VW_ARGS = "--cb_explore_adf --squarecb -q SA"
QUICK_OVERRIDES = {"n_members": 3_000}


def vw_available() -> bool:
    try:
        import vowpalwabbit  # noqa: F401
    except ImportError:
        return False
    return True


class VWAgent(KeyartVWAgent):
    """VW ``cb_explore_adf`` on the reference's one-hot features: shared namespace S = the context vector,
    action namespace A = the artwork vector and the artwork id; ``-q SA`` crosses them all."""

    def __init__(self, seed: int, args: str = VW_ARGS, name: str = VW) -> None:
        super().__init__(args, seed, name)

    def _example(self, batch: Any, i: int) -> list[str]:
        k = int(batch.mask[i].sum())
        ex = [f"shared |S {self._feats(batch.context[i], 's')}"]
        return ex + [f"|A {self._feats(batch.X[i, a], 'a')} id={batch.artwork_ids[i, a]}" for a in range(k)]


_WORLD: dict[tuple[int, tuple[tuple[str, Any], ...]], Any] = {}


def _world(seed: int, overrides: dict[str, Any]) -> Any:
    """The zoo world of ``seed``, kept for the next task of this worker (tasks are ordered world-major)."""
    from keyart.simulation.zoo import zoo_world

    key = (seed, tuple(sorted(overrides.items())))
    if key not in _WORLD:
        _WORLD.clear()
        _WORLD[key] = zoo_world(seed, **overrides)
        _WORLD[key].block_cache = {}  # the next agents on this world reuse its request stream
    return _WORLD[key]


def run_one(
    seed: int,
    agent: str,
    n_requests: int,
    update_every: int,
    run_seed: int,
    overrides: dict[str, Any],
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One agent's closed loop on one zoo world, in its own single-threaded-BLAS process; a keyart policy
    featurizes as the closed loop does by default (``Featurizer(catalog, grow=True)``, as a service's
    learner: the catalog's exact vocabularies, and each country, language and device a column of its own
    as it arrives) with ``FeatureConfig(**features)`` for the other fields, where the keys
    ``exact_vocabularies`` (the catalog's and a sample of requests' values, fixed), ``nogrow`` (the
    catalog's values, the context fields hashed: ``Featurizer(catalog)``) and ``hashed`` (every field
    hashed: no exact vocabulary) choose other vocabularies."""
    from threadpoolctl import threadpool_limits

    from keyart.simulation.runner import run_closed_loop

    threadpool_limits(1)
    world = _world(seed, overrides)
    t = time.perf_counter()
    if agent in POLICY_SUITE:  # (imported here: the baselines' runs execute none of keyart's learning)
        from keyart.features import FeatureConfig, Featurizer, exact_vocabularies
        from keyart.simulation.experiments import make_suite_policy
        from keyart.simulation.runner import PolicyAgent

        a: Any = PolicyAgent(make_suite_policy(agent, run_seed), name=agent)
        options = dict(features or {})
        exact = options.pop("exact_vocabularies", False)
        nogrow = options.pop("nogrow", False)
        hashed = options.pop("hashed", False)
        grow = not (exact or nogrow or hashed)
        config = FeatureConfig(**options)
        if exact:  # the catalog's and a sample of requests' values (the reference's: its first page)
            sample = world.contexts(world.sample_requests(1_000, np.random.default_rng([seed, 7])))
            config = exact_vocabularies(world.catalog, sample, config)
        elif not hashed:  # the catalog's values, and with grow every context value as it arrives
            config = exact_vocabularies(world.catalog, (), config, grow=grow)
        factory = None if features is None else (lambda catalog: Featurizer(catalog, config, grow=grow))
    else:
        from reference_linucb import ReferenceFeaturizer, ReferenceLinUCB

        a = ReferenceLinUCB(run_seed) if agent == REFERENCE else VWAgent(run_seed)
        factory = ReferenceFeaturizer
    r = run_closed_loop(
        world, a, n_requests, update_every=update_every, seed=run_seed, featurizer_factory=factory
    )
    if hasattr(a, "close"):
        a.close()
    return {
        "seed": seed,
        "agent": agent,
        "take": r.take_fraction(0.8),
        "oracle": r.oracle_take_fraction(0.8),
        "random": r.random_take_fraction(0.8),
        "share": r.take_fraction(0.8) / r.oracle_take_fraction(0.8),
        "wall": time.perf_counter() - t,
    }


def summarize(results: list[dict[str, Any]], agents: list[str]) -> list[dict[str, Any]]:
    """Per agent: median and 10th percentile share of oracle, and how often it beats the reference and VW."""
    share = {(r["agent"], r["seed"]): r["share"] for r in results}
    seeds = sorted({r["seed"] for r in results})
    rows = []
    for agent in agents:
        s = np.array([share[(agent, w)] for w in seeds])
        row: dict[str, Any] = {
            "policy": agent,
            "median share": float(np.median(s)),
            "p10 share": float(np.percentile(s, 10)),
            "min share": float(s.min()),
        }
        for other, col in ((REFERENCE, "beats reference"), (VW, "beats VW")):
            if other in agents and other != agent:
                wins = sum(share[(agent, w)] > share[(other, w)] for w in seeds)
                row[col] = f"{wins}/{len(seeds)}"
            else:
                row[col] = "-"
        rows.append(row)
    return rows


def source_files(entry: Path = Path(__file__)) -> list[Path]:
    """The Python files a run can execute: ``entry`` and every benchmark script and keyart module it
    imports, directly or through others (import statements anywhere in a file, parent packages included),
    found by reading the sources. The service, the CLI, the demo's report and other parts a run never
    imports are not among them, so changing those keeps earlier results."""
    src, bench = Path(BENCH_DIR).parent / "src", Path(BENCH_DIR)

    def files_of(name: str) -> list[Path]:
        parts = name.split(".")
        if parts[0] != "keyart":
            local = bench / f"{parts[0]}.py"
            return [local] if len(parts) == 1 and local.exists() else []
        found = []
        for i in range(1, len(parts) + 1):  # a module runs its parent packages first
            base = src.joinpath(*parts[:i])
            found += [f for f in (base / "__init__.py", base.with_suffix(".py")) if f.exists()]
        return found

    seen: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        package = ".".join(path.relative_to(src).with_suffix("").parts[:-1]) if src in path.parents else ""
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package of this file up
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            todo += [f.resolve() for n in names for f in files_of(n)]
    return sorted(seen)


def fingerprint(settings: dict[str, Any], entry: Path = Path(__file__)) -> str:
    """What a run's result depends on: every source file it can execute (``source_files`` of the script
    ``entry``), the versions of numpy, scipy and vowpalwabbit, and the run's settings. Results of a
    ``--results`` file are reused only under the same fingerprint (the same code and settings, whoever ran
    them and when)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    root = Path(BENCH_DIR).parent
    for path in source_files(entry):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    _versions(h)
    return h.hexdigest()[:16]


def _versions(h: Any) -> None:
    """Hash in the versions of numpy, scipy (the priors' optimizer, the linear algebra) and vowpalwabbit."""
    h.update(np.__version__.encode())
    h.update(scipy.__version__.encode())
    if vw_available():
        from importlib.metadata import version

        h.update(version("vowpalwabbit").encode())


#: The files a baseline's run (the reference LinUCB, VW) executes: the zoo's worlds, the closed loop and the
#: types it passes (``tests/test_bench_worlds.py`` traces a run and checks that it calls no function
#: elsewhere). keyart's featurizer, layout, policies and priors are not among them, so the baselines'
#: results are reused across changes to keyart's learning: a held-out report then reruns keyart alone.
BASELINE_SOURCES = (
    "benchmarks/reference_linucb.py",
    "benchmarks/bench_vw_closed_loop.py",
    *(
        f"src/keyart/{m}.py"
        for m in (
            "batch",
            "catalog",
            "catalog_files",
            "schemas",
            "context",
            "hashing",
            "params",
            "errors",
            "simulation/__init__",
            "simulation/config",
            "simulation/generation",
            "simulation/records",
            "simulation/runner",
            "simulation/world",
            "simulation/zoo",
        )
    ),
)
BASELINES = (REFERENCE, VW)


def baseline_fingerprint(settings: dict[str, Any]) -> str:
    """``fingerprint`` of a baseline's run: ``BASELINE_SOURCES``, this script's parts that run it (its
    agents' names and arguments, ``run_one``, ``_world``, ``VWAgent``) and the same versions and settings."""
    import inspect

    h = hashlib.sha256(json.dumps({**settings, "baselines": [*BASELINES, VW_ARGS]}, sort_keys=True).encode())
    root = Path(BENCH_DIR).parent
    for name in BASELINE_SOURCES:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    for part in (run_one, _world, VWAgent):
        h.update(inspect.getsource(part).encode())
    _versions(h)
    return h.hexdigest()[:16]


def agent_fingerprint(agent: str, settings: dict[str, Any]) -> str:
    """The fingerprint a run of ``agent`` is kept and reused under."""
    return baseline_fingerprint(settings) if agent in BASELINES else fingerprint(settings)


def load_results(
    path: Path | None, key: str | dict[str, str]
) -> tuple[dict[tuple[int, str], dict[str, Any]], int]:
    """The runs a ``--results`` file holds under fingerprint ``key``, or per agent under ``key[agent]``
    (and how many it holds under others)."""
    done: dict[tuple[int, str], dict[str, Any]] = {}
    other = 0
    if path is None or not path.exists():
        return done, other
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r.get("fingerprint") == (key if isinstance(key, str) else key.get(r["agent"])):
            done[(int(r["seed"]), str(r["agent"]))] = r
        else:
            other += 1
    return done, other


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=None, help="the first N seeds of the set (default all)")
    parser.add_argument(
        "--skip", type=int, default=0, help="leave out the first N seeds (another sitting runs them)"
    )
    parser.add_argument("--dev", action="store_true", help="development seeds instead of the held-out ones")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--update-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="the run seed (request stream, exploration)")
    parser.add_argument("--policies", default="", help="POLICY_SUITE names, comma-separated (default all)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    parser.add_argument("--per-world", action="store_true", help="also print every world's shares")
    parser.add_argument(
        "--baselines-only",
        action="store_true",
        help="run the reference LinUCB and VW alone (with --results: their runs for a later report)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="a JSON Lines file: every finished run is appended; runs it already holds for the same code "
        "and settings (fingerprint) are not run again, so a long report can be made over several sittings",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 worlds, 1,000 requests, 3k members"
    )
    args = parser.parse_args(argv)
    seeds = list(DEV_SEEDS if args.dev else HELD_OUT_SEEDS)
    overrides: dict[str, Any] = {}
    if args.quick:
        args.worlds, args.requests, overrides = args.worlds or 2, 1_000, dict(QUICK_OVERRIDES)
    seeds = seeds[: args.worlds] if args.worlds else seeds
    seeds = seeds[args.skip :]
    names = [p.strip() for p in args.policies.split(",") if p.strip()] or list(POLICY_SUITE)
    if args.baselines_only:
        names = []
    agents = [*names, REFERENCE]
    has_vw = vw_available()
    if has_vw:
        agents.append(VW)
    print(f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus, BLAS threads 1, "
        f"{args.jobs} job(s); zoo version {ZOO_VERSION}, {'development' if args.dev else 'held-out'} seeds "
        f"{seeds[0]}..{seeds[-1]} ({len(seeds)} worlds){f'; overrides {overrides}' if overrides else ''}; "
        f"{args.requests:,} requests per run, update every {args.update_every}, run seed {args.seed}"
    )
    if not has_vw:
        print("note: vowpalwabbit is not importable: the VW column is skipped (pip install 'keyart[bench]')")
    print(format_table([describe(s) for s in seeds]))
    t0 = time.perf_counter()
    settings = {
        "requests": args.requests,
        "update_every": args.update_every,
        "seed": args.seed,
        "overrides": overrides,
    }
    keys = {a: agent_fingerprint(a, settings) for a in agents}
    done, other = load_results(args.results, keys)
    if args.results is not None:
        print(
            f"results file {args.results}: fingerprint {fingerprint(settings)} (baselines "
            f"{baseline_fingerprint(settings)}), {len(done)} runs reused, {other} of other code or settings"
        )
    tasks = [(s, a) for s in seeds for a in agents if (s, a) not in done]  # world-major: workers reuse
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(run_one, s, a, args.requests, args.update_every, args.seed, overrides)
            for s, a in tasks
        ]
        for f in futures:
            r = f.result()
            done[(r["seed"], r["agent"])] = r
            if args.results is not None:
                with args.results.open("a") as fh:
                    fh.write(json.dumps({**r, "fingerprint": keys[r["agent"]]}) + "\n")
            print(f"  world {r['seed']} {r['agent']}: share {r['share']:.3f} ({r['wall']:.0f}s)", flush=True)
    results = [done[(s, a)] for s in seeds for a in agents]
    if args.per_world:
        hidden = ("wall", "fingerprint")
        print(format_table([{k: v for k, v in r.items() if k not in hidden} for r in results]))
    print(f"\nshare of oracle = take fraction / oracle's, last 20% of each run; {len(seeds)} worlds")
    print(format_table(summarize(results, agents), digits=3))
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
