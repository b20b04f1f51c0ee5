"""`keyart serve` as a real HTTP server on loopback: several worker processes, stickiness across them,
online learning with hot reload, aggregated metrics, and a SIGKILL under load that loses nothing."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyart.service import catalog_store
from keyart.store import EventStore
from test_service_support import AUTH, ServiceProcess, small_catalog


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    catalog_store.import_catalog(state / "catalog.json", small_catalog())
    return state


def _fresh_get(base: str, path: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10.0) as c:  # a new connection: any worker may answer
        return c.get(path)


def _decide(base: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10.0) as c:
        return c.post("/v1/decide", json=body)


def _metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


@pytest.mark.slow
def test_two_workers_agree_learn_and_hot_reload(tmp_path: Path) -> None:
    state = _state(tmp_path)
    extra = ["--learn-interval", "0.2", "--attribution-window", "5", "--model-budget", "5"]
    with ServiceProcess(state, workers=2, extra=extra) as srv:
        t0 = 1_700_000_000.0
        body = {
            "member_id": "m-sticky",
            "title_ids": [f"t{i}" for i in range(8)],
            "context": {"device": "tv", "timestamp": t0 - 10},
        }
        answers: dict[str, set[tuple[str, ...]]] = {}
        n_pages = 0
        deadline = time.monotonic() + 30
        while (len(answers) < 2 or n_pages < 20) and time.monotonic() < deadline:
            r = _decide(srv.base, body)
            assert r.status_code == 200
            n_pages += 1
            out = r.json()
            assert not any(d["fallback"] for d in out["decisions"])
            answers.setdefault(r.headers["x-keyart-worker"], set()).add(
                tuple(d["artwork_id"] for d in out["decisions"])
            )
        assert len(answers) == 2, "both worker processes should have answered"
        assert len(set().union(*answers.values())) == 1, (
            "same member and titles -> same artworks on every worker"
        )

        # closed loop on explicit event time: decisions, outcomes, then event time moves past the window
        with httpx.Client(base_url=srv.base, timeout=10.0) as c:
            outcomes = []
            for i in range(30):
                out = c.post(
                    "/v1/decide",
                    json={**body, "member_id": f"m{i}", "context": {"device": "tv", "timestamp": t0 + i}},
                ).json()
                n_pages += 1
                outcomes += [
                    {
                        "decision_id": d["decision_id"],
                        "event_type": "play",
                        "engaged_seconds": 700.0,
                        "timestamp": t0 + i + 1,
                    }
                    for d in out["decisions"][:2]
                ]
            assert c.post("/v1/outcomes", json={"outcomes": outcomes}, headers=AUTH).status_code == 200
            c.post("/v1/decide", json={**body, "member_id": "closer", "context": {"timestamp": t0 + 100}})
            n_pages += 1
        learned: dict[str, int] = {}  # worker -> rewards learned by the generation it serves
        deadline = time.monotonic() + 30
        while (len(learned) < 2 or min(learned.values()) < 240 + 8 * 20) and time.monotonic() < deadline:
            r = _fresh_get(srv.base, "/v1/model")
            learned[r.headers["x-keyart-worker"]] = r.json()["rewards_learned"]
            time.sleep(0.05)
        assert len(learned) == 2 and min(learned.values()) >= 240 + 8 * 20, learned
        info = _fresh_get(srv.base, "/v1/model").json()
        assert info["generation"] >= 1 and info["model_version"] >= 1

        text = _fresh_get(srv.base, "/metrics").text
        assert _metric(text, "keyart_decisions_total") == 8 * n_pages  # summed over both workers
        assert _metric(text, "keyart_rewards_joined_total") >= 240 + 8 * 20
        assert _metric(text, "keyart_published_generation") >= 1
        assert "keyart_learner_lag_seconds" in text and "keyart_request_latency_seconds_bucket" in text


def _load(
    base: str, stop: threading.Event, acked: dict[str, list[str]], errors: list[str], worker: int
) -> None:
    """Decide pages and report outcomes until stopped (or the server dies); record what was acknowledged."""
    with httpx.Client(base_url=base, timeout=5.0) as c:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = c.post(
                    "/v1/decide",
                    json={
                        "member_id": f"w{worker}-{i % 50}",
                        "title_ids": ["t0", "t1", "t2", "t3"],
                        "context": {"device": "tv"},
                    },
                )
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                acked["decisions"] += [d["decision_id"] for d in r.json()["decisions"]]
                items = [
                    {
                        "decision_id": d["decision_id"],
                        "event_type": "play",
                        "engaged_seconds": 650.0,
                        "event_id": uuid.uuid4().hex,
                    }
                    for d in r.json()["decisions"][:2]
                ]
                r = c.post("/v1/outcomes", json={"outcomes": items}, headers=AUTH)
                if r.status_code == 200:
                    acked["outcomes"] += r.json()["event_ids"]
            except httpx.HTTPError:
                if stop.is_set():
                    return
                time.sleep(0.01)


def _restarted_learner_ok(base: str, old_pid: int | None) -> bool:
    """A learner other than the killed one reports a fresh heartbeat."""
    learner = _fresh_get(base, "/v1/model").json()["learner"]
    return bool(learner["ok"]) and learner["pid"] != old_pid


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    state = _state(tmp_path)
    extra = ["--learn-interval", "0.2", "--attribution-window", "0.5", "--model-budget", "5"]
    srv = ServiceProcess(state, workers=2, extra=extra).start()
    acked: dict[str, list[str]] = {"decisions": [], "outcomes": []}
    errors: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(srv.base, stop, acked, errors, w)) for w in range(3)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        generation = version = 0
        while time.monotonic() < deadline and (
            generation < 2 or version < 1 or len(acked["decisions"]) < 400
        ):
            time.sleep(0.2)
            model = _fresh_get(srv.base, "/v1/model").json()
            generation, version = model["generation"], model["model_version"]
        assert generation >= 2 and version >= 1, "the learner should have learned and published under load"
        learner_pid = model["learner"]["pid"]
        srv.kill()  # SIGKILL: server, workers and learner, mid-load
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        srv.stop()
        srv.log.close()
    assert not errors, errors[:3]
    n_dec, n_out = len(acked["decisions"]), len(acked["outcomes"])
    assert n_dec >= 400 and n_out >= 200

    with ServiceProcess(state, workers=1, extra=extra) as again:
        info = _fresh_get(again.base, "/v1/model").json()
        assert (
            info["generation"] >= generation and info["model_version"] >= 1
        )  # resumes from the last snapshot
        r = _decide(again.base, {"member_id": "after", "title_ids": ["t0"], "context": {"device": "tv"}})
        assert r.status_code == 200 and not r.json()["decisions"][0]["fallback"]
        # the learner is up (its heartbeat: it holds the stores and handles SIGTERM); the graceful stop
        # ingests the rest
        deadline = time.monotonic() + 30
        while not _restarted_learner_ok(again.base, learner_pid):
            assert time.monotonic() < deadline, "the restarted learner never started"
            time.sleep(0.1)
    with EventStore(state / "events.duckdb", read_only=True) as store:
        con = store.connection
        stored = {r[0] for r in con.execute("SELECT event_id FROM decisions").fetchall()}
        assert set(acked["decisions"]) <= stored
        outs = {r[0] for r in con.execute("SELECT event_id FROM outcomes").fetchall()}
        assert set(acked["outcomes"]) <= outs
        for kind in ("decisions", "outcomes"):
            total, distinct = con.execute(
                f"SELECT count(*), count(DISTINCT event_id) FROM {kind}"
            ).fetchall()[0]
            assert total == distinct
        unresolved = con.execute("SELECT count(*) FROM outcomes WHERE member_id = '?'").fetchall()[0][0]
        assert unresolved == 0
