"""Does adding the artwork ``keyart insights`` suggests raise a title's true take fraction more than adding
an artwork drawn like the existing ones? Over many titles and seeds of the simulator, with intervals.

Usage: ``python benchmarks/bench_insights.py [--seeds 5] [--titles 10] [--requests 6000] [--jobs 1]``
``python benchmarks/bench_insights.py --clickbait 6000,24000 [--seeds 5]`` (the clickbait table) and
``python benchmarks/bench_insights.py --segments [--seeds 5] [--requests 6000]`` (the segment table).

Per seed: the world of ``keyart.simulation.design.insights_config``, a uniform exploration log of
``--requests`` pages written as a service writes it, the insights' model (linear TS trained on the log)
and, for the ``--titles`` most shown titles, the suggested artwork (``analyse_title``). Each title then gets
two candidate additions, both honest and with the same hidden own appeal (one draw of the world's
base-appeal distribution): the suggestion, and an artwork drawn like the title's pool
(``draw_like_existing``). The true take fraction of a title is the world's expected P(quality play) when
each of the title's logged members (on their primary device) is shown their truly best artwork of the
pool, averaged over them; a gain is that value with the addition less without it. Printed: the mean gains
and their difference over all titles, with 95% t intervals over titles and over seeds (seed means).

``--clickbait PAGES``: for each number of pages and seed, impressions drawn straight from the same worlds
(each title's artwork uniform from its pool, outcomes from the truth; ``drawn_logs``), the
clickbait detector run on them, and its recall (true clickbait artworks flagged) and false flags (honest
artworks flagged) printed, with the clickbait artworks' median plays.

``--segments``: four titles of each world get a designed segment preference (``design_preferences``);
for their favourite-genre segments whose truth has a clear best (``segment_cases``), how often the
model's predicted best (``analyse_title``, trained on a ``--requests``-page service log) and the logs' IPS
best are the truth's; and on 24,000 pages drawn straight from the world, how often the IPS best is right
and how many of its clear calls (``segment_estimates``' ``clear``) are.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from keyart.insights.clickbait import clickbait  # noqa: E402
from keyart.insights.data import InsightLogs, load_logs, load_model  # noqa: E402
from keyart.insights.model import ModelView  # noqa: E402
from keyart.insights.segments import FAMILIES, member_segments  # noqa: E402
from keyart.insights.shares import segment_estimates  # noqa: E402
from keyart.insights.suggestions import analyse_title  # noqa: E402
from keyart.rewards import JoinReport  # noqa: E402
from keyart.simulation.design import (  # noqa: E402
    add_artwork,
    design_preferences,
    draw_like_existing,
    insights_config,
    true_takes,
    write_world_logs,
)
from keyart.simulation.records import Events  # noqa: E402
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


def drawn_logs(world: World, n_pages: int, seed: int) -> InsightLogs:
    """``n_pages`` pages of ``world`` as the insights read logs (``drawn``)."""
    return drawn(world, n_pages, seed)[0]


def drawn(world: World, n_pages: int, seed: int) -> tuple[InsightLogs, np.ndarray, np.ndarray]:
    """``n_pages`` pages of ``world`` as the insights read logs, drawn straight from the world (no event
    store, so many pages are cheap): each title's artwork uniform from its pool (its logged propensity),
    the outcome from the world's truth, every decision's member context as the service would log it;
    with each decision's true P(play) and P(quality play)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC1C]))
    requests = world.sample_requests(n_pages, rng)
    k = requests.titles.shape[1]
    title = requests.titles.reshape(-1)
    member = np.repeat(requests.member, k)
    pools = [world.pool_indices(t) for t in range(len(world.title_ids))]
    size = np.asarray([p.size for p in pools])
    table = np.full((len(pools), size.max()), -1, dtype=np.int64)
    for t, p in enumerate(pools):
        table[t, : p.size] = p
    art = table[title, (rng.random(title.size) * size[title]).astype(np.int64)]
    events = Events(
        member=member,
        title=title,
        artworks=art[:, None],
        device=np.repeat(requests.device, k),
        timestamp=np.repeat(requests.timestamp, k),
        interacted=world.interacted[member, title],
        recommender=requests.recommender.reshape(-1, 1),
    )
    out = world.draw(events, np.zeros(title.size, dtype=np.int64), rng)
    ids = np.asarray(world.artwork_ids, dtype=object)
    pool_ids = [tuple(ids[p].tolist()) for p in pools]
    counts = {f.name: 0 for f in dataclasses.fields(JoinReport)}
    counts |= {"decisions": title.size, "plays": int(out.play.sum()), "quality_plays": int(out.quality.sum())}
    logs = InsightLogs(
        title=np.asarray(world.title_ids, dtype=object)[title],
        artwork=ids[art],
        member=np.asarray(world.member_ids, dtype=object)[member],
        timestamp=events.timestamp,
        played=out.play,
        reward=out.quality.astype(np.float64),
        propensity=1.0 / size[title],
        pools=[pool_ids[t] for t in title.tolist()],
        probabilities=[(1.0 / size[t],) * size[t] for t in title.tolist()],
        contexts=[c for c in world.contexts(requests) for _ in range(k)],
        report=JoinReport(**counts),
        source=f"{n_pages} pages drawn from the world (seed {seed})",
    )
    return logs, out.p_play, out.expected


