"""The simulated world itself: reproducible, calibrated, never leaking hidden tastes, oracle on top."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.simulation import SHOWCASE_TITLE_ID, World, WorldConfig, demo_config, small_config


@pytest.fixture(scope="module")
def world() -> World:
    return World(small_config(seed=3))


@pytest.fixture(scope="module")
def block(world: World):
    rng = np.random.default_rng(11)
    requests = world.sample_requests(2_000, rng)
    events, pools = world.events(requests)
    return requests, events, pools


def test_same_seed_same_world() -> None:
    a, b = World(small_config(seed=5)), World(small_config(seed=5))
    assert a.catalog == b.catalog
    ra = a.sample_requests(50, np.random.default_rng(1))
    rb = b.sample_requests(50, np.random.default_rng(1))
    assert a.contexts(ra) == b.contexts(rb)
    ea, _ = a.events(ra)
    eb, _ = b.events(rb)
    np.testing.assert_array_equal(a.expected(ea), b.expected(eb))
    oa = a.draw(ea, np.zeros(ea.n, dtype=np.int64), np.random.default_rng(2))
    ob = b.draw(eb, np.zeros(eb.n, dtype=np.int64), np.random.default_rng(2))
    np.testing.assert_array_equal(oa.quality, ob.quality)


def test_other_seed_other_world() -> None:
    assert World(small_config(seed=1)).catalog != World(small_config(seed=2)).catalog


def test_catalog_shape(world: World) -> None:
    c = world.config
    sizes = [len(world.catalog.pool(t)) for t in world.catalog.active_title_ids()]
    assert min(sizes) >= c.min_pool and max(sizes) <= c.max_pool
    for t in world.catalog.titles.values():
        assert 1 <= len(t.genres) <= 3 and c.min_title_cast <= len(t.cast) <= c.max_title_cast
    for a in world.catalog.artworks.values():
        assert a.theme_genres and a.style
        assert set(a.theme_genres) <= set(world.catalog.title(a.title_id).genres)
        assert set(a.featured_cast) <= set(world.catalog.title(a.title_id).cast)
    assert world.art_clickbait.any()
    showcase = world.catalog.pool(SHOWCASE_TITLE_ID)
    assert {a.theme_genres for a in showcase[:3]} == {("comedy",), ("romance",), ("drama",)}


def test_hidden_tastes_never_leak_into_context(world: World, block) -> None:
    """Contexts are a function of observable data only: scrambling every hidden taste changes nothing."""
    requests, _, _ = block
    before = world.contexts(requests)
    fields = {f.name for f in dataclasses.fields(MemberContext)}
    assert fields == {
        "member_id",
        "played",
        "country",
        "language",
        "device",
        "timestamp",
        "interacted_titles",
        "recommender_scores",
        "extra",
    }
    saved = {
        k: getattr(world, k).copy()
        for k in (
            "genre_taste",
            "cast_taste",
            "style_taste",
            "genre_taste_drift",
            "art_base",
            "art_clickbait",
        )
    }
    rng = np.random.default_rng(0)
    try:
        for k, v in saved.items():
            setattr(world, k, rng.permutation(v.ravel()).reshape(v.shape))
        after = world.contexts(requests)
    finally:
        for k, v in saved.items():
            setattr(world, k, v)
    assert before == after
    assert all(not ctx.extra for ctx in before)
    # the catalog carries no hidden truth either (no appeal, no clickbait flag)
    assert all(not a.tags and a.embedding is None for a in world.catalog.artworks.values())


def test_history_reveals_taste(world: World) -> None:
    """Plays are sampled from tastes: the history's genre shares track the hidden genre distribution."""
    hist, hidden = world.history_genres, world.genre_share
    assert np.corrcoef(hist.ravel(), hidden.ravel())[0, 1] > 0.5
    agree = hist.argmax(1) == hidden.argmax(1)
    n = agree.size
    # the most-played genre is the strongest hidden one far more often than chance (1 / 12)
    assert agree.mean() - 3 * math.sqrt(0.25 / n) > 3 / world.config.n_genres


def test_oracle_beats_every_choice(world: World, block) -> None:
    _, events, _ = block
    q = world.expected(events)
    best, value = world.oracle(events)
    assert np.all(value >= q.max(1) - 1e-15)
    rng = np.random.default_rng(4)
    for _ in range(5):
        probs = rng.dirichlet(np.ones(q.shape[1]), size=events.n) * events.mask
        probs /= probs.sum(1, keepdims=True)
        assert np.all(world.value(events, probs) <= value + 1e-12)
    assert np.all(events.mask[np.arange(events.n), best])


def test_padding_has_no_value(world: World, block) -> None:
    _, events, _ = block
    q = world.expected(events)
    assert np.all(q[~events.mask] == 0) and np.all(q[events.mask] > 0) and np.all(q < 1)


@pytest.mark.slow
def test_calibration_of_demo_world() -> None:
    """Random take fraction is a few percent and at most about half of the oracle's."""
    w = World(demo_config(seed=0))
    events, _ = w.events(w.sample_requests(3_000, np.random.default_rng(0)))
    q = w.expected(events)
    random = float((q.sum(1) / events.mask.sum(1)).mean())
    oracle = float(w.oracle(events)[1].mean())
    assert 0.01 <= random <= 0.06
    assert random <= 0.5 * oracle


def test_clickbait_raises_plays_but_lowers_quality(world: World, block) -> None:
    _, events, _ = block
    p_play, p_q = world.probabilities(events)
    flagged = world.art_clickbait[np.where(events.mask, events.artworks, 0)] & events.mask
    clean = events.mask & ~flagged
    assert p_play[flagged].mean() > p_play[clean].mean()
    assert p_q[flagged].mean() < p_q[clean].mean()


