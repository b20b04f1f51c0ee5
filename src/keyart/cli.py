"""The ``keyart`` command: the demo, the library on a tiny example, offline evaluation."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from keyart.evaluate_cli import evaluate
from keyart.service.cli import serve_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Personalized artwork selection.")


@app.callback()
def _setup() -> None:
    """Pin BLAS to one thread: keyart's matrices are small, and threads only contend for them."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


@app.command()
def demo(
    out: str = typer.Option("keyart-demo", "--out", help="Folder for the figures and the HTML report."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the simulated world and every random source."),
    quick: bool = typer.Option(False, "--quick", help="A small smoke-test version that runs in seconds."),
) -> None:
    """Simulate members, run the seed's experiments, print the tables, write figures and one HTML report."""
    from keyart.demo import run_demo

    run_demo(Path(out), seed=seed, quick=quick, console=Console(width=None if Console().is_terminal else 160))


@app.command()
def example(seed: int = typer.Option(7, help="Seed of the policy's keyed-hash randomness.")) -> None:
    """Choose artwork for a tiny two-title catalog, learn from a few outcomes, and choose again."""
    from keyart.examples import tiny_example

    console = Console()
    before, after = tiny_example(seed)
    for label, decisions in (("before learning", before), ("after learning", after)):
        table = Table(title=f"LinUCB decisions {label}")
        for col in ("member", "title", "artwork", "propensity", "explored"):
            table.add_column(col)
        for d in decisions:
            table.add_row(d.member_id, d.title_id, d.artwork_id, f"{d.propensity:.3f}", str(d.explored))
        console.print(table)


@app.command()
def policies() -> None:
    """List the registered policies."""
    from keyart.policies import POLICIES

    for name, cls in sorted(POLICIES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:16s} {doc}")


@app.command()
def schema(
    name: str = typer.Argument(..., help="Which schema: catalog, decisions or outcomes.", metavar="NAME"),
) -> None:
    """Print the JSON Schema of a catalog file or of one row of the decisions or outcomes log
    (docs/data.md describes every field)."""
    import json

    from keyart.schemas import json_schema

    typer.echo(json.dumps(json_schema(name), indent=2))


app.command("evaluate")(evaluate)  # log in, table + plot out
app.command("serve")(serve_command)  # the decision service (docs/service.md)


def main() -> None:  # pragma: no cover - console entry point
    app()
