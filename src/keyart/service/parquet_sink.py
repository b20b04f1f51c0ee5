"""Follow mode's event sink: a node's segment lines, as Parquet files per time window, in the shared events
directory that ``keyart spark join|train|evaluate`` read.

A following node (``keyart serve --follow``) has no learner; in its place ``keyart serve`` runs this sink
(``run_sink``, supervised like the learner). Every ``events_window_seconds`` it reads the new complete
lines of the node's segments (``keyart.service.segments.SegmentReader``), sorts them as the learner's
ingest does (``keyart.service.ingest``: malformed lines set aside, logged and counted), validates them
(``keyart.events.decisions_table`` / ``outcomes_table``) and writes, per kind and UTC date, one file::

    EVENTS/decisions/date=YYYY-MM-DD/<node>-<ns>-<seq>.parquet         (keyart schema decisions)
    EVENTS/outcomes/date=YYYY-MM-DD/<node>-<ns>-<seq>.parquet          (keyart schema outcomes)
    EVENTS/shadow_decisions/date=.../..., EVENTS/rewards/date=.../...  (kept; Spark does not read them)

Each file is written under a hidden temporary name (Spark and pyarrow skip names starting with ``.``),
fsynced and renamed into place, so a reader sees whole files only; names carry the node id, so nodes share
the directory. Exactly once: before writing, the batch's file names are recorded in a local journal
(``sink-pending.json``); the segment offsets are committed after the files are in place, and then the
journal is cleared. A sink that died between the two finds the journal at its start and deletes those
files: their events are still after the committed offsets and are written again.

An outcome named by its ``decision_id`` only gets the member and title of that decision when this node
logged it (a bounded map of recent decisions), else ``"?"`` as the learner's ingest does; the Spark join
attributes such outcomes by ``decision_id`` alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from keyart.events import DecisionColumns, decisions_table, outcomes_table
from keyart.service.config import ServiceConfig
from keyart.service.follow import SINK_STATUS
from keyart.service.ingest import BAD_RECORD, UNKNOWN, sort_records
from keyart.service.metrics import Metrics
from keyart.service.segments import SegmentReader
from keyart.service.snapshots import _fsync_path

log = logging.getLogger("keyart.service.sink")
PENDING = "sink-pending.json"
#: Decisions remembered (id -> member, title) to fill in outcomes named by decision id only.
MAX_REMEMBERED = 1 << 20
#: On SIGTERM the sink writes what is left in the segments for at most this long.
STOP_FLUSH_SECONDS = 20.0
REWARD_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("decision_id", pa.string()),
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("timestamp", pa.float64(), nullable=False),
        pa.field("member_id", pa.string()),
        pa.field("title_id", pa.string()),
    ]
)
_SAFE = re.compile(r"[^A-Za-z0-9_.]+")


def default_node_id(root: Path) -> str:
    """This host's name and a digest of the state directory: unique per node, stable across restarts."""
    import hashlib

    digest = hashlib.blake2b(str(root.resolve()).encode(), digest_size=4).hexdigest()
    return f"{_SAFE.sub('_', socket.gethostname())}_{digest}"


def utc_dates(timestamps: np.ndarray) -> np.ndarray:
    """The UTC date (``YYYY-MM-DD``) of each epoch-seconds timestamp (vectorized)."""
    days = np.floor(np.asarray(timestamps, dtype=np.float64) / 86_400.0).astype("datetime64[D]")
    return np.datetime_as_string(days, unit="D")


