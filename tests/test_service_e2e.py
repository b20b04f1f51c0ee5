"""End to end: simulated members drive the running service over real HTTP in closed loop (decide, then
report outcomes), and the contextual policy's take fraction climbs clearly above the non-contextual
baseline's on the same request stream."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from keyart.context import MemberContext
from keyart.events import context_to_dict
from keyart.service import catalog_store
from keyart.simulation import World, small_config
from test_service_support import AUTH, ServiceProcess

N_REQUESTS = 2000
LAST = 700  # requests compared at the end
SYNC_EVERY = 100  # requests between waits for the learner to catch up (bounds the model's lag)
WINDOW = 30.0
SIM_SECONDS_PER_REQUEST = 43.2  # 2,000 requests per simulated day


def _world() -> World:
    """A small world whose artwork themes matter (members' genre taste x artwork theme)."""
    cfg = replace(
        small_config(3),
        n_titles=40,
        requests_per_day=86_400 / SIM_SECONDS_PER_REQUEST,
        play_intercept=-2.5,
        theme_weight=4.0,
    )
    return World(cfg)


def _context_json(ctx: MemberContext) -> dict[str, Any]:
    """The request body's ``context``: the logged form of the context, less what the request names itself."""
    return {k: v for k, v in context_to_dict(ctx).items() if k not in ("v", "member_id", "extra")}


def _wait_learned(c: httpx.Client, until: float, timeout: float = 60.0) -> None:
    """Wait (bounded) until the served model has learned every decision up to event time ``until``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        learned = c.get("/v1/model").json().get("learned_until")
        if learned is not None and learned >= until:
            return
        time.sleep(0.02)
    raise AssertionError(f"the learner did not catch up to {until} within {timeout} s")


def _run(world: World, state: Path, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Closed loop against a fresh service running ``policy``: (expected, realized) reward per decision."""
    state.mkdir(parents=True)
    catalog_store.import_catalog(state / "catalog.json", world.catalog)
    requests = world.sample_requests(N_REQUESTS, np.random.default_rng(11))
    draws = np.random.default_rng(12)
    extra = [
        "--policy",
        policy,
        "--learn-interval",
        "0.25",
        "--attribution-window",
        str(WINDOW),
        "--model-budget",
        "5",
        "--quality-seconds",
        "600",
        "--seed",  # the exploration key: the same draws on every run (the learner's timing still varies)
        "7",
    ]
    expected: list[float] = []
    realized: list[float] = []
    with ServiceProcess(state, extra=extra) as srv, httpx.Client(base_url=srv.base, timeout=30.0) as c:
        try:
            _loop(world, requests, draws, c, expected, realized)
        except (AssertionError, httpx.HTTPError) as exc:  # say what the server said
            raise AssertionError(f"{exc!r}\n--- server log ---\n{srv.read_log()}") from exc
        info = c.get("/v1/model").json()
        assert info["policy"] == policy and info["rewards_learned"] > N_REQUESTS  # it learned online
    return np.asarray(expected), np.asarray(realized)


def _loop(
    world: World,
    requests: Any,
    draws: np.random.Generator,
    c: httpx.Client,
    expected: list[float],
    realized: list[float],
) -> None:
    """Decide each request's page, draw the members' responses, report the plays."""
    pending: list[dict[str, Any]] = []
    for i in range(requests.n):
        ctx = world.context(requests, i)
        titles = [world.title_ids[t] for t in requests.titles[i]]
        r = c.post(
            "/v1/decide",
            json={"member_id": ctx.member_id, "title_ids": titles, "context": _context_json(ctx)},
        )
        assert r.status_code == 200, r.text
        decisions = r.json()["decisions"]
        assert not any(d["fallback"] for d in decisions), decisions[0]
        shown = np.array([[d["artwork_id"]] for d in decisions], dtype=object)
        events = world.events_from_ids([ctx] * len(titles), titles, shown)
        out = world.draw(events, np.zeros(len(titles), dtype=np.int64), draws)
        expected += out.expected.tolist()
        realized += out.quality.astype(float).tolist()
        for d, play, quality in zip(decisions, out.play, out.quality, strict=True):
            if play:  # a quality play is watched past the quality bar, a clickbait click is not
                pending.append(
                    {
                        "decision_id": d["decision_id"],
                        "event_type": "play",
                        "engaged_seconds": 1500.0 if quality else 60.0,
                        "timestamp": ctx.timestamp + 1,
                    }
                )
        if len(pending) >= 20 or i == requests.n - 1 or (i + 1) % SYNC_EVERY == 0:
            if pending:
                assert c.post("/v1/outcomes", json={"outcomes": pending}, headers=AUTH).status_code == 200
            pending = []
        if (i + 1) % SYNC_EVERY == 0:
            _wait_learned(c, ctx.timestamp - WINDOW - 1.0)


@pytest.mark.slow
def test_closed_loop_over_http_beats_the_non_contextual_baseline(tmp_path: Path) -> None:
    world = _world()
    base_exp, base_real = _run(world, tmp_path / "beta_ts", "beta_ts")
    world.reset()
    ctx_exp, ctx_real = _run(world, tmp_path / "linucb", "linucb")
    page = base_exp.size // N_REQUESTS
    tail = slice(-LAST * page, None)
    # paired on the same (request, title): the expected take fraction of what each policy showed
    diff = ctx_exp[tail] - base_exp[tail]
    z = diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size))
    head = slice(0, LAST * page)
    climb = ctx_exp[tail].mean() - ctx_exp[head].mean()
    print(
        f"take fraction (expected) last {LAST} requests: linucb {ctx_exp[tail].mean():.4f} "
        f"vs beta_ts {base_exp[tail].mean():.4f} (z = {z:.1f}); realized {ctx_real[tail].mean():.4f} "
        f"vs {base_real[tail].mean():.4f}; linucb climbed {climb:+.4f} from its first {LAST}"
    )
    assert z > 3.0
    assert climb > 0
