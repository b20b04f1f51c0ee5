"""keyart.vision's features on real photographs (scikit-image's samples) and on generated images whose
properties are known by construction; the perceptual hash; each kind of bad file."""

from __future__ import annotations

import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from keyart.errors import KeyartError, ValidationError
from keyart.vision import (
    EMBEDDING_VERSION,
    FEATURE_NAMES,
    FEATURE_VERSION,
    FEATURES,
    ImageError,
    Scaling,
    embedding,
    hamming,
    image_features,
    near_duplicates,
)
from keyart.vision.features import MIN_SCALING_IMAGES
from vision_helpers import bad_files, disk, flat, lettering, sample, write


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Sample photographs and generated images as files, in the three formats."""
    d = tmp_path_factory.mktemp("images")
    ast = sample("astronaut")
    files = {
        name: write(d / f"{name}.jpg", sample(name)) for name in ("coffee", "chelsea", "camera", "rocket")
    }
    files["astronaut"] = write(d / "astronaut.png", ast)
    files["astronaut_small"] = write(
        d / "astronaut_small.webp", cv2.resize(ast, (300, 300), interpolation=cv2.INTER_AREA)
    )
    brighter = cv2.convertScaleAbs(ast, alpha=1.1, beta=20)
    files["astronaut_bright"] = write(d / "astronaut_bright.jpg", brighter, cv2.IMWRITE_JPEG_QUALITY, 50)
    files["astronaut_crop"] = write(d / "astronaut_crop.png", ast[10:-10, 10:-10])
    generated = {
        "warm": flat((220, 120, 40)),
        "cool": flat((40, 110, 220)),
        "red": flat((200, 40, 40)),
        "blue": flat((40, 60, 210)),
        "grey": flat((128, 128, 128)),
        "white": flat((250, 250, 250)),
        "close_up": disk(145),
        "small_subject": disk(25),
        "top_left_subject": disk(25, centre=(60, 100)),
        "lettering": lettering(),
    }
    files.update({name: write(d / f"{name}.png", img) for name, img in generated.items()})
    return {name: image_features(path) for name, path in files.items()}


def test_the_vector_is_documented_and_versioned(images):
    assert FEATURE_VERSION == 1 and EMBEDDING_VERSION == 2
    assert len(set(FEATURE_NAMES)) == len(FEATURES) == len(images["coffee"].values)
    assert all(f.meaning and f.scale > 0 for f in FEATURES)
    f = images["astronaut"]
    assert (f.width, f.height, f.format) == (512, 512, "PNG")
    assert images["astronaut_small"].format == "WEBP" and images["coffee"].format == "JPEG"


def test_a_face_is_found_in_the_astronaut_and_none_in_the_coffee_cup(images):
    ast, coffee = images["astronaut"].as_dict(), images["coffee"].as_dict()
    assert ast["face_count"] >= 1
    assert 0.01 < ast["face_share"] < 0.2
    assert ast["face_dy"] < 0 and abs(ast["face_dx"]) < 0.2  # her face is in the upper half, near the middle
    assert coffee["face_count"] == coffee["face_share"] == coffee["face_dx"] == coffee["face_dy"] == 0


def test_colour_features_follow_the_colours(images):
    warm, cool, grey = images["warm"].as_dict(), images["cool"].as_dict(), images["grey"].as_dict()
    assert warm["warmth"] > 0.5 > -0.5 > cool["warmth"]
    assert images["white"].as_dict()["brightness"] > 0.95 and grey["brightness"] == pytest.approx(128 / 255)
    assert grey["saturation"] == grey["colourfulness"] == grey["warmth"] == 0
    assert grey["contrast"] == pytest.approx(0, abs=1e-9)
    assert all(grey[f"hue_{h}"] == 0 for h in ("red", "yellow", "green", "cyan", "blue", "magenta"))
    assert images["red"].as_dict()["hue_red"] == pytest.approx(1)
    assert images["blue"].as_dict()["hue_blue"] == pytest.approx(1)
    assert images["coffee"].as_dict()["colourfulness"] > 3 * images["camera"].as_dict()["colourfulness"]
    hues = [
        images["coffee"].as_dict()[f"hue_{h}"] for h in ("red", "yellow", "green", "cyan", "blue", "magenta")
    ]
    assert sum(hues) == pytest.approx(1)


def test_a_frame_filled_by_one_shape_scores_as_a_close_up(images):
    close, small = images["close_up"].as_dict(), images["small_subject"].as_dict()
    assert close["subject_fill"] > small["subject_fill"] + 0.4
    assert small["saliency_spread"] < close["saliency_spread"]
    assert small["saliency_x"] == pytest.approx(0.5, abs=0.03) and small["saliency_y"] == pytest.approx(
        0.5, abs=0.03
    )
    corner = images["top_left_subject"].as_dict()
    assert corner["saliency_x"] < 0.35 and corner["saliency_y"] < 0.35
    assert corner["thirds"] > small["thirds"]  # nearer the upper-left thirds intersection than the centre
    assert close["edge_density"] < images["coffee"].as_dict()["edge_density"]
    assert images["coffee"].as_dict()["aspect"] == pytest.approx(np.log(600 / 400))


def test_lettering_is_found_where_there_is_some(images):
    assert images["lettering"].as_dict()["text_share"] > 0.1
    for name in ("close_up", "grey", "coffee", "astronaut", "chelsea"):
        assert images[name].as_dict()["text_share"] < 0.02, name


def test_near_duplicates_are_found_and_different_images_are_not(images):
    copies = ("astronaut", "astronaut_small", "astronaut_bright", "astronaut_crop")
    photos = ("astronaut", "coffee", "chelsea", "camera", "rocket")
    found = near_duplicates({name: images[name].phash for name in copies})
    assert {(a, b) for a, b, _ in found} == {(a, b) for a in copies for b in copies if a < b}
    assert near_duplicates({name: images[name].phash for name in photos}) == []
    spread = hamming(np.array([images[n].phash for n in photos])[:, None], [images[n].phash for n in photos])
    assert spread[np.triu_indices(len(photos), 1)].min() > 16
    assert [d for _, _, d in found] == sorted(d for _, _, d in found)


def test_features_are_deterministic_in_this_process_and_in_another(tmp_path):
    path = write(tmp_path / "again.jpg", sample("astronaut"))
    here = image_features(path)
    assert image_features(path) == here
    code = f"from keyart.vision import image_features; print(repr(image_features({str(path)!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == repr(here)


def test_embedding_centres_and_scales_the_vector(images):
    centre = np.array([f.centre for f in FEATURES])
    assert np.allclose(embedding(centre), 0)
    rows = embedding([images["coffee"].values, images["astronaut"].values])
    assert rows.shape == (2, len(FEATURES)) and np.isfinite(rows).all()
    with pytest.raises(ValidationError, match=f"A feature vector has {len(FEATURES)} values"):
        embedding([1.0, 2.0])
    assert np.array_equal(embedding(centre, Scaling.fixed()), embedding(centre))


def test_a_scaling_fitted_on_a_catalog_standardizes_it_and_drops_constant_features():
    """Over a catalog's vectors: mean 0 and spread 1 per feature, 0 for a feature that never varies there
    (one poster format); the same scaling reads a later artwork in the same units; too few images keep
    the fixed centre and scale."""
    rng = np.random.default_rng(7)
    centre = np.array([f.centre for f in FEATURES])
    scale = np.array([f.scale for f in FEATURES])
    values = centre + scale * rng.normal(0.0, 1.0, (40, len(FEATURES))) * np.linspace(0.2, 5.0, len(FEATURES))
    aspect = FEATURE_NAMES.index("aspect")
    values[:, aspect] = np.log(2 / 3)
    scaling = Scaling.fit(values)
    z = scaling.apply(values)
    assert scaling.images == 40 and math.isinf(scaling.scale[aspect])
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.delete(z.std(axis=0), aspect), 1.0, rtol=1e-12)
    assert (z[:, aspect] == 0).all()
    later = centre + scale  # one artwork arriving after the fit
    np.testing.assert_allclose(scaling.apply(later), (later - scaling.centre) / np.array(scaling.scale))
    assert Scaling.fit(values[: MIN_SCALING_IMAGES - 1]) == Scaling.fixed()
    assert Scaling.fixed().images == 0


def test_a_scaling_round_trips_through_json_and_bad_ones_are_refused():
    import json

    values = np.random.default_rng(1).normal(size=(30, len(FEATURES)))
    values[:, 0] = 0.5
    scaling = Scaling.fit(values)
    assert Scaling.from_dict(json.loads(json.dumps(scaling.to_dict()))) == scaling
    bad = [
        ({**scaling.to_dict(), "features": ["x"]}, "other features"),
        ({**scaling.to_dict(), "centre": [0.0]}, f"{len(FEATURES)} centres"),
        ({**scaling.to_dict(), "scale": [-1.0] * len(FEATURES)}, "positive scales"),
        ({"centre": []}, "Not a keyart.vision Scaling"),
    ]
    for data, message in bad:
        with pytest.raises(ValidationError, match=message):
            Scaling.from_dict(data)
    with pytest.raises(ValidationError, match="NaN or inf"):
        Scaling.fit(np.full((30, len(FEATURES)), np.nan))


def test_other_pixel_formats_read_as_their_colours(tmp_path):
    ramp = np.linspace(0, 1, 200 * 300).reshape(200, 300)
    assert cv2.imwrite(str(tmp_path / "g16.png"), (ramp * 65535).astype(np.uint16))
    assert cv2.imwrite(str(tmp_path / "g8.png"), (ramp * 255).astype(np.uint8))
    deep, plain = (image_features(tmp_path / n).as_dict() for n in ("g16.png", "g8.png"))
    assert deep["brightness"] == pytest.approx(plain["brightness"], abs=0.005) == pytest.approx(0.5, abs=0.01)
    red = Image.fromarray(flat((200, 40, 40)))
    red.convert("CMYK").save(tmp_path / "cmyk.jpg")
    red.convert("P").save(tmp_path / "palette.png")
    red.convert("RGBA").save(tmp_path / "alpha.webp", lossless=True)
    for name in ("cmyk.jpg", "palette.png", "alpha.webp"):
        assert image_features(tmp_path / name).as_dict()["hue_red"] == pytest.approx(1), name


@pytest.mark.parametrize("kind", ["truncated", "text", "huge", "empty"])
def test_each_bad_file_gives_a_clear_error_naming_it(tmp_path, kind):
    path, message = bad_files(tmp_path)[kind]
    with pytest.raises(ImageError, match=message) as info:
        image_features(path)
    assert isinstance(info.value, ValidationError | KeyartError)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", r"missing\.png: cannot read the file"),
        (lambda d: write(d / "tiny.png", flat((1, 2, 3), (8, 40))), r"tiny\.png: 40 x 8 pixels is too small"),
        (lambda d: write(d / "picture.bmp", flat((1, 2, 3))), r"picture\.bmp: not a PNG, JPEG or WebP image"),
    ],
)
def test_other_unusable_files_are_refused_naming_them(tmp_path, make, message):
    with pytest.raises(ImageError, match=message):
        image_features(make(tmp_path))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (({"a": 1}, -1), r"max_distance must be an integer in \[0, 64\]. Got -1"),
        (({"a": 1}, 65), r"max_distance must be an integer in \[0, 64\]. Got 65"),
        (({"a": "x"}, 10), "hashes must map ids to unsigned 64-bit integers"),
    ],
)
def test_near_duplicates_refuses_bad_arguments(args, message):
    with pytest.raises(ValidationError, match=message):
        near_duplicates(*args)
