"""Follow mode (``keyart serve --follow``): the Parquet sink writes exactly the rows the learner's ingest
stores, once, atomically; a following worker hot-reloads the shared directory's generations and keeps
serving its last good one, saying why, when the directory is missing or its newest generation damaged."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from keyart.cli import app as cli_app
from keyart.events import DECISION_SCHEMA, OUTCOME_SCHEMA
from keyart.policies import make_policy
from keyart.service.config import ServiceConfig
from keyart.service.follow import publish_next, shared_dir_problem
from keyart.service.ingest import Ingest, open_rewards_db
from keyart.service.metrics import Metrics
from keyart.service.parquet_sink import PENDING, ParquetSink, utc_dates
from keyart.store import EventStore
from test_service_support import AUTH, LocalServer, make_config, page_body, prepare

T0 = 1_765_000_000.0  # 2025-12-06 05:46:40 UTC


def _read(root: Path, kind: str, schema: pa.Schema) -> pa.Table:
    """Every Parquet file of ``root/kind`` (hive ``date=`` partitions), the schema's columns, by event id."""
    if not (root / kind).is_dir():
        return schema.empty_table()
    table = ds.dataset(root / kind, format="parquet", partitioning="hive").to_table(columns=schema.names)
    return table.sort_by("event_id")


def _follow_config(tmp_path: Path, shared: Path, events: Path, **kw: Any) -> ServiceConfig:
    return prepare(
        make_config(tmp_path / "node", follow_dir=str(shared), events_out=str(events), seed=7, **kw),
        initial=False,
    )


def _traffic(c: httpx.Client) -> list[str]:
    """Pages over two UTC dates and outcomes of every form (by decision id, by member and title, an
    unknown id, a direct reward); returns the decision ids."""
    ids = []
    for i in range(12):
        ts = T0 + i * 4 * 3600.0  # over three UTC dates
        r = c.post("/v1/decide", json=page_body(f"m{i % 5}", ["t0", "t1", "t2"], timestamp=ts))
        assert r.status_code == 200, r.text
        ids += [d["decision_id"] for d in r.json()["decisions"]]
    outcomes = [
        {"decision_id": ids[0], "event_type": "play", "engaged_seconds": 900.0, "timestamp": T0 + 5},
        {"decision_id": ids[4], "event_type": "complete", "timestamp": T0 + 4 * 3600.0 + 9},
        {"member_id": "m2", "title_id": "t1", "event_type": "play", "timestamp": T0 + 8 * 3600.0 + 1},
        {"decision_id": "not-one-of-ours-0", "event_type": "play", "timestamp": T0 + 60},
        {"decision_id": ids[7], "reward": 1.0, "timestamp": T0 + 4 * 3600.0 + 30},
    ]
    assert c.post("/v1/outcomes", json={"outcomes": outcomes}, headers=AUTH).status_code == 200
    return ids


def test_sink_writes_the_rows_ingest_stores_once_and_atomically(tmp_path: Path) -> None:
    shared, events = tmp_path / "shared", tmp_path / "events"
    config = _follow_config(tmp_path, shared, events)
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        ids = _traffic(c)
    # the reference: the learner's ingest of the same segment lines into an event store, exported
    ref_dir = tmp_path / "ref-segments"
    shutil.copytree(config.segments_dir, ref_dir)
    store, shadow = EventStore(tmp_path / "ref.duckdb"), EventStore(tmp_path / "ref-shadow.duckdb")
    Ingest(ref_dir, store, shadow, open_rewards_db(tmp_path / "ref-svc.duckdb"), Metrics()).run(0.0)
    store.export_parquet(tmp_path / "ref-export")

    sink = ParquetSink(config.segments_dir, events, "node_a", config.root)
    original_commit = sink.reader.commit

    def crash(offsets: dict[str, int]) -> None:  # the files are in place, the offsets never committed
        raise OSError("killed before the commit")

    sink.reader.commit = crash  # type: ignore[method-assign]
    with pytest.raises(OSError):
        sink.flush()
    assert (config.root / PENDING).exists() and list(events.rglob("*.parquet"))
    with pytest.raises(OSError):
        sink.flush()  # a failed retry, in the same process: the earlier batch's files are removed first
    sink.reader.commit = original_commit  # type: ignore[method-assign]
    restarted = ParquetSink(config.segments_dir, events, "node_a", config.root)  # recovers the journal
    written = restarted.flush()
    assert restarted.flush() == dict.fromkeys(written, 0)  # nothing twice
    assert not (config.root / PENDING).exists()

    for kind, schema in (("decisions", DECISION_SCHEMA), ("outcomes", OUTCOME_SCHEMA)):
        got, want = _read(events, kind, schema), _read(tmp_path / "ref-export", kind, schema)
        assert got.num_rows == want.num_rows and got.num_rows > 0
        assert got.to_pylist() == want.to_pylist()
    decided = _read(events, "decisions", DECISION_SCHEMA)
    assert sorted(decided.column("event_id").to_pylist()) == sorted(ids)
    dates = {p.parent.name for p in (events / "decisions").rglob("*.parquet")}
    assert dates == {f"date={d}" for d in utc_dates(decided.column("timestamp").to_numpy())}
    assert len(dates) == 3 and all(p.name.startswith("node_a-") for p in events.rglob("*.parquet"))
    assert not [p for p in events.rglob(".*")]  # no temporary file left
    rewards = _read(events, "rewards", pa.schema([pa.field("event_id", pa.string())]))
    assert rewards.num_rows == 1  # the direct reward is kept too
    outcomes = _read(events, "outcomes", OUTCOME_SCHEMA).to_pylist()
    by_id = {o["decision_id"]: o for o in outcomes}
    assert by_id[ids[0]]["member_id"] == "m0" and by_id["not-one-of-ours-0"]["member_id"] == "?"


