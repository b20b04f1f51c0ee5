"""The ``keyart`` command: the demo, the library on a tiny example, offline evaluation."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Personalized artwork selection.")


@app.callback()
def _setup() -> None:
    """Pin BLAS to one thread: keyart's matrices are small, and threads only contend for them."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


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


app.command("evaluate")(__import__("keyart.evaluate_cli").evaluate_cli.evaluate)  # log in, table + plot out


def main() -> None:  # pragma: no cover - console entry point
    app()