def clickbait_recall(seed: int, pages: int) -> tuple[int, int, int, float, float, float, float]:
    """(clickbait artworks flagged, clickbait artworks, honest artworks flagged, the clickbait artworks'
    median plays, the lowest and highest true rate ratio of a clickbait artwork, the lowest true odds
    ratio of an honest one) of the detector on ``pages`` pages drawn from the seed's world. True ratios:
    the artwork's true quality plays per play over its logged impressions against the rest of its pool's."""
    world = World(insights_config(seed))
    logs, p_play, p_quality = drawn(world, pages, seed)
    found = clickbait(logs)
    bait = {a for a, c in zip(world.artwork_ids, world.art_clickbait, strict=True) if c}
    hits = sum(c.flagged for c in found if c.artwork_id in bait)
    false = sum(c.flagged for c in found if c.artwork_id not in bait)
    plays = [c.plays for c in found if c.artwork_id in bait]
    rate, odds = {}, {}
    for c in found:
        title = logs.title == c.title_id
        mine = title & (logs.artwork == c.artwork_id)
        r1 = p_quality[mine].sum() / p_play[mine].sum()
        r2 = p_quality[title & ~mine].sum() / p_play[title & ~mine].sum()
        rate[c.artwork_id], odds[c.artwork_id] = r1 / r2, (r1 / (1 - r1)) / (r2 / (1 - r2))
    bait_rates = [rate[a] for a in bait if a in rate]
    honest = [v for a, v in odds.items() if a not in bait]
    return (
        hits,
        len(bait),
        false,
        float(np.median(plays)) if plays else 0.0,
        min(bait_rates, default=math.nan),
        max(bait_rates, default=math.nan),
        min(honest, default=math.nan),
    )


def clickbait_table(pages: list[int], seeds: list[int]) -> None:
    """Print the clickbait detector's recall and false flags per number of pages and seed."""
    print(
        "pages  seed  clickbait  flagged  recall  honest flagged  median plays  "
        "bait rate ratio (true)  honest odds ratio (true, min)"
    )
    row = "{:>5}  {:>4}  {:9d}  {:7d}  {:>6}  {:14d}  {:12.0f}  {:>22}  {:29.2f}"
    for n in pages:
        runs = [clickbait_recall(s, n) for s in seeds]
        for s, (hit, total, false, med, lo, hi, honest) in zip(seeds, runs, strict=True):
            print(
                row.format(
                    n, s, total, hit, f"{hit / total:.0%}", false, med, f"{lo:.2f} to {hi:.2f}", honest
                )
            )
        hit, total, false = (sum(r[i] for r in runs) for i in range(3))
        print(
            row.format(
                n,
                "all",
                total,
                hit,
                f"{hit / total:.0%}",
                false,
                np.median([r[3] for r in runs]),
                f"{min(r[4] for r in runs):.2f} to {max(r[5] for r in runs):.2f}",
                min(r[6] for r in runs),
            )
        )


#: The designed titles of the segment checks (``design_preferences``), their genres, the least decisions
#: of a segment on a title, and the least lead of the truth's best artwork over the next for a case.
DESIGNED = ("t0000", "t0001", "t0002", "t0003")
GENRES = ("comedy", "romance", "drama")
MIN_ROWS = 60
CLEAR = 0.03


@dataclasses.dataclass(frozen=True)
class SegmentCase:
    """One favourite-genre segment of a designed title whose truth has a clear best artwork."""

    title_id: str
    segment: str
    rows: int
    truth: str  # the truth's best artwork
    named: str  # the report's best (IPS estimate)
    clear: bool  # the report calls it clear
    model: str  # the model's predicted best ("" when no model was given)