def test_utc_dates_match_the_calendar() -> None:
    ts = np.array([0.0, 86_399.999, 86_400.0, T0, -1.0])
    assert utc_dates(ts).tolist() == ["1970-01-01", "1970-01-01", "1970-01-02", "2025-12-06", "1969-12-31"]


def _get(c: httpx.Client, path: str) -> dict[str, Any]:
    r = c.get(path)
    assert r.status_code in (200, 503), r.text
    body: dict[str, Any] = r.json()
    return body


def _wait(c: httpx.Client, check: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``/readyz`` until ``check(body)`` holds (a generous deadline: the machine is shared)."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = _get(c, "/readyz")
        if check(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s; last /readyz {body}")


def _metric(text: str, name: str, reason: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{reason={reason}}} not in /metrics")


class _Damaged:
    """Stands for a model whose published file is garbage."""

    def save(self, path: Path) -> None:
        Path(path).write_bytes(b"damaged")


def test_a_following_worker_reloads_and_keeps_its_last_model_when_the_share_fails(tmp_path: Path) -> None:
    shared, events = tmp_path / "shared", tmp_path / "events"
    config = _follow_config(tmp_path, shared, events)
    policy = make_policy("linucb", seed=7)
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        body = _wait(c, lambda b: b.get("follow", {}).get("problem") == "missing", "no shared directory")
        assert body["ready"] and not body["model_ok"] and "missing" in body["model_error"]
        assert publish_next(shared, policy, {"learned_until": None}) == 0
        _wait(c, lambda b: b["generation"] == 0 and b["follow"]["problem"] is None, "generation 0")
        assert publish_next(shared, policy, {"learned_until": T0}) == 1
        _wait(c, lambda b: b["generation"] == 1 and b["follow"]["latest_generation"] == 1, "generation 1")

        shared.rename(tmp_path / "away")  # the share goes away: keep serving generation 1, say so
        body = _wait(c, lambda b: b["follow"]["problem"] == "missing", "the share missing")
        assert body["ready"] and body["model_ok"] and body["generation"] == 1
        assert "still serving generation 1" in body["model_error"] and "warning" in body
        assert _metric(c.get("/metrics").text, "keyart_follow_model_problem", "missing") == 1.0
        r = c.post("/v1/decide", json=page_body("m1", ["t0", "t1"]))
        assert r.status_code == 200 and r.json()["generation"] == 1
        assert not any(d["fallback"] for d in r.json()["decisions"])

        (tmp_path / "away").rename(shared)  # back: no problem
        _wait(c, lambda b: b["follow"]["problem"] is None and b["model_error"] is None, "the share back")
        # published damaged (its checksum is the garbage's, so it fails as it loads): damaging a published
        # file after the fact raced the worker, which could load the good file first
        assert publish_next(shared, _Damaged(), {}) == 2  # type: ignore[arg-type]
        body = _wait(c, lambda b: b["follow"]["problem"] == "damaged", "a damaged generation")
        assert body["generation"] == 1 and "gen-00000002" in body["model_error"]
        metrics = c.get("/metrics").text
        assert _metric(metrics, "keyart_follow_model_problem", "damaged") == 1.0
        assert _metric(metrics, "keyart_follow_model_problem", "missing") == 0.0


def test_shared_dir_problem_names_what_is_wrong(tmp_path: Path) -> None:
    assert shared_dir_problem(tmp_path / "nope") == (
        "missing",
        f"the shared model directory {tmp_path / 'nope'} is missing",
    )
    (tmp_path / "file").write_text("x")
    problem = shared_dir_problem(tmp_path / "file")
    assert problem is not None and problem[0] == "unreadable"
    assert shared_dir_problem(tmp_path) is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--follow", "shared"], "go together"),
        (["--events-dir", "ev"], "go together"),
        (["--follow", "shared", "--events-dir", "ev", "--shadow-policy", "softmax"], "no snapshot"),
    ],
)
def test_serve_refuses_an_incomplete_follow_mode(tmp_path: Path, args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--state-dir", str(tmp_path / "s"), *args])
    assert result.exit_code == 2 and says in result.output
    assert not (tmp_path / "s").exists()  # refused before anything was written
