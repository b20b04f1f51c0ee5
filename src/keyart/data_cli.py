"""``keyart catalog validate|import`` and ``keyart logs import``: a warehouse export into keyart's schemas
(keyart.imports; docs/data.md, docs/your-data.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from keyart.catalog_files import SAVE_FORMATS

catalog_app = typer.Typer(no_args_is_help=True, help="Check and import catalogs (docs/data.md).")
logs_app = typer.Typer(no_args_is_help=True, help="Import decision and outcome logs (docs/data.md).")

MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="Read keyart field DST from the file's column SRC, as DST=SRC (repeat; unmapped columns keep "
        "their names; columns keyart does not know go to metadata).",
        metavar="DST=SRC",
    ),
]
SplitOption = Annotated[
    list[str] | None,
    typer.Option(
        "--split",
        help="Split the text of list field FIELD at SEP, as FIELD=SEP (repeat), e.g. genres='|'.",
        metavar="FIELD=SEP",
    ),
]
StrictOption = Annotated[
    bool, typer.Option("--strict", help="Refuse the import (write nothing) when any row would be dropped.")
]


def _report(reports: list, strict: bool) -> None:
    """Print the import reports on stderr; with ``strict``, refuse when a row was dropped."""
    from keyart.errors import ValidationError

    for r in reports:
        for line in r.lines():
            print(line, file=sys.stderr)
    dropped = sum(len(r.dropped) for r in reports)
    if strict and dropped:
        raise ValidationError(f"--strict: {dropped} rows would be dropped; nothing was written.")


@catalog_app.command("validate")
def validate_command(
    path: Annotated[
        Path, typer.Argument(help="A catalog: a JSON file or a directory of titles/artworks tables.")
    ],
) -> None:
    """Check a catalog: exit 0, or print one line per problem (bad rows, duplicate ids, artworks of unknown
    titles, empty pools, mixed embedding lengths) and exit 1."""
    from keyart.imports import validate_catalog

    problems = validate_catalog(path)
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{path}: ok")


@catalog_app.command("import")
def import_catalog_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="The export: one row per artwork (Parquet, CSV, JSON Lines or JSON), with its title's "
            "columns unless --titles is given."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the catalog: a .json file or a directory.")
    ],
    titles: Annotated[
        Path | None, typer.Option("--titles", help="A separate titles table (one row per title).")
    ] = None,
    mapping: MapOption = None,
    split: SplitOption = None,
    fmt: Annotated[
        Literal[SAVE_FORMATS] | None,
        typer.Option("--format", help="Output form (default: json for a .json path, else parquet)."),
    ] = None,
    strict: StrictOption = False,
) -> None:
    """Import a catalog from a warehouse export into keyart's schema; report dropped rows (counts and the
    first rows) on stderr; write the whole result or nothing."""
    from keyart.imports import import_catalog, parse_pairs

    catalog, reports = import_catalog(
        path, titles, parse_pairs(mapping or [], "--map"), parse_pairs(split or [], "--split")
    )
    _report(reports, strict)
    catalog.save(out, fmt)
    typer.echo(f"Wrote {out}: {len(catalog.titles)} titles, {len(catalog.artworks)} artworks.")


@logs_app.command("import")
def import_logs_command(
    out: Annotated[Path, typer.Option("--out", help="The event store to create (a new .duckdb file).")],
    decisions: Annotated[
        Path | None, typer.Option("--decisions", help="Decisions export (Parquet, CSV, JSON Lines, JSON).")
    ] = None,
    outcomes: Annotated[
        Path | None,
        typer.Option("--outcomes", help="Outcomes export (impressions, plays, stops, completes)."),
    ] = None,
    mapping: MapOption = None,
    split: SplitOption = None,
    strict: StrictOption = False,
) -> None:
    """Import decision and outcome logs into a new keyart event store; decisions without propensities are
    kept and marked; report dropped rows on stderr; write the whole store or nothing."""
    from keyart.imports import import_logs, parse_pairs, write_store

    d, o, reports = import_logs(
        decisions, outcomes, parse_pairs(mapping or [], "--map"), parse_pairs(split or [], "--split")
    )
    _report(reports, strict)
    write_store(out, d, o)
    n_d = 0 if d is None else d.num_rows
    n_o = 0 if o is None else o.num_rows
    typer.echo(f"Wrote {out}: {n_d} decisions, {n_o} outcomes.")
