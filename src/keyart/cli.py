"""The ``keyart`` command: the demo, the library on a tiny example, schemas, offline evaluation, serving.

A user's mistake (a bad option, a file keyart refuses) ends in one line on stderr and a documented exit
code (``EXIT_CODES``, docs/cli.md); the traceback only with ``keyart --debug COMMAND``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from keyart.errors import KeyartError

try:  # typer >= 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on click itself
    from click.exceptions import ClickException, UsageError
from keyart.data_cli import catalog_app, logs_app
from keyart.evaluate_cli import evaluate_command
from keyart.gate_cli import gate_command
from keyart.insights.cli import insights_command
from keyart.service.cli import serve_command
from keyart.spark.cli import spark_app  # imports no pyspark: its commands do
from keyart.train_cli import train_command
from keyart.vision.cli import vision_app

#: Exit codes of every ``keyart`` command (docs/cli.md).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # keyart gate: not better; keyart catalog validate: problems found
EXIT_USAGE = 2  # a bad option, value or missing argument on the command line
EXIT_UNTRUSTWORTHY = 3  # keyart gate: a reliability flag fired
EXIT_INPUT = 4  # keyart refused an input: a file, store, snapshot or value (nothing was written)
EXIT_INTERNAL = 70  # a bug in keyart: run with --debug and report the traceback
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "the check failed (gate: not better; catalog validate: problems found)",
    EXIT_USAGE: "usage error: a bad option, value or missing argument",
    EXIT_UNTRUSTWORTHY: "gate: the estimate is not trustworthy (a reliability flag fired)",
    EXIT_INPUT: "an input was refused (file, store, snapshot or value); nothing was written",
    EXIT_INTERNAL: "internal error (a bug): rerun with --debug for the traceback",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class KeyartGroup(TyperGroup):
    """The root command: every error becomes one line on stderr and an exit code (``EXIT_CODES``); with
    ``--debug`` keyart's own errors and bugs raise with their traceback."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        debug = "--debug" in argv[: argv.index("--") if "--" in argv else len(argv)]
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help was shown: nothing went wrong
                sys.exit(EXIT_OK)
            sub = f" {exc.ctx.info_name}" if getattr(exc, "ctx", None) and exc.ctx.parent else ""
            hint = f" (see 'keyart{sub} --help')" if isinstance(exc, UsageError) else ""
            print(f"keyart: error: {_one_line(exc.format_message())}{hint}", file=sys.stderr)
            sys.exit(EXIT_USAGE if isinstance(exc, UsageError) else exc.exit_code)
        except typer.Abort:
            print("keyart: aborted", file=sys.stderr)
            sys.exit(1)
        except (KeyartError, OSError) as exc:
            if debug:
                raise
            print(f"keyart: error: {_one_line(str(exc))}", file=sys.stderr)
            sys.exit(EXIT_INPUT)
        except Exception as exc:
            if debug:
                raise
            print(
                f"keyart: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                "(rerun as 'keyart --debug ...' for the traceback, and please report it)",
                file=sys.stderr,
            )
            sys.exit(EXIT_INTERNAL)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK)


app = typer.Typer(
    cls=KeyartGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Personalized artwork selection: choose, log, learn, evaluate offline, serve.\n\n"
    + "Exit codes: "
    + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
    + ".",
)


@app.callback()
def _setup(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (put it before the command)."
    ),
) -> None:
    """Pin BLAS to one thread: keyart's matrices are small, and threads only contend for them."""
    from threadpoolctl import threadpool_limits

    del debug  # read by KeyartGroup.main, which handles errors around the whole command
    threadpool_limits(limits=1)


@app.command()
def demo(
    out: str = typer.Option("keyart-demo", "--out", help="Folder for the figures and the HTML report."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the simulated world and every random source."),
    quick: bool = typer.Option(False, "--quick", help="A small smoke-test version that runs in seconds."),
) -> None:
    """Simulate members, run the experiments of "Artwork Personalization at Netflix" (2017), print the
    tables, write figures and one HTML report."""
    from keyart.demo import run_demo

    run_demo(Path(out), seed=seed, quick=quick, console=Console(width=None if Console().is_terminal else 160))


@app.command()
def example(seed: int = typer.Option(7, help="Seed of the policy's keyed-hash randomness.")) -> None:
    """Choose artwork for a tiny two-title catalog, learn from a few outcomes, and choose again."""
    from keyart.examples import tiny_example

    console = Console()
    before, after = tiny_example(seed)
    notes = {
        "before learning": "Nothing learned yet: every estimate ties, so each artwork has probability 0.5 "
        "and the keyed-hash draw picks one; no decision is explored (no artwork is below the best guess).",
        "after learning": "The best guess has probability 0.95 (1 - epsilon + epsilon/2); a decision is "
        "explored only when the draw shows the other artwork (probability 0.05).",
    }
    for label, decisions in (("before learning", before), ("after learning", after)):
        title = f"Epsilon-greedy decisions {label}"
        table = Table(title=title, caption=notes[label], box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("Member", "Title", "Shown artwork", "Propensity", "Best guess", "Explored"):
            table.add_column(col)
        for d in decisions:
            tie = max(d.scores) == min(d.scores)
            guess = "(a tie)" if tie else d.pool[max(range(len(d.pool)), key=d.scores.__getitem__)]
            explored = "yes" if d.explored else "no"
            table.add_row(d.member_id, d.title_id, d.artwork_id, f"{d.propensity:.2f}", guess, explored)
        console.print(table)


@app.command()
def policies() -> None:
    """List the registered policies; the default (keyart serve's, train's) is marked."""
    from keyart.policies import DEFAULT_POLICY, POLICIES

    for name, cls in sorted(POLICIES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:16s} {'(the default) ' if name == DEFAULT_POLICY else ''}{doc}")


@app.command()
def schema(
    name: Literal["catalog", "decisions", "outcomes"] = typer.Argument(
        ..., help="Which schema: catalog, decisions or outcomes.", show_default=False
    ),
) -> None:
    """Print the JSON Schema of a catalog file or of one row of the decisions or outcomes log
    (docs/data.md describes every field)."""
    import json

    from keyart.schemas import json_schema

    typer.echo(json.dumps(json_schema(name), indent=2))


app.command("evaluate")(evaluate_command)  # log in, table + plot out
app.add_typer(catalog_app, name="catalog")  # validate, import (keyart.imports)
app.add_typer(logs_app, name="logs")  # import
app.command("train")(train_command)  # logs in, snapshot out (keyart.train)
app.command("gate")(gate_command)  # candidate vs logging policy as an exit code (keyart.gate)
app.command("serve")(serve_command)  # the decision service (docs/service.md)
app.add_typer(vision_app, name="vision")  # extract: image features into embeddings (keyart.vision)
app.command("insights")(insights_command)  # for artists and designers (docs/insights.md)
app.add_typer(spark_app, name="spark")  # join, train, evaluate on Apache Spark (keyart.spark; docs/spark.md)


def main() -> None:  # pragma: no cover - console entry point
    app()
