"""The background learner: the one process that writes the DuckDB files.

Every ``learn_interval_seconds`` it (1) ingests new segment lines from all workers into the event store
(decisions, outcomes), the shadow store (shadow decisions) and the service database (direct rewards),
idempotently; (2) joins rewards for decisions whose attribution window has closed (``keyart.rewards``),
rebuilds their features from the logged contexts, and updates the serving and shadow policies; (3)
publishes the result as a new generation (``keyart.service.snapshots``). The time up to which rewards
were learned is saved inside each generation, so a restarted learner resumes exactly where the served
model stands: no reward is learned twice or skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import multiprocessing
import multiprocessing.process
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from keyart.errors import SnapshotError, ValidationError
from keyart.events import DECISION_SCHEMA, OUTCOME_SCHEMA
from keyart.features import Featurizer
from keyart.policies import Policy, load_policy, make_policy
from keyart.rewards import QualityRule, RewardTable, join_closed
from keyart.service import catalog_store, snapshots
from keyart.service.config import ServiceConfig
from keyart.service.fallbacks import best_unpersonalized
from keyart.service.health import beat, write_heartbeat
from keyart.service.metrics import Metrics
from keyart.service.segments import SegmentReader, page_probabilities
from keyart.store import EventStore

log = logging.getLogger("keyart.service.learner")
UNKNOWN = "?"  # member/title of an outcome whose decision id matches no stored decision
CHUNK = 4096  # events per policy update (bounds the feature tensor's memory)
#: What a malformed segment record raises while it is sorted or stored (set aside, never fatal).
_BAD_RECORD = (
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


def fresh_policies(config: ServiceConfig) -> tuple[Policy, Policy | None]:
    primary = make_policy(config.policy, **config.policy_kwargs())
    shadow = (
        make_policy(config.shadow_policy, **config.policy_kwargs(shadow=True))
        if config.shadow_policy
        else None
    )
    return primary, shadow


def ensure_initial_generation(config: ServiceConfig) -> None:
    """Publish generation 0 (untrained policies) when nothing was published yet (an unreadable ``LATEST``
    is left for the learner, which replaces it with its next generation)."""
    try:
        pointer = snapshots.latest_pointer(config.snapshots_dir)
    except SnapshotError as exc:
        log.error("%s The learner will publish a new generation.", exc)
        return
    if pointer is None and not _generation_numbers(config.snapshots_dir):
        primary, shadow = fresh_policies(config)
        snapshots.publish(
            config.snapshots_dir, 0, primary, shadow, {"learned_until": None}, config.keep_generations
        )


def _generation_numbers(directory: Path) -> list[int]:
    """The numbers of the generation directories present (readable or not)."""
    out = []
    for p in directory.glob("gen-*"):
        with contextlib.suppress(ValueError):
            out.append(int(p.name[4:]))
    return out


def _load_newest_readable(directory: Path) -> snapshots.Generation | None:
    """The generation LATEST names, or (when it is corrupt) the newest generation that loads."""
    try:
        return snapshots.load_latest(directory)
    except (SnapshotError, OSError, ValueError) as exc:
        log.error("LATEST unreadable (%s); looking for an older generation", exc)
    for gen_dir in sorted(directory.glob("gen-*"), reverse=True):
        try:
            meta = json.loads((gen_dir / "meta.json").read_text())
            shadow_path = gen_dir / "shadow.npz"
            return snapshots.Generation(
                int(meta["generation"]),
                load_policy(gen_dir / "primary.npz"),
                load_policy(shadow_path) if shadow_path.exists() else None,
                meta,
            )
        except (SnapshotError, OSError, ValueError, KeyError):
            continue
    return None


class Learner:
    """Ingest, learn, publish; see the module docstring. Holds the DuckDB files open for writing."""

    def __init__(self, config: ServiceConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.store = EventStore(config.events_path)
        self.shadow_store = EventStore(config.shadow_path)
        self.svc = duckdb.connect(str(config.service_db_path))
        for ddl in _REWARDS_DDL:
            self.svc.execute(ddl).fetchall()
        self.reader = SegmentReader(config.segments_dir)
        self._catalog_stamp: tuple[int, int] | None = None
        self._reload_catalog()
        try:  # a missing or unreadable LATEST (with generations present) is replaced at once
            pointer_ok = snapshots.latest_pointer(config.snapshots_dir) is not None
        except SnapshotError:
            pointer_ok = False
        gen = _load_newest_readable(config.snapshots_dir)
        primary, shadow = fresh_policies(config)
        meta: dict[str, Any] = {}
        number = 0
        if gen is not None:
            number = gen.number
            if gen.primary.name == config.policy:
                primary, meta = gen.primary, gen.meta
            else:
                log.warning(
                    "configured policy %s differs from the snapshot's %s: starting fresh",
                    config.policy,
                    gen.primary.name,
                )
            if shadow is not None and gen.shadow is not None and gen.shadow.name == config.shadow_policy:
                shadow = gen.shadow
        self.primary, self.shadow, self.number = primary, shadow, number
        # the generation whose model files hold exactly these policies (None: not published as they are)
        self._model_gen: int | None = None
        if gen is not None and gen.primary is primary and gen.shadow is shadow:
            self._model_gen = gen.number
        lu = meta.get("learned_until")
        self.learned_until = -math.inf if lu is None else float(lu)
        now = time.time()
        if self.learned_until > now:  # moved by a client's future timestamp before they were bounded
            log.warning(
                "learned_until %.0f is past the clock (%.0f): resuming from now; decisions logged meanwhile "
                "stay unlearned",
                self.learned_until,
                now,
            )
            self.learned_until = now
        self.art_stats: dict[str, list[float]] = {
            k: list(v) for k, v in meta.get("artwork_stats", {}).items()
        }
        self.rewards_learned = int(meta.get("rewards_learned", 0))
        self._published = gen is not None
        if gen is None or gen.primary is not primary or gen.shadow is not shadow or not pointer_ok:
            self.publish()  # (re)configured, or LATEST is unreadable: publish what this learner holds

    # ---- catalog -----------------------------------------------------------------------------------
    def _reload_catalog(self) -> None:
        stamp = catalog_store.stamp(self.config.catalog_path)
        if stamp == self._catalog_stamp and hasattr(self, "catalog"):
            return
        self.catalog, self.catalog_rev = catalog_store.load_catalog(self.config.catalog_path)
        self.featurizer = Featurizer(self.catalog, self.config.feature_config)
        self._catalog_stamp = stamp

    # ---- ingest ------------------------------------------------------------------------------------
    def ingest(self) -> dict[str, int]:
        """Move new segment records into the stores (idempotent); returns events newly stored per kind.

        A line that is not a well-formed record (wrong shape, missing fields, values the stores refuse) is
        set aside, logged and counted (``keyart_learner_skipped_total{reason="malformed_line"}``); it
        never stops the lines around it from being stored.
        """
        records, offsets = self.reader.read()
        added = {"decisions": 0, "shadow_decisions": 0, "outcomes": 0, "rewards": 0}
        if records:
            pages: list[dict[str, list[Any]]] = []
            shadows: list[dict[str, list[Any]]] = []
            outcomes: list[dict[str, Any]] = []
            rewards: list[tuple[Any, ...]] = []
            for r in records:
                try:
                    self._sort_record(r, pages, shadows, outcomes, rewards)
                except _BAD_RECORD as exc:
                    self._malformed(f"line {str(r)[:80]!r}", exc)
            added["decisions"] = self._store_pages(self.store, pages, count_late=True)
            added["shadow_decisions"] = self._store_pages(self.shadow_store, shadows)
            added["outcomes"] = self._store_outcomes(outcomes)
            if rewards:
                before = self.svc.execute("SELECT count(*) FROM rewards").fetchall()[0][0]
                self.svc.executemany("INSERT OR IGNORE INTO rewards VALUES (?, ?, ?, ?, ?, ?)", rewards)
                added["rewards"] = self.svc.execute("SELECT count(*) FROM rewards").fetchall()[0][0] - before
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

    @staticmethod
    def _sort_record(
        r: Any,
        pages: list[dict[str, list[Any]]],
        shadows: list[dict[str, list[Any]]],
        outcomes: list[dict[str, Any]],
        rewards: list[tuple[Any, ...]],
    ) -> None:
        """Add one segment record to what ingest stores (all of it, or nothing: raises when malformed)."""
        kind = r.get("k") if isinstance(r, dict) else None
        if kind == "page":
            page = _page_columns(r, r, False)
            shadow = _page_columns(r, r["shadow"], True) if r.get("shadow") else None
            pages.append(page)
            if shadow is not None:
                shadows.append(shadow)
        elif kind == "outcomes":
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

    def _store_pages(
        self, store: EventStore, pages: list[dict[str, list[Any]]], count_late: bool = False
    ) -> int:
        """Store expanded pages in one batch; when the batch is refused, page by page, setting aside the
        pages the store refuses."""
        if not pages:
            return 0
        try:
            n = store.append_decisions(_decision_table(_concat(pages)))
            stored = pages
        except _BAD_RECORD:
            n, stored = 0, []
            for page in pages:
                try:
                    n += store.append_decisions(_decision_table(page))
                    stored.append(page)
                except _BAD_RECORD as exc:
                    self._malformed(f"page of request {(page['request_id'] or ['?'])[0]!r}", exc)
        if count_late:
            late = sum(1 for p in stored for ts in p["timestamp"] if ts < self.learned_until)
            if late:  # their window was already learned: stored and evaluable, but not learned from
                self.metrics.late_decisions.inc(late)
        return n

    def _store_outcomes(self, items: list[dict[str, Any]]) -> int:
        """Store outcome events in one batch, or item by item when the batch is refused."""
        if not items:
            return 0
        try:
            return self.store.append_outcomes(self._outcome_table(items))
        except _BAD_RECORD:
            pass
        n = 0
        for it in items:
            try:
                n += self.store.append_outcomes(self._outcome_table([it]))
            except _BAD_RECORD as exc:
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

    # ---- learn ---------------------------------------------------------------------------------------
    def _max_ts(self) -> float | None:
        vals = [
            self.store.connection.execute(f"SELECT max(timestamp) FROM {kind}").fetchall()[0][0]
            for kind in ("decisions", "outcomes")
        ]
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    def as_of(self) -> float | None:
        """The event time up to which events are known: the newest stored timestamp, but never past this
        process's clock (client timestamps are bounded at intake; this bounds what was stored before, so
        no client can move event time, and with it ``learned_until``, into the future)."""
        newest = self._max_ts()
        return None if newest is None else min(newest, time.time())

    def learn(self) -> int:
        """Learn from decisions whose attribution window closed since the last time; returns how many."""
        as_of = self.as_of()
        if as_of is None:
            return 0
        window = self.config.attribution_window_seconds
        hi = as_of - window
        lo = self.learned_until
        self.metrics.learner_lag.set(max(0.0, as_of - (lo if math.isfinite(lo) else as_of)))
        if hi <= lo:
            return 0
        start = None if not math.isfinite(lo) else lo
        first = self.store.connection.execute(
            "SELECT min(timestamp) FROM decisions WHERE timestamp >= ?",
            [start if start is not None else -1e300],
        ).fetchall()[0][0]
        if first is None or first >= hi:  # nothing to learn up to hi: say so, so clients see progress
            self.learned_until = hi
            self.publish()
            return 0
        self._reload_catalog()
        rule = QualityRule(min_seconds=self.config.quality_min_seconds)
        try:
            rt = join_closed(
                self.store, start, hi, window_seconds=window, rule=rule, runtimes=self.catalog, as_of=as_of
            )
        except ValidationError as exc:
            log.warning("nothing to join: %s", exc)
            return 0
        t = rt.table
        ts = t.column("timestamp").to_numpy(zero_copy_only=False)
        fallback = t.column("fallback").to_numpy(zero_copy_only=False)
        fallback = (
            np.asarray([bool(f) for f in fallback]) if fallback.dtype == object else fallback.astype(bool)
        )
        known = set(self.catalog.artworks)
        in_catalog = np.fromiter(
            (all(a in known for a in p) for p in t.column("pool").to_pylist()), bool, t.num_rows
        )
        keep = (ts < hi) & ~fallback & in_catalog
        t = t.filter(pa.array(keep))
        n = t.num_rows
        if n:
            t = self._direct_rewards(t)
            n -= self._update(RewardTable(t, rt.report))
        self.learned_until = hi
        self.rewards_learned += n
        self.metrics.rewards_joined.inc(n)
        self.metrics.learner_lag.set(max(0.0, as_of - hi))
        self.publish()  # also when nothing was learned: learned_until moved, and clients wait on it
        return n

    def direct_rewards(self, t: pa.Table) -> dict[str, float]:
        """The rewards reported directly for the decisions of ``t`` (decision id -> the highest one).

        A reward named by decision id applies to it; one named by member and title applies to their
        latest stored decision at or before the reward, inside the attribution window. The latter are
        resolved here, when the decisions are learned, not when the reward is ingested: the decision's
        line may come from another worker's segment and be ingested after the reward.
        """
        ids = t.column("event_id").to_pylist()
        rows = self.svc.execute(
            "SELECT decision_id, max(reward) FROM rewards WHERE decision_id IN (SELECT unnest(?)) GROUP BY 1",
            [ids],
        ).fetchall()
        out: dict[str, float] = {str(d): float(r) for d, r in rows}
        if not ids:
            return out
        window = self.config.attribution_window_seconds
        ts = t.column("timestamp").to_numpy(zero_copy_only=False)
        members = sorted(set(t.column("member_id").to_pylist()))
        keyed = self.svc.execute(
            "SELECT member_id, title_id, reward, timestamp FROM rewards WHERE decision_id IS NULL "
            "AND member_id IN (SELECT unnest(?)) AND timestamp >= ? AND timestamp <= ?",
            [members, float(ts.min()), float(ts.max()) + window],
        ).fetchall()
        if not keyed:
            return out
        con = self.store.connection
        m, tt, r, rts = (list(c) for c in zip(*keyed, strict=True))
        con.register("_keyed_rewards", pa.table({"m": m, "t": tt, "r": r, "ts": rts}))
        try:
            resolved = con.execute(
                "SELECT r.r, (SELECT d.event_id FROM decisions d "
                "WHERE d.member_id = r.m AND d.title_id = r.t "
                "AND d.timestamp <= r.ts AND d.timestamp >= r.ts - ? "
                "ORDER BY d.timestamp DESC, d.event_id DESC LIMIT 1) FROM _keyed_rewards r",
                [window],
            ).fetchall()
        finally:
            con.unregister("_keyed_rewards")
        wanted = set(ids)
        for reward, did in resolved:
            if did in wanted:
                out[did] = max(float(reward), out.get(did, -math.inf))
        return out

    def _direct_rewards(self, t: pa.Table) -> pa.Table:
        """Replace the joined label by the reward reported directly for a decision, when there is one."""
        direct = self.direct_rewards(t)
        if not direct:
            return t
        ids = t.column("event_id").to_pylist()
        reward = t.column("reward").to_numpy(zero_copy_only=False).copy()
        for i, d in enumerate(ids):
            if d in direct:
                reward[i] = direct[d]
        return t.set_column(t.schema.get_field_index("reward"), "reward", pa.array(reward))

    def _update(self, rewards: RewardTable) -> int:
        """Update the policies in chunks; returns how many rows were set aside.

        A chunk whose featurization or update fails validation (features so large that the statistics
        overflow) is split in halves down to single rows, per policy (an invalid update changes nothing),
        so only the offending rows are set aside (logged, counted) and every other row is learned once.
        """
        t = rewards.table
        self._model_gen = None  # the policies change: the next publish writes them
        policies = [p for p in (self.primary, self.shadow) if p is not None]
        bad: set[int] = set()
        for s in range(0, t.num_rows, CHUNK):
            part = t.slice(s, CHUNK)
            try:
                fb = RewardTable(part, rewards.report).to_feedback(self.featurizer)
            except ValidationError:
                fb = None
            for policy in policies:
                if fb is not None:
                    try:
                        policy.update(fb)
                        continue
                    except ValidationError:
                        pass
                bad.update(s + i for i in self._update_split(policy, part, rewards.report))
        if bad:
            ids = t.column("event_id").to_pylist()
            log.warning(
                "%d decisions set aside: their update failed validation (e.g. %s)",
                len(bad),
                ", ".join(ids[i] for i in sorted(bad)[:3]),
            )
            self.metrics.learner_skipped.labels("invalid_update").inc(len(bad))
        shown = t.column("artwork_id").to_pylist()
        reward = t.column("reward").to_numpy(zero_copy_only=False)
        for i, (a, r) in enumerate(zip(shown, reward.tolist(), strict=True)):
            if i in bad:
                continue
            st = self.art_stats.setdefault(a, [0.0, 0.0])
            st[0] += r
            st[1] += 1.0
        return len(bad)

    def _update_split(self, policy: Policy, t: pa.Table, report: Any) -> list[int]:
        """Update ``policy`` with the rows of ``t``, halving on a validation failure; the rows that fail
        alone are not learned and are returned (indices into ``t``)."""
        try:
            policy.update(RewardTable(t, report).to_feedback(self.featurizer))
            return []
        except ValidationError:
            if t.num_rows <= 1:
                return list(range(t.num_rows))
        h = t.num_rows // 2
        left = self._update_split(policy, t.slice(0, h), report)
        return left + [h + i for i in self._update_split(policy, t.slice(h), report)]

    def publish(self) -> None:
        """Publish the current policies as the next generation.

        When they did not change since they were last published (only ``learned_until``, the defaults or
        the catalog revision moved), the generation reuses that generation's model files
        (``snapshots.publish_meta``): no model is written, and workers keep the policies they hold.
        """
        # the next number from this learner's own state (never from LATEST, which may be unreadable),
        # past every generation directory present; LATEST is then replaced
        taken = _generation_numbers(self.config.snapshots_dir)
        if self._published or taken:
            self.number = max([self.number, *taken]) + 1
        self._published = True
        meta = {
            "learned_until": None if not math.isfinite(self.learned_until) else self.learned_until,
            "artwork_stats": self.art_stats,
            "defaults": best_unpersonalized(self.art_stats, self.catalog),
            "rewards_learned": self.rewards_learned,
            "policy": self.primary.name,
            "model_version": self.primary.version_,
            "catalog_rev": self.catalog_rev,
        }
        directory, keep = self.config.snapshots_dir, self.config.keep_generations
        base = self._model_gen
        if base is None or snapshots.publish_meta(directory, self.number, base, meta, keep) is None:
            snapshots.publish(directory, self.number, self.primary, self.shadow, meta, keep)
        self._model_gen = self.number  # the newest generation holding these policies (links or not)
        self.metrics.published_generation.set(self.number)

    def step(self) -> dict[str, int]:
        added = self.ingest()
        added["learned"] = self.learn()
        return added

    def close(self) -> None:
        self.store.close()
        self.shadow_store.close()
        self.svc.close()


def _page_columns(r: dict[str, Any], part: dict[str, Any], shadow: bool) -> dict[str, list[Any]]:
    """One logged page (or its shadow part) as decision columns; raises when the line is malformed."""
    titles = list(r["title_ids"])
    n = len(titles)
    pools = [list(p) for p in r["pools"]]
    index = [int(i) for i in part["index"]]
    explored = [bool(e) for e in part["explored"]]
    ids = list(part["decision_ids"])
    if not len(pools) == len(index) == len(explored) == len(ids) == n:
        raise ValueError(f"a page of {n} titles has columns of other lengths")
    probs = page_probabilities(part, [len(p) for p in pools])
    if len(probs) != n:
        raise ValueError(f"a page of {n} titles has {len(probs)} probability rows")
    ts = float(r["timestamp"])
    return {
        "event_id": ids,
        "request_id": [r["request_id"]] * n,
        "timestamp": [ts] * n,
        "member_id": [r["member_id"]] * n,
        "title_id": titles,
        "page": [r.get("page")] * n,
        "position": list(range(n)),
        "context_json": [r["context_json"]] * n,
        "pool": pools,
        "probabilities": probs,
        "chosen_index": index,
        "artwork_id": [pools[i][j] for i, j in enumerate(index)],
        "propensity": [probs[i][j] for i, j in enumerate(index)],
        "policy": [part["policy"]] * n,
        "model_version": [int(part["model_version"])] * n,
        "explored": explored,
        "fallback": [False if shadow else bool(r.get("fallback", False))] * n,
    }


def _concat(pages: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """The columns of several pages, one after the other."""
    if len(pages) == 1:
        return pages[0]
    out: dict[str, list[Any]] = {k: [] for k in pages[0]}
    for page in pages:
        for k, v in page.items():
            out[k] += v
    return out


def _decision_table(cols: dict[str, list[Any]]) -> pa.Table:
    fields = [f for f in DECISION_SCHEMA if f.name != "features"]
    arrays = {f.name: pa.array(cols[f.name], f.type) for f in fields}
    return pa.table(arrays)


# ---- the learner process ---------------------------------------------------------------------------


def run_learner(config_text: str, stop: threading.Event | None = None) -> None:
    """Run the learner until SIGTERM/SIGINT (or ``stop``), or until the parent process goes away.

    Takes an exclusive lock on ``learner.lock`` first: a second learner on the same state directory
    waits as a standby instead of fighting over the DuckDB files.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    with contextlib.suppress(OSError):
        os.nice(5)  # serving first (CFS weight ~1/3): the learner only needs to keep up on average
    config = ServiceConfig.from_json(config_text)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s learner %(levelname)s %(message)s")
    parent = os.getppid()
    config.root.mkdir(parents=True, exist_ok=True)
    with open(config.root / "learner.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop.wait(0.5):
                    return
        learner = Learner(config)
        heartbeat = write_heartbeat(config.root)
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    learner.step()
                except Exception:  # bad records are set aside inside step; anything else is retried
                    log.exception("learner step failed; retrying next interval")
                beat(heartbeat)
                if os.getppid() != parent:
                    break
                stop.wait(max(0.0, config.learn_interval_seconds - (time.monotonic() - t0)))
            learner.ingest()
        finally:
            learner.close()


_ASKED_TO_STOP = (0, -signal.SIGTERM, -signal.SIGINT)  # exit codes of a learner that was told to stop


class LearnerSupervisor:
    """Runs ``run_learner`` in a child process and starts it again, after a backoff, whenever it exits
    unasked (a crash, SIGKILL; not SIGTERM or SIGINT): 1 s, doubling up to ``max_backoff``, back to 1 s
    once it has run for a minute. ``stop`` ends it (SIGTERM: it ingests what is left and exits)."""

    def __init__(self, config_text: str, max_backoff: float = 30.0) -> None:
        self.config_text = config_text
        self.max_backoff = max_backoff
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ctx = multiprocessing.get_context("spawn")
        self.proc: multiprocessing.process.BaseProcess | None = None
        self._started = 0.0
        self._thread = threading.Thread(target=self._watch, name="keyart-learner-supervisor", daemon=True)

    def start(self) -> LearnerSupervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self.proc = self._ctx.Process(
                target=run_learner, args=(self.config_text,), name="keyart-learner", daemon=False
            )
            self.proc.start()
            self._started = time.monotonic()

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(0.5):
            proc = self.proc
            if proc is None or proc.is_alive():
                if time.monotonic() - self._started > 60.0:
                    backoff = 1.0
                continue
            if proc.exitcode in _ASKED_TO_STOP:  # SIGTERM/SIGINT, handled or not yet: not a failure
                continue
            log.error("the learner exited (code %s); restarting it in %.0f s", proc.exitcode, backoff)
            if self._stop.wait(backoff):
                return
            backoff = min(2 * backoff, self.max_backoff)
            self.restarts += 1
            self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop supervising, then the learner (SIGTERM, SIGKILL after ``timeout``)."""
        with self._lock:
            self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        proc = self.proc
        if proc is not None:
            proc.terminate()
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


__all__ = ["Learner", "LearnerSupervisor", "ensure_initial_generation", "run_learner"]
