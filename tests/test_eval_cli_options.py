"""``keyart evaluate --fmt obd --campaign NAME`` and ``--fmt tabular --position-base 0|1``: the options
work, and bad input ends in one clear error line (no traceback)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from keyart.cli import app
from keyart.errors import ValidationError
from keyart.evaluate_cli import evaluate

OBD = Path(__file__).resolve().parent / "data" / "obd"


def _campaign_copy(tmp_path: Path, name: str) -> Path:
    """An OBD directory whose only campaign ``name`` holds the sample's campaign "all"."""
    root = tmp_path / "obd"
    for policy in ("random", "bts"):
        (root / policy / name).mkdir(parents=True)
        shutil.copy(OBD / policy / "all" / "all.csv.gz", root / policy / name / f"{name}.csv.gz")
    return root


def test_obd_campaign_is_read_from_its_folder(tmp_path: Path) -> None:
    root = _campaign_copy(tmp_path, "men")
    men = evaluate(root, fmt="obd", campaign="men", estimator=["ips"], out=tmp_path / "m", quiet=True)
    ref = evaluate(OBD, fmt="obd", estimator=["ips"], out=tmp_path / "a", quiet=True)
    assert men.comparison.estimates[0].value == ref.comparison.estimates[0].value
    assert "campaign men" in men.markdown
    with pytest.raises(ValidationError, match=r"No campaign 'women' .* it has men"):
        evaluate(root, fmt="obd", campaign="women", out=tmp_path / "w", quiet=True)


def test_cli_campaign_option_and_its_error_line(tmp_path: Path) -> None:
    root = _campaign_copy(tmp_path, "men")
    ok = CliRunner().invoke(
        app, ["evaluate", str(root), "--fmt", "obd", "--campaign", "men", "--estimator", "ips", "--quiet"]
    )
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, ["evaluate", str(root), "--fmt", "obd", "--campaign", "women"])
    assert bad.exit_code == 4  # keyart refused an input
    assert "Traceback" not in bad.output and "No campaign 'women'" in bad.output
    assert len([line for line in bad.output.splitlines() if line.strip()]) == 1


def _one_based(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    n = 600
    action = rng.integers(0, 3, n)
    position = rng.integers(1, 4, n)  # positions 1, 2, 3
    reward = rng.binomial(1, 0.2 + 0.1 * action).astype(float)
    pacsv.write_csv(
        pa.table({"action": action, "position": position, "propensity": np.full(n, 1 / 3), "reward": reward}),
        tmp_path / "log.csv",
    )
    pacsv.write_csv(
        pa.table({"action": [2, 2, 1], "position": [1, 2, 3], "probability": [1.0, 1.0, 1.0]}),
        tmp_path / "cand.csv",
    )
    return tmp_path / "log.csv", tmp_path / "cand.csv", action * 10 + position, reward


def test_position_base_1_reads_positions_1_to_3(tmp_path: Path) -> None:
    log, cand, key, reward = _one_based(tmp_path)
    res = evaluate(
        log, candidate=[str(cand)], estimator=["ips"], position_base=1, out=tmp_path / "o", quiet=True
    )
    (e,) = res.comparison.estimates
    # plain IPS: weight 3 where the logged (action, position) is the candidate's (2@1, 2@2, 1@3)
    wanted = np.isin(key, [21, 22, 13])
    assert e.value == pytest.approx(float(np.mean(3.0 * wanted * reward)))
    assert e.mean_weight == pytest.approx(float(np.mean(3.0 * wanted)))


def test_position_base_0_on_positions_from_1_is_one_clear_error(tmp_path: Path) -> None:
    log, cand, _, _ = _one_based(tmp_path)
    with pytest.raises(ValidationError, match=r"smallest position is 1.*--position-base"):
        evaluate(log, candidate=[str(cand)], out=tmp_path / "o", quiet=True)
    res = CliRunner().invoke(app, ["evaluate", str(log), "--candidate", str(cand), "--out", str(tmp_path)])
    assert res.exit_code == 4 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--position-base" in lines[0]


def test_candidate_positions_outside_the_log_are_one_clear_error(tmp_path: Path) -> None:
    log, _, _, _ = _one_based(tmp_path)
    pacsv.write_csv(pa.table({"action": [0], "position": [4], "probability": [1.0]}), tmp_path / "far.csv")
    with pytest.raises(ValidationError, match=r"positions must be in 1\.\.3 .* got 4\.\.4"):
        evaluate(log, candidate=[str(tmp_path / "far.csv")], position_base=1, out=tmp_path / "o", quiet=True)
    bad = CliRunner().invoke(app, ["evaluate", str(log), "--position-base", "2"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
