"""Executable documentation: every python block of the README runs."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_blocks_run(code):
    exec(compile(code, str(README), "exec"), {})


def test_readme_has_python_blocks():
    assert BLOCKS


def test_example_command_runs():
    from typer.testing import CliRunner

    from keyart.cli import app

    result = CliRunner().invoke(app, ["example", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "after learning" in result.output


def test_tiny_example_learns_each_fans_artwork():
    from keyart.examples import tiny_example

    _, after = tiny_example(seed=3)
    best = {
        (d.member_id, d.title_id): d.pool[max(range(len(d.pool)), key=d.probabilities.__getitem__)]
        for d in after
    }
    assert best[("comedy-fan", "good-will")] == "gw-comedy"
    assert best[("romance-fan", "good-will")] == "gw-romance"
    assert best[("comedy-fan", "heist")] == "heist-comedy"
