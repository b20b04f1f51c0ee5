"""``keyart demo``: the whole story in one command, in a simulated world whose truth is known.

Runs experiment 2 (replay of Random, Bandit and contextual bandits on an exploration log), 3 (which
artwork comedy fans and romance fans see), 4 (online A/B test, split by prior interaction) and a short
form of 1 (batch cycle vs online learning); prints the tables and writes the figures and one
self-contained HTML report into ``out_dir``.
"""

from __future__ import annotations

import json
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
from keyart.simulation.experiments import ab_test, batch_vs_online, offline_replay, taste_showcase
from keyart.simulation.world import World


@dataclass(frozen=True)
class DemoSizes:
    """Requests per experiment (pages of ``page_size`` titles each)."""

    replay: int
    ab: int
    batch_online: int
    showcase_members: int
    update_every: int


FULL = DemoSizes(replay=20_000, ab=30_000, batch_online=12_000, showcase_members=400, update_every=500)
QUICK = DemoSizes(replay=2_000, ab=2_000, batch_online=1_200, showcase_members=60, update_every=200)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and its tables (also saved as ``results.json``)."""

    out_dir: Path
    report: Path
    figures: dict[str, Path]
    tables: dict[str, list[dict[str, Any]]]
    seconds: float


def _rich_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    if not rows:
        return table
    for c in rows[0]:
        left = c in ("policy", "segment", "members", "approach") or "artwork" in c or "best" in c
        table.add_column(str(c), justify="left" if left else "right", overflow="fold")
    for r in rows:
        table.add_row(*(reports._fmt(v) for v in r.values()))
    return table


def _json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
    return out


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
    console.print(
        f"[bold]keyart demo[/bold] seed={seed}{' (quick)' if quick else ''}: {world!r}, "
        f"pages of {config.page_size} titles, world config v{config.version}"
    )
    tables: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, Path] = {}
    columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        t2 = progress.add_task("2. replay on an exploration log", total=sizes.replay)
        replay = offline_replay(
            world,
            sizes.replay,
            seed=seed,
            window=sizes.update_every,
            progress=lambda k: progress.advance(t2, k),
        )
        t4 = progress.add_task("4. online A/B test", total=sizes.ab)
        ab = ab_test(
            world,
            sizes.ab,
            seed=seed,
            update_every=sizes.update_every,
            progress=lambda k: progress.advance(t4, k),
        )
        t1 = progress.add_task("1. batch cycle vs online (short)", total=2 * sizes.batch_online)
        bo = batch_vs_online(
            world,
            sizes.batch_online,
            seed=seed,
            update_every=sizes.update_every,
            progress=lambda k: progress.advance(t1, k),
        )
    contextual = [r for r in replay.rows if r.policy not in ("Random", "Bandit", "Bandit (Thompson)")]
    best = max(contextual, key=lambda r: r.estimate).policy
    show = taste_showcase(
        world, replay.policies[best], n_members=sizes.showcase_members, seed=seed, policy_name=best
    )

    tables["replay"] = replay.table()
    tables["showcase"] = show.table()
    tables["ab_test"] = ab.table()
    tables["batch_vs_online"] = bo.table()
    figures["replay"] = reports.plot_replay(replay, out / "fig2_replay.png")
    figures["showcase"] = reports.plot_showcase(show, out / "fig3_showcase.png")
    figures["ab_test"] = reports.plot_ab(ab, out / "fig4_ab_test.png")
    figures["batch_vs_online"] = reports.plot_batch_vs_online(bo, out / "fig1_batch_vs_online.png")

    console.print(
        _rich_table(
            f"Experiment 2: replay on {replay.n_test_events:,} held-out exploration events "
            f"(trained on the first {replay.n_train_events:,}, {replay.train_share:.0%})",
            [
                {
                    "policy": r.policy,
                    "replay": r.estimate,
                    "95% CI": f"[{r.lower:.4f}, {r.upper:.4f}]",
                    "true value": r.truth,
                    "covered": r.covered,
                }
                for r in replay.rows
            ],
        )
    )
    showcase_summary = [
        {
            "members": g,
            "policy's top artwork": f"{show.artwork_ids[show.top(i)]} ({show.themes[show.top(i)]})",
            "world's best (most often)": f"{show.artwork_ids[show.top(i, 'oracle')]} "
            f"({show.themes[show.top(i, 'oracle')]})",
            "comedy share policy": show.theme_share(i, "comedy"),
            "comedy share world": show.theme_share(i, "comedy", "oracle"),
            "romance share policy": show.theme_share(i, "romance"),
            "romance share world": show.theme_share(i, "romance", "oracle"),
        }
        for i, g in enumerate(show.groups)
    ]
    tables["showcase_summary"] = showcase_summary
    console.print(
        _rich_table(f"Experiment 3: artwork of {show.title_id} by taste ({best})", showcase_summary)
    )
    console.print(
        _rich_table(
            f"Experiment 4: A/B test, {ab.treatment} (personalized) vs {ab.control} (unpersonalized), "
            f"after {ab.warmup:.0%} warm-up",
            [
                {
                    "segment": x.segment,
                    "control": x.control,
                    "treatment": x.treatment,
                    "lift": f"{x.lift:+.1%}",
                    "95% CI": f"[{x.lower:+.1%}, {x.upper:+.1%}]",
                    "true lift": f"{x.true_lift:+.1%}",
                    "decisions": x.n_control + x.n_treatment,
                }
                for x in ab.lifts
            ],
        )
    )
    console.print(
        _rich_table("Experiment 1 (short): batch cycle vs online learning", tables["batch_vs_online"])
    )

    sections = [
        reports.Section(
            "Experiment 2: offline replay (the seed's Figure 2)",
            [
                f"A uniform-random exploration log of {sizes.replay:,} pages; candidates are trained on "
                f"the first {replay.train_share:.0%} and replayed on the rest ({replay.n_test_events:,} "
                "events). The replay estimate is self-normalized (pools have different sizes), with a 95% "
                "interval clustered by member; the diamond is the world's true take fraction of the same "
                "policy on the same events."
            ],
            [tables["replay"]],
            [figures["replay"]],
        ),
        reports.Section(
            "Experiment 3: which artwork for whom (the seed's Figure 3)",
            [
                f"Members inclined to comedy and members inclined to romance (by their hidden tastes) ask "
                f"for {show.title_id}, a comedy-romance-drama. Bars: how often the trained {best} policy "
                "shows each artwork, next to how often each artwork is truly the best one for them."
            ],
            [showcase_summary, tables["showcase"]],
            [figures["showcase"]],
        ),
        reports.Section(
            "Experiment 4: online A/B test (the seed's online test)",
            [
                f"Members split by hash: {ab.control} (unpersonalized) against {ab.treatment} "
                f"(personalized), both learning online from their own traffic for {sizes.ab:,} pages; lift "
                f"measured on drawn quality plays after a {ab.warmup:.0%} warm-up, with member-clustered "
                "95% intervals."
            ],
            [tables["ab_test"]],
            [figures["ab_test"]],
        ),
        reports.Section(
            "Experiment 1: batch cycle vs online learning (short form)",
            [
                "Collect with uniform exploration, train, A/B test, roll out, repeat, against a contextual "
                "bandit that updates every few hundred pages. Same members, pages and luck for both."
            ],
            [tables["batch_vs_online"]],
            [figures["batch_vs_online"]],
        ),
    ]
    intro = [
        f"World: {world!r}, seed {seed}, config version {config.version}. Policies see only the catalog "
        "and each member's observable context; the world's hidden tastes produce the outcomes and the "
        "true values.",
        "Regenerate with: keyart demo --seed " + str(seed) + (" --quick" if quick else "") + f" --out {out}",
    ]
    report = reports.write_html_report(
        out / "report.html", "keyart demo: artwork personalization, simulated", sections, intro
    )
    (out / "results.json").write_text(json.dumps({k: _json_safe(v) for k, v in tables.items()}, indent=1))
    (out / "world_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    seconds = time.perf_counter() - t0
    console.print(
        f"\nWrote {len(figures)} figures and the report to [bold]{out.resolve()}[/bold] "
        f"(open {report.resolve()}) in {seconds:.0f}s."
    )
    return DemoResult(out, report, figures, tables, seconds)
