"""``keyart gate``: a candidate policy against the logging policy on the same logs, as an exit code for a
deployment pipeline (keyart.gate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from keyart.evaluate_cli import Ci, MinSeconds, WindowSeconds
from keyart.evaluation import ESTIMATORS
from keyart.evaluation.compare import POOLS
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS


def gate_command(
    logs: Annotated[
        Path,
        typer.Argument(
            help="keyart logs: an events.duckdb, a service state directory (service stopped) or a Parquet "
            "export.",
            show_default=False,
        ),
    ],
    candidate: Annotated[
        Path, typer.Option("--candidate", help="The candidate policy snapshot (keyart train, Policy.save).")
    ],
    catalog: Annotated[
        Path, typer.Option("--catalog", help="Today's catalog, still holding the logged artworks.")
    ],
    margin: Annotated[
        float,
        typer.Option(
            "--margin",
            min=0,
            help="How much the candidate's lower bound must exceed the logging policy's value (reward units, "
            "e.g. take fraction).",
        ),
    ] = 0.0,
    estimator: Annotated[
        Literal[tuple(ESTIMATORS)],  # type: ignore[valid-type]
        typer.Option("--estimator", help="The candidate's off-policy estimator."),
    ] = "snips",
    window_seconds: WindowSeconds = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: MinSeconds = QUALITY_SECONDS,
    require_impression: Annotated[
        bool | None,
        typer.Option(
            "--require-impression/--no-require-impression",
            help="Keep only displayed decisions (default: on when the logs hold impression outcomes).",
            show_default=False,
        ),
    ] = None,
    pools: Annotated[
        Literal[POOLS],  # type: ignore[valid-type]
        typer.Option("--pools", help="The candidate acts on today's active pools (current) or as logged."),
    ] = "current",
    ci: Ci = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of folds and bootstrap resamples.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Gate a candidate policy on the logs: exit 0 when its lower bound beats the logging policy's value by
    --margin and no reliability flag fires, 1 when it is not better, 3 when the estimate is not trustworthy
    (the flags are named)."""
    from keyart.evaluation import EstimatorConfig
    from keyart.gate import gate

    result = gate(
        logs,
        catalog,
        candidate,
        margin=margin,
        estimator=estimator,
        window_seconds=window_seconds,
        min_seconds=min_seconds,
        require_impression=require_impression,
        pools=pools,
        config=EstimatorConfig(ci=ci),
        seed=seed,
    )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=1))
    else:
        for line in result.lines():
            typer.echo(line)
    raise typer.Exit(result.exit_code)
