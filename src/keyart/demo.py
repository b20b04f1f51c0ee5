"""``keyart demo``: the whole story in one command, in a simulated world whose truth is known.

Runs, in the spirit of "Artwork Personalization at Netflix" (2017): 1 (a short batch cycle vs online
learning), 2 (replay of Random, Bandit and contextual bandits on an exploration log), 3 (which artwork
comedy fans and romance fans see) and 4 (online A/B test, split by prior interaction); reports what the
online policies showed (explored share, within-period switch rate) and cold start from the pixels (new
artworks in a small image world, with and without visual features); prints the tables and writes the
figures and one self-contained HTML report into ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keyart import reports
from keyart.errors import ValidationError
from keyart.simulation.config import demo_config, small_config
from keyart.simulation.experiments import (
    NON_CONTEXTUAL,
    ABResult,
    BatchOnlineResult,
    ColdStartResult,
    ReplayResult,
    ShowcaseResult,
    Stickiness,
    ab_test,
    batch_vs_online,
    cold_start,
    offline_replay,
    taste_showcase,
)
from keyart.simulation.experiments.cold_start import COLD_START_POLICY
from keyart.simulation.world import World


@dataclass(frozen=True)
class DemoSizes:
    """Requests per experiment (pages of ``page_size`` titles each)."""

    replay: int
    ab: int
    batch_online: int
    showcase_members: int
    update_every: int
    insights: int = 6_000  # pages of the exploration log the insights report reads
    # cold start from the pixels, in the benchmark's image world: (release, horizon, steady start, steady
    # stop), pages; the benchmark's are (10,000, 10,000, 15,000, 20,000) over five worlds
    cold_start: tuple[int, int, int, int] = (5_000, 5_000, 5_000, 10_000)


FULL = DemoSizes(replay=20_000, ab=30_000, batch_online=12_000, showcase_members=400, update_every=500)
QUICK = DemoSizes(
    replay=2_000,
    ab=2_000,
    batch_online=1_200,
    showcase_members=60,
    update_every=200,
    insights=1_000,
    cold_start=(300, 400, 400, 600),
)

#: The image world of the demo's cold-start section: the benchmark's (``bench_vision_cold_start.py``:
#: ``keyart.simulation.images.image_world_config`` as it is), with the experiment's own policy and the
#: benchmark's update cadence, over a shorter run (``DemoSizes.cold_start``); a world of 16 titles and
#: 1,000 members released new artworks into a model that had learned from too little to read them. The
#: quick demo's world is a small one (``image_world_config`` with these changes).
COLD_START_WORLD: dict[str, Any] = {}
COLD_START_QUICK: dict[str, Any] = {
    "n_titles": 10,
    "n_cast": 16,
    "n_members": 300,
    "max_pool": 4,
    "mean_extra_pool": 1.0,
    "n_new_titles": 3,
    "n_new_artworks": 2,
}


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and its tables (also saved as ``results.json``)."""

    out_dir: Path
    report: Path
    figures: dict[str, Path]
    tables: dict[str, list[dict[str, Any]]]
    seconds: float


def _left(value: Any) -> bool:
    """Text columns are left-aligned, numbers (and intervals, signed percentages) right-aligned."""
    return isinstance(value, str) and not re.match(r"^[\[+\-−\d.]|^n/a$", value)


def _rich_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """A terminal table of display rows (the same rows as the HTML report's, formatted the same way)."""
    table = Table(title=title, title_justify="left")
    if not rows:
        return table
    for i, (c, v) in enumerate(rows[0].items()):
        table.add_column(str(c), justify="left" if i == 0 or _left(v) else "right", overflow="fold")
    for r in rows:
        table.add_row(*(reports._fmt(v) for v in r.values()))
    return table


def _json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
    return out


