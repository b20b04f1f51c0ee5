"""The explored share in ``/metrics``: ``keyart_explored_decisions_total`` counts exactly the decisions
answered with ``explored: true``, next to ``keyart_decisions_total`` (the app in process, a real trained
snapshot)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from keyart.context import MemberContext
from keyart.features import Featurizer
from keyart.feedback import LoggedFeedback
from keyart.service.app import create_app
from keyart.service.learner import fresh_policies, publish_trained

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from test_service_support import make_config, page_body, prepare, small_catalog


def _counter(text: str, name: str, policy: str) -> float:
    m = re.search(rf'^{name}{{policy="{policy}"}} ([0-9.e+]+)$', text, flags=re.M)
    assert m, f"{name} for {policy} missing from /metrics"
    return float(m.group(1))


def test_metrics_count_exactly_the_explored_decisions(tmp_path: Path) -> None:
    config = prepare(make_config(tmp_path / "state", policy="epsilon_greedy", policy_params={"epsilon": 0.6}))
    with TestClient(create_app(config)) as client:  # generation 0: untrained, every estimate ties
        client.post("/v1/decide", json=page_body("m0")).raise_for_status()
        text = client.get("/metrics").text
        assert _counter(text, "keyart_decisions_total", "epsilon_greedy") == 8.0
        assert _counter(text, "keyart_explored_decisions_total", "epsilon_greedy") == 0.0  # there at 0
    # a trained model (rewards favour the first artwork of every pool), published as the next generation
    catalog = small_catalog()
    policy, _ = fresh_policies(config)
    f = Featurizer(catalog)
    rng = np.random.default_rng(0)
    titles = [f"t{i}" for i in range(8)]
    for step in range(4):
        batch = f.pages([MemberContext(f"u{step}-{i}") for i in range(50)], [titles] * 50)
        chosen = rng.integers(0, batch.pool_sizes)
        reward = (rng.random(batch.n) < np.where(chosen == 0, 0.6, 0.1)).astype(float)
        policy.update(LoggedFeedback(batch, chosen, 1.0 / batch.pool_sizes, reward))
    publish_trained(config, policy, None, learned_until=None)
    with TestClient(create_app(config)) as client:
        explored = 0
        for i in range(40):
            r = client.post("/v1/decide", json=page_body(f"m{i}"))
            r.raise_for_status()
            explored += sum(d["explored"] for d in r.json()["decisions"])
        text = client.get("/metrics").text
    assert 0 < explored < 320  # epsilon 0.6 over pools of 4: about 45% of the 320 decisions explore
    assert _counter(text, "keyart_explored_decisions_total", "epsilon_greedy") == explored
    assert _counter(text, "keyart_decisions_total", "epsilon_greedy") == 320.0
