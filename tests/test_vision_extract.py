"""keyart.vision.batch and ``keyart vision extract``: a catalog's images computed in a process pool, cached
by content hash, written into the embeddings; re-runs compute only new or changed images; bad files are
reported and the rest is done."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keyart.catalog import Artwork, Catalog, Title
from keyart.cli import app
from keyart.errors import ValidationError
from keyart.vision import FEATURE_VERSION, FEATURES, Scaling, embedding, image_features
from keyart.vision.batch import DEFAULT_CACHE_NAME, extract_catalog
from keyart.vision.features import MIN_SCALING_IMAGES
from vision_helpers import bad_files, flat, sample, write

GOOD = {"a1": "astronaut.png", "a2": "astronaut_copy.jpg", "a3": "coffee.jpg", "b1": "chelsea.jpg"}
BAD = {"b2": "truncated", "b3": "text", "b4": "huge", "b5": "empty"}


@pytest.fixture
def setup(tmp_path):
    """An images folder with good and bad files, and a catalog of two titles referring to them: a4 has no
    image but an embedding of its own, b6 a missing file, b7 a URL, b8 the same picture as a3 by another
    name (in another title)."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    write(images / "astronaut.png", sample("astronaut"))
    write(images / "astronaut_copy.jpg", sample("astronaut"))
    write(images / "coffee.jpg", sample("coffee"))
    write(images / "chelsea.jpg", sample("chelsea"))
    shutil.copy(images / "coffee.jpg", images / "sub" / "cup.jpg")
    bad = {i: bad_files(images)[kind] for i, kind in BAD.items()}
    arts = [Artwork(i, "t1" if i < "b" else "t2", image=name) for i, name in GOOD.items()]
    arts += [Artwork(i, "t2", image=path.name) for i, (path, _) in bad.items()]
    arts += [
        Artwork("a4", "t1", embedding=(1.0, 2.0, 3.0)),
        Artwork("b6", "t2", image="missing.png"),
        Artwork("b7", "t2", image="https://example.org/poster.jpg"),
        Artwork("b8", "t2", image="sub/cup.jpg"),
    ]
    catalog = Catalog([Title("t1"), Title("t2")], arts)
    messages = {i: message for i, (_, message) in bad.items()}
    messages |= {"b6": r"missing\.png: cannot read the file", "b7": r"poster\.jpg: a URL"}
    return catalog, images, messages


def test_a_catalog_is_extracted_in_a_pool_and_bad_files_are_reported(setup):
    catalog, images, messages = setup
    seen = []
    result = extract_catalog(catalog, images, jobs=2, progress=lambda done, total: seen.append((done, total)))
    assert result.computed == 4 and result.cached == 0  # b8 shares a3's content: computed once
    assert seen == [(i, 8) for i in range(1, 9)]  # the 4 good and the 4 bad files were read
    assert sorted(result.failed) == sorted(messages)
    for artwork_id, message in messages.items():
        assert re.search(message, result.failed[artwork_id]), (artwork_id, result.failed[artwork_id])
    out = result.catalog.artworks
    for artwork_id, name in GOOD.items():
        expected = embedding(image_features(images / name).values)
        assert out[artwork_id].embedding == pytest.approx(tuple(expected), abs=0)
    assert out["b8"].embedding == out["a3"].embedding
    assert all(out[i].embedding is None for i in [*messages, "a4"])
    assert result.without_image == ("a4",) and result.removed_embeddings == ("a4",)
    assert [(t, a, b) for t, a, b, _ in result.duplicates] == [("t1", "a1", "a2")]
    assert catalog.artworks["a4"].embedding == (1.0, 2.0, 3.0)  # the input catalog is left as it was
    table = pq.read_table(images / DEFAULT_CACHE_NAME)
    assert table.num_rows == 4 and set(table["feature_version"].to_pylist()) == {FEATURE_VERSION}


def test_a_rerun_computes_only_new_or_changed_images(setup, tmp_path):
    catalog, images, _ = setup
    cache = tmp_path / "elsewhere" / "cache.parquet"
    first = extract_catalog(catalog, images, cache=cache)
    again = extract_catalog(first.catalog, images, cache=cache)
    assert (again.computed, again.cached) == (0, 4)
    assert again.catalog == first.catalog
    write(images / "chelsea.jpg", sample("rocket"))  # b1's picture changed
    write(images / "camera.png", sample("camera"))
    catalog.add_artwork(Artwork("a5", "t1", image="camera.png"))
    third = extract_catalog(catalog, images, cache=cache, jobs=2)
    assert (third.computed, third.cached) == (2, 3)  # the changed and the new; a1, a2, a3 from the cache
    assert third.catalog.artworks["b1"].embedding != first.catalog.artworks["b1"].embedding
    assert third.catalog.artworks["a1"].embedding == first.catalog.artworks["a1"].embedding
    assert pq.read_table(cache).num_rows == 6  # the cache keeps chelsea's row too: it may come back


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jobs": 0}, r"jobs must be a positive integer. Got 0"),
        ({"max_distance": 65}, r"max_distance must be an integer in \[0, 64\]. Got 65"),
        ({"images": "nowhere"}, r"images: nowhere is not a folder"),
        ({"cache": "bad"}, r"bad\.parquet: not a keyart vision cache"),
    ],
)
def test_bad_arguments_are_refused(setup, tmp_path, kwargs, message):
    catalog, images, _ = setup
    if kwargs.get("cache"):
        (tmp_path / "bad.parquet").write_text("not parquet")
        kwargs = {"cache": tmp_path / "bad.parquet"}
    with pytest.raises(ValidationError, match=message):
        extract_catalog(catalog, kwargs.pop("images", images), **kwargs)


