"""``keyart spark join|train`` (keyart.spark.cli): the rows and snapshot of the single-machine commands,
in process and through a real ``spark-submit``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

import keyart.spark.submit
from keyart.catalog import Catalog
from keyart.cli import EXIT_INPUT, app
from keyart.policies import load_policy
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS, join_store
from keyart.spark import evaluate as se
from keyart.spark.cli import _joined
from keyart.store import EventStore
from keyart.train import TrainingInfo
from logs_helpers import write_logs
from test_spark_support import assert_same_state, spark

__all__ = ["spark"]

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return write_logs(tmp_path_factory.mktemp("spark-cli"))


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _same_snapshot(a: Path, b: Path) -> None:
    """The same model (test_spark_support.assert_same_state) and training record."""
    assert_same_state(load_policy(a).snapshot()["state"], load_policy(b).snapshot()["state"])
    ia, ib = TrainingInfo.load(a), TrainingInfo.load(b)
    assert ia is not None and ib is not None and ia.rows == ib.rows and ia.learned_until == ib.learned_until


def test_spark_train_writes_the_snapshot_keyart_train_writes(spark, logs, tmp_path):
    cat = logs / "catalog.json"
    code, out, err = run("train", logs / "export", "--catalog", cat, "--out", tmp_path / "one.npz")
    assert code == 0, err
    code, out, err = run(
        "spark",
        "train",
        logs / "export",
        "--catalog",
        cat,
        "--out",
        tmp_path / "spark.npz",
        "--master",
        "local[2]",
    )
    assert code == 0, err
    assert "trained on 1200 decisions on Spark" in out
    _same_snapshot(tmp_path / "spark.npz", tmp_path / "one.npz")


def test_spark_join_writes_the_joined_rows_by_date(spark, logs, tmp_path):
    code, out, err = run(
        "spark", "join", logs / "export", "--out", tmp_path / "joined", "--end", "1700050000"
    )
    assert code == 0, err
    with EventStore(logs / "events.duckdb", read_only=True) as store:
        expected = join_store(store, None, 1_700_050_000.0)
    assert str(expected.report) in out
    got = ds.dataset(tmp_path / "joined", format="parquet", partitioning="hive").to_table()
    assert sorted(got.column("event_id").to_pylist()) == sorted(expected.table.column("event_id").to_pylist())
    assert sum(got.column("reward").to_pylist()) == sum(expected.reward) > 0
    assert {p.name for p in (tmp_path / "joined").iterdir() if p.is_dir()} == {"date=2023-11-14"}


def _spark_evaluate(logs: Path, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """``keyart spark evaluate`` of a linucb candidate trained by ``keyart train`` on the logs."""
    model = tmp_path / "m.npz"
    if not model.exists():
        code, _, err = run("train", logs / "export", "--catalog", logs / "catalog.json", "--out", model)
        assert code == 0, err
    return run(
        "spark", "evaluate", logs / "export", "--catalog", logs / "catalog.json", "--candidate", model, *args
    )


def test_spark_evaluate_prints_the_estimates_of_keyart_spark_evaluate(spark, logs, tmp_path):
    code, out, err = _spark_evaluate(logs, tmp_path, "--estimator", "snips")
    assert code == 0, err
    lines = out.splitlines()
    assert "on 1200 decisions of 400 members" in lines[0]
    assert lines[2].split()[0] == "snips" and len(lines) == 3
    value, lower, upper = (float(x) for x in lines[2].split()[1:4])
    assert lower < value < upper


def test_spark_evaluate_runs_the_dr_family_with_keyart_evaluates_options(spark, logs, tmp_path):
    """--reward-model, --folds, --seed and --lambda as keyart evaluate names them: the printed DR and
    Switch-DR equal keyart.spark.evaluate's (to the 4 printed digits), with the fixed lambda named."""
    args = ["--reward-model", "tabular", "--folds", "3", "--seed", "4", "--lambda", "5"]
    code, out, err = _spark_evaluate(logs, tmp_path, "--estimator", "dr", "--estimator", "switch_dr", *args)
    assert code == 0, err
    lines = out.splitlines()
    assert [x.split()[0] for x in lines[2:4]] == ["dr", "switch_dr"]
    assert "5 (fixed)" in lines[3] and "model_only" in lines[3]
    assert "tabular, cross-fitted over 3 folds of members (seed 4)" in lines[4]
    catalog = Catalog.load(logs / "catalog.json")
    rows = _joined(
        spark, str(logs / "export"), catalog, None, None, ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS
    )
    policy = load_policy(tmp_path / "m.npz")
    got = se.estimate(
        rows.table,
        catalog,
        policy,
        ["dr", "switch_dr"],
        reward_model="tabular",
        n_folds=3,
        seed=4,
        switch_lambda=5.0,
    )
    for line, g in zip(lines[2:4], got, strict=True):
        assert [float(x) for x in line.split()[1:5]] == [
            round(v, 4) for v in (g.value, g.lower, g.upper, g.se)
        ]
    code, _, err = _spark_evaluate(logs, tmp_path, "--estimator", "dm", "--reward-model", "logistic")
    assert code == EXIT_INPUT and "logistic reward model" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", "{export}", "--catalog", "{catalog}", "--out", "{tmp}/m.txt"), "must be a .npz"),
        (("train", "{tmp}", "--catalog", "{catalog}", "--out", "{tmp}/m.npz"), "No keyart Parquet export"),
        (
            ("train", "{export}", "--catalog", "{catalog}", "--out", "{tmp}/m.npz", "--param", "half_life=5"),
            "half_life",
        ),
    ],
    ids=["suffix", "no-export", "half-life"],
)
def test_bad_inputs_end_in_one_line_and_write_nothing(spark, logs, tmp_path, args, message):
    fill = {"export": logs / "export", "catalog": logs / "catalog.json", "tmp": tmp_path}
    code, _, err = run("spark", *[a.format(**fill) for a in args])
    assert code == EXIT_INPUT and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("m.*"))


@pytest.mark.slow
def test_spark_submit_runs_the_same_command(logs, tmp_path):
    """Submission itself: linucb (one pass over the rows); the default's logistic fit, a Spark job per
    Newton step, runs in process above and in test_spark_train."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [
            str(BIN / "spark-submit"),
            "--master",
            "local[1]",
            keyart.spark.submit.__file__,
            "train",
            str(logs / "export"),
            "--catalog",
            str(logs / "catalog.json"),
            "--out",
            str(tmp_path / "submitted.npz"),
            "--policy",
            "linucb",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained on 1200 decisions on Spark" in proc.stdout
    code, _, err = run(
        "train",
        logs / "export",
        "--catalog",
        logs / "catalog.json",
        "--out",
        tmp_path / "one.npz",
        "--policy",
        "linucb",
    )
    assert code == 0, err
    _same_snapshot(tmp_path / "submitted.npz", tmp_path / "one.npz")
    assert Catalog.load(logs / "catalog.json").artworks