def segment_cases(
    world: World,
    designed: dict[str, dict[str, str]],
    logs: InsightLogs,
    segments: dict[str, np.ndarray],
    genres: tuple[str, ...] | None = GENRES,
    view: ModelView | None = None,
) -> list[SegmentCase]:
    """Every favourite-genre segment (of ``genres``; None: all) of the designed titles with ``MIN_ROWS``
    decisions whose truth leads by ``CLEAR``: the truth's best (the world's mean take over the segment's
    logged members), the report's and, with a model ``view``, the model's (``analyse_title``)."""
    out = []
    for t in DESIGNED:
        rows = logs.rows_of(t)
        model = (
            analyse_title(view, logs, segments, t, min_rows=MIN_ROWS, max_rows=rows.size) if view else None
        )
        for r in segment_estimates(logs, segments, t, MIN_ROWS):
            if (
                r["family"] != FAMILIES[0]
                or not r["best"]
                or (genres is not None and r["segment"] not in genres)
            ):
                continue
            mine = rows[segments[FAMILIES[0]][rows] == r["segment"]]
            pool = list(designed[t].values())
            take = true_takes(world, t, [world.member_index[m] for m in logs.member[mine]], pool).mean(0)
            lead = np.sort(take)
            if lead[-1] - lead[-2] < CLEAR:
                continue
            best = "" if model is None else model.preferred(FAMILIES[0], str(r["segment"]))
            out.append(
                SegmentCase(
                    t,
                    str(r["segment"]),
                    int(mine.size),
                    pool[int(np.argmax(take))],
                    str(r["artwork_id"]),
                    bool(r["clear"]),
                    best,
                )
            )
    return out


def segment_check(seed: int, service_pages: int, drawn_pages: int) -> tuple[list[SegmentCase], ...]:
    """The segment cases of one designed world: from a service log of ``service_pages`` pages with the
    model trained on it (designed genres' segments), and from ``drawn_pages`` pages drawn straight from
    the world (every favourite genre, no model)."""
    world = World(insights_config(seed))
    designed = design_preferences(world, DESIGNED, GENRES, "close-up")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_world_logs(world, Path(tmp) / "events.duckdb", service_pages, seed)
        logs = load_logs(path, world.catalog)
        policy, _ = load_model(path, world.catalog, seed=seed)
    segments = member_segments(logs.contexts, logs.title, world.catalog)
    served = segment_cases(world, designed, logs, segments, view=ModelView(policy, world.catalog))
    logs = drawn_logs(world, drawn_pages, seed)
    segments = member_segments(logs.contexts, logs.title, world.catalog)
    return served, segment_cases(world, designed, logs, segments, genres=None)


def segment_table(seeds: list[int], service_pages: int, drawn_pages: int) -> None:
    """Print, per seed, how often the model's and the logs' (IPS) best per segment are the truth's."""
    print(f"service log ({service_pages} pages, model trained on it): designed genres' segments")
    print(f"drawn ({drawn_pages} pages): every favourite-genre segment; IPS only")
    print("seed  cases  model right  IPS right  | drawn cases  IPS right  clear calls  clear right")
    row = "{:>4}  {:5d}  {:11d}  {:9d}  | {:11d}  {:9d}  {:11d}  {:11d}"
    total = np.zeros(7, dtype=np.int64)
    for s in seeds:
        served, drawn = segment_check(s, service_pages, drawn_pages)
        counts = np.array(
            [
                len(served),
                sum(c.model == c.truth for c in served),
                sum(c.named == c.truth for c in served),
                len(drawn),
                sum(c.named == c.truth for c in drawn),
                sum(c.clear for c in drawn),
                sum(c.clear and c.named == c.truth for c in drawn),
            ]
        )
        total += counts
        print(row.format(s, *counts.tolist()))
    print(row.format("all", *total.tolist()))


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
    parser.add_argument("--clickbait", default="", help="comma-separated page counts: the clickbait table")
    parser.add_argument("--segments", action="store_true", help="the segment table (model and IPS vs truth)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    seeds = list(range(args.seeds))
    if args.clickbait:
        print(f"# {' '.join(sys.argv)}")
        clickbait_table([int(x) for x in args.clickbait.split(",")], seeds)
        print(f"# {time.perf_counter() - t0:.0f} s")
        return
    if args.segments:
        print(f"# {' '.join(sys.argv)}")
        segment_table(seeds, args.requests, 24_000)
        print(f"# {time.perf_counter() - t0:.0f} s")
        return
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
