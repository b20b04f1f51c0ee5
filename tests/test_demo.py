"""``keyart demo --quick`` through the real console entry point, and the demo's reproducibility."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from conftest import QUICK_DEMO_SEED
from keyart.demo import run_demo
from keyart.errors import ValidationError
from keyart.simulation.experiments import DEFAULT_SUITE_POLICY


@pytest.fixture(scope="module")
def demo_out(quick_demo: tuple[Path, str]) -> tuple[Path, str]:
    """The output directory and printout of ``keyart demo --quick`` (conftest's, run once)."""
    return quick_demo


@pytest.mark.slow
def test_demo_writes_figures_and_a_self_contained_report(demo_out: tuple[Path, str]) -> None:
    out, _ = demo_out
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "fig1_batch_vs_online.png",
        "fig2_replay.png",
        "fig3_showcase.png",
        "fig4_ab_test.png",
        "fig5_cold_start.png",
    ]
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    assert not re.search(r"""src=["'](?!data:)""", html)  # nothing fetched from elsewhere
    headings = [html.index(f"<h2>Experiment {i}") for i in (1, 2, 3, 4)]
    assert headings == sorted(headings)  # sections in the order 1, 2, 3, 4
    assert "trained on the first 70% and replayed" in html  # the share the replay really trained on


@pytest.mark.slow
def test_the_report_reads_as_prose_and_tables_for_people(demo_out: tuple[Path, str]) -> None:
    out, stdout = demo_out
    html = (out / "report.html").read_text()
    for text in (html, stdout):
        assert "World(" not in text  # a description of the world, not a Python repr
        assert "the seed" not in text  # no project jargon: the article is named
    assert "Artwork Personalization at Netflix" in html
    assert "The world: a simulated catalog of 80 titles" in html
    headers = re.findall(r"<th>([^<]*)</th>", html)
    assert headers and not [h for h in headers if "_" in h]  # human headers, no snake_case
    lifts = json.loads((out / "results.json").read_text())["ab_test"]
    for row in lifts:  # the report prints the lift as the terminal does: +76.5%, not 0.7647
        shown = f"{row['lift']:+.1%}"
        assert f"<td>{shown}</td>" in html and shown in stdout
    decisions = [r["n_control"] + r["n_treatment"] for r in lifts]
    assert f"<td>{decisions[0]:,}</td>" in html and decisions[0] >= 1000  # thousands separators


@pytest.mark.slow
def test_the_demo_prints_the_explored_share_and_the_within_period_switch_rate(
    demo_out: tuple[Path, str],
) -> None:
    out, stdout = demo_out
    rows = json.loads((out / "results.json").read_text())["stickiness"]
    assert [r["policy"] for r in rows] == [f"Online {DEFAULT_SUITE_POLICY}", "Bandit", DEFAULT_SUITE_POLICY]
    assert "exploration and within-period switches" in stdout
    for r in rows:
        assert 0 < r["explored"] < r["decisions"] and 0 < r["switched"] <= r["repeated"]
        explored, switched = f"{r['explored'] / r['decisions']:.1%}", f"{r['switched'] / r['repeated']:.1%}"
        assert explored in stdout and switched in stdout
    html = (out / "report.html").read_text()
    assert "exploration and stickiness</h2>" in html


@pytest.mark.slow
def test_the_demo_shows_cold_start_from_the_pixels(demo_out: tuple[Path, str]) -> None:
    out, stdout = demo_out
    rows = json.loads((out / "results.json").read_text())["cold_start"]
    assert [r["variant"] for r in rows] == ["with visual features", "without visual features"]
    assert rows[0]["decisions"] == rows[1]["decisions"] > 0  # the same pages for both
    for r in rows:
        assert 0 < r["share_first_horizon"] <= 1 and 0 < r["share_steady"] <= 1
        assert f"{r['share_first_horizon']:.1%}" in stdout
    html = (out / "report.html").read_text()
    assert "Cold start from the pixels</h2>" in html
    assert len(list((out / "cold_start_images").glob("*.png"))) > 0  # the pictures keyart read


def test_a_replay_interval_that_misses_the_truth_gets_a_comment() -> None:
    from keyart.demo import replay_misses
    from keyart.simulation.experiments import ReplayResult, ReplayRow

    def result(*truths: float) -> ReplayResult:
        rows = [ReplayRow(f"p{i}", 0.05, 0.04, 0.06, t, 100.0, 1000, "replay") for i, t in enumerate(truths)]
        return ReplayResult(rows, {}, 100, 100, 0.05, None)  # type: ignore[arg-type]

    assert replay_misses(result(0.05, 0.045)) is None
    note = replay_misses(result(0.05, 0.07, 0.05, 0.05, 0.05))
    assert note is not None and note.startswith("The 95% interval of p1 misses the true value")
    assert "about 23% of runs" in note  # 1 - 0.95^5 = 22.6%


@pytest.mark.slow
def test_demo_prints_tables_and_the_output_path(demo_out: tuple[Path, str]) -> None:
    out, stdout = demo_out
    titles = ("Experiment 1", "Experiment 2: replay", "Experiment 3: artwork", "Experiment 4: A/B test")
    places = [stdout.index(title) for title in titles]
    assert places == sorted(places)
    assert str(out.resolve()) in stdout.replace("\n", "")


@pytest.mark.slow
def test_demo_results_are_reproducible(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    again = run_demo(
        tmp_path / "again", seed=QUICK_DEMO_SEED, quick=True, console=Console(file=io.StringIO())
    )
    out, _ = request.getfixturevalue("demo_out")  # after its own run: the shared one runs meanwhile
    first = json.loads((out / "results.json").read_text())
    second = json.loads((again.out_dir / "results.json").read_text())
    assert first == second
    tables = {
        "replay",
        "showcase",
        "showcase_summary",
        "ab_test",
        "batch_vs_online",
        "stickiness",
        "cold_start",
    }
    assert set(first) == tables
    assert json.loads((out / "world_config.json").read_text())["seed"] == QUICK_DEMO_SEED


def test_demo_rejects_a_bad_seed(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="seed must be an int >= 0"):
        run_demo(tmp_path, seed=-1, quick=True)
