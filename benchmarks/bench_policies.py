"""Choose and update throughput of every policy, and model memory, side by side with Vowpal Wabbit.

Pages of 40 titles x 12 candidates with the default featurizer; BLAS pinned to one thread; medians over
interleaved rounds in one process (each round times every policy and every VW configuration once, so the
shared machine's slow spells fall on all alike). Vowpal Wabbit's ``cb_explore_adf`` predicts the same
pages from the same features (shared namespace: member and context block; action namespace: artwork
block and crosses).

    python benchmarks/bench_policies.py [--quick]
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
import tracemalloc  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from keyart.batch import CandidateBatch  # noqa: E402
from keyart.catalog import Artwork, Catalog, Title  # noqa: E402
from keyart.context import MemberContext, Play  # noqa: E402
from keyart.features import Featurizer  # noqa: E402
from keyart.feedback import LoggedFeedback  # noqa: E402
from keyart.policies import POLICIES, make_policy  # noqa: E402

GENRES = [f"genre{i}" for i in range(14)]
STYLES = ["dark", "bright", "face", "text", "group", "landscape"]


def synthetic_catalog(n_titles: int, pool: int, seed: int) -> Catalog:
    rng = np.random.default_rng(seed)
    cast = [f"actor{i}" for i in range(400)]
    titles, arts = [], []
    for t in range(n_titles):
        g = tuple(rng.choice(GENRES, size=int(rng.integers(1, 4)), replace=False).tolist())
        c = tuple(rng.choice(cast, size=5, replace=False).tolist())
        titles.append(Title(f"t{t}", genres=g, cast=c))
        for a in range(pool):
            arts.append(
                Artwork(
                    f"t{t}-a{a}",
                    f"t{t}",
                    theme_genres=(g[a % len(g)],),
                    featured_cast=(c[a % 5],) if a % 3 else (),
                    style=STYLES[a % len(STYLES)],
                    tags=(f"k{a % 4}",),
                )
            )
    return Catalog(titles, arts)


def members(catalog: Catalog, n: int, seed: int) -> list[MemberContext]:
    rng = np.random.default_rng(seed)
    ids = list(catalog.titles)
    return [
        MemberContext(
            f"m{i}",
            played=tuple(Play(t, 1.7e9 - 86_400 * float(rng.integers(1, 200))) for t in rng.choice(ids, 8)),
            country=str(rng.choice(["US", "FR", "BR", "JP"])),
            device=str(rng.choice(["tv", "mobile", "web"])),
            timestamp=1.7e9 + float(rng.integers(0, 7 * 86_400)),
        )
        for i in range(n)
    ]


def logged(featurizer: Featurizer, catalog: Catalog, n: int, seed: int) -> LoggedFeedback:
    """Uniformly logged events whose rewards follow a hidden linear truth on the features."""
    rng = np.random.default_rng(seed)
    ctx = members(catalog, n, seed)
    tids = rng.choice(list(catalog.titles), n).tolist()
    batch = featurizer.events(ctx, tids, [[a.artwork_id for a in catalog.pool(t)] for t in tids])
    w = np.random.default_rng(0).normal(0, 0.5, batch.d)
    chosen = rng.integers(0, batch.pool_sizes)
    x = batch.X[np.arange(n), chosen]
    p = 1 / (1 + np.exp(-(x @ w - 3.0)))
    return LoggedFeedback(batch, chosen, 1.0 / batch.pool_sizes, (rng.random(n) < p).astype(float))


def median_rate(fn, units: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return units / statistics.median(times)


def vw_lines(batch: CandidateBatch, featurizer: Featurizer, mode: str) -> list[str]:
    """One cb_explore_adf example per title, from the same features keyart uses.

    ``crossed``: shared = member and context block, actions = everything else of keyart's row (its
    explicit crosses included), no VW interactions. ``raw``: shared = member and context block, actions =
    the artwork's own attributes and the cast match, and VW learns the crosses itself with ``-q UA``.
    """
    lay = featurizer.config.layout
    ctx_end = lay["extra"].stop
    act_end = lay["embedding"].stop if mode == "raw" else batch.d
    X = batch.X
    cast = lay["cast_match"].start
    out = []
    for i in range(batch.n):
        shared = " ".join(f"{j}:{v:.6g}" for j, v in enumerate(X[i, 0, :ctx_end]) if v)
        lines = [f"shared |U {shared}"]
        for k in range(int(batch.pool_sizes[i])):
            row = X[i, k]
            act = " ".join(f"{j}:{v:.6g}" for j, v in enumerate(row[ctx_end:act_end], start=ctx_end) if v)
            if mode == "raw" and row[cast]:
                act += f" {cast}:{row[cast]:.6g}"
            lines.append(f"|A id={batch.artwork_ids[i, k]} {act}")
        out.append("\n".join(lines))
    return out


# VW's cb_explore_adf explorers, each with the keyart policies it is the analogue of: epsilon-greedy;
# softmax (Boltzmann); UCB-style optimism (RegCB-opt) and SquareCB for LinUCB; online bootstrap ("bag",
# VW's Thompson-sampling-like explorer) for the Thompson policies. "crossed": keyart's own crossed
# features; "raw": VW learns the crosses itself (-q UA). The non-contextual baselines compare to epsilon.
VW_CONFIGS = (
    ("crossed", "--cb_explore_adf --epsilon 0.05", ("epsilon_greedy", "greedy", "uniform", "beta_ts")),
    ("crossed", "--cb_explore_adf --softmax --lambda 50", ("softmax",)),
    ("crossed", "--cb_explore_adf --regcbopt", ("linucb",)),
    ("crossed", "--cb_explore_adf --squarecb", ("linucb",)),
    ("crossed", "--cb_explore_adf --bag 16", ("linear_ts", "logistic_ts")),
    ("raw", "--cb_explore_adf --epsilon 0.05 -q UA", ()),
    ("raw", "--cb_explore_adf --squarecb -q UA", ()),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args()
    pages, repeats = (5, 3) if args.quick else (25, 7)
    n_train = 5_000 if args.quick else 60_000
    catalog = synthetic_catalog(200, 12, seed=1)
    f = Featurizer(catalog)
    train = logged(f, catalog, n_train, seed=2)
    ms = members(catalog, pages, seed=3)
    rng = np.random.default_rng(4)
    page_titles = [rng.choice(list(catalog.titles), 40, replace=False).tolist() for _ in range(pages)]

    def featurized() -> list[CandidateBatch]:
        return [
            f.page(m, t, request_id=f"r{i}") for i, (m, t) in enumerate(zip(ms, page_titles, strict=True))
        ]

    batches = featurized()
    featurize_rate = median_rate(featurized, 40 * pages, repeats)
    repeats = 3 if args.quick else 9

    policies = {}
    for name in sorted(POLICIES):
        policy = make_policy(name, seed=7)
        for part in np.array_split(np.arange(train.n), 6):
            policy.update(train.take(part))
        policy.choose(batches[0])  # warm caches (posterior solve, normals)
        policies[name] = policy

    vws: list[tuple[str, Any, list[list[str]], tuple[str, ...]]] = []
    try:
        import vowpalwabbit

        for mode, vw_args, analogue_of in VW_CONFIGS:
            vw = vowpalwabbit.Workspace(f"{vw_args} --quiet --random_seed 7")
            for i, ex in enumerate(vw_lines(train.batch.take(np.arange(min(5000, train.n))), f, mode)):
                c = int(train.chosen[i])
                lines = ex.split("\n")
                lines[c + 1] = f"0:{-train.reward[i]}:{train.propensity[i]} " + lines[c + 1]
                vw.learn("\n".join(lines))
            texts = [vw_lines(b, f, mode) for b in batches]
            vws.append((f"vw {mode}: {vw_args.removeprefix('--cb_explore_adf ')}", vw, texts, analogue_of))
    except ImportError:
        print("vowpalwabbit not installed: pip install -e '.[bench]'", file=sys.stderr)

    # Interleaved rounds: every round times each policy and each VW configuration once, so the shared
    # machine's slow spells fall on all of them alike; the table reports medians over rounds.
    units = 40 * pages
    times: dict[str, list[float]] = {}

    def clock(key: str, fn: Any, arg: Any = None) -> None:
        t0 = time.perf_counter()
        fn(arg)
        times.setdefault(key, []).append(time.perf_counter() - t0)

    for _ in range(repeats):
        for name, policy in policies.items():
            # fresh batches: nothing a policy derives from a batch is reused across rounds
            clock(f"choose {name}", lambda bs, p=policy: [p.choose(b) for b in bs], featurized())
            clock(
                f"both {name}",
                lambda _, p=policy: [p.choose(f.page(m, t)) for m, t in zip(ms, page_titles, strict=True)],
            )
        for key, vw, texts, _ in vws:
            clock(key, lambda _, vw=vw, texts=texts: [[vw.predict(t) for t in page] for page in texts])

    def rate(key: str) -> float:
        return units / statistics.median(times[key])

    rows = []
    for name, policy in policies.items():
        upd = train.take(np.arange(min(10_000, train.n)))
        update = median_rate(lambda p=policy, upd=upd: p.update(upd), upd.n, max(3, repeats // 2))
        rows.append((name, rate(f"choose {name}"), rate(f"both {name}"), update))
    vw_rows = [(key, rate(key), analogue_of) for key, _, _, analogue_of in vws]
    for _, vw, _, _ in vws:
        vw.finish()

    # memory: every policy's model over 300 titles x 24 artworks, every artwork seen; peak traced while
    # learning the events and scoring a page (the featurized events themselves are not counted)
    big = synthetic_catalog(300, 24, seed=5)
    fb = logged(Featurizer(big), big, 7_200 * 3 if not args.quick else 7_200, seed=6)
    memory = []
    for name in sorted(POLICIES):
        tracemalloc.start()
        model = make_policy(name, seed=1)
        model.update(fb)
        model.probabilities(fb.batch.take(np.arange(40)))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        state = sum(v.nbytes for v in model.snapshot()["state"].values() if isinstance(v, np.ndarray))
        memory.append((name, state, peak))

    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{i['internal_api']} {i.get('version')} threads={i['num_threads']}" for i in threadpool_info()
        )
    except ImportError:
        blas = "threadpoolctl not installed"
    print(f"command: {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, BLAS: {blas}")
    print(
        f"featurizer: {featurize_rate:,.0f} title-featurizations/s; "
        f"pages of 40 titles x 12 candidates, d={f.dim}"
    )
    print()
    vw_best = max((r for _, r, _ in vw_rows), default=None)
    print(
        "choose/s: on featurized pages (fresh batches each repeat), the analogue of VW's predict on prebuilt"
    )
    print("text; feat+choose/s: featurize each page from the member's context then choose, the serving path.")
    print(
        "x VW: choose/s over the rate of VW's analogous explorer (below); x VW best: feat+choose/s over the"
    )
    print("fastest VW configuration.")
    head = f"{'policy':28s} {'choose/s':>10s} {'feat+choose/s':>14s} {'update ev/s':>12s}"
    print(f"{head} {'VW analogue':>26s} {'x VW':>7s} {'x VW best':>10s}")
    for name, choose, both, update in rows:
        analogues = [(n, r) for n, r, of in vw_rows if name in of]
        vn, vr = max(analogues, key=lambda a: a[1]) if analogues else ("", None)
        ratio = f"{choose / vr:6.1f}x" if vr else ""
        best = f"{both / vw_best:9.1f}x" if vw_best else ""
        print(
            f"{name:28s} {choose:10,.0f} {both:14,.0f} {update:12,.0f} "
            f"{vn.removeprefix('vw crossed: '):>26s} {ratio:>7s} {best:>10s}"
        )
    for n, r, _ in vw_rows:
        print(f"{n:28s} {r:10,.0f}")
    print()
    print(f"memory over 300 titles x 24 artworks ({fb.n:,} events, every artwork seen):")
    print(f"{'policy':28s} {'state MiB':>10s} {'peak MiB':>9s}")
    for name, state, peak in memory:
        print(f"{name:28s} {state / 2**20:10.1f} {peak / 2**20:9.1f}")
    print()
    slowest_update = min(rows, key=lambda r: r[3])
    largest = max(memory, key=lambda m: m[2])
    print("targets (issue #2):")
    print(
        f"  update >= 50,000 events/s for every policy: slowest {slowest_update[0]} "
        f"{slowest_update[3]:,.0f}/s -> {'met' if slowest_update[3] >= 50_000 else 'NOT met'}"
    )
    print(
        f"  model under 200 MB: largest peak {largest[0]} {largest[2] / 2**20:.1f} MiB -> "
        f"{'met' if largest[2] < 200 * 2**20 else 'NOT met'}"
    )
    floors = {"epsilon_greedy": 20_000, "linucb": 20_000, "beta_ts": 5_000, "linear_ts": 5_000}
    floors["logistic_ts"] = 5_000
    for name, choose, _, _ in rows:
        analogues = [r for _, r, of in vw_rows if name in of]
        ratio = f", {choose / max(analogues):.1f}x its VW analogue" if analogues else ""
        verdict = "met" if choose >= floors.get(name, 0) else "NOT met"
        ten = "" if not analogues else (" (10x: met)" if choose >= 10 * max(analogues) else " (10x: NOT met)")
        if name in floors:
            print(f"  {name} choose >= {floors[name]:,}/s: {choose:,.0f}/s -> {verdict}{ratio}{ten}")


if __name__ == "__main__":
    main()
