"""The closed loop of horizontal serving, end to end with real processes: two ``keyart serve --follow``
nodes (separate OS processes, real HTTP) answer pages and take outcomes (some for the other node's
decisions) and write their events as Parquet into one shared directory; ``keyart spark train --publish``
(real local Spark) trains on those events and publishes; both nodes then serve the new generation, and
the probabilities they log are the new model's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from keyart.cli import app
from keyart.events import context_from_json
from keyart.features import Featurizer
from keyart.policies import load_policy, make_policy
from keyart.service.config import ServiceConfig
from keyart.service.follow import publish_next
from test_service_support import AUTH, GENRES, ServiceProcess, small_catalog
from test_spark_support import spark

__all__ = ["spark"]

SEED = 7
COUNTRIES = ("US", "FR", "JP", "BR")  # a member's country says which theme it plays


def _events(root: Path, kind: str) -> list[dict[str, Any]]:
    if not (root / kind).is_dir() or not list((root / kind).rglob("*.parquet")):
        return []
    return ds.dataset(root / kind, format="parquet", partitioning="hive").to_table().to_pylist()


def _wait(check: Any, what: str, timeout: float = 120.0) -> Any:
    """Poll ``check()`` until it returns something true (a generous deadline: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _traffic(
    nodes: list[httpx.Client], n_pages: int, t0: float, rng: np.random.Generator
) -> tuple[list[str], list[dict[str, Any]]]:
    """Pages on alternating nodes; members play (a quality play) the artworks of their country's theme;
    each outcome goes to a node drawn at random (often not the one that decided). Returns the request
    ids and the responses' decisions."""
    catalog = small_catalog()
    theme = {a.artwork_id: a.theme_genres[0] for a in catalog.artworks.values()}
    requests, decided = [], []
    for i in range(n_pages):
        m = int(rng.integers(12))
        ts = t0 + 10.0 * i
        body = {
            "member_id": f"m{m}",
            "title_ids": [f"t{j}" for j in rng.choice(8, size=3, replace=False)],
            "context": {"device": "tv", "country": COUNTRIES[m % 4], "timestamp": ts},
        }
        r = nodes[i % 2].post("/v1/decide", json=body)
        assert r.status_code == 200, r.text
        page = r.json()
        requests.append(page["request_id"])
        decided += page["decisions"]
        outcomes = [
            {
                "decision_id": d["decision_id"],
                "event_type": "play",
                "engaged_seconds": 1500.0,
                "timestamp": ts + 1,
            }
            for d in page["decisions"]
            if theme[d["artwork_id"]] == GENRES[m % 4]
        ]
        if outcomes:
            node = nodes[int(rng.integers(2))]
            assert node.post("/v1/outcomes", json={"outcomes": outcomes}, headers=AUTH).status_code == 200
    return requests, decided


def _generation(c: httpx.Client) -> int | None:
    return c.get("/v1/model").json().get("generation")


@pytest.mark.slow
def test_two_following_nodes_close_the_loop_through_spark(spark, tmp_path: Path) -> None:
    shared, events = tmp_path / "shared", tmp_path / "events"
    catalog_file = tmp_path / "catalog.json"
    small_catalog().save(catalog_file)
    publish_next(shared, make_policy("linucb", seed=SEED), {"learned_until": None})  # generation 0
    extra = ["--follow", str(shared), "--events-dir", str(events), "--events-window", "0.3"]
    extra += ["--seed", str(SEED), "--model-budget", "5"]
    rng = np.random.default_rng(3)
    t0 = time.time() - 2 * 86_400.0
    with (
        ServiceProcess(tmp_path / "a", extra=extra, catalog=catalog_file) as a,
        ServiceProcess(tmp_path / "b", extra=extra, catalog=catalog_file) as b,
        httpx.Client(base_url=a.base, timeout=30) as ca,
        httpx.Client(base_url=b.base, timeout=30) as cb,
    ):
        try:
            for c in (ca, cb):
                assert _wait(lambda c=c: _generation(c) == 0, "generation 0 served")
            _, decided = _traffic([ca, cb], 120, t0, rng)
            ids = {d["decision_id"] for d in decided}
            _wait(
                lambda: {r["event_id"] for r in _events(events, "decisions")} == ids, "all decisions written"
            )
            written = _events(events, "decisions")
            assert len({r["event_id"] for r in written}) == len(written)  # each decision once
            plays = _wait(lambda: _events(events, "outcomes"), "outcomes written")
            nodes = {p.name.rsplit("-", 2)[0] for p in events.rglob("*.parquet")}
            assert len(nodes) == 2  # both nodes wrote, each its own files

            result = CliRunner().invoke(
                app,
                [
                    "spark",
                    "train",
                    str(events),
                    "--catalog",
                    str(catalog_file),
                    "--out",
                    str(tmp_path / "model.npz"),
                    "--policy",
                    "linucb",
                    "--seed",
                    str(SEED),
                    "--window-seconds",
                    "60",
                    "--master",
                    "local[1]",
                    "--publish",
                    str(shared),
                ],
            )
            assert result.exit_code == 0, result.output
            assert "Published generation 1" in result.output
            trained = load_policy(tmp_path / "model.npz")
            assert len(plays) > 20 and trained.version_ > 0

            for c in (ca, cb):  # both nodes pick the new generation up
                assert _wait(lambda c=c: _generation(c) == 1, "generation 1 served")
            requests, decided = _traffic([ca, cb], 20, t0 + 3000.0, rng)
            assert {d["model_version"] for d in decided} == {trained.version_}
            assert not any(d["fallback"] for d in decided)
            want = set(requests)
            logged = _wait(
                lambda: (
                    [r for r in _events(events, "decisions") if r["request_id"] in want]
                    if {r["request_id"] for r in _events(events, "decisions")} >= want
                    else None
                ),
                "the new pages written",
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- node a ---\n{a.read_log()}\n--- node b ---\n{b.read_log()}"
            ) from exc
    _same_probabilities(logged, trained)


def _same_probabilities(logged: list[dict[str, Any]], policy: Any) -> None:
    """Every logged page's probabilities are ``policy``'s on that page (to 1e-9), not the old model's."""
    catalog = small_catalog()
    features = ServiceConfig(state_dir=".").features_for(policy)
    featurizer = Featurizer(catalog, features)
    old = make_policy("linucb", seed=SEED)
    pages: dict[str, list[dict[str, Any]]] = {}
    for r in logged:
        pages.setdefault(r["request_id"], []).append(r)
    differs = 0
    for rows in pages.values():
        rows.sort(key=lambda r: r["position"])
        ctx = context_from_json(rows[0]["context_json"])
        titles = [r["title_id"] for r in rows]
        want = policy.choose(featurizer.page(ctx, titles, "check")).probabilities
        before = old.choose(featurizer.page(ctx, titles, "check")).probabilities
        for i, r in enumerate(rows):
            k = len(r["pool"])
            np.testing.assert_allclose(r["probabilities"], want[i, :k], rtol=0, atol=1e-9)
            differs += not np.allclose(before[i, :k], want[i, :k], atol=1e-6)
    assert differs > 0  # the new model's probabilities are not the old one's
