"""``keyart example``: before learning nothing looks personalized, and explored means a low-probability
draw (epsilon / K), never a propensity of 0.95."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from keyart.cli import app
from keyart.examples import tiny_example


@pytest.mark.parametrize("seed", range(8))
def test_before_learning_every_artwork_is_equally_likely_and_nothing_is_explored(seed: int) -> None:
    before, after = tiny_example(seed)
    for d in before:
        assert d.probabilities == pytest.approx((0.5, 0.5)) and not d.explored
    for d in after:
        assert d.explored == (d.propensity < 0.5)  # explored: the draw left the best guess
        assert d.propensity == pytest.approx(0.05 if d.explored else 0.95)


def test_the_example_command_says_why() -> None:
    result = CliRunner().invoke(app, ["example", "--seed", "3"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "(a tie)" in result.output and "Nothing learned yet" in result.output
    assert "explored only when the draw shows the other artwork" in result.output
