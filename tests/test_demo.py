"""``keyart demo --quick`` through the real console entry point, and the demo's reproducibility."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from keyart.demo import run_demo
from keyart.errors import ValidationError

KEYART = Path(sys.executable).with_name("keyart")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    cmd = [str(KEYART), "demo", "--quick", "--seed", "3", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


def test_demo_writes_figures_and_a_self_contained_report(demo_out: tuple[Path, str]) -> None:
    out, _ = demo_out
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["fig1_batch_vs_online.png", "fig2_replay.png", "fig3_showcase.png", "fig4_ab_test.png"]
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert not re.search(r"""src=["'](?!data:)""", html)  # nothing fetched from elsewhere
    for heading in ("Experiment 1", "Experiment 2", "Experiment 3", "Experiment 4"):
        assert heading in html
    assert "trained on the first 70% and replayed" in html  # the share the replay really trained on


def test_demo_prints_tables_and_the_output_path(demo_out: tuple[Path, str]) -> None:
    out, stdout = demo_out
    for title in ("Experiment 2: replay", "Experiment 3: artwork", "Experiment 4: A/B test", "Experiment 1"):
        assert title in stdout
    assert str(out.resolve()) in stdout.replace("\n", "")


def test_demo_results_are_reproducible(demo_out: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo_out
    again = run_demo(tmp_path / "again", seed=3, quick=True, console=Console(file=io.StringIO()))
    first = json.loads((out / "results.json").read_text())
    second = json.loads((again.out_dir / "results.json").read_text())
    assert first == second
    assert set(first) == {"replay", "showcase", "showcase_summary", "ab_test", "batch_vs_online"}
    assert json.loads((out / "world_config.json").read_text())["seed"] == 3


def test_demo_rejects_a_bad_seed(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="seed must be an int >= 0"):
        run_demo(tmp_path, seed=-1, quick=True)