def test_the_command_writes_the_catalog_and_reports(setup, tmp_path):
    catalog, images, messages = setup
    path = tmp_path / "catalog"
    catalog.save(path, "csv")
    args = ["vision", "extract", str(path), "--images", str(images), "--jobs", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "near-duplicates in title 't1': 'a1' and 'a2'" in result.stdout
    assert "5 artworks with image features (version 1): 4 images computed, 0 from the cache; 6 failed" in (
        result.stdout
    )
    assert "1 without an image" in result.stdout and "1 earlier embeddings removed" in result.stdout
    assert "embedding version 2: scaling fixed (too few images), saved to" in result.stdout
    failures = [line for line in result.stderr.splitlines() if line.startswith("keyart: vision: artwork")]
    assert len(failures) == len(messages)
    written = Catalog.load(path)
    assert sorted(p.name for p in path.iterdir()) == ["artworks.csv", "titles.csv"]
    assert len(written.artworks["a1"].embedding) == len(FEATURES)
    again = CliRunner().invoke(app, [*args[:-2], "--out", str(tmp_path / "out.json")])
    assert again.exit_code == 0 and "0 images computed, 4 from the cache" in again.stdout
    assert Catalog.load(tmp_path / "out.json") == written


def test_the_scaling_is_fitted_once_and_kept_for_artworks_that_arrive(tmp_path):
    """The first run fits the scaling to the catalog's images and saves it; a later run with a new artwork
    keeps it (the earlier artworks' embeddings do not move); without the file it is fitted again."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    arts = []
    for i in range(MIN_SCALING_IMAGES + 2):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        write(images / f"p{i}.png", flat(colour, (64 + 4 * i, 96)))
        arts.append(Artwork(f"a{i}", "t1", image=f"p{i}.png"))
    path = tmp_path / "catalog.json"
    Catalog([Title("t1")], arts).save(path, "json")
    args = ["vision", "extract", str(path), "--images", str(images)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    saved = images / ".keyart-vision-scaling.json"
    assert f"scaling fitted on {len(arts)} images, saved to {saved}" in first.stdout
    scaling = Scaling.from_dict(json.loads(saved.read_text()))
    before = Catalog.load(path)
    emb = np.array([before.artworks[a.artwork_id].embedding for a in arts])
    moving = np.isfinite(scaling.scale)
    np.testing.assert_allclose(emb.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(emb.std(axis=0)[moving], 1.0, rtol=1e-9)
    write(images / "new.png", flat((250, 10, 10), (200, 96)))
    before.add_artwork(Artwork("new", "t1", image="new.png"))
    before.save(path, "json")
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0 and f"kept from {saved}" in second.stdout
    after = Catalog.load(path)
    assert all(
        after.artworks[a.artwork_id].embedding == before.artworks[a.artwork_id].embedding for a in arts
    )
    assert Scaling.from_dict(json.loads(saved.read_text())) == scaling
    saved.unlink()  # to fit it again
    third = CliRunner().invoke(app, args)
    assert third.exit_code == 0 and f"fitted on {len(arts) + 1} images, saved to" in third.stdout
    assert Catalog.load(path).artworks["a0"].embedding != after.artworks["a0"].embedding
    saved.write_text("{}")
    broken = CliRunner().invoke(app, args)
    assert broken.exit_code == 4 and "not a keyart vision scaling" in broken.output


def test_a_given_scaling_is_applied_and_one_of_other_features_refused(setup):
    catalog, images, _ = setup
    fixed = Scaling.fixed()
    result = extract_catalog(catalog, images, scaling=fixed)
    assert result.scaling == fixed
    shifted = Scaling(tuple(c + 1.0 for c in fixed.centre), fixed.scale, 0)
    moved = extract_catalog(catalog, images, scaling=shifted).catalog.artworks["a1"].embedding
    want = shifted.apply(image_features(images / GOOD["a1"]).values)
    assert moved == pytest.approx(tuple(want), abs=0)
    with pytest.raises(ValidationError, match="fitted on features of version 0"):
        extract_catalog(catalog, images, scaling=Scaling(fixed.centre, fixed.scale, 0, feature_version=0))
    with pytest.raises(ValidationError, match=r"scaling must be a keyart\.vision\.Scaling"):
        extract_catalog(catalog, images, scaling="fixed")  # type: ignore[arg-type]
