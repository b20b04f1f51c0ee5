"""Evaluating a candidate on today's pools: artworks retired since logging get probability 0, artworks new
since logging are unsupported by the log (flagged, with the exact mass), checked against the known truth of
a small hand-built world logged uniformly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.evaluate_cli import evaluate
from keyart.evaluation import EstimatorConfig, evaluate_policy
from keyart.evaluation.compare import evaluation_pools
from keyart.events import OutcomeRecord, decisions_from_batch
from keyart.features import Featurizer
from keyart.policies import make_policy
from keyart.rewards import RewardTable, join_rewards
from keyart.store import EventStore

pytestmark = pytest.mark.slow  # every test shares one 40 s world fixture (CI runs them; -m 'not slow' skips)

T0 = 1_700_000_000.0
STYLES = ("dark", "bright", "face")
#: P(quality play | artwork style, member country): the world's known truth ("neon" arrives later).
P_QUALITY = {
    "FR": {"dark": 0.10, "bright": 0.35, "face": 0.55, "neon": 0.60},
    "US": {"dark": 0.30, "bright": 0.15, "face": 0.50, "neon": 0.20},
}
TITLES = [f"t{i}" for i in range(8)]
CHANGED = TITLES[:4]  # titles whose pools change after logging


def _catalog() -> Catalog:
    titles = [Title(t, genres=("drama",), runtime_minutes=60.0) for t in TITLES]
    return Catalog(titles, [Artwork(f"{t}-a{j}", t, style=s) for t in TITLES for j, s in enumerate(STYLES)])


def _copy(cat: Catalog) -> Catalog:
    return Catalog.from_dict(cat.to_dict())


def _log(cat: Catalog, members: int, seed: int, prefix: str) -> tuple[pa.Table, list[OutcomeRecord]]:
    """Uniform logging: each member sees 3 random titles; quality plays drawn from ``P_QUALITY``."""
    feat = Featurizer(cat)
    logger = make_policy("uniform", seed=seed)
    rng = np.random.default_rng(seed)
    tables, outcomes = [], []
    for m in range(members):
        country = str(rng.choice(["FR", "US"]))
        ctx = MemberContext(member_id=f"{prefix}{m}", country=country, timestamp=T0 + 10 * m)
        titles = rng.choice(TITLES, size=3, replace=False).tolist()
        page = feat.page(ctx, titles, request_id=f"{prefix}r{m}")
        table = decisions_from_batch(logger.choose(page), ctx, page="home", positions=[0, 1, 2])
        tables.append(table)
        for row in table.to_pylist():
            if rng.random() < P_QUALITY[country][cat.artwork(row["artwork_id"]).style]:
                eid = row["event_id"]
                outcomes.append(
                    OutcomeRecord(
                        f"o-{eid}",
                        row["member_id"],
                        row["title_id"],
                        "play",
                        row["timestamp"] + 60,
                        eid,
                        1800.0,
                    )
                )
    return pa.concat_tables(tables), outcomes


@pytest.fixture(scope="module")
def world():
    """A catalog, a greedy candidate learned from one uniform log, and a second log to evaluate it on."""
    cat = _catalog()
    feat = Featurizer(cat)
    train = join_rewards(*_log(cat, 1500, seed=1, prefix="a"), window_seconds=3600.0, as_of=T0 + 1e6)
    candidate = make_policy("greedy", seed=5, floor=0.1).update(train.to_feedback(feat))
    decisions, outcomes = _log(cat, 3000, seed=2, prefix="b")
    joined = join_rewards(decisions, outcomes, window_seconds=3600.0, as_of=T0 + 1e6)
    return cat, candidate, joined, decisions, outcomes


def _truth(rewards: RewardTable, feat: Featurizer, policy, pools: list[tuple[str, ...]]) -> float:
    """The candidate's true value on the evaluated events' contexts when it chooses from ``pools``:
    mean over events of sum_a pi(a | x) P(quality | a, x), a plain loop over the policy's probabilities."""
    contexts = rewards.contexts()
    titles = rewards.table.column("title_id").to_pylist()
    probs = policy.probabilities(feat.events(contexts, titles, pools))
    total = 0.0
    for i, (ctx, pool) in enumerate(zip(contexts, pools, strict=True)):
        total += sum(
            probs[i, j] * P_QUALITY[ctx.country][feat.catalog.artwork(a).style] for j, a in enumerate(pool)
        )
    return total / len(pools)


