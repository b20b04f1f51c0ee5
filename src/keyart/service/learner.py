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

from keyart.errors import KeyartError, SnapshotError, ValidationError
from keyart.events import DECISION_SCHEMA, OUTCOME_SCHEMA
from keyart.features import Featurizer
from keyart.policies import Policy, load_policy, make_policy
from keyart.rewards import QualityRule, RewardTable, join_closed
from keyart.service import catalog_store, snapshots
from keyart.service.config import ServiceConfig
from keyart.service.fallbacks import best_unpersonalized
from keyart.service.metrics import Metrics
from keyart.service.segments import SegmentReader, page_probabilities
from keyart.store import EventStore

log = logging.getLogger("keyart.service.learner")
UNKNOWN = "?"  # member/title of an outcome whose decision id matches no stored decision
CHUNK = 4096  # events per policy update (bounds the feature tensor's memory)

_REWARDS_DDL = """
CREATE TABLE IF NOT EXISTS rewards (
    event_id VARCHAR PRIMARY KEY, decision_id VARCHAR NOT NULL, reward DOUBLE NOT NULL,
    timestamp DOUBLE NOT NULL
)"""


def fresh_policies(config: ServiceConfig) -> tuple[Policy, Policy | None]:
    primary = make_policy(config.policy, **config.policy_kwargs())
    shadow = (
        make_policy(config.shadow_policy, **config.policy_kwargs(shadow=True))
        if config.shadow_policy
        else None
    )
    return primary, shadow


def ensure_initial_generation(config: ServiceConfig) -> None:
    """Publish generation 0 (untrained policies) when nothing was published yet."""
    if snapshots.latest_pointer(config.snapshots_dir) is None:
        primary, shadow = fresh_policies(config)
        snapshots.publish(
            config.snapshots_dir, 0, primary, shadow, {"learned_until": None}, config.keep_generations
        )


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
        self.svc.execute(_REWARDS_DDL).fetchall()
        self.reader = SegmentReader(config.segments_dir)
        self._catalog_stamp: tuple[int, int] | None = None
        self._reload_catalog()
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
        self.art_stats: dict[str, list[float]] = {
            k: list(v) for k, v in meta.get("artwork_stats", {}).items()
        }
        self.rewards_learned = int(meta.get("rewards_learned", 0))
        if gen is None or gen.primary is not primary or gen.shadow is not shadow:  # (re)configured
            self.publish()

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
        """Move new segment records into the stores (idempotent); returns events newly stored per kind."""
        records, offsets = self.reader.read()
        added = {"decisions": 0, "shadow_decisions": 0, "outcomes": 0, "rewards": 0}
        if records:
            dec: dict[str, list[Any]] = defaultdict(list)
            sh: dict[str, list[Any]] = defaultdict(list)
            outcomes: list[dict[str, Any]] = []
            rewards: list[tuple[str, str, float, float]] = []
            for r in records:
                kind = r.get("k")
                if kind == "page":
                    _expand_page(r, dec, r, False)
                    if r.get("shadow"):
                        _expand_page(r, sh, r["shadow"], True)
                elif kind == "outcomes":
                    for it in r["items"]:
                        if it.get("event_type") is not None:
                            outcomes.append(it)
                        if it.get("reward") is not None:
                            rewards.append(it)
            if dec:
                late = sum(1 for ts in dec["timestamp"] if ts < self.learned_until)
                if late:  # their window was already learned: stored and evaluable, but not learned from
                    self.metrics.late_decisions.inc(late)
                added["decisions"] = self.store.append_decisions(_decision_table(dec))
            if sh:
                added["shadow_decisions"] = self.shadow_store.append_decisions(_decision_table(sh))
            if outcomes:
                added["outcomes"] = self.store.append_outcomes(self._outcome_table(outcomes))
            if rewards:
                rows = [
                    (
                        it["event_id"],
                        it.get("decision_id") or self._latest_decision(it),
                        float(it["reward"]),
                        float(it["timestamp"]),
                    )
                    for it in rewards
                ]
                before = self.svc.execute("SELECT count(*) FROM rewards").fetchall()[0][0]
                self.svc.executemany("INSERT OR IGNORE INTO rewards VALUES (?, ?, ?, ?)", rows)
                added["rewards"] = self.svc.execute("SELECT count(*) FROM rewards").fetchall()[0][0] - before
            self.reader.commit(offsets)
            self.reader.prune()
            for k, v in added.items():
                if v:
                    self.metrics.events_ingested.labels(k).inc(v)
        self.metrics.ingest_backlog.set(self.reader.pending_bytes())
        return added

    def _latest_decision(self, item: dict[str, Any]) -> str:
        """The decision a reward named by member and title belongs to: the latest one for them at or
        before the reward, inside the attribution window (``UNKNOWN`` when there is none)."""
        ts = float(item["timestamp"])
        rows = self.store.connection.execute(
            "SELECT event_id FROM decisions WHERE member_id = ? AND title_id = ? AND timestamp <= ? "
            "AND timestamp >= ? ORDER BY timestamp DESC, event_id DESC LIMIT 1",
            [item["member_id"], item["title_id"], ts, ts - self.config.attribution_window_seconds],
        ).fetchall()
        return str(rows[0][0]) if rows else UNKNOWN

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

    def learn(self) -> int:
        """Learn from decisions whose attribution window closed since the last time; returns how many."""
        as_of = self._max_ts()
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
            self._update(RewardTable(t, rt.report))
        self.learned_until = hi
        self.rewards_learned += n
        self.metrics.rewards_joined.inc(n)
        self.metrics.learner_lag.set(max(0.0, as_of - hi))
        self.publish()  # also when nothing was learned: learned_until moved, and clients wait on it
        return n

    def _direct_rewards(self, t: pa.Table) -> pa.Table:
        """Replace the joined label by the reward reported directly for a decision, when there is one."""
        ids = t.column("event_id").to_pylist()
        rows = self.svc.execute(
            "SELECT decision_id, max(reward) FROM rewards WHERE decision_id IN (SELECT unnest(?)) GROUP BY 1",
            [ids],
        ).fetchall()
        if not rows:
            return t
        direct = dict(rows)
        reward = t.column("reward").to_numpy(zero_copy_only=False).copy()
        for i, d in enumerate(ids):
            if d in direct:
                reward[i] = direct[d]
        return t.set_column(t.schema.get_field_index("reward"), "reward", pa.array(reward))

    def _update(self, rewards: RewardTable) -> None:
        t = rewards.table
        self._model_gen = None  # the policies change: the next publish writes them
        for s in range(0, t.num_rows, CHUNK):
            part = RewardTable(t.slice(s, CHUNK), rewards.report)
            fb = part.to_feedback(self.featurizer)
            self.primary.update(fb)
            if self.shadow is not None:
                self.shadow.update(fb)
        shown = t.column("artwork_id").to_pylist()
        reward = t.column("reward").to_numpy(zero_copy_only=False)
        for a, r in zip(shown, reward.tolist(), strict=True):
            st = self.art_stats.setdefault(a, [0.0, 0.0])
            st[0] += r
            st[1] += 1.0

    def publish(self) -> None:
        """Publish the current policies as the next generation.

        When they did not change since they were last published (only ``learned_until``, the defaults or
        the catalog revision moved), the generation reuses that generation's model files
        (``snapshots.publish_meta``): no model is written, and workers keep the policies they hold.
        """
        self.number += 1 if snapshots.latest_pointer(self.config.snapshots_dir) is not None else 0
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


