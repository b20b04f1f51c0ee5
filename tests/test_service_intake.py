"""What the service takes in (issue 13), over real HTTP: outcomes naming decisions this deployment never
issued are accepted but counted and reported as unmatched (also when another worker issued the
decision: ids carry a MAC every worker can check), and the sizes of titles' and artworks' lists and
embeddings are bounded with a clear 4xx."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from keyart.service import catalog_store
from keyart.service.config import ServiceConfig
from keyart.service.health import learner_status, write_heartbeat
from keyart.service.ids import PageKeys
from keyart.service.learner import Learner
from keyart.service.parsing import parse_page
from keyart.service.schemas import MAX_EMBEDDING, MAX_LABELS
from keyart.service.supervisor import LearnerSupervisor
from test_service_support import AUTH, LocalServer, make_config, page_body, prepare


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    return prepare(make_config(tmp_path / "state"))


def _metric(text: str, name: str) -> float:
    found = re.findall(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(found[0]) if found else 0.0


def _logged_outcome_ids(config: ServiceConfig) -> list[str]:
    out = []
    for p in sorted(config.segments_dir.glob("*.seg")):
        for line in p.read_bytes().splitlines():
            record = orjson.loads(line)
            out += [o["event_id"] for o in record.get("items", [])]
    return out


# ---- outcomes for unknown decisions ------------------------------------------------------------------


def test_outcomes_for_unknown_decisions_are_accepted_counted_and_reported(config: ServiceConfig) -> None:
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        page = c.post("/v1/decide", json=page_body("m1")).json()
        known = [d["decision_id"] for d in page["decisions"]]
        forged = known[0][:-5] + "00000-0"  # the shape of an issued id, but not its MAC
        items: list[dict[str, Any]] = [
            {"decision_id": known[0], "event_type": "play", "engaged_seconds": 900.0},
            {"decision_id": known[1], "reward": 1.0},
            {"member_id": "m1", "title_id": "t2", "event_type": "impression"},  # no id: nothing to check
            {"decision_id": "0123456789abcdef01234567", "reward": 1.0},
            {"decision_id": forged, "event_type": "play"},
            {"decision_id": f"{known[0].rsplit('-', 1)[0]}/shadow-0", "reward": 0.0},  # never shown
            {"decision_id": "0123456789abcdef01234567", "event_type": "complete"},
        ]
        r = c.post("/v1/outcomes", json={"outcomes": items}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 7 and body["unmatched"] == 4
        assert body["unmatched_decision_ids"] == [
            "0123456789abcdef01234567",
            forged,
            items[5]["decision_id"],
        ]
        assert _metric(c.get("/metrics").text, "keyart_unmatched_outcomes_total") == 4.0
        r = c.post("/v1/outcomes", json={"outcomes": items[:3]}, headers=AUTH)
        assert r.json()["unmatched"] == 0 and r.json()["unmatched_decision_ids"] == []
    # accepted means logged and stored: nothing of an unmatched outcome is lost
    assert set(body["event_ids"]) <= set(_logged_outcome_ids(config))
    learner = Learner(config)
    try:
        step = learner.step()  # events into the outcomes table, direct rewards into the rewards table
        assert (step["outcomes"], step["rewards"]) == (6, 4)
    finally:
        learner.close()


def test_a_decision_issued_by_one_worker_is_matched_by_another(config: ServiceConfig) -> None:
    with LocalServer(config) as a, LocalServer(config) as b:
        with httpx.Client(base_url=a.base, timeout=30) as ca:
            ids = [d["decision_id"] for d in ca.post("/v1/decide", json=page_body("m1")).json()["decisions"]]
            title = ca.post(
                "/v1/decide/title", json={"member_id": "m2", "title_id": "t3", "context": {}}
            ).json()
        with httpx.Client(base_url=b.base, timeout=30) as cb:
            items = [{"decision_id": d, "reward": 1.0} for d in [*ids, title["decision_id"]]]
            r = cb.post("/v1/outcomes", json={"outcomes": items}, headers=AUTH)
            assert r.status_code == 200 and r.json()["unmatched"] == 0, r.text


def test_page_keys_recognise_only_their_own_ids() -> None:
    keys, other = PageKeys(12345), PageKeys(54321)
    key = keys.new()
    assert len(key) == 32 and key != keys.new()
    assert keys.issued(f"{key}-0", 100) and keys.issued(f"{key}-99", 100)
    assert not keys.issued(f"{key}-100", 100)  # beyond any page
    assert not keys.issued(f"{key}-01", 100) and not keys.issued(f"{key}--1", 100)
    assert not other.issued(f"{key}-0", 100)  # another deployment's
    assert not keys.issued(key, 100) and not keys.issued(f"{key.upper()}-0", 100)
    assert not keys.issued("", 100) and not keys.issued("-", 100)


# ---- size limits of the catalog API ------------------------------------------------------------------

TOO_MANY = [f"g{i}" for i in range(MAX_LABELS + 1)]
BAD_CATALOG = [
    ("titles/big", {"genres": TOO_MANY}, "genres"),
    ("titles/big", {"cast": TOO_MANY}, "cast"),
    ("artworks/t0-big", {"title_id": "t0", "theme_genres": TOO_MANY}, "theme_genres"),
    ("artworks/t0-big", {"title_id": "t0", "featured_cast": TOO_MANY}, "featured_cast"),
    ("artworks/t0-big", {"title_id": "t0", "tags": TOO_MANY}, "tags"),
    ("artworks/t0-big", {"title_id": "t0", "embedding": [0.5] * (MAX_EMBEDDING + 1)}, "embedding"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_CATALOG)
def test_oversized_lists_and_embeddings_are_refused(
    config: ServiceConfig, path: str, body: dict[str, Any], field: str
) -> None:
    rev = catalog_store.read_document(config.catalog_path)["rev"]
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        r = c.put(f"/v1/{path}", json=body, headers=AUTH)
        assert r.status_code == 422, r.text
        out = r.json()
        assert out["field"] == field and out["error"] == "invalid_field"
        limit = MAX_EMBEDDING if field == "embedding" else MAX_LABELS
        assert f"at most {limit} items" in out["detail"], out["detail"]
    assert catalog_store.read_document(config.catalog_path)["rev"] == rev  # nothing changed


def test_lists_and_embeddings_at_the_limits_are_accepted(config: ServiceConfig) -> None:
    labels = [f"g{i}" for i in range(MAX_LABELS)]
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        r = c.put("/v1/titles/big", json={"genres": labels, "cast": labels}, headers=AUTH)
        assert r.status_code == 201, r.text
        art = {"title_id": "big", "tags": labels, "embedding": [0.25] * MAX_EMBEDDING}
        assert c.put("/v1/artworks/big-1", json=art, headers=AUTH).status_code == 201
        r = c.post("/v1/decide", json=page_body("m1", titles=["big", "t0"]))
        assert r.status_code == 200 and r.json()["decisions"][0]["artwork_id"] == "big-1"
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert schema["ArtworkIn"]["properties"]["tags"]["maxItems"] == MAX_LABELS


# ---- catalog changes: read-your-writes across workers ---------------------------------------------------


def test_catalog_changes_are_read_your_writes_across_workers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers on one state directory, neither polling (a one-hour reload interval): a change
    acknowledged by one is served by the other on its very next request."""
    config = prepare(make_config(tmp_path / "state", reload_interval_seconds=3600.0))
    caplog.set_level(logging.INFO, logger="keyart.service")
    with (
        LocalServer(config) as a,
        LocalServer(config) as b,
        httpx.Client(base_url=a.base, timeout=30) as ca,
        httpx.Client(base_url=b.base, timeout=30) as cb,
    ):
        r = ca.put("/v1/titles/new", json={"name": "New", "genres": ["drama"]}, headers=AUTH)
        assert r.status_code == 201
        r = cb.post("/v1/decide", json=page_body("m1", titles=["new", "t0"]))
        assert r.status_code == 422 and r.json()["error"] == "no_artwork", r.text  # known already
        for j in range(3):
            art = {"title_id": "new", "theme_genres": ["drama"]}
            assert ca.put(f"/v1/artworks/new-{j}", json=art, headers=AUTH).status_code == 201
            r = cb.post("/v1/decide", json=page_body(f"m{j}", titles=["new", "t0"]))
            assert r.status_code == 200, r.text
            assert r.json()["decisions"][0]["artwork_id"] in {f"new-{i}" for i in range(j + 1)}
        assert cb.get("/v1/titles/new").json()["pool"] == ["new-0", "new-1", "new-2"]
        assert ca.delete("/v1/artworks/new-0", headers=AUTH).status_code == 200
        assert cb.get("/v1/titles/new").json()["pool"] == ["new-1", "new-2"]
        for m in range(12):
            r = cb.post("/v1/decide/title", json={"member_id": f"x{m}", "title_id": "new", "context": {}})
            assert r.status_code == 200 and r.json()["artwork_id"] != "new-0"
    # a title created before its artworks: one info line, no traceback, no warning
    records = [r for r in caplog.records if r.name == "keyart.service"]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.WARNING], [
        r.getMessage() for r in records
    ]
    assert len([r for r in records if "'new' has no active artwork yet" in r.getMessage()]) == 1


