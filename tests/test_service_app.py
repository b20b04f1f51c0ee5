"""The decision service in process (ASGI test client): decisions, limits, keys, catalog, fallbacks,
learning and hot reload, shadow mode, metrics, OpenAPI examples."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from keyart.policies import DEFAULT_POLICY
from keyart.service import snapshots
from keyart.service.app import create_app
from keyart.service.config import Limits, ServiceConfig
from keyart.service.learner import Learner
from keyart.service.schemas import DecideResponse, DecisionOut
from keyart.service.segments import SegmentReader, page_probabilities

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from test_service_support import AUTH, make_config, page_body, prepare, segment_bytes


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    return prepare(make_config(tmp_path / "state", shadow_policy="beta_ts"))


@pytest.fixture
def client(config: ServiceConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config)) as c:
        yield c


def decide(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/decide", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# ---- decisions -----------------------------------------------------------------------------------


def test_page_gets_one_logged_decision_per_title(client: TestClient, config: ServiceConfig) -> None:
    out = decide(client, page_body())
    DecideResponse.model_validate(out)
    decs = out["decisions"]
    assert [d["title_id"] for d in decs] == [f"t{i}" for i in range(8)]
    assert len({d["decision_id"] for d in decs}) == 8
    for d in decs:
        assert d["artwork_id"].startswith(d["title_id"] + "-")
        assert 0 < d["propensity"] <= 1 and d["policy"] == DEFAULT_POLICY and d["fallback"] is False
        assert d["model_version"] == 0 and isinstance(d["explored"], bool)
    assert out["generation"] == 0
    assert segment_bytes(config) > 0


def test_same_member_and_title_get_the_same_artwork_across_requests(client: TestClient) -> None:
    first = decide(client, page_body("m7"))
    again = decide(client, page_body("m7", titles=["t3", "t0"]))
    by_title = {d["title_id"]: d["artwork_id"] for d in first["decisions"]}
    assert {d["title_id"]: d["artwork_id"] for d in again["decisions"]} == {
        "t3": by_title["t3"],
        "t0": by_title["t0"],
    }
    assert first["request_id"] != again["request_id"]
    # the sticky draw varies across members: 30 members do not all see the same artwork of t0
    seen = {
        decide(client, page_body(f"x{i}", titles=["t0"]))["decisions"][0]["artwork_id"] for i in range(30)
    }
    assert len(seen) > 1


def test_decide_one_title(client: TestClient) -> None:
    r = client.post(
        "/v1/decide/title", json={"member_id": "m1", "title_id": "t2", "context": {"device": "tv"}}
    )
    assert r.status_code == 200
    body = r.json()
    DecisionOut.model_validate(body)
    assert body["title_id"] == "t2" and body["artwork_id"].startswith("t2-") and "request_id" in body


BAD_DECIDE = [
    (b"", 400, "needs a JSON body"),
    (b"{", 400, "not valid JSON"),
    (b"[1, 2]", 422, "JSON object"),
    (b'{"title_ids": ["t0"]}', 422, "member_id"),
    (b'{"member_id": "m", "title_ids": []}', 422, "title_ids"),
    (b'{"member_id": "m", "title_ids": "t0"}', 422, "title_ids"),
    (b'{"member_id": "", "title_ids": ["t0"]}', 422, "member_id"),
    (b'{"member_id": "m", "title_ids": ["t0", 3]}', 422, "title_ids[1]"),
    (b'{"member_id": "m", "title_ids": ["t0", "t0"]}', 422, "appears twice"),
    (b'{"member_id": "m", "title_ids": ["nope"]}', 422, "unknown title 'nope'"),
    (b'{"member_id": "m", "title_ids": ["t0"], "colour": 1}', 422, "colour"),
    (b'{"member_id": "m", "title_ids": ["t0"], "context": {"device": 3}}', 422, "context.device"),
    (b'{"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": NaN}}', 422, "context.timestamp"),
    (b'{"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": 1e999}}', 422, "context.timestamp"),
    (
        b'{"member_id": "m", "title_ids": ["t0"], '
        b'"context": {"played": [{"title_id": "t1", "engaged_seconds": -1}]}}',
        422,
        "context.played[0].engaged_seconds",
    ),
    (
        b'{"member_id": "m", "title_ids": ["t0"], "context": {"recommender_scores": {"t0": "high"}}}',
        422,
        "context.recommender_scores.t0",
    ),
    (b'{"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": 4.2e9}}', 422, "context.timestamp"),
    (b'{"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": 6e8}}', 422, "context.timestamp"),
    (b'{"member_id": "m", "title_ids": ["t0"], "context": {"extra": {"x": 1.5e6}}}', 422, "context.extra.x"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_DECIDE)
def test_malformed_decide_is_refused_and_not_logged(
    client: TestClient, config: ServiceConfig, body: bytes, status: int, message: str
) -> None:
    before = segment_bytes(config)
    r = client.post("/v1/decide", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()
    assert set(err) >= {"error", "detail"} and message in err["detail"], err
    assert segment_bytes(config) == before


def _no_ids(body: Any) -> Any:
    """A response with each decision id reduced to its row (the rest is made by the server, unique), and
    the server's clock in an error's detail left out (two calls may fall in different seconds)."""
    if isinstance(body, dict):
        return {
            k: v.rsplit("-", 1)[1]
            if k == "decision_id"
            else re.sub(r"server's clock \(\d+\)", "server's clock", v)
            if k == "detail" and isinstance(v, str)
            else _no_ids(v)
            for k, v in body.items()
        }
    return [_no_ids(v) for v in body] if isinstance(body, list) else body


def test_hot_routes_answer_exactly_as_the_fastapi_routes(client: TestClient) -> None:
    """``POST /v1/decide`` and ``/v1/decide/title`` skip FastAPI (``ServiceApp.hot_routes``); the FastAPI
    routes behind them (OpenAPI, root paths) must give the same answers."""
    page = {**page_body("same", timestamp=1_700_000_000.0), "request_id": "fixed-id", "page": "home"}
    title = {"member_id": "same", "title_id": "t3", "request_id": "fixed-1", "context": {"timestamp": 1e9}}
    cases = [("/v1/decide", orjson.dumps(page)), ("/v1/decide/title", orjson.dumps(title))]
    cases += [("/v1/decide", body) for body, _, _ in BAD_DECIDE]
    cases += [("/v1/decide/title", b'{"member_id": "m", "title_id": "nope"}'), ("/v1/decide/title", b"[]")]
    app = client.app
    hot = dict(app.hot_routes)
    assert set(hot) == {("POST", "/v1/decide"), ("POST", "/v1/decide/title")}
    try:
        for path, body in cases:
            answers = []
            for routes in (hot, {}):
                app.hot_routes = routes
                r = client.post(path, content=body, headers={"content-type": "application/json"})
                answers.append(
                    (
                        r.status_code,
                        _no_ids(r.json()),
                        r.headers["content-type"],
                        r.headers["x-keyart-worker"],
                    )
                )
            assert answers[0] == answers[1], (path, body)
    finally:
        app.hot_routes = hot
    text = client.get("/metrics").text
    assert 'keyart_rejected_requests_total{status="422"}' in text
    assert 'keyart_request_latency_seconds_count{endpoint="decide_title"} 2.0' in text


def test_request_sizes_are_bounded(tmp_path: Path) -> None:
    limits = Limits(max_titles_per_page=5, max_artworks_per_pool=4, max_body_bytes=2000, max_history=3)
    config = prepare(make_config(tmp_path / "s", limits=limits))
    with TestClient(create_app(config)) as c:
        r = c.post("/v1/decide", json={"member_id": "m", "title_ids": [f"t{i}" for i in range(6)]})
        assert (
            r.status_code == 422
            and r.json()["error"] == "too_many_titles"
            and r.json()["field"] == "title_ids"
        )
        r = c.post("/v1/decide", content=b'{"member_id": "' + b"m" * 3000 + b'"}')
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        played = [{"title_id": "t1"}] * 4
        r = c.post("/v1/decide", json={"member_id": "m", "title_ids": ["t0"], "context": {"played": played}})
        assert r.status_code == 422 and r.json()["field"] == "context.played"
        r = c.put("/v1/artworks/t0-a9", json={"title_id": "t0"}, headers=AUTH)  # the pool already has 4
        assert r.status_code == 422 and r.json()["error"] == "pool_full"


# ---- outcomes and keys ---------------------------------------------------------------------------


def test_state_changing_endpoints_need_the_api_key(client: TestClient) -> None:
    calls = [
        ("post", "/v1/outcomes", {"outcomes": [{"decision_id": "d", "reward": 1}]}),
        ("put", "/v1/titles/new", {"name": "x"}),
        ("delete", "/v1/titles/t0", None),
        ("put", "/v1/artworks/t0-z", {"title_id": "t0"}),
        ("delete", "/v1/artworks/t0-a0", None),
        ("post", "/v1/model/reload", None),
    ]
    for method, url, body in calls:
        r = client.request(method, url, json=body)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"], (url, r.text)
        r = client.request(method, url, json=body, headers={"x-api-key": "wrong"})
        assert r.status_code == 403, url
    r = client.post("/v1/outcomes", json=calls[0][2], headers={"authorization": "Bearer test-key"})
    assert r.status_code == 200


BAD_OUTCOMES = [
    ({"outcomes": []}, "outcomes"),
    ({"outcomes": [{"decision_id": "d"}]}, "event_type or a reward"),
    ({"outcomes": [{"member_id": "m", "event_type": "play"}]}, "member_id and title_id"),
    ({"outcomes": [{"decision_id": "d", "reward": 1.5}]}, "outcomes[0].reward"),
    ({"outcomes": [{"decision_id": "d", "event_type": "click"}]}, "outcomes[0].event_type"),
    ({"outcomes": [{"decision_id": "d", "event_type": "play", "engaged_seconds": -3}]}, "engaged_seconds"),
    ({"outcomes": [{"decision_id": "d", "reward": 1, "timestamp": 4.2e9}]}, "outcomes[0].timestamp"),
    ({"outcomes": [{"decision_id": "d", "reward": 1, "timestamp": 1.7e12}]}, "outcomes[0].timestamp"),
]


@pytest.mark.parametrize(("body", "message"), BAD_OUTCOMES)
def test_malformed_outcomes_are_refused(
    client: TestClient, config: ServiceConfig, body: dict, message: str
) -> None:
    before = segment_bytes(config)
    r = client.post("/v1/outcomes", json=body, headers=AUTH)
    assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert segment_bytes(config) == before


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.get("/v1/decide")
    assert r.status_code == 405 and "error" in r.json()


# ---- catalog lifecycle ---------------------------------------------------------------------------


def test_catalog_create_update_retire(client: TestClient) -> None:
    assert (
        client.put("/v1/titles/new", json={"name": "New", "genres": ["drama"]}, headers=AUTH).status_code
        == 201
    )
    r = client.post("/v1/decide", json=page_body(titles=["new"]))
    assert r.status_code == 422 and r.json()["error"] == "no_artwork"
    for j in range(3):
        r = client.put(
            f"/v1/artworks/new-{j}", json={"title_id": "new", "theme_genres": ["drama"]}, headers=AUTH
        )
        assert r.status_code == 201
    r = client.put("/v1/artworks/new-0", json={"title_id": "new", "style": "dark"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["created"] is False
    assert client.put("/v1/artworks/new-0", json={"title_id": "t0"}, headers=AUTH).status_code == 422
    assert (
        client.put("/v1/artworks/x", json={"title_id": "ghost"}, headers=AUTH).json()["field"] == "title_id"
    )
    assert client.get("/v1/titles/new").json()["pool"] == ["new-0", "new-1", "new-2"]
    d = decide(client, page_body(titles=["new"]))["decisions"][0]
    assert d["artwork_id"].startswith("new-") and not d["fallback"]
    for j in range(2):
        assert client.delete(f"/v1/artworks/new-{j}", headers=AUTH).status_code == 200
    for i in range(10):
        assert decide(client, page_body(f"u{i}", titles=["new"]))["decisions"][0]["artwork_id"] == "new-2"
    assert client.delete("/v1/artworks/ghost", headers=AUTH).status_code == 404
    assert client.delete("/v1/titles/new", headers=AUTH).status_code == 200
    assert client.post("/v1/decide", json=page_body(titles=["new"])).json()["error"] == "no_artwork"
    assert client.get("/v1/titles/ghost").status_code == 404
    r = client.get("/v1/titles/new")  # deleted: gone as a resource (kept only for its logged decisions)
    assert r.status_code == 404 and r.json()["error"] == "retired_title"
    assert client.put("/v1/titles/new", json={"genres": ["drama"]}, headers=AUTH).status_code == 200
    assert client.get("/v1/titles/new").json()["active"] is True


def test_artwork_image_and_metadata_reach_the_catalog_file_that_files_load(
    client: TestClient, config: ServiceConfig
) -> None:
    """The HTTP API, the files and the constructors share one validation: what the API stores is a catalog
    file ``Catalog.load`` reads, and a string where a list belongs is refused by the API too."""
    from keyart.catalog import Catalog

    body = {"title_id": "t0", "image": "https://img.example/x.jpg", "metadata": {"designer": "ann"}}
    assert client.put("/v1/artworks/t0-img", json=body, headers=AUTH).status_code == 201
    loaded = Catalog.load(config.catalog_path)
    assert loaded.artwork("t0-img").image == "https://img.example/x.jpg"
    assert loaded.artwork("t0-img").metadata == {"designer": "ann"}
    r = client.put("/v1/titles/t9", json={"genres": "drama"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == "genres"
    assert "t9" not in Catalog.load(config.catalog_path)


def test_logged_page_has_each_pool_s_probabilities(client: TestClient, config: ServiceConfig) -> None:
    for j in range(3):  # a pool of 3 next to pools of 4: the logged rows have each pool's length
        client.put(f"/v1/artworks/t0-x{j}", json={"title_id": "t0"}, headers=AUTH)
    out = decide(client, page_body("uneven", titles=["t0", "t1", "t2"]))
    (page,) = [r for r in SegmentReader(config.segments_dir).read()[0] if r.get("member_id") == "uneven"]
    assert [len(p) for p in page["pools"]] == [7, 4, 4]
    probabilities = page_probabilities(page, [7, 4, 4])
    assert [len(p) for p in probabilities] == [7, 4, 4]
    rows = zip(out["decisions"], page["pools"], probabilities, page["index"], strict=True)
    for d, pool, probs, j in rows:
        assert pool[j] == d["artwork_id"] and probs[j] == d["propensity"] and abs(sum(probs) - 1) < 1e-9
    assert page["explored"] == [d["explored"] for d in out["decisions"]]
    assert page["decision_ids"] == [d["decision_id"] for d in out["decisions"]]
    shadow = page_probabilities(page["shadow"], [7, 4, 4])
    assert page["shadow"]["policy"] == "beta_ts" and [len(p) for p in shadow] == [7, 4, 4]
    assert all(abs(sum(p) - 1) < 1e-9 for p in shadow)
    learner = Learner(config)
    try:
        assert learner.ingest()["decisions"] == 3
    finally:
        learner.close()


# ---- fallbacks -----------------------------------------------------------------------------------


def _fallback_reasons(out: dict[str, Any]) -> set[str | None]:
    return {d["fallback_reason"] for d in out["decisions"]}


def test_missing_snapshot_falls_back_to_catalog_default(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "s"), initial=False)
    with TestClient(create_app(config)) as c:
        out = decide(c, page_body())
        assert _fallback_reasons(out) == {"no_model"}
        assert all(
            d["fallback"] and d["propensity"] == 1.0 and d["policy"] == "default" for d in out["decisions"]
        )
        assert [d["artwork_id"] for d in out["decisions"]] == [f"t{i}-a0" for i in range(8)]
        assert c.get("/v1/model").json()["model_error"] == "no snapshot published yet"
        assert 'keyart_fallbacks_total{reason="no_model"} 8.0' in c.get("/metrics").text


def test_corrupt_snapshot_falls_back_and_recovers(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "s"))
    gen_dir = next(config.snapshots_dir.glob("gen-*"))
    good = (gen_dir / "primary.npz").read_bytes()
    (gen_dir / "primary.npz").write_bytes(b"garbage")
    with TestClient(create_app(config)) as c:
        assert _fallback_reasons(decide(c, page_body())) == {"no_model"}
        assert "unreadable" in c.get("/v1/model").json()["model_error"]
        (gen_dir / "primary.npz").write_bytes(good)
        assert c.post("/v1/model/reload", headers=AUTH).json()["generation"] == 0
        assert _fallback_reasons(decide(c, page_body())) == {None}


def test_slow_model_answers_defaults_within_the_budget(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "s", model_budget_seconds=0.05))
    with TestClient(create_app(config)) as c:
        decide(c, page_body())
        gen = c.app.state.engine.generation
        real = gen.primary.choose

        def slow(batch: Any) -> Any:
            time.sleep(0.5)
            return real(batch)

        gen.primary.choose = slow
        t0 = time.perf_counter()
        out = decide(c, page_body("slow"))
        assert time.perf_counter() - t0 < 0.45
        assert _fallback_reasons(out) == {"timeout"}
        engine = c.app.state.engine
        deadline = time.monotonic() + 60  # the abandoned computation finishes and must not be logged
        while engine.finished != engine.posted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.finished == engine.posted
        gen.primary.choose = real
        assert _fallback_reasons(decide(c, page_body("slow"))) == {None}
    pages = [r for r in SegmentReader(config.segments_dir).read()[0] if r["member_id"] == "slow"]
    assert [(p["policy"], p["fallback"]) for p in pages] == [("default", True), (DEFAULT_POLICY, False)]
    assert pages[0]["request_id"] != pages[1]["request_id"]  # the abandoned computation was not logged


def test_model_error_and_unknown_member_fall_back(client: TestClient, config: ServiceConfig) -> None:
    out = client.post("/v1/decide", json={"member_id": "stranger", "title_ids": ["t1", "t2"]}).json()
    assert _fallback_reasons(out) == {"unknown_member"}
    gen = client.app.state.engine.generation

    def broken(batch: Any) -> Any:
        raise FloatingPointError("boom")

    gen.primary.choose = broken
    out = decide(client, page_body())
    assert _fallback_reasons(out) == {"model_error"} and len(out["decisions"]) == 8
    text = client.get("/metrics").text
    assert 'keyart_fallbacks_total{reason="model_error"} 8.0' in text
    assert 'keyart_fallbacks_total{reason="unknown_member"} 2.0' in text


def test_fallback_prefers_the_learned_best_unpersonalized_artwork(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "s"))
    gen = snapshots.load_latest(config.snapshots_dir)
    assert gen is not None
    snapshots.publish(config.snapshots_dir, 1, gen.primary, None, {"defaults": {"t1": "t1-a3", "t2": "gone"}})
    with TestClient(create_app(config)) as c:
        out = c.post("/v1/decide", json={"member_id": "stranger", "title_ids": ["t1", "t2"]}).json()
        assert [d["artwork_id"] for d in out["decisions"]] == ["t1-a3", "t2-a0"]


# ---- learning, hot reload, shadow ----------------------------------------------------------------


def test_outcomes_are_learned_and_the_new_generation_is_served(
    client: TestClient, config: ServiceConfig
) -> None:
    t0 = 1_700_000_000.0
    rng = np.random.default_rng(0)
    decisions = []
    for i in range(40):
        out = decide(client, page_body(f"m{i % 10}", timestamp=t0 + i))
        decisions += out["decisions"]
    outcomes = []
    for j, d in enumerate(decisions):
        if rng.random() < 0.5:  # half by decision id only, half by member and title
            outcomes.append(
                {
                    "decision_id": d["decision_id"],
                    "event_type": "play",
                    "engaged_seconds": 900.0,
                    "timestamp": t0 + 50,
                }
            )
        elif j % 7 == 0:
            outcomes.append({"decision_id": d["decision_id"], "reward": 0.25, "timestamp": t0 + 50})
    # a direct reward named by member and title: m0's latest page at or before t0 + 50 is request 30
    outcomes.append({"member_id": "m0", "title_id": "t1", "reward": 1.0, "timestamp": t0 + 50})
    r = client.post("/v1/outcomes", json={"outcomes": outcomes}, headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == len(outcomes)
    decide(client, page_body("late", timestamp=t0 + 200))  # moves event time past the window
    learner = Learner(config)
    try:
        step = learner.step()
        assert step["decisions"] == 41 * 8 and step["shadow_decisions"] == 41 * 8
        assert step["outcomes"] == sum(1 for o in outcomes if "event_type" in o)
        assert step["learned"] == 40 * 8
        joined = learner.store.connection.execute(
            "SELECT count(*) FROM outcomes WHERE member_id = '?'"
        ).fetchall()[0][0]
        assert joined == 0  # outcomes named by decision id got their member and title
        # resolved when learned: the reward went to that decision
        direct = learner.direct_rewards(learner.store.decisions())
        assert {d for d, r in direct.items() if r == 1.0} == {decisions[30 * 8 + 1]["decision_id"]}
        # idempotent: forgetting the offsets and ingesting again stores nothing twice
        (config.segments_dir / "offsets.json").unlink()
        learner.reader.offsets = {}
        again = learner.ingest()
        assert again == {"decisions": 0, "shadow_decisions": 0, "outcomes": 0, "rewards": 0}
        shadow = learner.shadow_store.decisions()
        assert set(shadow.column("policy").to_pylist()) == {"beta_ts"}
        assert min(shadow.column("propensity").to_pylist()) > 0
    finally:
        learner.close()
    deadline = time.monotonic() + 10
    while client.get("/v1/model").json()["generation"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    info = client.get("/v1/model").json()
    assert info["generation"] == 1 and info["model_version"] >= 1 and info["rewards_learned"] == 320
    assert info["shadow"]["policy"] == "beta_ts" and info["shadow"]["model_version"] >= 1
    # the priors learned by empirical Bayes at 256 rewards: the default's logistic likelihood has no noise
    # to learn (1), its ridges moved from their start (1: prior sd 1)
    priors = info["priors"]
    assert DEFAULT_POLICY == "logistic_ucb" and priors["mode"] == "empirical" and priors["noise"] == 1.0
    sds = [f["prior_sd"] for f in priors["families"].values()]
    assert priors["bias_ridge"] > 0 and priors["bias_ridge"] != 1.0 and any(sd != 1.0 for sd in sds)
    assert priors["families"] and all(f["prior_sd"] > 0 for f in priors["families"].values())
    out = decide(client, page_body("after"))
    assert out["generation"] == 1 and {d["model_version"] for d in out["decisions"]} == {
        info["model_version"]
    }
    metrics = client.get("/metrics").text
    assert f'keyart_decisions_total{{policy="{DEFAULT_POLICY}"}}' in metrics
    assert 'keyart_shadow_decisions_total{policy="beta_ts"}' in metrics
    assert (
        "keyart_request_latency_seconds_bucket" in metrics
        and 'keyart_outcomes_total{kind="reward"}' in metrics
    )


def test_rotated_segments_are_ingested_and_then_deleted(tmp_path: Path) -> None:
    """Workers seal a segment past segment_max_bytes; the learner stores every decision once and deletes
    the sealed segments it has fully ingested, keeping the one still being written."""
    config = prepare(make_config(tmp_path / "state", segment_max_bytes=4_000))
    t0 = 1_700_000_000.0
    with TestClient(create_app(config)) as client:
        for i in range(12):
            decide(client, page_body(f"m{i}", timestamp=t0 + i))
        assert len(list(config.segments_dir.glob("*.seg"))) > 3
        learner = Learner(config)
        try:
            assert learner.step()["decisions"] == 12 * 8
            assert learner.store.count("decisions") == 12 * 8
        finally:
            learner.close()
        left = list(config.segments_dir.glob("*.seg"))
        assert len(left) == 1 and not list(config.segments_dir.glob("*.done"))


def _served(client: TestClient, generation: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (info := client.get("/v1/model").json())[
        "generation"
    ] != generation and time.monotonic() < deadline:
        time.sleep(0.02)
    assert info["generation"] == generation, info
    return info


def test_a_generation_that_only_moves_learned_until_reuses_the_model(
    client: TestClient, config: ServiceConfig
) -> None:
    t0 = 1_700_000_000.0
    engine = client.app.state.engine
    out = decide(client, page_body("m1", timestamp=t0))
    learner = Learner(config)  # serves generation 0 as published: nothing to write at start

    def outcome_at(t: float) -> None:
        body = {"outcomes": [{"decision_id": out["decisions"][0]["decision_id"], "event_type": "play"}]}
        body["outcomes"][0].update(engaged_seconds=900.0, timestamp=t)
        assert client.post("/v1/outcomes", json=body, headers=AUTH).status_code == 200

    def files(n: int) -> tuple[str, list[str]]:
        """The generation's model id and its model files' recorded SHA-256 (checked against the files)."""
        gen_dir = config.snapshots_dir / snapshots.gen_name(n)
        meta = json.loads((gen_dir / "meta.json").read_text())
        snapshots.verify_files(gen_dir, meta["files"])
        return meta["model_id"], [meta["files"][f]["sha256"] for f in ("primary.npz", "shadow.npz")]

    def inodes(n: int) -> set[int]:
        gen_dir = config.snapshots_dir / snapshots.gen_name(n)
        return {(gen_dir / f).stat().st_ino for f in ("primary.npz", "shadow.npz")}

    try:
        assert learner.number == 0 and snapshots.latest_pointer(config.snapshots_dir)["generation"] == 0
        held = engine.generation.primary, engine.generation.shadow
        outcome_at(t0 + 30)  # event time moves, but the page's window (60 s) is still open
        assert learner.step()["learned"] == 0
        info = _served(client, 1)
        assert info["learned_until"] == t0 + 30 - 60 and info["model_version"] == 0
        assert files(1) == files(0)  # the same model: copied, not serialized again
        assert not inodes(1) & inodes(0)  # copies, not hard links: damage to one never spreads
        assert (engine.generation.primary, engine.generation.shadow) == held  # nothing reloaded

        outcome_at(t0 + 200)  # now the page is learned: a new model, written and loaded
        assert learner.step()["learned"] == 8
        info = _served(client, 2)
        assert info["model_version"] >= 1 and info["rewards_learned"] == 8
        assert files(2) != files(1) and engine.generation.primary is not held[0]
        learned = engine.generation.primary

        outcome_at(t0 + 300)  # nothing left to learn: metadata only again, on top of generation 2
        assert learner.step()["learned"] == 0
        info = _served(client, 3)
        assert info["learned_until"] == t0 + 300 - 60 and info["rewards_learned"] == 8
        assert files(3) == files(2) and engine.generation.primary is learned
        assert decide(client, page_body("m2"))["decisions"][0]["model_version"] == info["model_version"]
    finally:
        learner.close()
    restarted = Learner(config)  # a restarted learner resumes from the metadata-only generation
    try:
        assert (
            restarted.number == 3 and restarted.learned_until == t0 + 240 and restarted.rewards_learned == 8
        )
    finally:
        restarted.close()


def test_snapshots_swap_under_traffic_without_failing_a_request(
    client: TestClient, config: ServiceConfig
) -> None:
    gen = snapshots.load_latest(config.snapshots_dir)
    assert gen is not None
    seen = set()
    i = 0
    for n in range(1, 11):  # each generation is published while pages keep coming, until it is served
        snapshots.publish(config.snapshots_dir, n, gen.primary, gen.shadow, {}, keep=2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            i += 1
            out = decide(client, page_body(f"m{i}"))
            assert _fallback_reasons(out) == {None}
            seen.add(out["generation"])
            if out["generation"] == n:
                break
    assert seen >= set(range(1, 11))


# ---- OpenAPI -------------------------------------------------------------------------------------


def test_the_model_endpoint_keeps_the_exploration_key_secret(
    client: TestClient, config: ServiceConfig
) -> None:
    info = client.get("/v1/model").json()
    assert "seed" not in info["params"] and "seed" not in info["shadow"]["params"]
    assert "floor" in info["params"]
    assert str(config.exploration_seed()) not in client.get("/v1/model").text


def test_openapi_examples_work_against_the_app(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert {
        "/v1/decide",
        "/v1/decide/title",
        "/v1/outcomes",
        "/v1/titles/{title_id}",
        "/v1/artworks/{artwork_id}",
        "/v1/model",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(doc["paths"])
    assert "DecideRequest" in doc["components"]["schemas"] and "ContextIn" in doc["components"]["schemas"]
    assert "#/$defs/" not in orjson.dumps(doc).decode()

    def example(path: str, method: str) -> dict[str, Any]:
        return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["example"]

    r = client.put("/v1/titles/st", json=example("/v1/titles/{title_id}", "put"), headers=AUTH)
    assert r.status_code == 201
    from keyart.service.schemas import EXAMPLE_ARTWORKS

    assert example("/v1/artworks/{artwork_id}", "put") == EXAMPLE_ARTWORKS["st-1"]
    for aid, body in EXAMPLE_ARTWORKS.items():
        assert client.put(f"/v1/artworks/{aid}", json=body, headers=AUTH).status_code == 201
    r = client.post("/v1/decide", json=example("/v1/decide", "post"))
    assert r.status_code == 200
    resp = DecideResponse.model_validate(r.json())
    documented = doc["paths"]["/v1/decide"]["post"]["responses"]["200"]["content"]["application/json"][
        "example"
    ]
    assert set(documented) == set(r.json()) and set(documented["decisions"][0]) <= set(
        r.json()["decisions"][0]
    )
    assert set(r.json()["decisions"][0]) == set(DecisionOut.model_fields)
    assert resp.decisions[0].artwork_id in EXAMPLE_ARTWORKS
    r = client.post("/v1/decide/title", json=example("/v1/decide/title", "post"))
    assert r.status_code == 200 and r.json()["artwork_id"] in EXAMPLE_ARTWORKS
    r = client.post("/v1/outcomes", json=example("/v1/outcomes", "post"), headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 2
    assert client.get("/healthz").json() == {"status": "ok"} and client.get("/readyz").json()["ready"] is True


def test_the_openapi_document_says_what_the_server_does(client: TestClient) -> None:
    """Status codes, content types, the key's security schemes and the outcome rule are in the document;
    a 405 names every method of its path in ``Allow``."""
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    paths = doc["paths"]
    for path, method in (
        ("/v1/titles/{title_id}", "put"),
        ("/v1/artworks/{artwork_id}", "put"),
        ("/v1/outcomes", "post"),
        ("/v1/model/reload", "post"),
        ("/v1/titles/{title_id}", "delete"),
    ):
        assert paths[path][method]["security"] == [{"ApiKey": []}, {"Bearer": []}], (path, method)
    assert "security" not in paths["/v1/decide"]["post"]
    for path in ("/v1/titles/{title_id}", "/v1/artworks/{artwork_id}"):
        assert {"200", "201"} <= set(paths[path]["put"]["responses"])
    assert client.put("/v1/titles/brand-new", json={}, headers=AUTH).status_code == 201
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"] and client.get("/metrics").headers["content-type"].startswith(
        "text/plain"
    )
    rule = doc["components"]["schemas"]["OutcomeIn"]["allOf"]
    not_null = {"not": {"type": "null"}}
    assert {"required": ["reward"], "properties": {"reward": not_null}} in rule[0]["anyOf"]
    given = {
        "required": ["member_id", "title_id"],
        "properties": {"member_id": not_null, "title_id": not_null},
    }
    assert given in rule[1]["anyOf"]
    # an explicit null is not given, as the route reads it; a boolean is not a number
    no_kind = {"outcomes": [{"decision_id": "0", "event_type": None}]}
    assert client.post("/v1/outcomes", json=no_kind, headers=AUTH).status_code == 422
    bool_reward = {"outcomes": [{"member_id": "m", "title_id": "t0", "reward": False}]}
    assert client.post("/v1/outcomes", json=bool_reward, headers=AUTH).json()["field"] == "outcomes[0].reward"
    for method, path, allow in (
        ("POST", "/v1/titles/t0", "DELETE, GET, PUT"),
        ("GET", "/v1/decide", "POST"),
        ("DELETE", "/metrics", "GET"),
    ):
        r = client.request(method, path)
        assert r.status_code == 405 and r.headers["allow"] == allow, (method, path, r.headers)
        assert r.json()["error"] == "method_not_allowed"