def _expand_page(r: dict[str, Any], cols: dict[str, list[Any]], part: dict[str, Any], shadow: bool) -> None:
    """Append one logged page (or its shadow part) to decision columns."""
    titles = r["title_ids"]
    n = len(titles)
    pools = r["pools"]
    index = part["index"]
    probs = page_probabilities(part, [len(p) for p in pools])
    cols["event_id"] += part["decision_ids"]
    cols["request_id"] += [r["request_id"]] * n
    cols["timestamp"] += [float(r["timestamp"])] * n
    cols["member_id"] += [r["member_id"]] * n
    cols["title_id"] += titles
    cols["page"] += [r.get("page")] * n
    cols["position"] += list(range(n))
    cols["context_json"] += [r["context_json"]] * n
    cols["pool"] += pools
    cols["probabilities"] += probs
    cols["chosen_index"] += index
    cols["artwork_id"] += [pools[i][j] for i, j in enumerate(index)]
    cols["propensity"] += [probs[i][j] for i, j in enumerate(index)]
    cols["policy"] += [part["policy"]] * n
    cols["model_version"] += [int(part["model_version"])] * n
    cols["explored"] += part["explored"]
    cols["fallback"] += [False if shadow else bool(r.get("fallback", False))] * n


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
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    learner.step()
                except (KeyartError, duckdb.Error, OSError, ValueError):
                    log.exception("learner step failed; retrying next interval")
                if os.getppid() != parent:
                    break
                stop.wait(max(0.0, config.learn_interval_seconds - (time.monotonic() - t0)))
            learner.ingest()
        finally:
            learner.close()


__all__ = ["Learner", "ensure_initial_generation", "run_learner"]
