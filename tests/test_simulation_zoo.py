"""The world zoo: determinism, disjoint seed sets, variety, the default world unchanged, the truth hidden,
and a short closed loop where the reference LinUCB and keyart's LinUCB beat uniform random."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.features import Featurizer
from keyart.policies import make_policy
from keyart.simulation import World, WorldConfig, small_config
from keyart.simulation.config import ARTWORK_FAMILIES, CONTEXT_FAMILIES
from keyart.simulation.experiments import make_suite_policy
from keyart.simulation.runner import PolicyAgent, RunResult, run_closed_loop
from keyart.simulation.zoo import (
    DEV_SEEDS,
    HELD_OUT_SEEDS,
    ZOO_RANGES,
    active_families,
    zoo_config,
    zoo_world,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from reference_linucb import ReferenceFeaturizer, ReferenceLinUCB

TINY = {"n_members": 300}  # the catalog of a zoo world does not depend on its member count


def fingerprint(world: World) -> tuple[str, float]:
    """sha256 (16 hex digits) of a world's hidden arrays, catalog, one member's history, a block of requests,
    their expected rewards (rounded to 12 decimals) and drawn outcomes; plus the sum of those rewards."""
    h = hashlib.sha256()
    for name in (
        "AG", "AC", "art_style", "art_base", "art_clickbait", "art_title", "title_pop", "TG", "TC",
        "genre_taste", "genre_share", "cast_taste", "style_taste", "member_country", "member_device",
        "member_activity", "history_genres", "interacted", "device_style",
    ):  # fmt: skip
        h.update(np.ascontiguousarray(getattr(world, name)).tobytes())
    h.update(repr(world.catalog.to_dict()).encode())
    h.update(repr([(p.title_id, p.timestamp, p.engaged_seconds) for p in world.member_plays[7]]).encode())
    req = world.sample_requests(200, np.random.default_rng(1))
    ev, _ = world.events(req)
    for a in (req.member, req.device, req.timestamp, req.titles, req.recommender, ev.artworks):
        h.update(np.ascontiguousarray(a).tobytes())
    q = world.expected(ev)
    h.update(np.round(q, 12).tobytes())
    out = world.draw(ev, np.zeros(ev.n, dtype=np.int64), np.random.default_rng(2))
    h.update(out.play.tobytes())
    h.update(out.quality.tobytes())
    return h.hexdigest()[:16], float(q.sum())


# Computed with this same function (copied into a script, /tmp/fp.py, that prints it for the three configs
# below) on the code before the zoo existed, commit a3314a7:
#   git worktree add /tmp/orig_zoo a3314a7 && PYTHONPATH=/tmp/orig_zoo/src .venv/bin/python /tmp/fp.py
ORIGINAL_FINGERPRINTS = {
    "default": ("e003b04c116dc668", 326.94795799751904),
    "small": ("6f59caf2d47f8872", 195.16362537646893),
    "drift+cold": ("ba6a9dc5b574864f", 270.5086620004733),
}
ORIGINAL_CONFIGS = {
    "default": WorldConfig(),
    "small": small_config(3),
    "drift+cold": WorldConfig(
        seed=5, n_members=3000, taste_drift_per_day=0.05, n_new_titles=10, n_new_artworks=20
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ORIGINAL_FINGERPRINTS))
def test_worlds_without_zoo_fields_are_bit_identical_to_before(name: str) -> None:
    digest, total = fingerprint(World(ORIGINAL_CONFIGS[name]))
    assert (digest, total) == ORIGINAL_FINGERPRINTS[name]


def test_same_seed_same_world() -> None:
    assert zoo_config(3) == zoo_config(3)
    assert zoo_config(3) != zoo_config(4)
    a, b = zoo_world(3, **TINY), zoo_world(3, **TINY)
    assert fingerprint(a) == fingerprint(b)
    assert [t[2] for t in a.cross_tables] and all(
        np.array_equal(x[2], y[2]) for x, y in zip(a.cross_tables, b.cross_tables, strict=True)
    )


def test_zoo_configs_round_trip_through_json_dicts() -> None:
    import json

    for seed in (*DEV_SEEDS[:5], HELD_OUT_SEEDS[0]):
        c = zoo_config(seed)
        assert WorldConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_dev_and_held_out_seed_sets_are_disjoint() -> None:
    assert len(DEV_SEEDS) == len(set(DEV_SEEDS)) >= 20
    assert len(HELD_OUT_SEEDS) == len(set(HELD_OUT_SEEDS)) >= 20
    assert not set(DEV_SEEDS) & set(HELD_OUT_SEEDS)


def test_zoo_worlds_differ_in_their_randomized_properties() -> None:
    configs = [zoo_config(s) for s in DEV_SEEDS]
    assert min(c.min_pool for c in configs) == 2 and max(c.max_pool for c in configs) == 40
    families = [frozenset(active_families(c)) for c in configs]
    assert len(set(families)) >= 40  # almost every world personalizes differently
    crosses = {(x, y) for c in configs for x, y, _ in c.crosses}
    assert {x for x, _ in crosses} == set(CONTEXT_FAMILIES)
    assert {y for _, y in crosses} == set(ARTWORK_FAMILIES)
    for field, lo, hi in (
        ("theme_weight", 0.0, 0.5),
        ("cast_weight", 0.0, 0.3),
        ("device_style_sd", 0.0, 0.3),
        ("taste_drift_per_day", 0.0, 0.02),
        ("n_new_artworks", 0, 15),
        ("n_tags", 0, 4),
    ):  # each family is off in some worlds and on in others
        values = [getattr(c, field) for c in configs]
        assert min(values) == lo and max(values) >= hi, field
    for field in ("clickbait_fraction", "title_popularity_sd", "play_intercept", "n_titles", "n_members"):
        assert len({getattr(c, field) for c in configs}) > 10, field
    assert {c.page_size for c in configs} == {4, 5, 6, 7, 8}
    assert set(ZOO_RANGES) >= {"n_titles", "min_pool", "max_pool", "crosses", "cold start"}
    # realized pools: a world's catalog spans 2 .. 40 artworks per title where its config allows it
    seed = next(s for s, c in zip(DEV_SEEDS, configs, strict=True) if c.min_pool == 2 and c.max_pool == 40)
    sizes = np.bincount(zoo_world(seed, **TINY).art_title)
    assert sizes.min() == 2 and sizes.max() == 40


def test_zoo_world_has_tags_and_cross_effects_in_its_truth() -> None:
    seed = next(
        s for s in DEV_SEEDS if zoo_config(s).n_tags and any(a == "tag" for _, a, _ in zoo_config(s).crosses)
    )
    world = zoo_world(seed, **TINY)
    assert any(a.tags for a in world.catalog.artworks.values())
    req = world.sample_requests(50, np.random.default_rng(0))
    ev, _ = world.events(req)
    base = world.expected(ev)
    world.cross_tables = [(c, a, 0.0 * t) for c, a, t in world.cross_tables]
    assert not np.allclose(base, world.expected(ev))  # the crosses move the truth


def test_bad_crosses_are_refused() -> None:
    with pytest.raises(ValidationError, match="A cross must be"):
        WorldConfig(crosses=(("shoe size", "style", 1.0),))
    with pytest.raises(ValidationError, match="must not repeat"):
        WorldConfig(crosses=(("device", "style", 1.0), ("device", "style", 0.5)))
    with pytest.raises(ValidationError, match="triples"):
        WorldConfig(crosses=(("device", "style"),))


MEMBER_FIELDS = {
    "member_id", "played", "country", "language", "device", "timestamp", "interacted_titles",
    "recommender_scores", "extra",
}  # fmt: skip
ARTWORK_FIELDS = {
    "artwork_id",
    "title_id",
    "theme_genres",
    "featured_cast",
    "style",
    "tags",
    "embedding",
    "active",
    "image",  # where the picture is, and free metadata (issue 12): what a catalog says, no hidden truth
    "metadata",
}
TITLE_FIELDS = {
    "title_id",
    "name",
    "genres",
    "cast",
    "runtime_minutes",
    "metadata",
    "default_artwork_id",
    "active",
}


class _Recording(Featurizer):
    """keyart's featurizer, recording what it is given (the catalog, the contexts) and what it returns."""

    seen: ClassVar[list[tuple[list[MemberContext], list[list[str]]]]] = []
    catalogs: ClassVar[list[Catalog]] = []

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        _Recording.catalogs.append(catalog)

    def pages(self, contexts, title_ids, request_ids=None):  # type: ignore[no-untyped-def]
        _Recording.seen.append((list(contexts), [list(t) for t in title_ids]))
        return super().pages(contexts, title_ids, request_ids)


