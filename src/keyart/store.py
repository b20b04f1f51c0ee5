"""The event store: one DuckDB file holding decisions and outcomes, with Parquet export/import by date.

Guarantees:
- **Whole batches.** A batch is validated completely (``keyart.events``) before anything is written, and
  written in one transaction: after an error nothing of it is stored.
- **Idempotent.** Each event id is stored once; appending the same event again is a no-op (anti-join
  insert on the primary key), so a client may safely retry a batch whose acknowledgement it lost.
- **Durable once acknowledged.** ``append_*`` returns after DuckDB's commit, which writes the write-ahead
  log; a writer killed afterwards loses nothing it acknowledged (tested by SIGKILLing a writer process).

Concurrency (DuckDB's rule): one *process* may open the file for writing at a time. Run a single writer
(the service's event sink); other processes open ``EventStore(path, read_only=True)`` (only while no
writer holds the file) or read a Parquet export. A second writer gets a ``StoreLockedError`` saying so,
also a second writing ``EventStore`` on the same file in the same process. One ``EventStore`` may be
shared between threads: its appends, reads and exports take turns on a lock.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from keyart.errors import StoreError, ValidationError
from keyart.events import (
    DECISION_SCHEMA,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    OUTCOME_SCHEMA,
    SCHEMA_VERSION,
    DecisionRecord,
    OutcomeRecord,
    decisions_table,
    outcomes_table,
)

_DDL = {
    "decisions": """
        CREATE TABLE IF NOT EXISTS decisions (
            event_id VARCHAR PRIMARY KEY, request_id VARCHAR, timestamp DOUBLE NOT NULL,
            member_id VARCHAR NOT NULL, title_id VARCHAR NOT NULL, page VARCHAR, position INTEGER,
            context_json VARCHAR, features DOUBLE[], pool VARCHAR[] NOT NULL, probabilities DOUBLE[] NOT NULL,
            chosen_index INTEGER NOT NULL, artwork_id VARCHAR NOT NULL, propensity DOUBLE NOT NULL,
            policy VARCHAR NOT NULL, model_version BIGINT NOT NULL, explored BOOLEAN NOT NULL,
            fallback BOOLEAN
        )""",
    "outcomes": """
        CREATE TABLE IF NOT EXISTS outcomes (
            event_id VARCHAR PRIMARY KEY, decision_id VARCHAR, member_id VARCHAR NOT NULL,
            title_id VARCHAR NOT NULL, event_type VARCHAR NOT NULL, engaged_seconds DOUBLE,
            timestamp DOUBLE NOT NULL
        )""",
}
_SCHEMAS = {"decisions": DECISION_SCHEMA, "outcomes": OUTCOME_SCHEMA}
_KINDS = tuple(_SCHEMAS)


class StoreLockedError(StoreError):
    """Another handle holds the store file for writing: another process (DuckDB allows one writer
    process), or another writing ``EventStore`` in this process."""


#: Writing ``EventStore``s open in this process, by resolved file path.
_WRITERS: dict[str, weakref.ref[EventStore]] = {}
_WRITERS_LOCK = threading.Lock()


class EventStore:
    """Decisions and outcomes in one DuckDB file (``":memory:"`` for a throwaway store).

    Use as a context manager or call ``close()``. One writing ``EventStore`` per file; share it between
    threads rather than opening another (a second one gets ``StoreLockedError``).
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._local = threading.local()
        self._key: str | None = None
        self._closed = True  # until the connection is open
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._claim(os.path.realpath(self.path))
        try:
            self._open()
        except BaseException:
            self._release()
            raise

    def _claim(self, key: str) -> None:
        """Refuse a second writer on ``key`` in this process (and a reader while this process writes)."""
        with _WRITERS_LOCK:
            ref = _WRITERS.get(key)
            holder = None if ref is None else ref()
            if holder is not None and not holder._closed:
                if self.read_only:
                    raise StoreLockedError(
                        f"The event store {self.path} is open for writing by another EventStore in this "
                        "process; read through that one (it can be shared between threads)."
                    )
                raise StoreLockedError(
                    f"The event store {self.path} is already open for writing by another EventStore in this "
                    "process; DuckDB allows one writer process. Share that EventStore between threads (it is "
                    "thread-safe) or close it first."
                )
            if not self.read_only:
                _WRITERS[key] = weakref.ref(self)
                self._key = key

    def _release(self) -> None:
        with _WRITERS_LOCK:
            if self._key is not None:
                ref = _WRITERS.get(self._key)
                if ref is not None and ref() is self:
                    del _WRITERS[self._key]
                self._key = None

    def _open(self) -> None:
        read_only = self.read_only
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(
                    f"The event store {self.path} is open for writing in another process; DuckDB allows one "
                    "writer process. Read a Parquet export, or open read-only when no writer is running."
                ) from exc
            raise StoreError(f"Cannot open the event store {self.path}: {exc}") from exc
        except duckdb.ConnectionException as exc:
            if "different configuration" in str(exc):
                raise StoreLockedError(
                    f"The event store {self.path} is open read-only by another EventStore in this process; "
                    "close it before opening the store for writing."
                ) from exc
            raise StoreError(f"Cannot open the event store {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"Cannot open the event store {self.path}: {exc}") from exc
        self._closed = False
        try:
            if not read_only:
                for ddl in _DDL.values():
                    self._con.execute(ddl).fetchall()
                self._con.execute(
                    "CREATE TABLE IF NOT EXISTS keyart_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
                ).fetchall()
                self._con.execute(
                    "INSERT OR IGNORE INTO keyart_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
                ).fetchall()
            self._check_version()
        except BaseException:
            self.close()
            raise

    def _check_version(self) -> None:
        try:
            rows = self._con.execute("SELECT value FROM keyart_meta WHERE key = 'schema_version'").fetchall()
            row = rows[0] if rows else None
        except duckdb.CatalogException:
            raise StoreError(f"{self.path} is not a keyart event store (no keyart_meta table).") from None
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"The event store {self.path} has schema version {row and row[0]}; this keyart reads "
                f"versions up to {SCHEMA_VERSION}."
            )

    # ---- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file (idempotent); connections handed out by ``connection`` close with it."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._con.close()
            self._release()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"The event store {self.path} is closed.")

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -------------------------------------------------------------------------------------
    def append_decisions(self, data: pa.Table | Iterable[DecisionRecord | Mapping[str, Any]]) -> int:
        """Validate and store a batch of decisions; returns how many were new (duplicates are skipped)."""
        return self._append("decisions", decisions_table(data))

    def append_outcomes(self, data: pa.Table | Iterable[OutcomeRecord | Mapping[str, Any]]) -> int:
        """Validate and store a batch of outcomes; returns how many were new (duplicates are skipped)."""
        return self._append("outcomes", outcomes_table(data))

    def _append(self, kind: str, table: pa.Table) -> int:
        return self._append_many([(kind, table)])[kind]

    def _append_many(self, batches: list[tuple[str, pa.Table]]) -> dict[str, int]:
        """Insert validated tables in ONE transaction: all of them are stored, or none."""
        if self.read_only:
            raise StoreError(f"The event store {self.path} is open read-only.")
        added = {kind: 0 for kind, _ in batches}
        todo = [(kind, t) for kind, t in batches if t.num_rows]
        if not todo:
            return added
        with self._lock:
            self._check_open()
            self._insert(todo, added)
        return added

    def _insert(self, todo: list[tuple[str, pa.Table]], added: dict[str, int]) -> None:
        """The transaction of ``_append_many``; the caller holds the lock."""
        con = self._con
        try:
            con.execute("BEGIN TRANSACTION").fetchall()
            for kind, table in todo:
                con.register("_keyart_batch", table)
                try:
                    before = con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0][0]
                    cols = ", ".join(table.schema.names)
                    con.execute(
                        f"INSERT INTO {kind} ({cols}) SELECT {cols} FROM _keyart_batch b "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {kind} t WHERE t.event_id = b.event_id)"
                    ).fetchall()
                    added[kind] = int(con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0][0] - before)
                finally:
                    con.unregister("_keyart_batch")
            con.execute("COMMIT").fetchall()
        except duckdb.Error as exc:
            try:
                con.execute("ROLLBACK").fetchall()
            except duckdb.Error:
                pass
            raise StoreError(f"Could not store the batch (nothing was written): {exc}") from exc

    # ---- reading -------------------------------------------------------------------------------------
    def _read(self, kind: str, where: str = "", params: list[Any] | None = None) -> pa.Table:
        cols = ", ".join(_SCHEMAS[kind].names)
        sql = f"SELECT {cols} FROM {kind} {where} ORDER BY timestamp, event_id"
        with self._lock:
            self._check_open()
            try:
                table = self._con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise StoreError(f"Could not read {kind} from the event store {self.path}: {exc}") from exc
        return table.cast(_SCHEMAS[kind])

    def decisions(self, start: float | None = None, end: float | None = None) -> pa.Table:
        """Decisions (``DECISION_SCHEMA``) with ``start <= timestamp < end``, in time order."""
        where, params = _time_filter(start, end)
        return self._read("decisions", where, params)

    def decisions_with_outcomes(self, start: float, outcomes_since: float | None = None) -> pa.Table:
        """Decisions at or after ``start`` whose (member, title) has an outcome at or after
        ``outcomes_since``: the later decisions an outcome might be attributed to instead of an earlier one
        (``keyart.rewards.join_closed``), without reading every decision of the open window."""
        since = -math.inf if outcomes_since is None else float(outcomes_since)
        where = (
            "WHERE timestamp >= ? AND (member_id, title_id) IN "
            "(SELECT member_id, title_id FROM outcomes WHERE timestamp >= ?)"
        )
        return self._read("decisions", where, [float(start), since])

    def outcomes(self, start: float | None = None, end: float | None = None) -> pa.Table:
        """Outcomes (``OUTCOME_SCHEMA``) with ``start <= timestamp < end``, in time order."""
        where, params = _time_filter(start, end)
        return self._read("outcomes", where, params)

    def count(self, kind: str) -> int:
        """How many events of ``kind`` ("decisions" or "outcomes") are stored."""
        if kind not in _KINDS:
            raise ValidationError(f"kind must be one of {', '.join(_KINDS)}. Got {kind!r}.")
        with self._lock:
            self._check_open()
            return int(self._con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0][0])

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection to the store for the calling thread (one per thread, for reads and joins such
        as ``keyart.rewards``); do not write through it. It sees every committed batch."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                self._check_open()
                cur = self._local.cursor = self._con.cursor()
        return cur

    # ---- Parquet -------------------------------------------------------------------------------------
    def export_parquet(self, directory: str | Path) -> dict[str, int]:
        """Write ``<dir>/decisions/date=YYYY-MM-DD/*.parquet`` and the same for outcomes (UTC dates).

        Replaces a previous export in the same directory: both kinds are written aside first, then swapped
        in for the old ``decisions/`` and ``outcomes/`` directories (a kind with no rows leaves none), so a
        failed export leaves the previous one as it was. Returns rows written per kind.
        """
        root = Path(directory)
        counts = {}
        with self._lock:
            self._check_open()
            for kind in _KINDS:
                self._check_exportable(kind)
                target = root / kind
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    raise StoreError(f"Cannot export {kind} to {target}: it exists and is not a directory.")
            try:
                root.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
            except OSError as exc:
                raise StoreError(f"Cannot write an export into {root}: {exc}") from exc
            try:
                (staging / "new").mkdir()
                for kind in _KINDS:
                    counts[kind] = self._write_kind(staging / "new" / kind, kind)
                _swap_in(root, staging)
            except (duckdb.Error, OSError) as exc:
                raise StoreError(f"Could not export the event store to {root}: {exc}") from exc
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return counts

    def _check_exportable(self, kind: str) -> None:
        """Refuse rows stored before timestamps were range-checked: they have no sensible date partition."""
        n, first = self._con.execute(
            f"SELECT count(*), min(event_id) FROM {kind} WHERE NOT (timestamp >= ? AND timestamp < ?)",
            [MIN_TIMESTAMP, MAX_TIMESTAMP],
        ).fetchall()[0]
        if n:
            raise StoreError(
                f"The event store {self.path} holds {n} {kind} rows with timestamps outside 1990-01-01 .. "
                f"2200-01-01 in epoch seconds (first event id {first!r}); they cannot be exported by date."
            )

    def _write_kind(self, target: Path, kind: str) -> int:
        """Write one kind's partitions under ``target`` (none when it has no rows); the lock is held."""
        n = self.count(kind)
        if n:
            cols = ", ".join(_SCHEMAS[kind].names)
            self._con.execute(
                f"COPY (SELECT {cols}, "
                "strftime(DATE '1970-01-01' + CAST(floor(timestamp / 86400) AS INTEGER), "
                f"'%Y-%m-%d') AS date "
                f"FROM {kind} ORDER BY timestamp, event_id) TO '{_sql_path(target)}' "
                "(FORMAT PARQUET, PARTITION_BY (date))"
            ).fetchall()
        return n

    def import_parquet(self, directory: str | Path) -> dict[str, int]:
        """Append an export (hive ``date=`` partitions) back; idempotent. Returns rows newly stored.

        Each kind is validated whole before it is written.
        """
        root = Path(directory)
        if not root.is_dir():
            raise ValidationError(f"No Parquet export at {root}.")
        added = dict.fromkeys(_KINDS, 0)
        tables: dict[str, pa.Table | None] = {}
        for kind in _KINDS:
            target = root / kind
            if not target.exists():
                tables[kind] = None
                continue
            try:
                dataset = ds.dataset(target, format="parquet", partitioning="hive")
                table = dataset.to_table() if dataset.files else None
            except (pa.ArrowException, OSError) as exc:
                raise StoreError(f"Cannot read the Parquet export {target}: {exc}") from exc
            if table is None:
                tables[kind] = None
                continue
            if "date" in table.column_names:
                table = table.drop_columns(["date"])
            tables[kind] = decisions_table(table) if kind == "decisions" else outcomes_table(table)
        added.update(self._append_many([(k, t) for k, t in tables.items() if t is not None]))
        return added


def _time_filter(start: float | None, end: float | None) -> tuple[str, list[Any]]:
    conds, params = [], []
    if start is not None:
        conds.append("timestamp >= ?")
        params.append(float(start))
    if end is not None:
        conds.append("timestamp < ?")
        params.append(float(end))
    return ("WHERE " + " AND ".join(conds)) if conds else "", params


def _swap_in(root: Path, staging: Path) -> None:
    """Move ``root/<kind>`` into ``staging/old`` and ``staging/new/<kind>`` (when written) into its place;
    on an error, put back what was moved."""
    (staging / "old").mkdir()
    moved: list[tuple[Path, Path]] = []
    try:
        for kind in _KINDS:
            target, old, new = root / kind, staging / "old" / kind, staging / "new" / kind
            if target.exists():
                target.rename(old)
                moved.append((old, target))
            if new.exists():
                new.rename(target)
                moved.append((target, new))
    except OSError:
        for src, dst in reversed(moved):
            if src.exists() and not dst.exists():
                src.rename(dst)
        raise


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


__all__ = ["EventStore", "StoreLockedError"]