def test_defaults_answered_off_the_model_thread_see_catalog_changes(config: ServiceConfig) -> None:
    """A page shed at once (``overload``) is answered on the event loop, not the model thread: it still
    sees a title another worker has just created."""
    with LocalServer(config) as a, LocalServer(config) as b, httpx.Client(base_url=a.base, timeout=30) as ca:
        assert ca.put("/v1/titles/new", json={"genres": ["drama"]}, headers=AUTH).status_code == 201
        art = {"title_id": "new", "theme_genres": ["drama"]}
        assert ca.put("/v1/artworks/new-0", json=art, headers=AUTH).status_code == 201
        req = parse_page(orjson.dumps(page_body("m1", titles=["new", "t0"])), config.limits, time.time())
        result = b.engine.decide(req, reason="overload")  # as the event loop's thread does
        assert result is not None and result.reason == "overload"
        assert result.artwork_ids == ["new-0", "t0-a0"]


# ---- the learner says when it falls behind --------------------------------------------------------------


def test_the_learner_reports_its_backlog_and_readyz_warns_when_it_is_behind(config: ServiceConfig) -> None:
    supervisor = LearnerSupervisor(config.to_json()).start()  # the learner's own process
    try:
        deadline = time.monotonic() + 120
        status = learner_status(config.root, config.learn_interval_seconds)
        while status["backlog_bytes"] is None and time.monotonic() < deadline:  # its first cycle
            time.sleep(0.05)
            status = learner_status(config.root, config.learn_interval_seconds)
        assert status["backlog_bytes"] == 0 and status["cycle_seconds"] >= 0 and not status["behind"]
    finally:
        supervisor.stop()
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        write_heartbeat(config.root, backlog_bytes=9 * 2**20, cycle_seconds=3.5)  # as a lagging learner
        body = c.get("/readyz").json()
        assert body["ready"] and body["learner"]["behind"]
        assert "the learner is behind: 9.0 MiB of events not yet ingested" in body["warning"]
        write_heartbeat(config.root, backlog_bytes=1024, cycle_seconds=0.2)
        body = c.get("/readyz").json()
        assert not body["learner"]["behind"] and "warning" not in body


def test_the_learner_keeps_duckdb_progress_bars_out_of_the_log(config: ServiceConfig) -> None:
    learner = Learner(config)
    try:
        for con in (learner.store.connection, learner.shadow_store.connection, learner.svc):
            assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False
    finally:
        learner.close()
