"""The background learner: the one process that writes the DuckDB files.

Every ``learn_interval_seconds`` it (1) ingests new segment lines from all workers into the event store
(decisions, outcomes), the shadow store (shadow decisions) and the service database (direct rewards),
idempotently; (2) joins rewards for decisions whose attribution window has closed (``keyart.rewards``),
rebuilds their features from the logged contexts, and updates the serving and shadow policies; (3)
publishes the result as a new generation (``keyart.service.snapshots``). The time up to which rewards
were learned is saved inside each generation, so a restarted learner resumes exactly where the served
model stands: no reward is learned twice or skipped.

``Learner`` holds the learner's state and runs the cycle; its steps live beside it: ``keyart.service.ingest``
(segment lines into the stores), ``keyart.service.training`` (reward join, direct rewards, policy
updates), and ``keyart.service.supervisor`` (the learner process, its lock and its restarts).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from keyart.errors import SnapshotError
from keyart.features import Featurizer
from keyart.policies import Policy, make_policy
from keyart.rewards import RewardTable
from keyart.service import catalog_store, snapshots
from keyart.service.config import ServiceConfig
from keyart.service.fallbacks import best_unpersonalized
from keyart.service.ingest import Ingest, open_rewards_db
from keyart.service.metrics import Metrics
from keyart.service.training import (
    LearnerFeaturizer,
    add_artwork_stats,
    closed_rewards,
    direct_rewards,
    update_policies,
    with_direct_rewards,
)
from keyart.store import EventStore

log = logging.getLogger("keyart.service.learner")


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


def publish_trained(
    config: ServiceConfig, primary: Policy | None, shadow: Policy | None, learned_until: float | None
) -> None:
    """Publish policies trained offline (``keyart train``) as the next generation: the serving one
    learned up to ``learned_until`` (the learner goes on from there; None: from the first stored
    decision) and/or the shadow one. The one not given is the latest generation's (else a fresh one),
    and with it its ``learned_until``."""
    numbers = _generation_numbers(config.snapshots_dir)
    latest = snapshots.load_newest_good(config.snapshots_dir).generation if numbers else None
    fresh_primary, fresh_shadow = fresh_policies(config)
    meta: dict[str, Any] = {"learned_until": learned_until}
    if primary is None:
        primary = latest.primary if latest is not None else fresh_primary
        meta = {"learned_until": None if latest is None else latest.meta.get("learned_until")}
    if shadow is None and config.shadow_policy is not None:
        same = latest is not None and latest.shadow is not None and latest.shadow.name == config.shadow_policy
        shadow = latest.shadow if same else fresh_shadow  # type: ignore[union-attr]
    number = max(numbers) + 1 if numbers else 0
    snapshots.publish(config.snapshots_dir, number, primary, shadow, meta, config.keep_generations)


def _generation_numbers(directory: Path) -> list[int]:
    """The numbers of the generation directories present (readable or not)."""
    return [number for number, _ in snapshots.generation_dirs(directory)]


class Learner:
    """Ingest, learn, publish; see the module docstring. Holds the DuckDB files open for writing."""

    def __init__(self, config: ServiceConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.store = EventStore(config.events_path)
        self.shadow_store = EventStore(config.shadow_path)
        self.svc = open_rewards_db(config.service_db_path)
        for con in (self.store.connection, self.shadow_store.connection, self.svc):
            con.execute("SET enable_progress_bar = false")  # no progress bars in the server's log
        self._ingest = Ingest(
            config.segments_dir,
            self.store,
            self.shadow_store,
            self.svc,
            self.metrics,
            batch_bytes=config.ingest_batch_bytes,
        )
        self.reader = self._ingest.reader
        self._catalog_stamp: tuple[int, int, int] | None = None
        self._reload_catalog()
        # the newest generation that verifies: a damaged or missing one, or a missing or garbage LATEST,
        # is skipped (and replaced below by a new generation, so workers find a good one under LATEST)
        found = snapshots.load_newest_good(config.snapshots_dir)
        for problem in found.skipped:
            self.metrics.child(self.metrics.snapshot_skipped, "learner").inc()
            log.error("model generation not loaded: %s", problem)
        gen, pointer_ok = found.generation, found.is_latest
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
            if config.seed is None and getattr(primary, "seed", None) == 0:
                log.warning(
                    "the served policy's exploration key is 0, the old shared default: every deployment "
                    "with it explores alike; pass --seed, or start a fresh state directory to get its own key"
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
        self.capped = False  # the last learn() stopped at learn_batch_decisions, short of what is closed
        self._published = gen is not None
        if gen is None or gen.primary is not primary or gen.shadow is not shadow or not pointer_ok:
            self.publish()  # (re)configured, or LATEST is not what was loaded: publish what this holds

    # ---- catalog -----------------------------------------------------------------------------------
    def _reload_catalog(self) -> None:
        stamp = catalog_store.stamp(self.config.catalog_path)
        if stamp == self._catalog_stamp and hasattr(self, "catalog"):
            return
        self.catalog, self.catalog_rev = catalog_store.load_catalog(self.config.catalog_path)
        self._featurizers: list[LearnerFeaturizer] = []
        self._new_features = self.config.new_model_features(self.catalog)
        self._catalog_stamp = stamp

    def featurizer_for(self, policy: Policy) -> Featurizer:
        """A featurizer of the current catalog for ``policy``'s model: its recorded features, or for a model
        that learned nothing yet ``ServiceConfig.new_model_features`` of the catalog. It grows its exact
        vocabularies with new catalog values and requests' countries, languages and devices
        (``grow=True``), and the model grows with it when it meets the wider rows. Policies whose features
        agree share one (a page is featurized once)."""
        features = self.config.features_for(policy, self._new_features)
        for found in self._featurizers:
            if found.config.column_map(features) is not None:  # the model's, or grown past it
                return found
        found = LearnerFeaturizer(self.catalog, features, grow=True)
        self._featurizers = [*self._featurizers[-1:], found]  # at most the primary's and the shadow's
        return found

    # ---- ingest (keyart.service.ingest) -------------------------------------------------------------
    def ingest(self) -> dict[str, int]:
        """Move new segment records into the stores (idempotent); returns events newly stored per kind.

        A line that is not a well-formed record (wrong shape, missing fields, values the stores refuse) is
        set aside, logged and counted (``keyart_learner_skipped_total{reason="malformed_line"}``); it
        never stops the lines around it from being stored.
        """
        return self._ingest.run(self.learned_until)

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

    def learnable_until(self) -> float | None:
        """The event time up to which decisions may be learned now (their attribution window closed:
        ``as_of`` less the window), or None before any event."""
        as_of = self.as_of()
        return None if as_of is None else as_of - self.config.attribution_window_seconds

    def learn_lag(self) -> float:
        """Event-time seconds of closed decisions not learned yet (0 when learning keeps up)."""
        hi = self.learnable_until()
        if hi is None:
            return 0.0
        lo = self.learned_until
        if not math.isfinite(lo):  # nothing learned yet: from the first stored decision
            first = self._first_decision(None, hi)
            if first is None:
                return 0.0
            lo = first
        return max(0.0, hi - lo)

    def _first_decision(self, start: float | None, end: float) -> float | None:
        """The timestamp of the first stored decision in ``[start, end)`` (None: there is none)."""
        return self.store.connection.execute(
            "SELECT min(timestamp) FROM decisions WHERE timestamp >= ? AND timestamp < ?",
            [start if start is not None else -1e300, end],
        ).fetchall()[0][0]

    def _batch_end(self, first: float, hi: float) -> float:
        """Where this cycle's learning stops: ``hi``, or earlier so that about ``learn_batch_decisions``
        decisions are learned (a page's decisions share a timestamp and are never split; at least the
        decisions at ``first`` are taken, so every cycle makes progress)."""
        con, n = self.store.connection, self.config.learn_batch_decisions
        row = con.execute(
            "SELECT timestamp FROM decisions WHERE timestamp >= ? AND timestamp < ? "
            "ORDER BY timestamp LIMIT 1 OFFSET ?",
            [first, hi, n],
        ).fetchall()
        if not row:
            return hi  # at most n decisions are waiting
        end = float(row[0][0])
        if end <= first:  # more than n decisions at the first timestamp: take them all
            after = con.execute(
                "SELECT min(timestamp) FROM decisions WHERE timestamp > ? AND timestamp < ?", [first, hi]
            ).fetchall()[0][0]
            end = hi if after is None else float(after)
        return end

    def learn(self) -> int:
        """Learn from decisions whose attribution window closed since the last time, at most about
        ``learn_batch_decisions`` per call (the rest is left for the next cycle); returns how many."""
        as_of = self.as_of()
        if as_of is None:
            return 0
        window = self.config.attribution_window_seconds
        hi = as_of - window
        lo = self.learned_until
        self.metrics.learner_lag.set(max(0.0, as_of - (lo if math.isfinite(lo) else as_of)))
        self.capped = False
        if hi <= lo:
            return 0
        start = None if not math.isfinite(lo) else lo
        first = self._first_decision(start, hi)
        if first is None:  # nothing to learn up to hi: say so, so clients see progress
            self.learned_until = hi
            self.publish()
            return 0
        end = self._batch_end(first, hi)
        self.capped = end < hi
        hi = end
        self._reload_catalog()
        rt = closed_rewards(
            self.store,
            self.catalog,
            start,
            hi,
            window=window,
            quality_seconds=self.config.quality_min_seconds,
            as_of=as_of,
        )
        if rt is None:
            return 0
        n = rt.table.num_rows
        if n:
            t = with_direct_rewards(rt.table, self.direct_rewards(rt.table))
            n -= self._update(RewardTable(t, rt.report))
        self.learned_until = hi
        self.rewards_learned += n
        self.metrics.rewards_joined.inc(n)
        self.metrics.learner_lag.set(max(0.0, as_of - hi))
        self.publish()  # also when nothing was learned: learned_until moved, and clients wait on it
        return n

    def direct_rewards(self, t: pa.Table) -> dict[str, float]:
        """The rewards reported directly for the decisions of ``t`` (decision id -> the highest one; see
        ``keyart.service.training.direct_rewards``)."""
        return direct_rewards(self.svc, self.store, t, self.config.attribution_window_seconds)

    def _update(self, rewards: RewardTable) -> int:
        """Update the policies and the artwork statistics; returns how many rows were set aside."""
        self._model_gen = None  # the policies change: the next publish writes them
        policies = [p for p in (self.primary, self.shadow) if p is not None]
        bad = update_policies(policies, rewards, [self.featurizer_for(p) for p in policies], self.metrics)
        add_artwork_stats(self.art_stats, rewards.table, bad)
        return len(bad)

    def publish(self) -> None:
        """Publish the current policies as the next generation.

        When they did not change since they were last published (only ``learned_until``, the defaults or
        the catalog revision moved), the generation reuses that generation's model files
        (``snapshots.publish_meta``: verified copies): no model is serialized, and workers keep the policies
        they hold.
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
        """One cycle: ingest (at most ``ingest_batch_bytes``), learn (at most about
        ``learn_batch_decisions``), publish; returns what was stored and learned."""
        added = self.ingest()
        added["learned"] = self.learn()
        return added

    def behind(self) -> bool:
        """Whether a full batch is still waiting after this cycle, to ingest or to learn: the next cycle
        should start at once rather than after ``learn_interval_seconds``."""
        return self.capped or self.reader.pending_bytes() >= self.config.ingest_batch_bytes

    def close(self) -> None:
        self.store.close()
        self.shadow_store.close()
        self.svc.close()


__all__ = ["Learner", "ensure_initial_generation", "fresh_policies"]