def _pct(x: float, signed: bool = False) -> str:
    """A fraction as the terminal prints it: 0.7647 -> '76.5%' ('+76.5%' when ``signed``)."""
    if math.isnan(x):
        return "n/a"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def describe_world(world: World) -> str:
    """The simulated world in words (sizes, pools, clickbait, pages), not its Python repr."""
    c = world.config
    sizes = [len(world.catalog.pool(t)) for t in world.catalog.titles]
    return (
        f"a simulated catalog of {len(world.title_ids):,} titles with {len(world.artwork_ids):,} artworks "
        f"(pools of {min(sizes)} to {max(sizes)} artworks per title, about {c.clickbait_fraction:.0%} of "
        f"them clickbait) and {c.n_members:,} members whose tastes are hidden from the policies; each "
        f"request is a page of {c.page_size} titles, {c.requests_per_day:,.0f} requests a simulated day"
    )


def replay_rows(replay: ReplayResult) -> list[dict[str, Any]]:
    """Experiment 2 for people: the replay estimate, its interval, the truth and the effective sample size."""
    level = f"{100 * (1 - replay.alpha):.0f}%"
    return [
        {
            "Policy": r.policy,
            "Replay estimate": r.estimate,
            f"{level} interval": f"[{r.lower:.4f}, {r.upper:.4f}]",
            "True value": r.truth,
            "Interval covers the truth": r.covered,
            "Effective sample size": round(r.ess),
        }
        for r in replay.rows
    ]


def replay_misses(replay: ReplayResult) -> str | None:
    """A sentence on the replay intervals that miss the world's true value (None when all cover it)."""
    missed = [r.policy for r in replay.rows if not r.covered]
    if not missed:
        return None
    level = 1 - replay.alpha
    n = len(replay.rows)
    chance = 1 - level**n
    names = ", ".join(missed)
    return (
        f"The {level:.0%} interval of {names} misses the true value. Each interval misses the truth in "
        f"about {replay.alpha:.0%} of runs, so with {n} intervals at least one miss is expected in about "
        f"{chance:.0%} of runs (if they were independent; they share one log): a miss here is chance, not "
        "an error of the estimator, unless it repeats over seeds (keyart demo --seed N)."
    )


