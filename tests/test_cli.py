"""The `keyart` command's contract: one line on stderr and a documented exit code for a user's mistake,
the traceback only with --debug, every option explained, one attribution-window default."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from keyart.cli import EXIT_CODES, EXIT_INPUT, EXIT_INTERNAL, EXIT_USAGE, KeyartGroup, app
from keyart.errors import ValidationError
from keyart.evaluate_cli import evaluate, evaluate_command
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, join_rewards
from keyart.service.cli import serve, serve_command
from keyart.service.config import ServiceConfig
from keyart.train_cli import train_command

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["schema", "nope"], EXIT_USAGE, r"Invalid value for 'name'.*'nope' is not one of"),
        (["evaluate", "x.csv", "--fmt", "zzz"], EXIT_USAGE, r"Invalid value for '--fmt'"),
        (["evaluate"], EXIT_INPUT, r"Give a log to evaluate \(or --state-dir\)"),
        (["train"], EXIT_USAGE, r"Missing argument 'sources'.*keyart train --help"),
        (["evaluate", "x.csv", "--bogus"], EXIT_USAGE, r"No such option: --bogus"),
        (["nonsense"], EXIT_USAGE, r"No such command 'nonsense'"),
        (["evaluate", "missing.csv"], EXIT_INPUT, r"No such file: missing\.csv"),
        (["evaluate", "ev.duckdb", "--fmt", "keyart"], EXIT_INPUT, r"fmt 'keyart' needs catalog"),
        (
            ["serve", "--catalog", "nope.json", "--no-learner"],
            EXIT_INPUT,
            r"Cannot read catalog file nope\.json",
        ),
    ],
)
def test_a_user_mistake_is_one_line_on_stderr_with_its_exit_code(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    if "serve" in args:
        args = [*args, "--state-dir", str(tmp_path / "state")]
    exit_code, out, err = run(*args)
    assert exit_code == code, (out, err)
    assert err.count("\n") == 1 and err.startswith("keyart: error: "), err
    assert re.search(message, err), err
    assert "Traceback" not in out + err
    assert not (tmp_path / "keyart-out").exists() and not (tmp_path / "state").exists()


def test_the_traceback_comes_with_debug_only():
    result = CliRunner().invoke(app, ["--debug", "evaluate", "missing.csv"])
    assert isinstance(result.exception, ValidationError)
    assert result.exit_code != 0


def test_a_bug_is_reported_as_internal_with_the_debug_hint():
    bug = typer.Typer(cls=KeyartGroup, pretty_exceptions_enable=False)

    @bug.callback()
    def _root(debug: bool = typer.Option(False, "--debug")) -> None:
        del debug

    @bug.command()
    def crash() -> None:
        raise RuntimeError("boom")

    result = CliRunner().invoke(bug, ["crash"])
    assert result.exit_code == EXIT_INTERNAL
    assert (
        result.stderr.startswith("keyart: internal error: RuntimeError: boom") and "--debug" in result.stderr
    )
    assert isinstance(CliRunner().invoke(bug, ["--debug", "crash"]).exception, RuntimeError)


def _commands() -> dict[str, object]:
    """Every command by its words after 'keyart' ("evaluate", "catalog import", ...), groups included."""
    out = {}
    todo = [((), get_command(app))]
    while todo:
        words, group = todo.pop()
        for name in group.list_commands(None):
            command = group.get_command(None, name)
            out[" ".join((*words, name))] = command
            if hasattr(command, "list_commands"):
                todo.append(((*words, name), command))
    return out


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_explains_every_option_without_raw_markup(name):
    command = _commands()[name]
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"keyart {name} {param.opts[0]} has no help"
    code, out, _ = run(*name.split(), "--help")
    assert code == 0
    assert "``" not in out and ":param" not in out and not re.search(r"^\W*\.\. \w+::", out, re.M)


def test_one_attribution_window_default_everywhere_stated_in_help():
    defaults = {
        "join_rewards": inspect.signature(join_rewards).parameters["window_seconds"].default,
        "evaluate": inspect.signature(evaluate).parameters["window_seconds"].default,
        "keyart evaluate": inspect.signature(evaluate_command).parameters["window_seconds"].default,
        "keyart train": inspect.signature(train_command).parameters["window_seconds"].default,
        "serve": inspect.signature(serve).parameters["attribution_window"].default,
        "keyart serve": inspect.signature(serve_command).parameters["attribution_window"].default,
        "ServiceConfig": ServiceConfig(state_dir="x").attribution_window_seconds,
    }
    assert set(defaults.values()) == {ATTRIBUTION_WINDOW_SECONDS}, defaults
    for name, option in (
        ("evaluate", "window_seconds"),
        ("train", "window_seconds"),
        ("serve", "attribution_window"),
    ):
        param = next(p for p in _commands()[name].params if p.name == option)
        assert param.default == ATTRIBUTION_WINDOW_SECONDS and param.show_default is not False
        assert "attribution window" in param.help.lower()


def test_cli_page_lists_every_exit_code():
    page = (ROOT / "docs" / "cli.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in page


def test_policies_lists_every_registered_policy_and_marks_the_default():
    from keyart.policies import DEFAULT_POLICY, POLICIES

    code, out, err = run("policies")
    assert code == 0 and not err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(POLICIES)
    assert [line.split()[0] for line in lines if "(the default)" in line] == [DEFAULT_POLICY]


def test_schema_output_is_json_on_stdout_only():
    code, out, err = run("schema", "decisions")
    assert code == 0 and err == "" and json.loads(out)["required"]


def _documented_options() -> dict[str, set[str]]:
    """docs/cli.md's option tables: each '### `keyart WORDS ARGS`' section's options (first code span of
    a row, its first option name)."""
    page = (ROOT / "docs" / "cli.md").read_text()
    out: dict[str, set[str]] = {}
    for section in re.split(r"^### ", page, flags=re.M)[1:]:
        heading = re.match(r"`keyart ((?:[a-z][\w-]* ?)+)", section)
        assert heading, section.splitlines()[0]
        rows = re.findall(r"^\| `(--[\w-]+)", section, flags=re.M)
        out[heading.group(1).strip()] = set(rows)
    return out


def test_cli_page_lists_every_option_of_every_command():
    documented = _documented_options()
    actual = {
        name: {p.opts[0] for p in command.params if p.param_type_name == "option" and p.name != "help"}
        for name, command in _commands().items()
    }
    actual = {name: opts for name, opts in actual.items() if opts}
    assert documented.keys() == actual.keys(), "docs/cli.md: add or remove a command's option table"
    for name, opts in actual.items():
        assert documented[name] == opts, (
            f"docs/cli.md, keyart {name}: undocumented {sorted(opts - documented[name])}, "
            f"no longer an option {sorted(documented[name] - opts)}"
        )