class ParquetSink:
    """Moves a node's new segment lines into the shared events directory (see the module docstring)."""

    def __init__(
        self,
        segments_dir: Path,
        out: Path,
        node_id: str,
        state_dir: Path,
        metrics: Metrics | None = None,
        batch_bytes: int = 64 << 20,
    ) -> None:
        if not node_id or _SAFE.search(node_id):
            raise ValueError(f"node_id must be letters, digits, '_' or '.'. Got {node_id!r}.")
        self.reader = SegmentReader(segments_dir)
        self.out, self.node_id, self.state_dir = Path(out), node_id, Path(state_dir)
        self.metrics = metrics or Metrics()
        self.batch_bytes = batch_bytes
        self.members: dict[str, tuple[str, str]] = {}
        self.files_written = 0
        self.malformed = 0
        self._seq = 0
        self.recover()

    # ---- exactly once -----------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Delete the files of a batch whose offsets were never committed (the journal names them)."""
        journal = self.state_dir / PENDING
        try:
            names = json.loads(journal.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            names = []
        for name in names:
            (self.out / str(name)).unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
        if names:
            log.warning("removed %d event files of an uncommitted batch: they are written again", len(names))
        return [str(n) for n in names]

    def _journal(self, names: list[str]) -> None:
        tmp = self.state_dir / f".{PENDING}.tmp"
        tmp.write_text(json.dumps(names))
        os.replace(tmp, self.state_dir / PENDING)

    # ---- one window -------------------------------------------------------------------------------
    def flush(self) -> dict[str, int]:
        """Write what is new in the segments (at most ``batch_bytes``); returns rows written per kind. A
        batch that failed before its commit (its files journaled) is removed first: it is written again."""
        self.recover()
        records, offsets = self.reader.read(self.batch_bytes)
        written = {"decisions": 0, "outcomes": 0, "shadow_decisions": 0, "rewards": 0}
        if records:
            tables = self._tables(records)
            plan = [
                (kind, date, part)
                for kind, table in tables.items()
                if table.num_rows
                for date, part in self._by_date(table)
            ]
            names = [self._name(kind, date) for kind, date, _ in plan]
            self._journal(names)
            for (kind, _, part), name in zip(plan, names, strict=True):
                self._write(part, self.out / name)
                written[kind] += part.num_rows
            self.files_written += len(names)
        if offsets != self.reader.offsets:
            self.reader.commit(offsets)
            (self.state_dir / PENDING).unlink(missing_ok=True)
            self.reader.prune()
        torn = self.reader.take_skipped()
        if torn:
            self._malformed(f"{torn} lines that are not JSON", None, torn)
        for kind, n in written.items():
            if n:
                self.metrics.events_exported.labels(kind).inc(n)
        return written

    def _tables(self, records: list[Any]) -> dict[str, pa.Table]:
        """The records as validated tables per kind (what cannot be validated is set aside, counted)."""
        pages, shadows, outcomes, rewards = sort_records(records, self._malformed)
        decisions = self._decisions(pages)
        self._remember(decisions)
        return {
            "decisions": decisions,
            "shadow_decisions": self._decisions(shadows),
            "outcomes": self._outcomes(outcomes),
            "rewards": pa.Table.from_pylist(
                [dict(zip(REWARD_SCHEMA.names, r, strict=True)) for r in rewards], REWARD_SCHEMA
            ),
        }

    def _decisions(self, pages: list[DecisionColumns]) -> pa.Table:
        """Pages as one validated decisions table; page by page when the batch is refused."""
        if not pages:
            return decisions_table([])
        try:
            return decisions_table(DecisionColumns.concat(pages).table())
        except BAD_RECORD:
            pass
        good = []
        for page in pages:
            try:
                good.append(decisions_table(page.table()))
            except BAD_RECORD as exc:
                self._malformed(f"page of request {(list(page.request_id) or ['?'])[0]!r}", exc)
        return pa.concat_tables(good) if good else decisions_table([])

    def _remember(self, decisions: pa.Table) -> None:
        """Keep (member, title) of the newest decisions (bounded: the oldest half goes when full)."""
        if not decisions.num_rows:
            return
        ids = decisions.column("event_id").to_pylist()
        pairs = zip(
            decisions.column("member_id").to_pylist(), decisions.column("title_id").to_pylist(), strict=True
        )
        self.members.update(zip(ids, pairs, strict=True))
        if len(self.members) > MAX_REMEMBERED:
            drop = len(self.members) - MAX_REMEMBERED // 2
            for key in list(self.members)[:drop]:
                del self.members[key]

    def _outcomes(self, items: list[dict[str, Any]]) -> pa.Table:
        """Outcome items as one validated table (item by item when the batch is refused)."""
        rows = []
        for it in items:
            m, t = it.get("member_id"), it.get("title_id")
            if m is None or t is None:
                m2, t2 = self.members.get(it.get("decision_id") or "", (UNKNOWN, UNKNOWN))
                m, t = m or m2, t or t2
            rows.append(
                {
                    "event_id": it["event_id"],
                    "decision_id": it.get("decision_id"),
                    "member_id": m,
                    "title_id": t,
                    "event_type": it["event_type"],
                    "engaged_seconds": it.get("engaged_seconds"),
                    "timestamp": float(it["timestamp"]),
                }
            )
        try:
            return outcomes_table(rows)
        except BAD_RECORD:
            pass
        good = []
        for row in rows:
            try:
                good.append(outcomes_table([row]))
            except BAD_RECORD as exc:
                self._malformed(f"outcome {row['event_id']!r}", exc)
        return pa.concat_tables(good) if good else outcomes_table([])

    @staticmethod
    def _by_date(table: pa.Table) -> list[tuple[str, pa.Table]]:
        """The table's rows split by the UTC date of their timestamp."""
        dates = utc_dates(table.column("timestamp").to_numpy())
        return [(str(d), table.filter(pa.array(dates == d))) for d in np.unique(dates)]

    def _name(self, kind: str, date: str) -> str:
        self._seq += 1
        return f"{kind}/date={date}/{self.node_id}-{time.time_ns()}-{self._seq}.parquet"

    @staticmethod
    def _write(table: pa.Table, path: Path) -> None:
        """Write ``table`` to ``path`` atomically: a hidden temporary file, fsynced, renamed into place."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        pq.write_table(table, tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)

    def _malformed(self, what: str, exc: BaseException | None, n: int = 1) -> None:
        self.malformed += n
        why = "" if exc is None else f" ({exc!r:.200})"
        log.warning("malformed segment record set aside: %s%s", what, why)
        self.metrics.learner_skipped.labels("malformed_line").inc(n)

    def write_status(self, error: str | None = None) -> None:
        """The node's sink status (``/readyz``'s ``follow.sink``), written atomically."""
        status = {
            "pid": os.getpid(),
            "node_id": self.node_id,
            "flushed_at": time.time(),
            "files_written": self.files_written,
            "pending_bytes": self.reader.pending_bytes(),
            "malformed": self.malformed,
            "error": error,
        }
        tmp = self.state_dir / f".{SINK_STATUS}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.state_dir / SINK_STATUS)


def sink_for(config: ServiceConfig, node_id: str | None = None) -> ParquetSink:
    """The sink of a follow-mode deployment's node."""
    if config.events_out is None:
        raise ValueError("the Parquet sink needs ServiceConfig.events_out (follow mode)")
    return ParquetSink(
        config.segments_dir,
        Path(config.events_out),
        node_id or default_node_id(config.root),
        config.root,
        batch_bytes=config.ingest_batch_bytes,
    )