def _today(cat: Catalog, rewards: RewardTable) -> list[tuple[str, ...]]:
    return [cat.pool_ids(t) for t in rewards.table.column("title_id").to_pylist()]


def test_retired_artworks_get_no_mass_and_the_estimate_matches_the_truth_today(world) -> None:
    """(a) The best artwork of half of the titles is retired: the candidate can no longer show it. On
    today's pools (nothing new, so full support) IPS, SNIPS and DR agree with the true value today; on the
    logged pools (the old behaviour) the estimate is far above it."""
    cat, candidate, joined, _, _ = world
    now = _copy(cat)
    for t in CHANGED:
        now.retire_artwork(f"{t}-a2")  # 'face': the best style for everyone
    feat = Featurizer(now)
    truth_now = _truth(joined, feat, candidate, _today(now, joined))
    truth_logged = _truth(
        joined, feat, candidate, [tuple(p) for p in joined.table.column("pool").to_pylist()]
    )
    assert truth_logged - truth_now > 0.03  # the change matters

    ev = evaluation_pools(joined, feat)
    dist = ev.distribution(candidate)
    assert np.allclose(dist.sum(axis=1), 1.0) and (dist[ev.retired] == 0).all()
    assert ev.retired.any() and not ev.new.any() and ev.n_dropped == 0 and ev.n == joined.table.num_rows

    ests = {
        e.estimator: e for e in evaluate_policy(joined, candidate, ["ips", "snips", "dr"], featurizer=feat)
    }
    for e in ests.values():
        assert e.unsupported_mass == 0.0 and "support_deficiency" not in e.flags
        assert abs(e.value - truth_now) <= 4 * e.se, (e.estimator, e.value, truth_now, e.se)
    (old,) = evaluate_policy(joined, candidate, ["ips"], featurizer=feat, pools="logged")
    assert old.value - truth_now > 4 * old.se and old.flags == ()  # what the logged pools would report


def test_mass_on_new_artworks_is_flagged_with_the_exact_unsupported_mass(world) -> None:
    """(b) A new artwork joins half of the titles (and the best one is retired): the candidate's mass on it
    is unsupported by the log, counted exactly and flagged; IPS equals a plain per-event reference."""
    cat, candidate, joined, _, _ = world
    now = _copy(cat)
    for t in CHANGED:
        now.retire_artwork(f"{t}-a2")
        now.add_artwork(Artwork(f"{t}-a3", t, style="neon"))
    feat = Featurizer(now)
    pools_now = _today(now, joined)
    titles = joined.table.column("title_id").to_pylist()
    probs = candidate.probabilities(feat.events(joined.contexts(), titles, pools_now))
    logged_pools = joined.table.column("pool").to_pylist()
    shown = joined.table.column("artwork_id").to_pylist()
    propensity = joined.table.column("propensity").to_pylist()
    new_mass, ips = 0.0, 0.0
    for i, pool in enumerate(pools_now):
        new_mass += sum(probs[i, j] for j, a in enumerate(pool) if a not in logged_pools[i])
        pi_shown = sum(probs[i, j] for j, a in enumerate(pool) if a == shown[i])  # 0 when retired
        ips += pi_shown / propensity[i] * joined.reward[i]
    new_mass /= len(pools_now)
    ips /= len(pools_now)
    assert new_mass > 0.05

    ev = evaluation_pools(joined, feat)
    assert ev.new_mass(ev.distribution(candidate)) == pytest.approx(new_mass, abs=1e-12)
    cfg = EstimatorConfig(ci="normal")
    ests = {e.estimator: e for e in evaluate_policy(ev, candidate, ["ips", "snips", "dr", "dm"], config=cfg)}
    for e in ests.values():
        assert e.unsupported_mass == pytest.approx(new_mass, abs=1e-12)
        assert "support_deficiency" in e.flags
    assert ests["ips"].value == pytest.approx(ips, rel=1e-12)
    assert np.isfinite(ests["dm"].value)  # the reward model scores the new artworks from their features


