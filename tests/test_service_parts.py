"""Parts of the service on their own: segments (torn lines, offsets), snapshot publishing, the logged
context format, the `keyart serve` command, and a smoke run of the load benchmark (no wrk needed)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyart.cli import app as cli_app
from keyart.context import MemberContext, Play
from keyart.errors import SnapshotError
from keyart.events import context_from_json, context_to_json
from keyart.policies import make_policy
from keyart.service import snapshots
from keyart.service.engine import context_json
from keyart.service.segments import SegmentReader, SegmentWriter


def test_segments_skip_a_torn_last_line_until_it_is_complete(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, fsync=True)
    w.append({"k": "outcomes", "items": [1]})
    with open(w.path, "ab") as fh:
        fh.write(b'{"k": "outcomes", "it')  # a writer died mid-line
    reader = SegmentReader(tmp_path)
    records, offsets = reader.read()
    assert records == [{"k": "outcomes", "items": [1]}]
    reader.commit(offsets)
    assert reader.read()[0] == []
    with open(w.path, "ab") as fh:
        fh.write(b'ems": [2]}\n')
    assert reader.read()[0] == [{"k": "outcomes", "items": [2]}]
    assert SegmentReader(tmp_path).offsets == offsets  # remembered across restarts
    w.close()


def test_publish_is_atomic_and_prunes_old_generations(tmp_path: Path) -> None:
    policy = make_policy("linucb", seed=3)
    for n in range(7):
        snapshots.publish(tmp_path, n, policy, None, {"n": n}, keep=3)
    gen = snapshots.load_latest(tmp_path)
    assert gen is not None and gen.number == 6 and gen.meta["n"] == 6 and gen.shadow is None
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-00000004", "gen-00000005", "gen-00000006"]
    assert not list(tmp_path.glob(".tmp-*"))
    (tmp_path / "LATEST").write_text("{not json")
    with pytest.raises(SnapshotError, match="corrupt"):
        snapshots.load_latest(tmp_path)
    assert snapshots.load_latest(tmp_path / "empty") is None


def test_logged_context_is_what_the_event_module_reads() -> None:
    ctx = MemberContext(
        "m",
        played=(Play("t1", 1.5e9, 30.0), Play("t2")),
        country="US",
        device="tv",
        timestamp=1.7e9,
        interacted_titles=frozenset({"b", "a"}),
        recommender_scores={"t1": 0.5},
        extra={"x": 1.0},
    )
    assert json.loads(context_json(ctx)) == json.loads(context_to_json(ctx))
    assert context_from_json(context_json(ctx)) == ctx


def test_serve_is_a_keyart_command() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--workers", "--policy", "--shadow-policy", "--api-key", "--model-budget", "--fsync"):
        assert option in result.output


def test_load_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        import bench_service
    finally:
        sys.path.pop(0)
    summary = bench_service.main(["--smoke"])
    (row,) = summary["rows"]
    assert row["non200"] == 0 and row["rps"] > 5 and 0 <= row["fallback_rate"] <= 1, row
    assert "title-decisions/s" in capsys.readouterr().out
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # the benchmark leaves the test process alone
