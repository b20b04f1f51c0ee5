"""The DuckDB event store: idempotent batches, nothing half-written, Parquet by date, crash durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keyart
from keyart.errors import StoreError, ValidationError
from keyart.events import DecisionRecord, OutcomeRecord
from keyart.store import EventStore, StoreLockedError

DAY = 86_400.0
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def decision(i: int, t: float | None = None, **over) -> DecisionRecord:
    rec = DecisionRecord(
        event_id=f"d{i}",
        timestamp=T0 + i if t is None else t,
        member_id=f"m{i % 7}",
        title_id=f"t{i % 3}",
        pool=("a", "b"),
        probabilities=(0.5, 0.5),
        chosen_index=0,
        artwork_id="a",
        propensity=0.5,
        policy="uniform",
        model_version=0,
        explored=True,
    )
    return replace(rec, **over)


def outcome(i: int, t: float | None = None, **over) -> OutcomeRecord:
    rec = OutcomeRecord(
        event_id=f"o{i}",
        member_id=f"m{i % 7}",
        title_id=f"t{i % 3}",
        event_type="play",
        timestamp=T0 + 5 + i if t is None else t,
        decision_id=f"d{i}",
        engaged_seconds=900.0,
    )
    return replace(rec, **over)


def _env() -> dict[str, str]:
    src = str(Path(keyart.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_append_read_back_and_idempotency(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    with EventStore(path) as store:
        assert store.append_decisions([decision(i) for i in range(10)]) == 10
        assert store.append_decisions([decision(i) for i in range(5, 15)]) == 5  # 5..9 already stored
        assert store.append_outcomes([outcome(i) for i in range(3)]) == 3
        assert store.append_outcomes([outcome(0)]) == 0
    with EventStore(path, read_only=True) as store:
        dec = store.decisions()
        assert dec.num_rows == 15 and len(set(dec.column("event_id").to_pylist())) == 15
        assert dec.column("pool").to_pylist()[0] == ["a", "b"]
        assert store.outcomes().num_rows == 3
        assert store.decisions(start=T0 + 3, end=T0 + 6).column("event_id").to_pylist() == ["d3", "d4", "d5"]
        with pytest.raises(StoreError, match="read-only"):
            store.append_decisions([decision(99)])


def test_bad_batch_writes_nothing(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions([decision(0)])
        bad = [decision(1), decision(2), decision(3, propensity=0.0, probabilities=(0.0, 1.0))]
        with pytest.raises(ValidationError, match="propensity"):
            store.append_decisions(bad)
        with pytest.raises(ValidationError, match="event_type"):
            store.append_outcomes([outcome(1), outcome(2, event_type="click")])
        assert store.count("decisions") == 1 and store.count("outcomes") == 0


def test_parquet_export_is_partitioned_by_date_and_reimports_idempotently(tmp_path: Path) -> None:
    src = tmp_path / "a.duckdb"
    with EventStore(src) as store:
        store.append_decisions([decision(i, T0 + i * DAY / 2) for i in range(6)])
        store.append_outcomes([outcome(i, T0 + i * DAY / 2 + 60) for i in range(6)])
        counts = store.export_parquet(tmp_path / "export")
        original = store.decisions()
    assert counts == {"decisions": 6, "outcomes": 6}
    dates = sorted(p.name for p in (tmp_path / "export" / "decisions").iterdir())
    assert dates == ["date=2023-11-14", "date=2023-11-15", "date=2023-11-16", "date=2023-11-17"]
    one = pq.read_table(next((tmp_path / "export" / "decisions" / "date=2023-11-15").glob("*.parquet")))
    assert one.num_rows == 2
    with EventStore(tmp_path / "b.duckdb") as other:
        assert other.import_parquet(tmp_path / "export") == {"decisions": 6, "outcomes": 6}
        assert other.import_parquet(tmp_path / "export") == {"decisions": 0, "outcomes": 0}
        assert other.decisions().equals(original)


def test_import_of_a_bad_export_writes_nothing(tmp_path: Path) -> None:
    with EventStore(tmp_path / "a.duckdb") as store:
        store.append_decisions([decision(i) for i in range(3)])
        store.append_outcomes([outcome(i) for i in range(3)])
        store.export_parquet(tmp_path / "export")
    part = next((tmp_path / "export" / "outcomes").rglob("*.parquet"))
    table = pq.read_table(part)
    types = table.column("event_type").to_pylist()
    types[-1] = "oops"
    table = table.set_column(table.schema.get_field_index("event_type"), "event_type", pa.array(types))
    pq.write_table(table, part)
    with EventStore(tmp_path / "b.duckdb") as other:
        with pytest.raises(ValidationError, match="unknown type 'oops'"):
            other.import_parquet(tmp_path / "export")
        assert other.count("decisions") == 0 and other.count("outcomes") == 0


WRITER = textwrap.dedent(
    """
    import sys, time
    from keyart.events import DecisionRecord
    from keyart.store import EventStore
    store = EventStore(sys.argv[1])
    for b in range(10_000):
        ids = [f"b{b}-{i}" for i in range(50)]
        recs = [DecisionRecord(event_id=e, timestamp=1.7e9 + b, member_id="m", title_id="t", pool=("a", "b"),
                               probabilities=(0.5, 0.5), chosen_index=1, artwork_id="b", propensity=0.5,
                               policy="uniform", model_version=0, explored=False) for e in ids]
        store.append_decisions(recs)
        print("ACK", b, flush=True)  # acknowledged only after the commit returned
    """
)


def test_acknowledged_batches_survive_sigkill_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "crash.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(acked) < 25 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(int(line.split()[1]))
        proc.send_signal(signal.SIGKILL)  # mid-stream: the writer is inside its next batch
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 25, proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL
    with EventStore(path) as store:  # reopening replays the write-ahead log
        rows = store.connection.execute(
            "SELECT split_part(event_id, '-', 1) AS batch, count(*), count(DISTINCT event_id) "
            "FROM decisions GROUP BY batch"
        ).fetchall()
    per_batch = {b: (n, distinct) for b, n, distinct in rows}
    for b in acked:
        assert per_batch[f"b{b}"] == (50, 50), f"acknowledged batch {b} is not back exactly once"
    # whatever else made it is whole: no batch is half-written
    assert all(v == (50, 50) for v in per_batch.values())
    assert len(per_batch) in (len(acked), len(acked) + 1)


def test_second_writer_process_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = textwrap.dedent(
        """
        import sys, time
        from keyart.store import EventStore
        s = EventStore(sys.argv[1])
        print("READY", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(path)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        with pytest.raises(StoreLockedError, match="one writer process"):
            EventStore(path)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_not_a_keyart_store(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(StoreError, match="not a keyart event store"):
        EventStore(path, read_only=True)
    with pytest.raises(ValidationError, match="kind must be one of"):
        with EventStore(tmp_path / "x.duckdb") as s:
            s.count("clicks")


# ---- timestamps, bad input and Parquet export errors ---------------------------------------------------


@pytest.mark.parametrize("t", [1.767e12, 1.767e15, 0.0])
def test_implausible_timestamps_are_refused_and_lose_nothing(tmp_path: Path, t: float) -> None:
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions([decision(0)])
        store.append_outcomes([outcome(0)])
        with pytest.raises(ValidationError, match=r"'timestamp' of the decision table.*rows 1"):
            store.append_decisions([decision(1), decision(2, t)])
        with pytest.raises(ValidationError, match=r"'timestamp' of the outcome table.*rows 0"):
            store.append_outcomes([outcome(1, t)])
        assert store.count("decisions") == 1 and store.count("outcomes") == 1
        assert store.export_parquet(tmp_path / "export") == {"decisions": 1, "outcomes": 1}


def _insert_behind_keyart(path: Path, event_id: str, timestamp: float) -> None:
    """A row written before timestamps were range-checked (straight through DuckDB)."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(
        "INSERT INTO decisions SELECT ?, request_id, ?, member_id, title_id, page, position, context_json, "
        "features, pool, probabilities, chosen_index, artwork_id, propensity, policy, model_version, "
        "explored, fallback FROM decisions LIMIT 1",
        [event_id, timestamp],
    ).fetchall()
    con.close()


@pytest.mark.parametrize("t", [1.767e12, 1.767e15])
def test_export_of_a_store_holding_implausible_timestamps_is_a_store_error(tmp_path: Path, t: float) -> None:
    path = tmp_path / "legacy.duckdb"
    with EventStore(path) as store:
        store.append_decisions([decision(0)])
    _insert_behind_keyart(path, "legacy", t)
    with EventStore(path) as store:
        with pytest.raises(StoreError, match=r"1 decisions rows with timestamps outside.*'legacy'"):
            store.export_parquet(tmp_path / "export")
    assert not (tmp_path / "export" / "decisions").exists()


def test_export_errors_are_store_errors_and_keep_the_previous_export(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions([decision(0)])
        (tmp_path / "export").mkdir()
        (tmp_path / "export" / "decisions").write_text("not a directory")
        with pytest.raises(StoreError, match="not a directory"):
            store.export_parquet(tmp_path / "export")
        assert (tmp_path / "export" / "decisions").read_text() == "not a directory"
        assert [p.name for p in (tmp_path / "export").iterdir()] == ["decisions"]  # no staging left behind


def test_a_failed_export_leaves_the_previous_one_as_it_was(tmp_path: Path, monkeypatch) -> None:
    import duckdb

    def listing() -> list[str]:
        return sorted(str(p.relative_to(tmp_path / "export")) for p in (tmp_path / "export").rglob("*"))

    with EventStore(tmp_path / "old.duckdb") as old:
        old.append_decisions([decision(0, T0)])
        old.append_outcomes([outcome(0, T0 + 5)])
        old.export_parquet(tmp_path / "export")
    before = listing()
    write = EventStore._write_kind

    def failing(self: EventStore, target: Path, kind: str) -> int:
        if kind == "outcomes":  # decisions are already written aside by then
            raise duckdb.IOException("disk full")
        return write(self, target, kind)

    monkeypatch.setattr(EventStore, "_write_kind", failing)
    with EventStore(tmp_path / "new.duckdb") as new:
        new.append_decisions([decision(1, T0 + 3 * DAY)])
        with pytest.raises(StoreError, match=r"Could not export.*disk full") as info:
            new.export_parquet(tmp_path / "export")
    assert isinstance(info.value.__cause__, duckdb.IOException)
    assert listing() == before


def test_import_of_an_unreadable_export_is_a_store_error(tmp_path: Path) -> None:
    with EventStore(tmp_path / "a.duckdb") as store:
        store.append_decisions([decision(i) for i in range(3)])
        store.export_parquet(tmp_path / "export")
    next((tmp_path / "export" / "decisions").rglob("*.parquet")).write_bytes(b"not parquet")
    with EventStore(tmp_path / "b.duckdb") as other:
        with pytest.raises(StoreError, match="Cannot read the Parquet export") as info:
            other.import_parquet(tmp_path / "export")
        assert info.value.__cause__ is not None
        assert other.count("decisions") == 0


def test_export_replaces_the_previous_export_also_for_a_kind_with_no_rows(tmp_path: Path) -> None:
    with EventStore(tmp_path / "old.duckdb") as old:
        old.append_decisions([decision(0, T0)])
        old.append_outcomes([outcome(0, T0 + 5)])
        old.export_parquet(tmp_path / "export")
    with EventStore(tmp_path / "new.duckdb") as new:
        new.append_decisions([decision(1, T0 + 3 * DAY)])
        assert new.export_parquet(tmp_path / "export") == {"decisions": 1, "outcomes": 0}
    files = sorted(str(p.relative_to(tmp_path / "export")) for p in (tmp_path / "export").rglob("*"))
    assert files == ["decisions", "decisions/date=2023-11-17", "decisions/date=2023-11-17/data_0.parquet"]
    with EventStore(tmp_path / "fresh.duckdb") as fresh:
        assert fresh.import_parquet(tmp_path / "export") == {"decisions": 1, "outcomes": 0}
        assert fresh.decisions().column("event_id").to_pylist() == ["d1"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (decision(5), "got a DecisionRecord \\(wrap a single record in a list\\)"),
        (decision(5).__dict__, "got a dict"),
        (None, "got a NoneType"),
        ([None], "Record 0 of data is a NoneType"),
        ([{**decision(5).__dict__, "model_version": 2**63}], "'model_version' of decision record 0"),
        ([decision(5, pool=("a", "a"))], "'pool' repeats artwork id 'a' at rows 0"),
    ],
)
def test_bad_input_to_append_is_a_validation_error_and_loses_nothing(tmp_path: Path, data, match) -> None:
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions([decision(0)])
        with pytest.raises(ValidationError, match=match):
            store.append_decisions(data)
        assert store.decisions().column("event_id").to_pylist() == ["d0"]


# ---- threads and handles -------------------------------------------------------------------------------


def test_one_store_is_safe_to_share_between_threads(tmp_path: Path) -> None:
    import threading

    store = EventStore(tmp_path / "e.duckdb")
    errors: list[BaseException] = []

    def write(w: int) -> None:
        for b in range(60):
            recs = [decision(0, T0 + b, event_id=f"w{w}-b{b}-{i}") for i in range(10)]
            try:
                store.append_decisions(recs)
                store.append_decisions(recs[:5])  # a retry of acknowledged events: a no-op
            except Exception as exc:  # collected and reported below
                errors.append(exc)

    def read() -> None:
        for _ in range(60):
            try:
                store.decisions(start=T0, end=T0 + 10)
                store.count("outcomes")
                store.connection.execute("SELECT count(*) FROM decisions").fetchall()
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(2)]
    threads.append(threading.Thread(target=read, daemon=True))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a thread is stuck on the shared connection"
        assert not errors, errors[:3]
        assert store.count("decisions") == 2 * 60 * 10
    finally:
        store.close()


def test_a_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.duckdb"
    with EventStore(path) as first:
        first.append_decisions([decision(0)])
        with pytest.raises(StoreLockedError, match="already open for writing by another EventStore"):
            EventStore(path)
        with pytest.raises(StoreLockedError, match="another EventStore in this process"):
            EventStore(tmp_path / "." / "e.duckdb", read_only=True)  # the same file by another path
        assert first.append_decisions([decision(1)]) == 1  # the first handle is unaffected
    with EventStore(path, read_only=True) as a, EventStore(path, read_only=True) as b:  # readers share
        assert a.count("decisions") == b.count("decisions") == 2
        with pytest.raises(StoreLockedError, match="open read-only by another EventStore"):
            EventStore(path)
    with EventStore(path) as again:  # closed handles release the file
        assert again.count("decisions") == 2
    with EventStore(":memory:") as m1, EventStore(":memory:") as m2:  # throwaway stores are independent
        m1.append_decisions([decision(0)])
        assert m2.count("decisions") == 0


def test_closed_store_says_so(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.duckdb")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.decisions()
    with pytest.raises(StoreError, match="closed"):
        store.append_decisions([decision(0)])
