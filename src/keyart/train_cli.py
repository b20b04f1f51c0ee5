"""``keyart train``: a policy snapshot from keyart logs, or the merge of snapshots (keyart.train)."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from keyart.errors import ValidationError
from keyart.evaluate_cli import MinSeconds, WindowSeconds
from keyart.policies import DEFAULT_POLICY, Policy
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS
from keyart.train import TrainingInfo, sidecar


class RowsPerSecond(ProgressColumn):
    """The task's speed in rows per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s")


#: the options ``keyart train`` shares with ``keyart spark train``
SnapshotOut = Annotated[Path, typer.Option("--out", help="The snapshot file to write (.npz), and FILE.json.")]
PolicyName = Annotated[
    str, typer.Option("--policy", help="The policy to train (keyart policies lists them).")
]
PolicyParams = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="A policy parameter as NAME=VALUE (repeat), e.g. priors=fixed, alpha=0.5.",
        metavar="NAME=VALUE",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Deployment key of the sticky randomness.")]
Floor = Annotated[float, typer.Option("--floor", help="Exploration floor (>= floor / K each).")]


def _time(text: str | None, option: str) -> float | None:
    """Epoch seconds from ``text``: a number, or an ISO 8601 date or time (UTC when naive)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{option} must be epoch seconds or an ISO 8601 date. Got {text!r}.") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def train_command(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="keyart logs: events.duckdb files, service state directories (service stopped) or Parquet "
            "exports; with --merge, the snapshot files to merge.",
            show_default=False,
        ),
    ],
    out: SnapshotOut,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="The catalog the logs' artworks are in (any form of docs/data.md)."),
    ] = None,
    policy: PolicyName = DEFAULT_POLICY,
    param: PolicyParams = None,
    seed: Seed = 0,
    floor: Floor = 0.1,
    start: Annotated[
        str | None, typer.Option("--start", help="Learn decisions from this time (epoch s or ISO date).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Learn decisions before this time (epoch s or ISO date).")
    ] = None,
    window_seconds: WindowSeconds = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: MinSeconds = QUALITY_SECONDS,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Merge the snapshot files given (trained on disjoint logs) into the one trained on all.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a policy from keyart logs and a catalog into a snapshot that keyart serve --policy FILE and
    keyart evaluate --candidate FILE load; or merge snapshots (--merge)."""
    from keyart.catalog import Catalog
    from keyart.policies import make_policy
    from keyart.service.config import ServiceConfig
    from keyart.train import merge_files, parse_params, train

    if out.suffix != ".npz":
        raise ValidationError(f"--out must be a .npz file. Got {out}.")
    if merge:
        merged, info = merge_files(list(sources))
        _write(merged, info, out)
        typer.echo(f"Wrote {out}: {merged.name} merged from {len(sources)} snapshots.")
        return
    if catalog is None:
        raise ValidationError("keyart train needs --catalog (the catalog holding the logged artworks).")
    cat = Catalog.load(catalog)
    config = ServiceConfig(
        state_dir=".", policy=policy, policy_params=parse_params(param or []), seed=seed, floor=floor
    )
    fresh = make_policy(policy, **config.policy_kwargs())
    since, until = _time(start, "--start"), _time(end, "--end")
    console = Console(stderr=True)
    t0 = time.perf_counter()
    with Progress(
        TextColumn("featurizing"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows"),
        RowsPerSecond(),
        TimeRemainingColumn(),
        disable=quiet or not console.is_terminal,  # a bar only where it can redraw itself
        transient=True,
        console=console,
    ) as bar:
        task = bar.add_task("rows", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        trained, info = train(
            [str(s) for s in sources],
            cat,
            fresh,
            window_seconds=window_seconds,
            quality_seconds=min_seconds,
            start=since,
            end=until,
            progress=progress,
        )
    rate = info.rows / max(time.perf_counter() - t0, 1e-9)
    _write(trained, info, out)
    typer.echo(f"Wrote {out}: {trained.name} trained on {info.rows} decisions ({rate:,.0f} rows/s).")


def _write(policy: Policy, info: TrainingInfo | None, out: Path) -> None:
    """Write the snapshot and its training record, each to a temporary file renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        policy.save(tmp)
        if info is not None:
            info.save(tmp)
            os.replace(sidecar(tmp), sidecar(out))
        else:
            sidecar(out).unlink(missing_ok=True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        sidecar(tmp).unlink(missing_ok=True)