def run_sink(config_text: str, stop: threading.Event | None = None) -> None:
    """The sink process: a flush every ``events_window_seconds`` until SIGTERM/SIGINT (or ``stop``) or
    the parent's exit, then what is left (bounded by ``STOP_FLUSH_SECONDS``). A failed flush (the shared
    directory unreachable, say) is retried next window: the events wait in the segments."""
    config = ServiceConfig.from_json(config_text)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sink %(levelname)s %(message)s")
    parent = os.getppid()
    with contextlib.suppress(OSError):
        os.nice(5)  # serving first, as the learner it replaces
    sink = sink_for(config)

    def once() -> bool:
        try:
            wrote = sink.flush()
            sink.write_status()
            return any(wrote.values())
        except Exception as exc:  # retried next window; the events stay in the segments
            log.exception("event sink flush failed; retrying next window")
            sink.write_status(f"{type(exc).__name__}: {exc}")
            return False

    sink.write_status()
    while not stop.is_set() and os.getppid() == parent:
        t0 = time.monotonic()
        once()
        stop.wait(max(0.0, config.events_window_seconds - (time.monotonic() - t0)))
    deadline = time.monotonic() + STOP_FLUSH_SECONDS
    while sink.reader.pending_bytes() and time.monotonic() < deadline:
        if not once():
            break


__all__ = ["REWARD_SCHEMA", "ParquetSink", "default_node_id", "run_sink", "sink_for", "utc_dates"]
