"""Ingest: the learner's first step, moving the workers' segment lines into the stores.

New complete lines of every segment (``keyart.service.segments``) are sorted by kind: a page record
(``keyart.events.page_record``) becomes decision rows (``keyart.events.page_rows``) for the event store,
its shadow part rows for the shadow store; an outcome batch record (``keyart.events.outcomes_record``)
puts its events in the event store and its direct rewards in the service database's ``rewards`` table.
Everything is idempotent (event ids are primary keys), and the read offsets are committed only after the
records are stored.

A line that is not a well-formed record (wrong shape, missing fields, values the stores refuse) is set
aside, logged and counted (``keyart_learner_skipped_total{reason="malformed_line"}``); it never stops the
lines around it from being stored.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from keyart.events import OUTCOME_SCHEMA, OUTCOMES_RECORD, PAGE_RECORD, DecisionColumns, page_rows
from keyart.service.metrics import Metrics
from keyart.service.segments import SegmentReader
from keyart.store import EventStore

log = logging.getLogger("keyart.service.learner")
UNKNOWN = "?"  # member/title of an outcome whose decision id matches no stored decision
#: What a malformed segment record raises while it is sorted or stored (set aside, never fatal).
BAD_RECORD = (
    KeyError,
    TypeError,
    ValueError,  # includes keyart's ValidationError, pyarrow's ArrowInvalid and binascii.Error
    AttributeError,
    IndexError,
    OverflowError,
    pa.ArrowException,
)

# direct rewards: named by decision_id, or by member_id and title_id (decision_id NULL: resolved when
# the decisions they may belong to are learned)
_REWARDS_DDL = [
    """CREATE TABLE IF NOT EXISTS rewards (
    event_id VARCHAR PRIMARY KEY, decision_id VARCHAR, reward DOUBLE NOT NULL,
    timestamp DOUBLE NOT NULL, member_id VARCHAR, title_id VARCHAR
)""",
    # files written before rewards named by member and title were resolved at learn time
    "ALTER TABLE rewards ADD COLUMN IF NOT EXISTS member_id VARCHAR",
    "ALTER TABLE rewards ADD COLUMN IF NOT EXISTS title_id VARCHAR",
    "ALTER TABLE rewards ALTER COLUMN decision_id DROP NOT NULL",
]


def open_rewards_db(path: Path) -> duckdb.DuckDBPyConnection:
    """The service database (direct rewards), created or brought up to date."""
    con = duckdb.connect(str(path))
    for ddl in _REWARDS_DDL:
        con.execute(ddl).fetchall()
    return con


class Ingest:
    """Moves new segment records into the event store, the shadow store and the rewards table."""

    def __init__(
        self,
        segments_dir: Path,
        store: EventStore,
        shadow_store: EventStore,
        rewards_db: duckdb.DuckDBPyConnection,
        metrics: Metrics,
        batch_bytes: int = 64 << 20,
    ) -> None:
        self.reader = SegmentReader(segments_dir)
        self.batch_bytes = batch_bytes  # segment bytes read per run: bounds a cycle's work
        self.store, self.shadow_store, self.rewards_db = store, shadow_store, rewards_db
        self.metrics = metrics

    def run(self, learned_until: float) -> dict[str, int]:
        """Store what is new (idempotent); returns events newly stored per kind. Decisions older than
        ``learned_until`` (their window was already learned) are counted as late. Reads at most
        ``batch_bytes`` of segments (whole lines): the rest waits for the next run."""
        records, offsets = self.reader.read(self.batch_bytes)
        added = {"decisions": 0, "shadow_decisions": 0, "outcomes": 0, "rewards": 0}
        if records:
            pages, shadows, outcomes, rewards = sort_records(records, self._malformed)
            added["decisions"] = self._store_pages(self.store, pages, learned_until)
            added["shadow_decisions"] = self._store_pages(self.shadow_store, shadows)
            added["outcomes"] = self._store_outcomes(outcomes)
            if rewards:
                db = self.rewards_db
                before = db.execute("SELECT count(*) FROM rewards").fetchall()[0][0]
                db.executemany("INSERT OR IGNORE INTO rewards VALUES (?, ?, ?, ?, ?, ?)", rewards)
                added["rewards"] = db.execute("SELECT count(*) FROM rewards").fetchall()[0][0] - before
            self.reader.commit(offsets)
            self.reader.prune()
            for k, v in added.items():
                if v:
                    self.metrics.events_ingested.labels(k).inc(v)
        torn = self.reader.take_skipped()
        if torn:
            self._malformed(f"{torn} lines that are not JSON", None, torn)
        self.metrics.ingest_backlog.set(self.reader.pending_bytes())
        return added

    def _malformed(self, what: str, exc: BaseException | None, n: int = 1) -> None:
        why = "" if exc is None else f" ({exc!r:.200})"
        log.warning("malformed segment record set aside: %s%s", what, why)
        self.metrics.learner_skipped.labels("malformed_line").inc(n)

    def _store_pages(
        self, store: EventStore, pages: list[DecisionColumns], learned_until: float | None = None
    ) -> int:
        """Store expanded pages in one batch; when the batch is refused, page by page, setting aside the
        pages the store refuses. With ``learned_until``, count the stored decisions older than it."""
        if not pages:
            return 0
        try:
            n = store.append_decisions(DecisionColumns.concat(pages).table())
            stored = pages
        except BAD_RECORD:
            n, stored = 0, []
            for page in pages:
                try:
                    n += store.append_decisions(page.table())
                    stored.append(page)
                except BAD_RECORD as exc:
                    self._malformed(f"page of request {(list(page.request_id) or ['?'])[0]!r}", exc)
        if learned_until is not None:
            late = sum(1 for p in stored for ts in p.timestamp if ts < learned_until)
            if late:  # their window was already learned: stored and evaluable, but not learned from
                self.metrics.late_decisions.inc(late)
        return n

    def _store_outcomes(self, items: list[dict[str, Any]]) -> int:
        """Store outcome events in one batch, or item by item when the batch is refused."""
        if not items:
            return 0
        try:
            return self.store.append_outcomes(self._outcome_table(items))
        except BAD_RECORD:
            pass
        n = 0
        for it in items:
            try:
                n += self.store.append_outcomes(self._outcome_table([it]))
            except BAD_RECORD as exc:
                self._malformed(f"outcome {it.get('event_id')!r}", exc)
        return n

    def _outcome_table(self, items: list[dict[str, Any]]) -> pa.Table:
        """Outcomes as a table; those named only by decision id get the decision's member and title."""
        missing = sorted(
            {it["decision_id"] for it in items if it.get("member_id") is None or it.get("title_id") is None}
        )
        known: dict[str, tuple[str, str]] = {}
        if missing:
            rows = self.store.connection.execute(
                "SELECT event_id, member_id, title_id FROM decisions WHERE event_id IN (SELECT unnest(?))",
                [missing],
            ).fetchall()
            known = {r[0]: (r[1], r[2]) for r in rows}
        cols: dict[str, list[Any]] = defaultdict(list)
        for it in items:
            m, t = it.get("member_id"), it.get("title_id")
            if m is None or t is None:
                m2, t2 = known.get(it["decision_id"], (UNKNOWN, UNKNOWN))
                m, t = m or m2, t or t2
            cols["event_id"].append(it["event_id"])
            cols["decision_id"].append(it.get("decision_id"))
            cols["member_id"].append(m)
            cols["title_id"].append(t)
            cols["event_type"].append(it["event_type"])
            cols["engaged_seconds"].append(it.get("engaged_seconds"))
            cols["timestamp"].append(float(it["timestamp"]))
        return pa.table(
            {f.name: pa.array(cols[f.name], f.type) for f in OUTCOME_SCHEMA}, schema=OUTCOME_SCHEMA
        )


