"""The learner keeps making progress under sustained load (issue 13): every cycle's work is bounded
(``ingest_batch_bytes`` read, about ``learn_batch_decisions`` learned), so a backlog is worked off in
many small published steps instead of one cycle that lasts as long as the load; when it cannot keep
up it says so (``learn_lag_seconds``, ``behind``, a ``/readyz`` warning)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest

from keyart.features import Featurizer
from keyart.rewards import RewardTable
from keyart.service.config import ServiceConfig
from keyart.service.engine import Engine
from keyart.service.health import BEHIND_SECONDS, learner_status, write_heartbeat
from keyart.service.learner import Learner, fresh_policies
from keyart.service.metrics import Metrics
from keyart.service.parsing import parse_page
from keyart.service.supervisor import LearnerSupervisor
from keyart.service.training import LearnerFeaturizer, closed_rewards, learnable, logged_contexts
from test_service_support import LocalServer, make_config, page_body, prepare, small_catalog

WINDOW = 0.5  # attribution window (s): decisions become learnable half a second after the newest event
TITLES = 8  # titles per page (page_body)


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    return prepare(
        make_config(
            tmp_path / "state",
            attribution_window_seconds=WINDOW,
            ingest_batch_bytes=16 << 10,
            learn_batch_decisions=200,
        )
    )


def _serve_pages(
    engine: Engine, config: ServiceConfig, n: int, start: int = 0, at: float | None = None
) -> None:
    """Decide ``n`` pages as a worker does (each is logged to the worker's segment), at event time
    ``at`` (None: now)."""
    for i in range(start, start + n):
        body = page_body(f"m{i % 37}") if at is None else page_body(f"m{i % 37}", timestamp=at)
        req = parse_page(orjson.dumps(body), config.limits, time.time())
        result = engine.decide(req)
        assert result is not None and result.reason is None


def _serve_closed(config: ServiceConfig, n: int, spacing: float) -> float:
    """``n`` pages ``spacing`` s apart from 30 s ago, then one now, so that the ``n`` pages' attribution
    windows are closed; returns now."""
    engine = Engine(config, Metrics())
    engine.refresh(True)
    try:
        now = time.time()
        for k in range(n):
            _serve_pages(engine, config, 1, start=k, at=now - 30 + spacing * k)
        _serve_pages(engine, config, 1, start=n, at=now)
    finally:
        engine.close()
    return now


def _latest_meta(config: ServiceConfig) -> dict[str, float] | None:
    """The generation LATEST names now and its ``rewards_learned``, or None while it is replaced."""
    try:
        pointer = json.loads((config.snapshots_dir / "LATEST").read_text())
        meta = json.loads((config.snapshots_dir / pointer["dir"] / "meta.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    return {"generation": int(pointer["generation"]), "learned": float(meta.get("rewards_learned", 0))}


def test_each_cycle_ingests_and_learns_a_bounded_batch_and_says_if_more_waits(config: ServiceConfig) -> None:
    _serve_closed(config, 60, spacing=0.1)
    learner = Learner(config)
    try:
        stored = []
        while True:  # ingest: bounded reads until the backlog is gone
            added = learner.ingest()["decisions"]
            if not added:
                break
            stored.append(added)
            assert added <= 40 * TITLES  # a 16-KiB read holds far fewer than 40 of these pages
        assert sum(stored) == 61 * TITLES and len(stored) > 1
        learned = []
        while True:
            n = learner.learn()
            if not learner.capped and n == 0:
                break
            learned.append(n)
            assert 0 < n <= config.learn_batch_decisions and n % TITLES == 0  # whole pages, bounded
            assert learner.behind() == learner.capped
        assert sum(learned) == 60 * TITLES and len(learned) >= 3  # every closed decision, once
        assert learner.learn_lag() < WINDOW * 4 and not learner.behind()
    finally:
        learner.close()


def test_the_model_advances_while_sustained_load_lasts(config: ServiceConfig) -> None:
    """A learner process under a steady stream of pages, on top of a backlog: LATEST must name new,
    further-learned generations again and again while the stream goes on, long before the backlog is
    learned (a learner that takes its whole backlog in one cycle, or stalls, fails)."""
    engine = Engine(config, Metrics())
    engine.refresh(True)
    backlog_pages = 300
    past = time.time() - 60
    for k in range(backlog_pages):  # a backlog, already closed: learnable as soon as it is ingested
        _serve_pages(engine, config, 1, start=k, at=past + 0.1 * k)
    stop = threading.Event()
    served = [backlog_pages]

    def stream() -> None:  # the sustained load: ~40 pages/s while the test watches
        while not stop.is_set():
            _serve_pages(engine, config, 1, start=served[0])
            served[0] += 1
            stop.wait(0.025)

    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()
    supervisor = LearnerSupervisor(config.to_json()).start()
    seen: list[float] = []
    try:
        deadline = time.monotonic() + 300  # generous: a loaded 2-core machine
        while time.monotonic() < deadline and len(seen) < 4:
            meta = _latest_meta(config)
            if meta is not None and meta["learned"] > (seen[-1] if seen else 0):
                seen.append(meta["learned"])
            time.sleep(0.02)
        assert feeder.is_alive(), "the load stopped before the learner was watched"
        assert len(seen) >= 4, f"the model advanced only {len(seen)} times under load: {seen}"
        # bounded steps: the backlog alone (2,400 decisions) is many batches of at most 200
        assert seen[0] <= 2 * config.learn_batch_decisions, seen
        assert seen[3] < backlog_pages * TITLES, seen
        status = learner_status(config.root, config.learn_interval_seconds)
        assert status["running"] and status["learn_lag_seconds"] is not None
    finally:
        stop.set()
        feeder.join(30)
        supervisor.stop()
        engine.close()


def test_readyz_warns_when_closed_decisions_wait_to_be_learned(config: ServiceConfig) -> None:
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        write_heartbeat(config.root, backlog_bytes=0, learn_lag_seconds=BEHIND_SECONDS + 60, cycle_seconds=2)
        body = c.get("/readyz").json()
        assert body["ready"] and body["learner"]["behind"]
        assert f"and {BEHIND_SECONDS + 60:.0f} s of closed decisions not yet learned" in body["warning"]
        write_heartbeat(config.root, backlog_bytes=0, learn_lag_seconds=1.5, cycle_seconds=0.2)
        body = c.get("/readyz").json()
        assert not body["learner"]["behind"] and "warning" not in body


def test_learnable_keeps_policy_decisions_before_the_end_on_known_pools() -> None:
    t = pa.table(
        {
            "timestamp": [1.0, 2.0, 3.0, 4.0, 9.0, 4.5],
            "fallback": [False, True, False, False, False, False],
            "pool": [["t0-a0", "t0-a1"], ["t0-a0"], ["t0-a0", "gone"], [], ["t0-a0"], ["t1-a2", "t1-a3"]],
        }
    )
    kept = learnable(RewardTable(t, None), small_catalog(), end=5.0).table  # type: ignore[arg-type]
    # a fallback, a pool naming an artwork the catalog does not know, a row at or past the end: left out
    assert kept.column("timestamp").to_pylist() == [1.0, 4.0, 4.5]


def test_the_learners_shortcuts_learn_exactly_what_plain_featurization_learns(config: ServiceConfig) -> None:
    """Contexts parsed once per page and member histories weighted once per page give the same update as
    parsing and featurizing every decision on its own: same probabilities afterwards, to the bit."""
    now = _serve_closed(config, 30, spacing=0.5)  # several members, each page its own context
    learner = Learner(config)
    try:
        while any(learner.ingest().values()):  # bounded reads until everything is stored
            pass
        rt = closed_rewards(
            learner.store, learner.catalog, None, now - 1, window=WINDOW, quality_seconds=60.0, as_of=now
        )
        assert rt is not None and rt.table.num_rows == 30 * TITLES
        plain, fast = fresh_policies(config)[0], fresh_policies(config)[0]
        plain.update(rt.to_feedback(Featurizer(learner.catalog, config.feature_config)))
        fast_fz = LearnerFeaturizer(learner.catalog, config.feature_config)
        contexts = logged_contexts(rt.table)
        assert len({id(c) for c in contexts}) == 30  # one object per page
        fast.update(rt.to_feedback(fast_fz, contexts=contexts))
        fz = Featurizer(learner.catalog, config.feature_config)
        for m in range(5):
            req = parse_page(orjson.dumps(page_body(f"m{m}")), config.limits, now)
            page = fz.page(req.context, req.title_ids, f"probe-{m}")
            assert np.array_equal(plain.choose(page).probabilities, fast.choose(page).probabilities)
    finally:
        learner.close()