def _observed(world: World, n: int = 200) -> tuple[list, RunResult, list]:
    _Recording.seen, _Recording.catalogs = [], []
    batches: list = []
    policy = make_policy("linucb", seed=0)
    choose = policy.choose
    policy.choose = lambda batch: (batches.append(batch), choose(batch))[1]  # type: ignore[method-assign]
    run = run_closed_loop(
        world, PolicyAgent(policy, bucket=False), n, update_every=50, featurizer_factory=_Recording
    )
    return list(_Recording.seen), run, batches


def test_policies_see_only_the_catalog_and_observable_contexts() -> None:
    world = zoo_world(next(s for s in DEV_SEEDS if zoo_config(s).n_tags), **TINY)
    seen, run, batches = _observed(world)
    assert _Recording.catalogs == [world.catalog] and all(type(c) is Catalog for c in _Recording.catalogs)
    for a in world.catalog.artworks.values():
        assert type(a) is Artwork and {f.name for f in dataclasses.fields(a)} == ARTWORK_FIELDS
    for t in world.catalog.titles.values():
        assert type(t) is Title and {f.name for f in dataclasses.fields(t)} == TITLE_FIELDS
    contexts = [c for ctxs, _ in seen for c in ctxs]
    assert len(contexts) == 200
    for c in contexts:
        assert type(c) is MemberContext and {f.name for f in dataclasses.fields(c)} == MEMBER_FIELDS
        assert not c.extra
    from keyart.batch import CandidateBatch

    assert batches and all(type(b) is CandidateBatch for b in batches)
    # scramble every artwork-side hidden truth: what the policy is given does not change, the truth does
    rng = np.random.default_rng(9)
    world.art_base = rng.normal(0, 1, world.art_base.shape)
    world.art_clickbait = ~world.art_clickbait
    world.style_taste = rng.normal(0, 1, world.style_taste.shape)
    world.device_style = rng.normal(0, 1, world.device_style.shape)
    world.cross_tables = [(c, a, rng.normal(0, 1, t.shape)) for c, a, t in world.cross_tables]
    seen2, run2, batches2 = _observed(world)
    assert [[c for c in ctxs] for ctxs, _ in seen2] == [[c for c in ctxs] for ctxs, _ in seen]
    assert [t for _, t in seen2] == [t for _, t in seen]
    assert all(np.array_equal(a.X, b.X) for a, b in zip(batches[:1], batches2[:1], strict=True))
    assert not np.allclose(run.oracle, run2.oracle)


