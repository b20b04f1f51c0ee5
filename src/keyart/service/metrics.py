"""Prometheus metrics of the service (latency, decisions per policy, exploration, fallbacks, rewards
joined, learner lag), shared across worker processes through prometheus_client's multiprocess mode.

``keyart serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before anything imports prometheus_client (which
picks its mode at import) and before any worker starts, so each process writes its samples to
memory-mapped files there and ``/metrics`` on any worker aggregates all of them. Without it
(tests in one process), each ``Metrics`` has a private registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from keyart.service.config import MULTIPROC_ENV

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The service's metric families, registered on a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "keyart_request_latency_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "keyart_decisions_total", "Title decisions served, by policy.", ["policy"], registry=r
        )
        self.explored = Counter(
            "keyart_explored_decisions_total",
            "Decisions whose shown artwork was not the policy's best guess, by policy (explored share = "
            "keyart_explored_decisions_total / keyart_decisions_total; the series exists, at 0, as soon as "
            "the policy has decided).",
            ["policy"],
            registry=r,
        )
        self.fallbacks = Counter(
            "keyart_fallbacks_total",
            "Title decisions answered with a default artwork, by reason.",
            ["reason"],
            registry=r,
        )
        self.shadow_decisions = Counter(
            "keyart_shadow_decisions_total", "Decisions logged by a shadow policy.", ["policy"], registry=r
        )
        self.outcomes = Counter("keyart_outcomes_total", "Outcomes accepted, by kind.", ["kind"], registry=r)
        self.unmatched_outcomes = Counter(
            "keyart_unmatched_outcomes_total",
            "Outcomes accepted that name a decision_id this deployment never issued (they join nothing).",
            registry=r,
        )
        self.rejected = Counter(
            "keyart_rejected_requests_total", "Requests refused with a 4xx.", ["status"], registry=r
        )
        self.rewards_joined = Counter(
            "keyart_rewards_joined_total", "Decisions whose reward was joined and learned from.", registry=r
        )
        self.late_decisions = Counter(
            "keyart_late_decisions_total",
            "Decisions ingested after their attribution window was learned (stored, not learned from).",
            registry=r,
        )
        self.learner_skipped = Counter(
            "keyart_learner_skipped_total",
            "What the learner set aside, by reason: malformed segment lines (malformed_line), decisions "
            "whose policy update failed validation (invalid_update).",
            ["reason"],
            registry=r,
        )
        self.log_failures = Counter(
            "keyart_event_log_failures_total",
            "Requests answered 503 because their events could not be logged (not acknowledged).",
            ["endpoint"],
            registry=r,
        )
        self.events_ingested = Counter(
            "keyart_events_ingested_total", "Events moved from segments into the store.", ["kind"], registry=r
        )
        self.learner_busy = Counter(
            "keyart_learner_busy_seconds_total",
            "Seconds the learner spent in its cycles (ingest, learn, publish); the rest it waited.",
            registry=r,
        )
        mode = {"multiprocess_mode": "max"}
        self.learner_lag = Gauge(
            "keyart_learner_lag_seconds",
            "Event time between the newest stored event and the newest event learned from.",
            registry=r,
            **mode,
        )
        self.ingest_backlog = Gauge(
            "keyart_ingest_backlog_bytes",
            "Segment bytes not yet ingested into the store.",
            registry=r,
            **mode,
        )
        self.generation = Gauge(
            "keyart_model_generation", "Model generation served (max over workers).", registry=r, **mode
        )
        self.model_ok = Gauge(
            "keyart_model_ok",
            "1 when this process serves a verified model generation, 0 when it answers with default "
            "artworks because no good generation exists (min over live workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.snapshot_skipped = Counter(
            "keyart_snapshot_skipped_total",
            "Model generations (or a LATEST pointer) passed over because they were missing, damaged or "
            "unreadable, by the process that skipped them (worker, learner).",
            ["process"],
            registry=r,
        )
        self.published_generation = Gauge(
            "keyart_published_generation", "Latest generation published by the learner.", registry=r, **mode
        )
        self.follow_problem = Gauge(
            "keyart_follow_model_problem",
            "Follow mode: 1 for the reason this process does not serve the shared directory's newest "
            "generation (missing, unreadable, damaged, none_published), 0 for the others (max over workers).",
            ["reason"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.events_exported = Counter(
            "keyart_follow_events_written_total",
            "Follow mode: events the node's Parquet sink wrote to the shared events directory, by kind.",
            ["kind"],
            registry=r,
        )

        self._children: dict[tuple[int, str], Any] = {}

    def child(self, family: Any, label: str) -> Any:
        """``family.labels(label)``, cached (``labels`` takes a lock and builds a key on every call)."""
        key = (id(family), label)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = family.labels(label)
        return c

    def count_page(self, policy: str, n: int, explored: int, reason: str | None, shadow: str | None) -> None:
        """The counters of one decided page of ``n`` titles (a few increments per page, not per title).
        The explored counter is touched even at 0, so the explored share is defined from the first page."""
        child = self.child
        child(self.decisions, policy).inc(n)
        child(self.explored, policy).inc(explored)
        if reason is not None:
            child(self.fallbacks, reason).inc(n)
        if shadow is not None:
            child(self.shadow_decisions, shadow).inc(n)

    def render(self) -> bytes:
        """The text exposition of all processes' samples (multiprocess) or this registry's."""
        path = multiprocess_dir()
        if path:
            reg = CollectorRegistry()
            MultiProcessCollector(reg, path=path)
            return generate_latest(reg)
        return generate_latest(self.registry)


def prepare_multiprocess_dir(directory: Path) -> None:
    """Empty the multiprocess metrics directory (stale files of a previous run would be summed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.glob("*.db"):
        p.unlink(missing_ok=True)


def process_exited(pid: int) -> None:
    if multiprocess_dir():
        mark_process_dead(pid)
