"""`keyart gate` (keyart.gate) on three prepared cases: a clearly better candidate (exit 0), one that is
not better (exit 1), and extreme weights from a skewed logger (exit 3, flags named); --json; bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyart.catalog import Catalog
from keyart.cli import EXIT_INPUT, EXIT_USAGE, app
from keyart.policies import make_policy
from keyart.train import train
from logs_helpers import write_logs


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict[str, Path]:
    """Uniform logs, skewed logs (the 'face' artwork shown with probability 0.01), a candidate trained on
    the uniform logs (it shows 'face' artworks with probability 0.93) and the uniform logger itself."""
    root = tmp_path_factory.mktemp("gate")
    (root / "uniform").mkdir()
    (root / "skewed").mkdir()
    uniform = write_logs(root / "uniform")
    skewed = write_logs(root / "skewed", face_probability=0.01)
    cat = Catalog.load(uniform / "catalog.json")
    trained, _ = train([uniform / "events.duckdb"], cat, make_policy("linucb", seed=0, floor=0.1))
    trained.save(root / "trained.npz")
    make_policy("uniform", seed=11).save(root / "logger.npz")
    return {
        "uniform": uniform,
        "skewed": skewed,
        "trained": root / "trained.npz",
        "logger": root / "logger.npz",
    }


def gate(logs: Path, candidate: Path, *extra: object) -> tuple[int, str, str]:
    args = [
        "gate",
        logs / "events.duckdb",
        "--candidate",
        candidate,
        "--catalog",
        logs / "catalog.json",
        *extra,
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_a_clearly_better_candidate_passes(case):
    code, out, err = gate(case["uniform"], case["trained"], "--margin", "0.1")
    assert code == 0, out + err
    assert out.strip().splitlines()[-1].startswith("PASS (exit 0): candidate lower bound")


def test_a_candidate_that_is_not_better_fails(case):
    code, out, _ = gate(case["uniform"], case["logger"])  # the logging policy itself
    assert code == 1 and "NOT BETTER (exit 1)" in out
    code, out, _ = gate(case["uniform"], case["trained"], "--margin", "0.6")  # better, not by 0.6
    assert code == 1 and "< baseline" in out


def test_extreme_weights_are_not_trustworthy_and_the_flags_are_named(case):
    code, out, _ = gate(case["skewed"], case["trained"], "--json")
    assert code == 3
    result = json.loads(out)
    assert result["verdict"] == "untrustworthy" and result["exit_code"] == 3
    assert result["flags"] and all(f.endswith("(candidate)") for f in result["flags"])
    assert {"low_ess", "dominated"} & {f.split()[0] for f in result["flags"]}
    assert result["candidate"]["max_weight"] > 50  # 0.93 / 0.01
    assert "not trustworthy: " in result["reason"]


def test_json_output_of_a_pass(case):
    code, out, _ = gate(case["uniform"], case["trained"], "--json", "--estimator", "dr")
    assert code == 0
    result = json.loads(out)
    assert result["candidate"]["estimator"] == "dr" and result["baseline"]["estimator"] == "ips"
    assert result["candidate"]["lower"] >= result["baseline"]["value"]
    assert result["baseline"]["max_weight"] == pytest.approx(1.0)  # on-policy: every weight is 1


@pytest.mark.parametrize(("ci", "method"), [("percentile", "bootstrap-percentile"), ("bca", "bootstrap-BCa")])
def test_bootstrap_intervals_are_named_and_decide_the_verdict(case, ci, method):
    code, out, _ = gate(case["uniform"], case["trained"], "--json", "--ci", ci, "--margin", "0.1")
    result = json.loads(out)
    cand, base = result["candidate"], result["baseline"]
    assert cand["ci"].startswith(method) and base["ci"].startswith(method)
    assert cand["lower"] < cand["value"] < cand["upper"]
    normal = json.loads(gate(case["uniform"], case["trained"], "--json", "--ci", "normal")[1])
    assert normal["candidate"]["ci"] == "normal" and cand["lower"] != normal["candidate"]["lower"]
    assert code == (0 if cand["lower"] >= base["value"] + 0.1 else 1) == result["exit_code"]
    code, text, _ = gate(case["uniform"], case["trained"], "--ci", ci)
    assert f"Intervals: {cand['ci']}" in text


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--estimator", "magic"], EXIT_USAGE, "Invalid value for '--estimator'"),
        (["--margin", "-1"], EXIT_USAGE, "Invalid value for '--margin'"),
        (["--ci", "studentized"], EXIT_USAGE, "Invalid value for '--ci'"),
    ],
)
def test_gate_usage_errors(case, extra, code, message):
    got, _, err = gate(case["uniform"], case["trained"], *extra)
    assert got == code and message in err and err.count("\n") == 1


def test_gate_input_errors(case, tmp_path):
    code, _, err = gate(case["uniform"], tmp_path / "none.npz")
    assert code == EXIT_INPUT and "Cannot read policy snapshot" in err
    code, _, err = gate(tmp_path, case["trained"])
    assert code == EXIT_INPUT and "Cannot read catalog file" in err
