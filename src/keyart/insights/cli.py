"""``keyart insights``: which artwork works for whom, clickbait and what to add, from keyart logs (a
service's state directory, an ``events.duckdb`` or imported logs) into an HTML report, CSV and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keyart.errors import ValidationError
from keyart.evaluate_cli import MinSeconds, WindowSeconds
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS


def insights_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="keyart logs: a service state directory (service stopped), an events.duckdb file, or a "
            "Parquet export (keyart logs import writes an events.duckdb).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for insights.html, the CSV files and insights.json.")
    ] = Path("keyart-insights"),
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="The catalog of the logged artworks (default: SOURCE/catalog.json)."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A shared linear model snapshot (.npz) to read the effects from (default: the service's "
            "newest model in SOURCE/snapshots if linear, else linear_ts trained on the logs).",
        ),
    ] = None,
    titles: Annotated[
        int, typer.Option("--titles", min=1, help="How many of the most shown titles to analyse in depth.")
    ] = 8,
    min_rows: Annotated[
        int, typer.Option("--min-rows", min=1, help="Decisions a member segment needs to be reported.")
    ] = 50,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the samples and posterior draws.")] = 0,
    window_seconds: WindowSeconds = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: MinSeconds = QUALITY_SECONDS,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Write the insights for artists and designers: each title's artworks and who sees them, what works
    for whom (with intervals), clickbait, what to add to a pool (docs/insights.md)."""
    from keyart.catalog import Catalog
    from keyart.insights.report import STEPS, compute_insights, write_insights

    if catalog is None:
        if not (source.is_dir() and (source / "catalog.json").is_file()):
            raise ValidationError(
                "keyart insights needs --catalog (the catalog of the logged artworks) unless SOURCE is a "
                "service state directory holding catalog.json."
            )
        catalog = source / "catalog.json"
    cat = Catalog.load(catalog)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet or not console.is_terminal) as bar:
        tasks = {name: bar.add_task(name, total=None) for name in STEPS}

        def progress(step: str, done: int, total: int) -> None:
            bar.update(tasks[step], completed=done, total=total)

        insights = compute_insights(
            source,
            cat,
            model,
            top_titles=titles,
            min_rows=min_rows,
            seed=seed,
            window_seconds=window_seconds,
            quality_seconds=min_seconds,
            progress=progress,
        )
        paths = write_insights(insights, out)
    for line in insights.headlines():
        typer.echo(f"- {line}")
    typer.echo(f"Wrote {paths['html']}, {len(insights.tables())} CSV files and {paths['json']}.")
