"""Every command of README.md's shell code blocks runs (its quick form): a new command is picked up by
parsing the README, and a broken one fails here.

Each block line is split at ``&&`` into steps, and each step is handled by what it is:

- ``python3 -m venv .venv`` and ``.venv/bin/pip install ...``: the environment this test itself runs in
  (``.ci/run`` builds it with exactly these commands on a fresh machine). Checked, not rerun (a fresh
  install takes minutes): the test runs in a virtual environment, every extra the install names exists in
  pyproject.toml with its requirements installed, and ``keyart`` is imported from this checkout (editable).
- ``python -m pytest ...``: the suite itself, which holds this test; it is collected with the README's own
  arguments (``--collect-only``), not run, and ``.ci/run`` must run one README test command line whole.
- a long-running command (``LONG``): run in the quick form the README names (``keyart demo --quick``; that
  run is conftest's ``quick_demo``, made once and read by the demo's other tests too).
- everything else: run as written, in a temporary directory holding links to the repository's files and
  its ``.venv``, so outputs land there; it must exit 0.

``SKIP`` lists the commands deliberately not run, each with its reason: only commands that need what CI
cannot have may be there.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement  # matplotlib's dependency

import keyart
from conftest import QUICK_DEMO

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.prefix)

#: Long-running commands (their argv after the program) and the flag of their quick form, which the README
#: must show.
LONG: dict[tuple[str, ...], str] = {("keyart", "demo"): "--quick"}
#: Commands deliberately not run, by their text: only those that need what CI cannot have, with the reason.
SKIP: dict[str, str] = {}
#: Generous: a loaded 2-core machine.
TIMEOUT_S = 900


def _lines(text: str) -> list[list[str]]:
    """The shell lines of ``text`` (continuations joined, comments dropped) as tokens."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line.strip().removeprefix("$ "), comments=True)
        if tokens:
            out.append(tokens)
    return out


def _steps(tokens: list[str]) -> list[str]:
    """A line's steps (split at '&&'), each as its shell text."""
    steps, current = [], []
    for t in [*tokens, "&&"]:
        if t == "&&":
            steps.append(shlex.join(current))
            current = []
        else:
            current.append(t)
    return steps


def readme_steps() -> dict[str, list[str]]:
    """Every step of README.md's bash/sh/shell blocks, with the steps of its whole line."""
    out: dict[str, list[str]] = {}
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", README.read_text(), flags=re.S):
        for tokens in _lines(block):
            line = _steps(tokens)
            for step in line:
                out.setdefault(step, line)
    return out


def _program(argv: list[str]) -> tuple[str, ...]:
    """The argv with the virtual environment's prefix dropped: ('keyart', 'demo', ...)."""
    head = argv[0].removeprefix(".venv/bin/")
    return (head, *argv[1:])


def kind(step: str) -> str:
    """venv | pip | suite | long | skip | run (see the module docstring)."""
    argv = _program(shlex.split(step))
    if step in SKIP:
        return "skip"
    if argv[:3] in (("python3", "-m", "venv"), ("python", "-m", "venv")):
        return "venv"
    if argv[0] in ("pip", "pip3") or argv[:3] in (("python", "-m", "pip"), ("python3", "-m", "pip")):
        return "pip"
    if argv[0] in ("pytest", "py.test") or argv[:3] in (
        ("python", "-m", "pytest"),
        ("python3", "-m", "pytest"),
    ):
        return "suite"
    if any(argv[: len(k)] == k and flag not in argv for k, flag in LONG.items()):
        return "long"
    return "run"


STEPS = readme_steps()


def test_the_readme_has_the_commands_this_test_knows():
    kinds = [kind(s) for s in STEPS]
    assert {"venv", "pip", "suite", "long"} <= set(kinds), dict(zip(STEPS, kinds, strict=True))
    for command, reason in SKIP.items():
        assert command in STEPS, f"SKIP lists {command!r}, no longer in README.md ({reason})"


def _sandbox(tmp: Path) -> Path:
    """A directory with links to the repository's files and its virtual environment."""
    for entry in ROOT.iterdir():
        if entry.name not in (".venv", ".git") and not entry.name.startswith("keyart-"):
            (tmp / entry.name).symlink_to(entry)
    (tmp / ".venv").symlink_to(VENV)
    return tmp


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{cwd / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _check_venv() -> None:
    assert sys.prefix != sys.base_prefix, "the tests do not run in a virtual environment"


def _check_pip(step: str) -> None:
    """The install's target is this checkout (editable) and every extra it names exists, installed."""
    argv = shlex.split(step)
    assert "-e" in argv, f"{step}: the README installs keyart editable from the checkout"
    target = argv[argv.index("-e") + 1]
    match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
    assert match, f"{step}: installs {target!r}, not this checkout"
    extras = match.group(1).split(",") if match.group(1) else []
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert Path(keyart.__file__).resolve().is_relative_to(ROOT / "src"), "keyart is not this checkout's"
    requirements = list(project["dependencies"])
    for extra in extras:
        assert extra in project["optional-dependencies"], f"{step}: pyproject.toml has no extra {extra!r}"
        requirements += project["optional-dependencies"][extra]
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = importlib.metadata.version(req.name)
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version} does not meet {req}"


def _quiet(step: str) -> str:
    return shlex.join(t for t in shlex.split(step) if t != "-q")


def test_ci_runs_the_readmes_test_command():
    """.ci/run runs one of the README's test command lines whole (``-q`` aside): what the README promises."""
    ci = {_quiet(s) for tokens in _lines((ROOT / ".ci" / "run").read_text()) for s in _steps(tokens)}
    lines = [line for step, line in STEPS.items() if kind(step) == "suite"]
    assert any(all(_quiet(part) in ci for part in line) for line in lines), (lines, ci)


def _check_suite(step: str, cwd: Path) -> None:
    """The suite's command, with the README's arguments, collects tests."""
    done = _run(f"{step} --collect-only -p no:cacheprovider", cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # "N tests collected", "N/M tests collected (K deselected)" (with -m) or "collected N items"
    found = re.search(r"^(\d+)(?:/\d+)? tests? collected|^collected (\d+) items?", done.stdout, flags=re.M)
    assert found and int(found.group(1) or found.group(2)) > 0, done.stdout[-2000:]


def _quick(step: str) -> str:
    argv = _program(shlex.split(step))
    flag = next(f for k, f in LONG.items() if argv[: len(k)] == k)
    assert flag in README.read_text(), f"README.md must show the quick form ({flag}) of {step!r}"
    return f"{step} {flag}"


@pytest.mark.parametrize("step", STEPS, ids=[f"{i}:{s[:60]}" for i, s in enumerate(STEPS)])
def test_readme_command_runs(step: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    what = kind(step)
    if what == "skip":
        pytest.skip(SKIP[step])
    cwd = _sandbox(tmp_path)
    if what == "venv":
        _check_venv()
    elif what == "pip":
        _check_pip(step)
    elif what == "suite":
        _check_suite(step, cwd)
    elif what == "long" and shlex.split(_quick(step)) == [".venv/bin/keyart", *QUICK_DEMO]:
        out, printed = request.getfixturevalue("quick_demo")  # conftest ran this very command, once
        assert (out / "report.html").is_file() and str(out.resolve()) in printed.replace("\n", "")
    else:
        command = _quick(step) if what == "long" else step
        done = _run(command, cwd)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
