"""The image world: artworks drawn as pictures from hidden visual attributes, seen by keyart only through
``keyart.vision``'s features of the files; the attributes are recoverable from those features."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")

from keyart.catalog import Artwork
from keyart.errors import ValidationError
from keyart.features import FeatureConfig, Featurizer
from keyart.policies import make_policy
from keyart.simulation.images import (
    IMAGE_DEV_SEEDS,
    IMAGE_HELD_OUT_SEEDS,
    VISUAL_ATTRIBUTES,
    ImageConfig,
    ImageWorld,
    draw_visual_attributes,
    image_world_config,
    render_artwork,
)
from keyart.simulation.runner import PolicyAgent, run_closed_loop
from keyart.simulation.world import World
from keyart.vision import FEATURE_NAMES, Scaling, embedding, image_features, image_features_from_bytes
from keyart.vision.features import MIN_SCALING_IMAGES

TINY = {
    "n_titles": 12,
    "n_cast": 12,
    "n_members": 300,
    "max_pool": 5,
    "mean_extra_pool": 1.0,
    "n_new_titles": 3,
    "n_new_artworks": 3,
    "arrival_day": 0.01,  # 200 requests in
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ImageWorld:
    return ImageWorld(image_world_config(5, **TINY), tmp_path_factory.mktemp("images"))


def _features(attributes: np.ndarray, seed: int) -> dict[str, float]:
    import cv2

    rgb = render_artwork(np.asarray(attributes, dtype=np.float64), np.random.default_rng(seed))
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    return image_features_from_bytes(png, "drawn.png").as_dict()


def test_each_drawn_attribute_moves_its_feature_the_right_way() -> None:
    """Pairs of pictures that differ in one attribute only (same texture seed): the feature follows."""
    base = np.array([0.0, 0.0, -1.0, -1.0, 0.0])
    checks = {
        "warmth": ("warmth", -0.9, 0.9),
        "brightness": ("brightness", -0.9, 0.9),
        "closeup": ("face_share", -1.0, 1.0),
        "lettering": ("text_share", -1.0, 1.0),
        "saturation": ("saturation", -0.9, 0.9),
    }
    for attribute, (feature, low, high) in checks.items():
        j = VISUAL_ATTRIBUTES.index(attribute)
        for seed in range(2):
            a, b = base.copy(), base.copy()
            a[j], b[j] = low, high
            assert _features(a, seed)[feature] < _features(b, seed)[feature], (attribute, seed)
    closeup = _features(np.array([0.0, 0.0, 1.0, -1.0, 0.0]), 0)
    group = _features(np.array([0.0, 0.0, -1.0, -1.0, 0.0]), 0)
    assert closeup["face_count"] == 1 and group["face_count"] >= 2  # one big face vs several small ones


def test_the_attributes_are_recoverable_from_the_features_over_random_artworks() -> None:
    """Over 30 random artworks, each attribute correlates with its feature (saturation least: the faces'
    skin and the lettering are the same in every picture, and a palette halfway between warm and cool is
    greyish whatever its saturation)."""
    attrs = draw_visual_attributes(np.random.default_rng(11), 30)
    feats = [_features(a, i) for i, a in enumerate(attrs)]
    pairs = {
        "warmth": ("warmth", 0.7),
        "brightness": ("brightness", 0.7),
        "closeup": ("face_share", 0.7),
        "lettering": ("text_share", 0.7),
        "saturation": ("saturation", 0.3),
    }
    for attribute, (feature, bar) in pairs.items():
        x = attrs[:, VISUAL_ATTRIBUTES.index(attribute)]
        y = np.array([f[feature] for f in feats])
        r = np.corrcoef(x, y)[0, 1]
        # 30 pairs: r > 0.42 is beyond chance at 1% (one-sided); the bars of the first four ask for more
        assert r > max(bar, 0.42), (attribute, feature, r)


def test_same_seed_same_pictures_and_embeddings(tiny: ImageWorld, tmp_path: Path) -> None:
    import shutil

    from keyart.vision.batch import DEFAULT_CACHE_NAME

    # the features come from the cache (keyed by content: the same only if the pictures are the same)
    shutil.copy(tiny.images / DEFAULT_CACHE_NAME, tmp_path / DEFAULT_CACHE_NAME)
    again = ImageWorld(image_world_config(5, **TINY), tmp_path)
    assert again.extraction.computed == 0 and again.extraction.cached == len(tiny.artwork_ids)
    assert again.artwork_ids == tiny.artwork_ids
    np.testing.assert_array_equal(again.visual_attributes, tiny.visual_attributes)
    np.testing.assert_array_equal(again.visual_taste, tiny.visual_taste)
    for a in range(len(tiny.artwork_ids)):
        name = tiny.image_name(a)
        assert (tmp_path / name).read_bytes() == (tiny.images / name).read_bytes()
    assert again._artworks == tiny._artworks


def test_the_underlying_world_is_the_plain_worlds(tiny: ImageWorld) -> None:
    plain = World(image_world_config(5, **TINY))
    for name in ("art_base", "art_style", "AG", "AC", "genre_taste", "art_arrival", "title_pop"):
        np.testing.assert_array_equal(getattr(tiny, name), getattr(plain, name))


def test_new_artworks_arrive_with_pixels_and_no_tags(tiny: ImageWorld) -> None:
    new = tiny.new_artworks
    assert new.sum() > 0 and (~new).sum() > 0
    tiny.reset()
    assert not any(tiny.artwork_ids[a] in tiny.catalog.artworks for a in np.flatnonzero(new))
    tiny.advance_to(tiny.config.start_time + tiny.config.arrival_day * 86_400)
    for a in range(len(tiny.artwork_ids)):
        art = tiny.catalog.artworks[tiny.artwork_ids[a]]
        assert art.image == f"{art.artwork_id}.png" and art.embedding is not None
        if new[a]:
            assert (art.theme_genres, art.featured_cast, art.style, art.tags) == ((), (), "", ())
        else:
            assert art.theme_genres  # launch artworks keep the tags people typed
    tiny.reset()


def test_the_policys_inputs_carry_only_the_pixels_features(tiny: ImageWorld) -> None:
    """Every embedding is the vision features of the artwork's file, computed afresh from the file alone;
    the featurizer's embedding columns are those; and scrambling the hidden attributes and tastes after the
    pictures are drawn changes the truth but nothing the policy is given."""
    scaling = tiny.extraction.scaling  # fitted on the launch artworks' pictures only
    launch = np.array(
        [image_features(tiny.images / tiny.image_name(a)).values for a in np.flatnonzero(~tiny.new_artworks)]
    )
    assert scaling == Scaling.fit(launch) and scaling.images == len(launch) >= MIN_SCALING_IMAGES
    for a in tiny._artworks:
        want = embedding(image_features(tiny.images / str(a.image)).values, scaling)
        np.testing.assert_allclose(a.embedding, want, rtol=0, atol=1e-12)
        assert not {f.name for f in dataclasses.fields(Artwork)} & set(VISUAL_ATTRIBUTES)
        assert not a.metadata

    config = FeatureConfig(embedding_dim=len(FEATURE_NAMES))

    def observed() -> tuple[list[np.ndarray], np.ndarray]:
        batches: list[np.ndarray] = []
        policy = make_policy("epsilon_greedy", seed=0)
        choose = policy.choose
        policy.choose = lambda batch: (batches.append(batch.X.copy()), choose(batch))[1]  # type: ignore[method-assign]
        run = run_closed_loop(
            tiny,
            PolicyAgent(policy, bucket=False),
            250,
            update_every=50,
            featurizer_factory=lambda c: Featurizer(c, config),
        )
        return batches, run.oracle

    seen, oracle = observed()
    keep = tiny.visual_attributes, tiny.visual_taste
    rng = np.random.default_rng(3)
    tiny.visual_attributes = rng.uniform(-1, 1, keep[0].shape)
    tiny.visual_taste = rng.normal(0, 1, keep[1].shape)
    try:
        seen2, oracle2 = observed()
    finally:
        tiny.visual_attributes, tiny.visual_taste = keep
    assert len(seen) == len(seen2) and all(np.array_equal(a, b) for a, b in zip(seen, seen2, strict=True))
    assert not np.allclose(oracle, oracle2)


def test_the_visual_taste_is_in_the_truth_and_follows_genre_taste(tiny: ImageWorld) -> None:
    c = tiny.config
    # the genre part: members of the same favourite genre lean the same way
    fav = tiny.favorite_genre()
    groups = [tiny.visual_taste[fav == g].mean(0) for g in np.unique(fav) if (fav == g).sum() >= 10]
    assert np.ptp(np.array(groups), axis=0).max() > 0.3
    assert c.n_members == tiny.visual_taste.shape[0]


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="folder"):
        ImageWorld(image_world_config(0, **TINY))
    with pytest.raises(ValidationError, match="ImageConfig"):
        ImageWorld(image_world_config(0, **TINY), tmp_path, image_config="big")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="width"):
        ImageConfig(width=10)
    assert not set(IMAGE_DEV_SEEDS) & set(IMAGE_HELD_OUT_SEEDS)


@pytest.mark.slow
def test_cold_start_runs_both_variants_on_the_same_pages(tiny: ImageWorld) -> None:
    from keyart.simulation.experiments.cold_start import WITH_VISUAL, WITHOUT_VISUAL, cold_start

    result = cold_start(
        tiny, horizon=200, steady=(200, 300), seed=1, update_every=50, policy="epsilon_greedy"
    )
    assert set(result.curves) == {WITH_VISUAL, WITHOUT_VISUAL}
    runs = list(result.runs.values())
    np.testing.assert_array_equal(runs[0].oracle, runs[1].oracle)  # same members, pages and pools
    assert 150 <= result.release <= 300  # 0.01 days of 20,000 requests, to the next block of 50
    for c in result.curves.values():
        assert 0 < c.early <= 1 and 0 < c.steady <= 1 and c.decisions > 0
        # the share is the plain ratio of sums over the release pools' decisions in the horizon
        run = result.runs[c.variant]
        after = run.request - result.release
        new = tiny.new_artworks
        titles = np.unique(tiny.art_title[new])
        rows = np.isin(run.title, titles) & (after >= 0) & (after < 200)
        rows &= run.pool_size > np.bincount(tiny.art_title[~new], minlength=len(tiny.title_ids))[run.title]
        assert c.decisions == rows.sum()
        assert c.early == pytest.approx(run.expected[rows].sum() / run.oracle[rows].sum())
    with pytest.raises(ValidationError, match="horizon"):
        cold_start(tiny, horizon=500, steady=(200, 300))


@pytest.mark.slow
def test_the_benchmark_runs_at_smoke_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    import json

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_cs", root / "benchmarks" / "bench_vision_cold_start.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rows.jsonl"
    bench.main(["--quick", "--jobs", "1", "--images", str(tmp_path), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "difference (with - without)" in printed and "held-out seeds 2000000, 2000001" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seed"] for r in rows] == [2_000_000, 2_000_001]
    bench.main(["--quick", "--jobs", "1", "--images", str(tmp_path), "--features"])
    printed = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line.startswith("face_")}
    assert set(table) == {"face_count", "face_share", "face_dx", "face_dy"}
    assert all(float(v[2]) == pytest.approx(0.0, abs=0.01) for v in table.values())  # version 2: centred


def test_the_experiment_has_one_policy_for_the_benchmark_and_the_demo() -> None:
    from keyart import demo
    from keyart.simulation.experiments.cold_start import (
        COLD_START_PARAMS,
        COLD_START_POLICY,
        policy_params,
    )

    assert demo.COLD_START_POLICY == COLD_START_POLICY and demo.COLD_START_WORLD == {}
    assert policy_params(COLD_START_POLICY, None) == dict(COLD_START_PARAMS)
    assert policy_params("linucb" if COLD_START_POLICY != "linucb" else "softmax", None) == {}
    assert policy_params(COLD_START_POLICY, {"epsilon": 0.1}) == {"epsilon": 0.1}
    make_policy(COLD_START_POLICY, seed=0, **COLD_START_PARAMS)  # valid hyperparameters


def test_reference_shares_are_the_plain_ratios_on_the_release_pools(tiny: ImageWorld) -> None:
    from keyart.simulation.experiments.cold_start import reference_shares

    ref = reference_shares(tiny, n_requests=300, seed=2)
    assert set(ref) == {"random", "true_visual_taste", "history_visual_taste", "average_visual_taste"}
    assert all(0 < v <= 1 for v in ref.values())
    assert tiny.now == tiny.config.start_time  # the world is reset afterwards
    # the random share by a plain loop over the same pages
    tiny.advance_to(tiny.config.start_time + tiny.config.arrival_day * 86_400.0)
    requests = tiny.sample_requests(300, np.random.default_rng(np.random.SeedSequence([2, 0x5EF])))
    events, pools = tiny.events(requests)
    q = tiny.expected(events)
    tiny.reset()
    num = den = 0.0
    for i, pool in enumerate(pools):
        if any(tiny.new_artworks[tiny.artwork_index[a]] for a in pool):
            num += sum(q[i, : len(pool)]) / len(pool)
            den += max(q[i, : len(pool)])
    assert ref["random"] == pytest.approx(num / den)