def showcase_rows(show: ShowcaseResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Experiment 3: (per taste group, the top artworks and theme shares; per artwork, both shares)."""
    summary = [
        {
            "Members": g,
            "Policy's top artwork": f"{show.artwork_ids[show.top(i)]} ({show.themes[show.top(i)]})",
            "World's best (most often)": f"{show.artwork_ids[show.top(i, 'oracle')]} "
            f"({show.themes[show.top(i, 'oracle')]})",
            "Comedy share, policy": _pct(show.theme_share(i, "comedy")),
            "Comedy share, world": _pct(show.theme_share(i, "comedy", "oracle")),
            "Romance share, policy": _pct(show.theme_share(i, "romance")),
            "Romance share, world": _pct(show.theme_share(i, "romance", "oracle")),
        }
        for i, g in enumerate(show.groups)
    ]
    detail = [
        {
            "Members": r["members"],
            "Artwork": r["artwork"],
            "Theme": r["theme"],
            "Style": r["style"],
            "Shown by the policy": _pct(r["policy_share"]),
            "Truly best": _pct(r["oracle_share"]),
        }
        for r in show.table()
    ]
    return summary, detail


def ab_rows(ab: ABResult) -> list[dict[str, Any]]:
    """Experiment 4: take fraction per arm, the lift with its interval, and the true lift."""
    return [
        {
            "Segment": x.segment,
            f"Control ({ab.control})": x.control,
            f"Treatment ({ab.treatment})": x.treatment,
            "Lift": _pct(x.lift, signed=True),
            "95% interval": f"[{_pct(x.lower, True)}, {_pct(x.upper, True)}]",
            "True lift": _pct(x.true_lift, signed=True),
            "Decisions": x.n_control + x.n_treatment,
        }
        for x in ab.lifts
    ]


def batch_rows(bo: BatchOnlineResult) -> list[dict[str, Any]]:
    """Experiment 1: take fraction over the run and its last 20%, and the cumulative regret."""
    return [
        {
            "Approach": r["approach"],
            "Take fraction": r["take_fraction"],
            "Take fraction, last 20%": r["take_fraction_last_20pct"],
            "Cumulative regret (quality plays)": f"{r['cumulative_regret']:,.1f}",
        }
        for r in bo.table()
    ]


def stickiness_rows(runs: list[tuple[str, Stickiness]]) -> list[dict[str, Any]]:
    """What the online policies showed: explored share and the within-period switch rate."""
    return [
        {
            "Run": run,
            "Policy": s.policy,
            "Decisions": s.decisions,
            "Explored": _pct(s.explored_share),
            "Member-title pairs seen twice or more in a period": s.repeated,
            "Of these, artwork changed within the period": _pct(s.switch_rate),
        }
        for run, s in runs
    ]


def cold_start_rows(result: ColdStartResult) -> list[dict[str, Any]]:
    """Cold start from the pixels: per variant, the share of oracle on the release pools early, reached
    and at steady state, and the ratios."""
    return [
        {
            "Features": c.variant,
            f"Share of oracle, first {result.horizon:,} pages": _pct(c.early),
            "Share reached (last quarter)": _pct(c.reached),
            "Steady state": _pct(c.steady),
            "Reached / steady state": _pct(c.reached_of_steady),
            "Decisions on new pools": c.decisions,
        }
        for c in result.curves.values()
    ]


def _has_vision() -> bool:
    """Whether OpenCV (the vision extra) is installed: the cold-start section needs it."""
    import importlib.util

    return importlib.util.find_spec("cv2") is not None


def _cold_start(out: Path, sizes: DemoSizes, seed: int, console: Console, quick: bool) -> ColdStartResult:
    """The cold-start experiment in the benchmark's image world (a small one when ``quick``) with the
    experiment's own policy, whose pictures go to ``out``."""
    from keyart.simulation.images import ImageWorld, image_world_config

    release, horizon, s0, s1 = sizes.cold_start
    world_changes = COLD_START_QUICK if quick else COLD_START_WORLD
    config = image_world_config(seed, arrival_day=release / 20_000.0, **world_changes)
    with console.status("Cold start from the pixels: drawing and reading the artworks..."):
        world = ImageWorld(config, out, jobs=2)
    with console.status("Cold start from the pixels: with and without visual features..."):
        return cold_start(
            world,
            horizon=horizon,
            steady=(s0, s1),
            seed=seed,
            update_every=sizes.update_every,
            policy=COLD_START_POLICY,
            bins=8,
        )


def _cold_start_section(cold: ColdStartResult, sizes: DemoSizes, figure: Path) -> reports.Section:
    """The report's section on cold start from the pixels."""
    return reports.Section(
        "Cold start from the pixels",
        [
            "The benchmark's image world (a small one in the quick demo), whose artworks are pictures "
            "drawn from hidden visual attributes (palette, brightness, close-up or group, lettering, "
            "saturation) that members respond to; keyart "
            "reads only the pixels, through keyart.vision's features (docs/vision.md). "
            f"{sizes.cold_start[0]:,} pages in, new titles and new artworks arrive with pixels and no "
            f"tags. The same {COLD_START_POLICY} policy runs twice on the same pages, with and "
            "without the visual features; the curve is its share of the oracle's quality plays on "
            "the pools holding a new artwork, the dashed lines its steady state on the same pools "
            f"({sizes.cold_start[2]:,}-{sizes.cold_start[3]:,} pages after the release). "
            "benchmarks/bench_vision_cold_start.py measures it over many worlds."
        ],
        [cold_start_rows(cold)],
        [figure],
    )


def _insights(world: World, out: Path, pages: int, seed: int, console: Console) -> Path:
    """``keyart insights`` on an exploration log of ``pages`` pages of ``world`` (after the experiments,
    from generators of its own: the experiments' numbers do not change); returns the report's path."""
    import shutil

    from keyart.insights.report import compute_insights, write_insights
    from keyart.simulation.design import write_world_logs

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with console.status("Insights for artists and designers..."):
        logs = write_world_logs(world, out / "events.duckdb", pages, seed)
        world.catalog.save(out / "catalog.json")
        return write_insights(compute_insights(logs, world.catalog, seed=seed), out)["html"]


def run_demo(
    out_dir: str | Path, seed: int = 0, quick: bool = False, console: Console | None = None
) -> DemoResult:
    """Run the demo's experiments, print their tables, write PNG figures and ``report.html``.

    ``seed`` fixes the world and every random source (the same seed gives the same numbers); ``quick``
    runs a small world at smoke-test size.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"seed must be an int >= 0. Got {seed!r}.")
    console = console or Console(width=160)
    sizes = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    config = small_config(seed) if quick else demo_config(seed)
    with console.status("Building the simulated world..."):
        world = World(config)
    about = describe_world(world)
    console.print(f"[bold]keyart demo[/bold] seed {seed}{' (quick)' if quick else ''}: {about}.")
    figures: dict[str, Path] = {}
    columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        t1 = progress.add_task("1. batch cycle vs online (short)", total=2 * sizes.batch_online)
        t2 = progress.add_task("2. replay on an exploration log", total=sizes.replay)
        t4 = progress.add_task("4. online A/B test", total=sizes.ab)
        bo = batch_vs_online(
            world,
            sizes.batch_online,
            seed=seed,
            update_every=sizes.update_every,
            progress=lambda k: progress.advance(t1, k),
        )
        replay = offline_replay(
            world,
            sizes.replay,
            seed=seed,
            window=sizes.update_every,
            progress=lambda k: progress.advance(t2, k),
        )
        contextual = [r for r in replay.rows if r.policy not in NON_CONTEXTUAL]
        best = max(contextual, key=lambda r: r.estimate).policy
        show = taste_showcase(
            world, replay.policies[best], n_members=sizes.showcase_members, seed=seed, policy_name=best
        )
        ab = ab_test(
            world,
            sizes.ab,
            seed=seed,
            update_every=sizes.update_every,
            progress=lambda k: progress.advance(t4, k),
        )
    shown = [("Experiment 1, online", bo.stickiness), *(("Experiment 4, A/B arm", s) for s in ab.stickiness)]
    sticky = [(run, s) for run, s in shown if s is not None]
    tables: dict[str, list[dict[str, Any]]] = {
        "batch_vs_online": bo.table(),
        "replay": replay.table(),
        "showcase": show.table(),
        "ab_test": ab.table(),
        "stickiness": [{"run": run, **dataclasses.asdict(s)} for run, s in sticky],
    }
    figures["batch_vs_online"] = reports.plot_batch_vs_online(bo, out / "fig1_batch_vs_online.png")
    figures["replay"] = reports.plot_replay(replay, out / "fig2_replay.png")
    figures["showcase"] = reports.plot_showcase(show, out / "fig3_showcase.png")
    figures["ab_test"] = reports.plot_ab(ab, out / "fig4_ab_test.png")
    cold = _cold_start(out / "cold_start_images", sizes, seed, console, quick) if _has_vision() else None
    if cold is not None:
        tables["cold_start"] = cold.table()
        figures["cold_start"] = reports.plot_cold_start(cold, out / "fig5_cold_start.png")

    shows = showcase_rows(show)
    miss = replay_misses(replay)
    titles = {
        "batch": "Experiment 1 (short): batch cycle vs online learning",
        "replay": f"Experiment 2: replay on {replay.n_test_events:,} held-out exploration events "
        f"(trained on the first {replay.n_train_events:,}, {replay.train_share:.0%})",
        "showcase": f"Experiment 3: artwork of {show.title_id} by taste ({best})",
        "ab": f"Experiment 4: A/B test, {ab.treatment} (personalized) vs {ab.control} (unpersonalized), "
        f"after {ab.warmup:.0%} warm-up",
        "sticky": "What the online policies showed: exploration and within-period switches",
        "cold": "Cold start from the pixels: brand-new artworks, with and without visual features",
    }
    console.print(_rich_table(titles["batch"], batch_rows(bo)))
    console.print(_rich_table(titles["replay"], replay_rows(replay)))
    if miss:
        console.print(miss)
    console.print(_rich_table(titles["showcase"], shows[0]))
    console.print(_rich_table(titles["ab"], ab_rows(ab)))
    console.print(_rich_table(titles["sticky"], stickiness_rows(sticky)))
    if cold is not None:
        console.print(_rich_table(titles["cold"], cold_start_rows(cold)))
    else:
        console.print(
            "Cold start from the pixels: skipped (needs the vision extra: pip install 'keyart[vision]')."
        )

    article = "\u201cArtwork Personalization at Netflix\u201d (Netflix Technology Blog, 2017)"
    sections = [
        reports.Section(
            "Experiment 1: batch cycle vs online learning (short form)",
            [
                "Collect with uniform exploration, train, A/B test, roll out, repeat, against a contextual "
                "bandit that updates every few hundred pages. Same members, pages and luck for both. "
                f"{article} explains why Netflix moved from the batch cycle to online learning."
            ],
            [batch_rows(bo)],
            [figures["batch_vs_online"]],
        ),
        reports.Section(
            "Experiment 2: offline replay",
            [
                f"A uniform-random exploration log of {sizes.replay:,} pages; candidates are trained on "
                f"the first {replay.train_share:.0%} and replayed on the rest ({replay.n_test_events:,} "
                "events), as in the replay comparison of Random, Bandit and contextual bandits in "
                f"{article}. The replay estimate is self-normalized (pools have different sizes), with a "
                "95% interval clustered by member; the diamond is the world's true take fraction of the "
                "same policy on the same events."
            ],
            [replay_rows(replay)],
            [figures["replay"]],
            notes=(miss,) if miss else (),
        ),
        reports.Section(
            "Experiment 3: which artwork for whom",
            [
                f"Members inclined to comedy and members inclined to romance (by their hidden tastes) ask "
                f"for {show.title_id}, a comedy-romance-drama, like the article's example of one film "
                f"shown with a comedy artwork to comedy fans and a romantic one to romance fans. Bars: how "
                f"often the trained {best} policy shows each artwork, next to how often each artwork is "
                "truly the best one for them."
            ],
            list(shows),
            [figures["showcase"]],
        ),
        reports.Section(
            "Experiment 4: online A/B test",
            [
                f"Members split by hash: {ab.control} (unpersonalized) against {ab.treatment} "
                f"(personalized), both learning online from their own traffic for {sizes.ab:,} pages; lift "
                f"measured on drawn quality plays after a {ab.warmup:.0%} warm-up, with member-clustered "
                "95% intervals."
            ],
            [ab_rows(ab)],
            [figures["ab_test"]],
        ),
        reports.Section(
            "What the online policies showed: exploration and stickiness",
            [
                "Explored: the share of decisions whose shown artwork was not the policy's best guess (its "
                "score below the best of the pool). The random draw of each member and title is fixed "
                "for the member's period (a day, each member's starting at its own hashed time), but the "
                "distribution it draws from moves as the model learns and with the hour and weekday: the "
                "last column is the share of member-title pairs decided at least twice within one period "
                "whose shown artwork changed."
            ],
            [stickiness_rows(sticky)],
        ),
    ]
    if cold is not None:
        sections.append(_cold_start_section(cold, sizes, figures["cold_start"]))
    insights = _insights(world, out / "insights", sizes.insights, seed, console)
    sections.append(
        reports.Section(
            "Insights for artists and designers",
            [
                "Which artwork works for whom in this world, which artworks are clickbait, what to add to "
                f"a pool: keyart insights on a uniform exploration log of {sizes.insights:,} pages of this "
                "world, written as the service writes its logs (docs/insights.md)."
            ],
            links=[("Open the insights report of this world", insights.relative_to(out).as_posix())],
        )
    )
    intro = [
        f"The world: {about}. Policies see only the catalog and each member's observable context; the "
        f"world's hidden tastes produce the outcomes and the true values (seed {seed}, world config "
        f"version {config.version}).",
        "Regenerate with: keyart demo --seed " + str(seed) + (" --quick" if quick else "") + f" --out {out}",
    ]
    report = reports.write_html_report(
        out / "report.html", "keyart demo: artwork personalization, simulated", sections, intro
    )
    tables["showcase_summary"] = shows[0]
    (out / "results.json").write_text(json.dumps({k: _json_safe(v) for k, v in tables.items()}, indent=1))
    (out / "world_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    seconds = time.perf_counter() - t0
    console.print(
        f"\nWrote {len(figures)} figures and the report to [bold]{out.resolve()}[/bold] "
        f"(open {report.resolve()}) in {seconds:.0f}s."
    )
    return DemoResult(out, report, figures, tables, seconds)