def _margin(run: RunResult) -> tuple[float, float]:
    """(lift over uniform random, z of the paired difference) on the run's second half, per request."""
    half = run.n_decisions // 2
    d = (run.expected - run.random)[half:].reshape(-1, run.page_size).sum(1)
    return run.take_fraction(0.5) / run.random_take_fraction(0.5), d.mean() / d.std(ddof=1) * np.sqrt(d.size)


@pytest.mark.slow
def test_reference_and_keyart_linucb_beat_random_in_a_small_zoo_world() -> None:
    world = zoo_world(DEV_SEEDS[1], n_members=2000, n_titles=100)
    ref = run_closed_loop(
        world, ReferenceLinUCB(0), 1500, update_every=100, featurizer_factory=ReferenceFeaturizer
    )
    assert np.all((ref.propensity > 0) & (ref.propensity <= 1))
    key = run_closed_loop(world, PolicyAgent(make_suite_policy("LinUCB", 0)), 1500, update_every=100)
    for run in (ref, key):
        lift, z = _margin(run)
        # random's expected value on the same decisions is known exactly, so the paired difference per
        # request has no draw noise from random's side; 5 standard errors and a 20% lift
        assert z > 5 and lift > 1.2, (run.name, lift, z)
    assert np.array_equal(ref.member, key.member)  # the same stream for both


def test_block_cache_gives_the_same_run() -> None:
    world = zoo_world(DEV_SEEDS[2], **TINY)
    plain = run_closed_loop(world, PolicyAgent(make_suite_policy("Bandit", 0)), 300, update_every=70)
    world.block_cache = {}
    for _ in range(2):  # filling the cache, then reading it
        cached = run_closed_loop(world, PolicyAgent(make_suite_policy("Bandit", 0)), 300, update_every=70)
        for f in ("member", "title", "chosen", "propensity", "reward", "expected", "oracle"):
            assert np.array_equal(getattr(plain, f), getattr(cached, f)), f
    assert world.block_cache


def test_the_tuning_script_refuses_held_out_worlds(capsys: pytest.CaptureFixture[str]) -> None:
    import tune_defaults

    for worlds in (str(HELD_OUT_SEEDS[0]), f"1,{HELD_OUT_SEEDS[3]}"):
        with pytest.raises(SystemExit) as exc:
            tune_defaults.main(["--worlds", worlds])
        assert exc.value.code == 2
        assert "tuning never reads held-out ones" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tune_defaults.main(["--worlds", "1", "--variants", "nonsense"])
    assert "unknown variant 'nonsense'" in capsys.readouterr().err


def test_a_variants_settings_do_not_reach_the_next_task_of_a_worker() -> None:
    """A worker runs many variants one after another: each run sets every module setting a variant may
    change, so the previous variant's (the gain rule, L-BFGS-B, a tolerance, a ridge cap) is gone."""
    import keyart.priors
    import tune_defaults
    from keyart.policies import POLICIES

    before = tune_defaults._pristine()
    try:
        tune_defaults.apply_settings(tune_defaults.VARIANTS["eb-all-lag-gainstop"])
        tune_defaults.apply_settings(tune_defaults.VARIANTS["lts-eb-tol1e-4"])
        tune_defaults.apply_settings(tune_defaults.VARIANTS["eb-cap1e8"])
        assert keyart.priors.RIDGE_RANGE[1] == 1e8 and POLICIES["logistic_ts"]._prior_tol == 0.01
        tune_defaults.apply_settings(tune_defaults.VARIANTS["eb-all-lag"])
        assert tune_defaults._pristine() == before
        assert keyart.priors.FIT_METHOD == "newton" and keyart.priors.STEP_GAIN_TOL == 1e-12
    finally:
        tune_defaults.apply_settings(tune_defaults.VARIANTS["eb-all-lag"])
