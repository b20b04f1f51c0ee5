"""The service under hostile or failing conditions, over real HTTP: client clocks, huge feature values,
reused request ids, a failing disk, a dying learner, malformed segment lines, pool limits, overload, a
corrupt LATEST pointer, and rewards that arrive before their decision."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from keyart.policies import DEFAULT_POLICY
from keyart.service import catalog_store, snapshots
from keyart.service.config import Limits, ServiceConfig
from keyart.service.engine import SATURATED_BUDGETS
from keyart.service.learner import Learner, ensure_initial_generation
from keyart.service.segments import SegmentWriter
from test_service_support import (
    AUTH,
    LocalServer,
    ServiceProcess,
    make_config,
    page_body,
    prepare,
    small_catalog,
)

FUTURE = 4_102_444_800.0  # 2100-01-01


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    return prepare(make_config(tmp_path / "state"))


def _decide(c: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/v1/decide", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _lines(config: ServiceConfig) -> list[dict[str, Any]]:
    """Every logged record, oldest file first."""
    out = []
    for p in sorted(config.segments_dir.glob("*.seg")):
        out += [orjson.loads(line) for line in p.read_bytes().splitlines() if line]
    return out


def _forged(line: dict[str, Any], tag: str, **changes: Any) -> dict[str, Any]:
    """A copy of a logged page with new decision ids (``tag``) and ``changes``: what an older or damaged
    worker might have logged."""
    n = len(line["title_ids"])
    return {**line, "request_id": tag, "decision_ids": [f"{tag}-{i}" for i in range(n)], **changes}


def _counter(learner: Learner, name: str, **labels: str) -> float:
    return learner.metrics.registry.get_sample_value(name, labels) or 0.0


# ---- 1. client clocks -------------------------------------------------------------------------------


def test_a_client_timestamp_cannot_move_event_time(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "state", attribution_window_seconds=1.0))
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base) as c:
        for ts, field in ((FUTURE, "context.timestamp"), (1e3, "context.timestamp")):
            r = c.post("/v1/decide", json=page_body(timestamp=ts))
            assert r.status_code == 422 and r.json()["field"] == field, r.text
        r = c.post(
            "/v1/decide/title", json={"member_id": "m", "title_id": "t0", "context": {"timestamp": FUTURE}}
        )
        assert r.status_code == 422 and r.json()["field"] == "context.timestamp"
        item = {"member_id": "m", "title_id": "t0", "reward": 1.0, "timestamp": FUTURE}
        r = c.post("/v1/outcomes", json={"outcomes": [item]}, headers=AUTH)
        assert r.status_code == 422 and r.json()["field"] == "outcomes[0].timestamp", r.text
        assert _decide(c, page_body("a"))  # stamped with the server's clock
        # a line logged before timestamps were bounded: it must not stop learning
        poison = _forged(_lines(config)[0], "poison", timestamp=FUTURE)
        SegmentWriter(config.segments_dir).append(poison)
        learner = Learner(config)
        try:
            learner.step()
            assert learner.learned_until <= time.time()
            time.sleep(1.1)  # page a's window (1 s) closes on the server's clock
            _decide(c, page_body("b"))
            learner.step()
            assert learner.rewards_learned == 8  # page a, learned once its window closed
            assert _counter(learner, "keyart_late_decisions_total") == 0  # page b will be learned too
        finally:
            learner.close()
    # a generation that learned past the clock (before the fix) is repaired by a restarted learner
    snapshots.publish(config.snapshots_dir, 99, learner.primary, None, {"learned_until": FUTURE - 1})
    restarted = Learner(config)
    try:
        assert restarted.learned_until <= time.time()
    finally:
        restarted.close()


# ---- 2. huge feature values ------------------------------------------------------------------------


def test_huge_feature_values_are_refused_and_never_jam_the_learner(config: ServiceConfig) -> None:
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base) as c:
        for ctx, field in (
            (b'{"extra": {"x": 1e7}}', "context.extra.x"),
            (b'{"recommender_scores": {"t0": -2e6}}', "context.recommender_scores.t0"),
            (b'{"extra": {"x": 1' + b"0" * 400 + b"}}", "context.extra.x"),
        ):
            body = b'{"member_id": "m", "title_ids": ["t0"], "context": ' + ctx + b"}"
            r = c.post("/v1/decide", content=body)
            assert r.status_code == 422 and r.json()["field"] == field, r.text
        assert _decide(c, page_body("edge", extra={"x": 1e6}, recommender_scores={"t0": -1e6}))
        t0 = time.time() - 1000
        ok = _decide(c, page_body("ok", timestamp=t0))
        # a page logged before the bound, whose features overflow the model's statistics
        line = _lines(config)[-1]
        ctx = orjson.loads(line["context_json"])
        ctx["extra"] = {"x": 1e200}
        SegmentWriter(config.segments_dir).append(
            _forged(line, "huge", context_json=orjson.dumps(ctx).decode(), member_id="huge")
        )
        plays = [
            {"decision_id": d, "event_type": "play", "engaged_seconds": 900.0, "timestamp": t0 + 1}
            for d in [ok["decisions"][0]["decision_id"], "huge-0"]
        ]
        assert c.post("/v1/outcomes", json={"outcomes": plays}, headers=AUTH).status_code == 200
        _decide(c, page_body("closer", timestamp=t0 + 500))
        learner = Learner(config)
        try:
            learner.step()  # raised "non-finite" before, and was retried forever
            assert learner.learned_until > t0 + 500  # past all three (page edge is still open)
            assert _counter(learner, "keyart_learner_skipped_total", reason="invalid_update") == 8
            assert learner.rewards_learned == 8 * 2  # pages ok and closer, not the huge one
            assert learner.primary.version_ >= 1
        finally:
            learner.close()


# ---- 3. reused request ids ------------------------------------------------------------------------


def test_a_reused_request_id_never_collides_decision_ids(config: ServiceConfig) -> None:
    t0 = time.time() - 1000
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base) as c:
        pages = [_decide(c, {**page_body(m, timestamp=t0), "request_id": "same"}) for m in ("a", "b")]
        assert [p["request_id"] for p in pages] == ["same", "same"]
        ids = [{d["decision_id"] for d in p["decisions"]} for p in pages]
        assert len(ids[0]) == len(ids[1]) == 8 and not ids[0] & ids[1]
        b_first = pages[1]["decisions"][0]["decision_id"]
        play = {"decision_id": b_first, "event_type": "play", "engaged_seconds": 900.0, "timestamp": t0 + 1}
        assert c.post("/v1/outcomes", json={"outcomes": [play]}, headers=AUTH).status_code == 200
    learner = Learner(config)
    try:
        assert learner.ingest()["decisions"] == 16  # both members' pages are stored
        con = learner.store.connection
        assert con.execute("SELECT member_id FROM outcomes").fetchall() == [("b",)]
        assert con.execute("SELECT count(DISTINCT request_id) FROM decisions").fetchall() == [(1,)]
    finally:
        learner.close()


# ---- 4. a failing disk -----------------------------------------------------------------------------


def test_a_failed_event_write_is_a_503_and_damages_no_later_record(
    config: ServiceConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    seg_dir = str(config.segments_dir.resolve())
    failing = threading.Event()

    def write(fd: int, data: Any) -> int:
        """Writes into the events directory fail (after half of the first one) while ``failing``."""
        if failing.is_set():
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if target.startswith(seg_dir):
                if len(data) > 1 and not getattr(write, "torn", False):
                    write.torn = True  # type: ignore[attr-defined]
                    return real_write(fd, bytes(data)[: len(data) // 2])  # a short write, then ENOSPC
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    acked: list[str] = []
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base) as c:
        acked += [d["decision_id"] for d in _decide(c, page_body("before"))["decisions"]]
        failing.set()
        for path, body in (
            ("/v1/decide", page_body("lost")),
            ("/v1/decide/title", {"member_id": "lost", "title_id": "t0", "context": {}}),
        ):
            r = c.post(path, json=body)
            assert r.status_code == 503 and r.json()["error"] == "not_logged", r.text
            assert "Not acknowledged" in r.json()["detail"]
        r = c.post(
            "/v1/outcomes", json={"outcomes": [{"decision_id": acked[0], "reward": 1.0}]}, headers=AUTH
        )
        assert r.status_code == 503 and r.json()["error"] == "not_logged"
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "events directory" in ready.json()["detail"]
        failing.clear()
        assert c.get("/readyz").status_code == 200
        acked += [d["decision_id"] for d in _decide(c, page_body("after"))["decisions"]]
        metrics = c.get("/metrics").text
        assert 'keyart_event_log_failures_total{endpoint="decide"} 1.0' in metrics
    assert getattr(write, "torn", False)
    learner = Learner(config)
    try:
        assert learner.ingest()["decisions"] == 16
        stored = {r[0] for r in learner.store.connection.execute("SELECT event_id FROM decisions").fetchall()}
        assert stored == set(acked)  # the acknowledged ones, intact; nothing of the refused ones
        assert _counter(learner, "keyart_learner_skipped_total", reason="malformed_line") == 0
        assert len(list(config.segments_dir.glob("*.seg"))) == 0  # abandoned and closed files pruned
    finally:
        learner.close()


# ---- 5 and 6. one worker's metrics; the learner is restarted ------------------------------------


@pytest.mark.slow
def test_one_worker_exports_metrics_and_a_killed_learner_comes_back(tmp_path: Path) -> None:
    state = tmp_path / "state"
    catalog_store.import_catalog(state / "catalog.json", small_catalog())
    with ServiceProcess(state, workers=1, extra=["--learn-interval", "0.2"]) as srv:
        with httpx.Client(base_url=srv.base, timeout=10.0) as c:
            _decide(c, page_body("m1"))
            text = c.get("/metrics").text
            assert f'keyart_decisions_total{{policy="{DEFAULT_POLICY}"}} 8.0' in text, text[:2000]
            deadline = time.monotonic() + 30
            while not (learner := c.get("/v1/model").json()["learner"])["ok"]:
                assert time.monotonic() < deadline, learner
                time.sleep(0.1)
            os.kill(learner["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 30
            while True:
                now = c.get("/readyz").json()["learner"]
                if now["ok"] and now["pid"] != learner["pid"]:
                    break
                assert time.monotonic() < deadline, (now, srv.read_log())
                time.sleep(0.1)


# ---- 6. malformed segment lines ---------------------------------------------------------------------


def test_malformed_segment_lines_are_set_aside(config: ServiceConfig) -> None:
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base) as c:
        good = _decide(c, page_body("good"))
    line = _lines(config)[0]
    bad: list[Any] = [
        [1, 2, 3],
        {"k": "page"},
        {"k": "outcomes"},
        {"k": "outcomes", "items": [{"event_id": "e1"}]},
        {"k": "outcomes", "items": 3},
        {"k": "mystery"},
        _forged(line, "short", index=line["index"][:3]),
        _forged(line, "old", timestamp=5.0),  # refused by the store: set aside, the rest stored
    ]
    w = SegmentWriter(config.segments_dir)
    for record in bad:
        w.append(record)  # type: ignore[arg-type]
    w.append(_forged(line, "fine"))
    with open(w.path, "ab") as fh:
        fh.write(b"\x00\xff not json\n")
    learner = Learner(config)
    try:
        added = learner.step()  # raised AttributeError / KeyError before, and the learner died
        assert added["decisions"] == 16
        stored = {
            r[0] for r in learner.store.connection.execute("SELECT request_id FROM decisions").fetchall()
        }
        assert stored == {good["request_id"], "fine"}
        assert _counter(learner, "keyart_learner_skipped_total", reason="malformed_line") == len(bad) + 1
        assert learner.ingest()["decisions"] == 0  # the offsets moved past them
    finally:
        learner.close()


# ---- 7. pool limits --------------------------------------------------------------------------------


def test_reactivating_an_artwork_respects_the_pool_limit(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "state", limits=Limits(max_artworks_per_pool=4)))
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base) as c:
        assert c.delete("/v1/artworks/t0-a0", headers=AUTH).status_code == 200
        assert c.put("/v1/artworks/t0-new", json={"title_id": "t0"}, headers=AUTH).status_code == 201
        r = c.put("/v1/artworks/t0-a0", json={"title_id": "t0"}, headers=AUTH)  # back: a fifth
        assert r.status_code == 422 and r.json()["error"] == "pool_full", r.text
        assert (
            c.put("/v1/artworks/t0-a1", json={"title_id": "t0", "style": "x"}, headers=AUTH).status_code
            == 200
        )
        assert _decide(c, page_body(titles=["t0"]))["decisions"][0]["artwork_id"] != "t0-a0"


# ---- 8. overload ----------------------------------------------------------------------------------


def test_pages_that_cannot_finish_in_time_are_not_computed(tmp_path: Path) -> None:
    """A burst on an idle model thread is queued, not shed (pages that run out of budget time out and are
    skipped unstarted); once the thread is saturated, pages that would only wait are shed at once."""
    budget = 0.05
    config = prepare(make_config(tmp_path / "state", model_budget_seconds=budget))
    with LocalServer(config) as srv:
        engine = srv.engine
        primary = engine.generation.primary
        calls: list[float] = []
        delay = [0.3]
        choose = primary.choose

        def slow(batch: Any) -> Any:
            calls.append(time.monotonic())
            time.sleep(delay[0])
            return choose(batch)

        primary.choose = slow

        def wave(n: int) -> list[str | None]:
            """``n`` pages at once (connections opened first), their fallback reasons."""
            reasons: list[str | None] = []
            clients = [httpx.Client(base_url=srv.base, timeout=10.0) for _ in range(n)]
            for c in clients:
                assert c.get("/healthz").status_code == 200
            go = threading.Barrier(n)

            def one(i: int) -> None:
                go.wait(10)
                out = _decide(clients[i], page_body(f"m{i}", titles=["t0", "t1"]))
                reasons.append(out["decisions"][0]["fallback_reason"])

            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            for c in clients:
                c.close()
            return reasons

        def drained() -> None:
            deadline = time.monotonic() + 60
            while engine.posted != engine.finished and time.monotonic() < deadline:
                time.sleep(0.01)
            assert engine.posted == engine.finished

        first = wave(6)  # all queued at once: the first is computed, the others given up unstarted
        assert len(first) == 6 and "timeout" in first and set(first) <= {"timeout", "overload"}
        drained()  # (skipping the given-up pages)
        assert len(calls) == 1
        delay[0] = 0.1  # under SATURATED_BUDGETS budgets: one page cannot saturate the thread
        burst = wave(3)  # the model is known to be slow, but the thread is idle: queued, not shed
        assert len(burst) == 3 and "overload" not in burst, burst
        drained()
        assert len(calls) >= 2
        n_calls = len(calls)
        delay[0] = 3.0  # one page keeps the model thread busy: it becomes saturated
        with httpx.Client(base_url=srv.base, timeout=10.0) as c:
            assert _decide(c, page_body("m9", titles=["t0"]))["decisions"][0]["fallback_reason"] == "timeout"
        deadline = time.monotonic() + 60
        while time.monotonic() - engine.idle_at < SATURATED_BUDGETS * budget and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.posted != engine.finished, "the slow page ended before the thread counted as saturated"
        second = wave(4)  # pages that would only wait behind it are shed at once, never computed
        assert second == ["overload"] * 4
        drained()
        assert len(calls) == n_calls + 1
        primary.choose = choose


# ---- 9. a corrupt LATEST ------------------------------------------------------------------------------


def test_a_corrupt_latest_pointer_is_replaced(config: ServiceConfig) -> None:
    (config.snapshots_dir / snapshots.LATEST).write_text('{"generation": 0, "dir": "gen-000')
    ensure_initial_generation(config)  # raised SnapshotError before (and `keyart serve` did not start)
    learner = Learner(config)
    try:
        assert snapshots.latest_pointer(config.snapshots_dir)["generation"] == 1
        learner.publish()
        assert snapshots.load_latest(config.snapshots_dir).number == 2
    finally:
        learner.close()


# ---- 10. a reward that arrives before its decision -----------------------------------------------


def test_a_reward_by_member_and_title_finds_a_decision_ingested_later(config: ServiceConfig) -> None:
    t0 = time.time() - 1000
    learner = Learner(config)
    try:
        with LocalServer(config) as srv, httpx.Client(base_url=srv.base) as c:
            item = {"member_id": "m1", "title_id": "t2", "reward": 1.0, "timestamp": t0 + 5}
            assert c.post("/v1/outcomes", json={"outcomes": [item]}, headers=AUTH).status_code == 200
            assert learner.ingest()["rewards"] == 1  # the reward first (another worker's segment) ...
            page = _decide(c, page_body("m1", titles=["t1", "t2"], timestamp=t0))  # ... its decision later
            _decide(c, page_body("closer", titles=["t0"], timestamp=t0 + 500))
        assert learner.step()["learned"] == 2
        shown = page["decisions"][1]["artwork_id"]
        assert learner.art_stats[shown] == [1.0, 1.0]  # the direct reward was its label
        assert learner.art_stats[page["decisions"][0]["artwork_id"]] == [0.0, 1.0]
    finally:
        learner.close()