def test_pools_as_logged_reproduce_the_logged_feedback_path(world) -> None:
    cat, candidate, joined, _, _ = world
    feat = Featurizer(cat)
    kw = {"estimators": ["ips", "snips", "dr"], "seed": 3}
    via_table = evaluate_policy(joined, candidate, featurizer=feat, pools="logged", **kw)
    via_feedback = evaluate_policy(
        joined.to_feedback(feat),
        candidate,
        logging_probabilities=joined.logging_probabilities(),
        pools="logged",
        **kw,
    )
    assert [e.value for e in via_table] == pytest.approx([e.value for e in via_feedback], rel=1e-12)
    today = evaluate_policy(joined, candidate, featurizer=feat, **kw)  # nothing changed: same numbers
    assert [e.value for e in today] == pytest.approx([e.value for e in via_feedback], rel=1e-12)


def test_events_of_titles_without_a_pool_today_are_left_out_and_counted(world) -> None:
    cat, _, joined, _, _ = world
    now = _copy(cat)
    now.retire_title("t7")
    ev = evaluation_pools(joined, Featurizer(now))
    titles = joined.table.column("title_id").to_pylist()
    assert ev.dropped_titles == ("t7",) and ev.n_dropped == titles.count("t7")
    assert ev.n == len(titles) - ev.n_dropped
    assert ev.feedback.batch.title_ids.tolist() == [t for t in titles if t != "t7"]


def test_given_pools_mapping(world) -> None:
    cat, candidate, joined, _, _ = world
    feat = Featurizer(cat)
    ev = evaluation_pools(joined, feat, {t: (f"{t}-a0",) for t in TITLES})  # only 'dark' artworks
    dist = ev.distribution(candidate)
    dark = np.char.endswith(ev.feedback.batch.artwork_ids.astype(str), "-a0")
    assert np.allclose((dist * dark).sum(axis=1), 1.0) and ev.pools == "given" and not ev.new.any()


BAD = [
    ({"pools": "today"}, "pools must be one of"),
    ({"pools": {"t0": []}}, "non-empty list"),
    ({"featurizer": None}, "needs the featurizer"),
    ({"logging_probabilities": np.ones((1, 1))}, "go with a LoggedFeedback"),
    ({"feedback": "log.csv"}, "must be a RewardTable"),
    ({"feedback": "logged feedback"}, "holds only the logged pools"),
]


@pytest.mark.parametrize(("over", "match"), BAD)
def test_bad_pool_arguments(world, over, match) -> None:
    cat, candidate, joined, _, _ = world
    feat = Featurizer(cat)
    kwargs = {"feedback": joined, "featurizer": feat, **over}
    if kwargs["feedback"] == "logged feedback":
        kwargs["feedback"] = joined.to_feedback(feat)
    with pytest.raises(ValidationError, match=match):
        evaluate_policy(candidate=candidate, estimators=["ips"], **kwargs)


def test_evaluate_command_acts_on_todays_catalog(world, tmp_path: Path) -> None:
    cat, candidate, _, decisions, outcomes = world
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions(decisions)
        store.append_outcomes(outcomes)
    now = _copy(cat)
    for t in CHANGED:
        now.retire_artwork(f"{t}-a2")
        now.add_artwork(Artwork(f"{t}-a3", t, style="neon"))
    now.save_json(tmp_path / "catalog.json")
    candidate.save(tmp_path / "greedy.npz")
    kw = {
        "candidate": [str(tmp_path / "greedy.npz")],
        "fmt": "keyart",
        "catalog": tmp_path / "catalog.json",
        "window_seconds": 3600.0,
        "estimator": ["ips", "snips"],
        "quiet": True,
    }
    res = evaluate(tmp_path / "e.duckdb", out=tmp_path / "now", **kw)
    assert res.new_mass is not None and res.new_mass["greedy:greedy"] > 0.05
    for e in res.comparison.estimates:
        assert "support_deficiency" in e.flags and e.unsupported_mass == pytest.approx(
            res.new_mass["greedy:greedy"]
        )
    assert "Pools: today's" in res.markdown and "of its mass on artworks new since logging" in res.markdown
    old = evaluate(tmp_path / "e.duckdb", out=tmp_path / "logged", pools="logged", **kw)
    assert old.new_mass == {"greedy:greedy": 0.0} and "Pools: as logged" in old.markdown
    assert all("support_deficiency" not in e.flags for e in old.comparison.estimates)
    with pytest.raises(ValidationError, match="pools must be one of"):
        evaluate(tmp_path / "e.duckdb", out=tmp_path / "x", pools="today", **kw)