def sort_records(
    records: list[Any], malformed: Callable[[str, BaseException | None], None]
) -> tuple[list[DecisionColumns], list[DecisionColumns], list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Segment records sorted into (pages, shadow pages, outcome items, direct rewards); a malformed one
    goes to ``malformed(what, exc)`` and never stops the others."""
    pages: list[DecisionColumns] = []
    shadows: list[DecisionColumns] = []
    outcomes: list[dict[str, Any]] = []
    rewards: list[tuple[Any, ...]] = []
    for r in records:
        try:
            _sort_record(r, pages, shadows, outcomes, rewards)
        except BAD_RECORD as exc:
            malformed(f"line {str(r)[:80]!r}", exc)
    return pages, shadows, outcomes, rewards


def _sort_record(
    r: Any,
    pages: list[DecisionColumns],
    shadows: list[DecisionColumns],
    outcomes: list[dict[str, Any]],
    rewards: list[tuple[Any, ...]],
) -> None:
    """Add one segment record to what ingest stores (all of it, or nothing: raises when malformed)."""
    kind = r.get("k") if isinstance(r, dict) else None
    if kind == PAGE_RECORD:
        page = page_rows(r)
        shadow = page_rows(r, shadow=True) if r.get("shadow") else None
        pages.append(page)
        if shadow is not None:
            shadows.append(shadow)
    elif kind == OUTCOMES_RECORD:
        items = r["items"]
        if not isinstance(items, list):
            raise TypeError(f"items is a {type(items).__name__}")
        outs, rews = [], []
        for it in items:
            if not isinstance(it, dict) or not isinstance(it["event_id"], str):
                raise TypeError("an outcome item must be an object with an event_id")
            did, member, title = it.get("decision_id"), it.get("member_id"), it.get("title_id")
            if not all(v is None or isinstance(v, str) for v in (did, member, title)):
                raise TypeError("decision_id, member_id and title_id must be strings")
            if did is None and (member is None or title is None):
                raise ValueError("an outcome names neither its decision nor member and title")
            float(it["timestamp"])
            if it.get("event_type") is not None:
                outs.append(it)
            if it.get("reward") is not None:
                reward = float(it["reward"])
                if not 0.0 <= reward <= 1.0:
                    raise ValueError(f"reward {reward!r} is not in [0, 1]")
                rews.append((it["event_id"], did, reward, float(it["timestamp"]), member, title))
        outcomes += outs
        rewards += rews
    else:
        raise ValueError(f"unknown record kind {kind!r}")


__all__ = ["BAD_RECORD", "UNKNOWN", "Ingest", "open_rewards_db", "sort_records"]
