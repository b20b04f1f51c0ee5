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
writer holds the file) or read a Parquet export. A second writer gets a ``StoreError`` saying so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from keyart.errors import StoreError, ValidationError
from keyart.events import (
    DECISION_SCHEMA,
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
    """Another process holds the store file for writing (DuckDB allows one writer process)."""


class EventStore:
    """Decisions and outcomes in one DuckDB file (``":memory:"`` for a throwaway store).

    Use as a context manager or call ``close()``. One ``EventStore`` per process for writing.
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(
                    f"The event store {self.path} is open for writing in another process; DuckDB allows one "
                    "writer process. Read a Parquet export, or open read-only when no writer is running."
                ) from exc
            raise StoreError(f"Cannot open the event store {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"Cannot open the event store {self.path}: {exc}") from exc
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
        self._con.close()

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
        con = self._con
        added = {kind: 0 for kind, _ in batches}
        todo = [(kind, t) for kind, t in batches if t.num_rows]
        if not todo:
            return added
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
        return added

    # ---- reading -------------------------------------------------------------------------------------
    def _read(self, kind: str, where: str = "", params: list[Any] | None = None) -> pa.Table:
        cols = ", ".join(_SCHEMAS[kind].names)
        sql = f"SELECT {cols} FROM {kind} {where} ORDER BY timestamp, event_id"
        table = self._con.sql(sql, params=params or None).to_arrow_table()
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
        if kind not in _KINDS:
            raise ValidationError(f"kind must be one of {', '.join(_KINDS)}. Got {kind!r}.")
        return int(self._con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0][0])

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection (for joins such as ``keyart.rewards``); do not write through it."""
        return self._con

    # ---- Parquet -------------------------------------------------------------------------------------
    def export_parquet(self, directory: str | Path) -> dict[str, int]:
        """Write ``<dir>/decisions/date=YYYY-MM-DD/*.parquet`` and the same for outcomes (UTC dates).

        Replaces a previous export in the same directory. Returns rows written per kind.
        """
        root = Path(directory)
        counts = {}
        for kind in _KINDS:
            target = root / kind
            target.mkdir(parents=True, exist_ok=True)
            cols = ", ".join(_SCHEMAS[kind].names)
            n = self.count(kind)
            counts[kind] = n
            if n == 0:
                continue
            self._con.execute(
                f"COPY (SELECT {cols}, "
                "strftime(DATE '1970-01-01' + CAST(floor(timestamp / 86400) AS INTEGER), "
                f"'%Y-%m-%d') AS date "
                f"FROM {kind} ORDER BY timestamp, event_id) TO '{_sql_path(target)}' "
                "(FORMAT PARQUET, PARTITION_BY (date), OVERWRITE)"
            ).fetchall()
        return counts

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
            table = ds.dataset(target, format="parquet", partitioning="hive").to_table()
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


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


__all__ = ["EventStore", "StoreLockedError"]