def test_artwork_matters_less_for_known_titles(world: World, block) -> None:
    _, events, _ = block
    q = world.expected(events)
    rel_gap = (world.oracle(events)[1] - q.sum(1) / events.mask.sum(1)) / world.oracle(events)[1]
    assert rel_gap[events.interacted].mean() < rel_gap[~events.interacted].mean()
    assert 0.1 < events.interacted.mean() < 0.7


def test_drift_changes_truth_over_time() -> None:
    w0 = World(small_config(seed=1))
    w1 = World(small_config(seed=1).with_(taste_drift_per_day=0.5))
    events, _ = w0.events(w0.sample_requests(200, np.random.default_rng(0)))
    later = dataclasses.replace(events, timestamp=events.timestamp + 3 * 86_400)
    np.testing.assert_allclose(w0.expected(events), w0.expected(later))
    assert not np.allclose(w1.expected(events), w1.expected(later))


_LAUNCH_MEMBERS = (
    "genre_share",
    "genre_taste",
    "cast_taste",
    "style_taste",
    "member_country",
    "member_device",
    "member_activity",
    "history_genres",
    "device_style",
)


@pytest.mark.parametrize(
    "changes",
    [
        {"taste_drift_per_day": 0.5},
        {"n_new_titles": 5, "n_new_artworks": 10},
        {"taste_drift_per_day": 0.2, "n_new_titles": 2, "n_new_artworks": 3, "arrival_day": 0.5},
    ],
)
def test_drift_and_cold_start_keep_the_launch_world(changes: dict) -> None:
    """Drift and arrivals come from their own generators: the launch world is the same without them."""
    base = World(small_config(seed=6))
    other = World(small_config(seed=6).with_(**changes))
    assert other.catalog == base.catalog
    T, A = len(base.title_ids), len(base.artwork_ids)
    for name in ("TG", "TC", "title_pop"):
        np.testing.assert_array_equal(getattr(other, name)[:T], getattr(base, name), err_msg=name)
    for name in ("AG", "AC", "art_style", "art_base", "art_clickbait", "art_title"):
        np.testing.assert_array_equal(getattr(other, name)[:A], getattr(base, name), err_msg=name)
    assert other.artwork_ids[:A] == base.artwork_ids
    for name in _LAUNCH_MEMBERS:
        np.testing.assert_array_equal(getattr(other, name), getattr(base, name), err_msg=name)
    np.testing.assert_array_equal(other.interacted[:, :T], base.interacted)
    assert other.member_plays == base.member_plays
    # the same events at the start have the same truth (drift starts from the launch tastes)
    events, _ = base.events(base.sample_requests(300, np.random.default_rng(0)))
    events = dataclasses.replace(events, timestamp=np.full(events.n, base.config.start_time))
    np.testing.assert_array_equal(other.expected(events), base.expected(events))


def test_cold_start_arrivals() -> None:
    cfg = small_config(seed=2).with_(n_new_titles=4, n_new_artworks=6, arrival_day=2.0)
    w = World(cfg)
    assert len(w.catalog) == cfg.n_titles
    n_art = len(w.catalog.artworks)
    assert w.advance_to(cfg.start_time + 86_400) == []
    arrived = w.advance_to(cfg.start_time + 2.5 * 86_400)
    assert len(w.catalog) == cfg.n_titles + 4 and len(w.catalog.artworks) == n_art + len(arrived)
    assert len(arrived) >= 4 * cfg.min_pool + 6
    requests = w.sample_requests(500, np.random.default_rng(0))
    assert (requests.titles >= cfg.n_titles).any()  # new titles reach pages
    w.reset()
    assert len(w.catalog) == cfg.n_titles


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_titles": 1}, "'n_titles' parameter of WorldConfig"),
        ({"min_pool": 5, "max_pool": 4}, "'max_pool' parameter of WorldConfig must be >= min_pool"),
        ({"clickbait_fraction": 1.5}, "'clickbait_fraction' parameter of WorldConfig must be a number in"),
        ({"seed": -1}, "'seed' parameter of WorldConfig"),
        ({"page_size": 500}, "'page_size' parameter of WorldConfig must be <= n_titles"),
        ({"known_title_damping": 2.0}, "'known_title_damping'"),
    ],
)
def test_bad_config(changes: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        small_config().with_(**changes)


def test_config_round_trip_and_version() -> None:
    cfg = small_config(seed=9)
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValidationError, match="world_config_version"):
        WorldConfig.from_dict({**cfg.to_dict(), "world_config_version": 0})
    with pytest.raises(ValidationError, match="Unknown WorldConfig fields"):
        WorldConfig.from_dict({**cfg.to_dict(), "nope": 1})


def test_bad_inputs(world: World) -> None:
    with pytest.raises(ValidationError, match="n must be a positive int"):
        world.sample_requests(0, np.random.default_rng(0))
    with pytest.raises(ValidationError, match="config must be a WorldConfig"):
        World({"seed": 1})  # type: ignore[arg-type]
    events, _ = world.events(world.sample_requests(3, np.random.default_rng(0)))
    chosen = np.zeros(events.n, dtype=np.int64)
    for kwargs in ({}, {"rng": np.random.default_rng(0), "uniforms": np.zeros((events.n, 2))}):
        with pytest.raises(ValidationError, match="exactly one of rng and uniforms"):
            world.draw(events, chosen, **kwargs)
    with pytest.raises(ValidationError, match="uniforms must have shape"):
        world.draw(events, chosen, uniforms=np.zeros((events.n, 3)))
