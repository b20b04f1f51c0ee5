import json

import numpy as np
import pytest

from core_helpers import make_catalog
from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext, Play
from keyart.errors import (
    DimensionError,
    DuplicateIdError,
    EmptyPoolError,
    UnknownIdError,
    ValidationError,
)


def test_json_and_parquet_round_trip(tmp_path):
    cat = make_catalog()
    cat.add_artwork(Artwork("t0-emb", "t0", theme_genres=("drama",), embedding=(0.5, -1.0)))
    cat.retire_artwork("t1-a0")
    cat.save_json(tmp_path / "c.json")
    cat.save_parquet(tmp_path / "pq")
    assert Catalog.load_json(tmp_path / "c.json") == cat
    assert Catalog.load_parquet(tmp_path / "pq") == cat
    assert Catalog.load_parquet(tmp_path / "pq").artwork("t0-emb").embedding == (0.5, -1.0)


def test_pool_lifecycle():
    cat = make_catalog()
    pool = [a.artwork_id for a in cat.pool("t0")]
    cat.add_artwork(Artwork("t0-new", "t0", style="dark"))
    assert [a.artwork_id for a in cat.pool("t0")] == [*pool, "t0-new"]
    cat.retire_artwork(pool[0])
    assert pool[0] not in [a.artwork_id for a in cat.pool("t0")]
    assert cat.artwork(pool[0]).active is False  # still known: logged decisions refer to it
    cat.retire_title("t0")
    with pytest.raises(EmptyPoolError, match="retired"):
        cat.pool("t0")
    assert "t0" not in cat.active_title_ids()


def test_default_artwork_prefers_declared_then_first():
    cat = Catalog([Title("x", default_artwork_id="b")], [Artwork("a", "x"), Artwork("b", "x")])
    assert cat.default_artwork("x").artwork_id == "b"
    cat.retire_artwork("b")
    assert cat.default_artwork("x").artwork_id == "a"


@pytest.mark.parametrize(
    ("action", "exc", "match"),
    [
        (lambda c: c.add_title(Title("t0")), DuplicateIdError, "Duplicate title_id 't0'"),
        (lambda c: c.add_artwork(Artwork("t0-a0", "t0")), DuplicateIdError, "Duplicate artwork_id"),
        (lambda c: c.add_artwork(Artwork("z", "nope")), UnknownIdError, "unknown title_id 'nope'"),
        (lambda c: c.add_artworks([Artwork("ok", "t0"), Artwork("ok", "t0")]), DuplicateIdError, "'ok'"),
        (lambda c: c.pool("nope"), UnknownIdError, "Unknown title_id"),
        (lambda c: c.retire_artwork("nope"), UnknownIdError, "Unknown artwork_id"),
    ],
)
def test_bad_catalog_operations_change_nothing(action, exc, match):
    cat = make_catalog()
    before = cat.to_dict()
    with pytest.raises(exc, match=match):
        action(cat)
    assert cat.to_dict() == before


def test_empty_pool_is_an_error():
    cat = Catalog([Title("lonely")])
    with pytest.raises(EmptyPoolError, match="no active artwork"):
        cat.pool("lonely")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Artwork("a", "t", embedding=(1.0, float("nan"))), "NaN or inf"),
        (lambda: Artwork("a", "t", embedding=(float("inf"),)), "NaN or inf"),
        (lambda: Artwork("", "t"), "artwork_id"),
        (lambda: Artwork("a", "t", theme_genres="comedy"), "not a single string"),
        (lambda: Title("t", runtime_minutes=-3), "runtime_minutes"),
        (lambda: MemberContext("m", recommender_scores={"t": float("nan")}), r"recommender_scores\['t'\]"),
        (lambda: MemberContext("m", timestamp=float("inf")), "timestamp"),
        (lambda: MemberContext(""), "member_id"),
        (lambda: Play("t", engaged_seconds=-1), "engaged_seconds"),
    ],
)
def test_invalid_values(make, match):
    with pytest.raises(ValidationError, match=match):
        make()


def test_context_time_fields():
    # 2024-01-06 (a Saturday) 13:30 UTC
    ctx = MemberContext("m", timestamp=1704547800.0, played=["t1", {"title_id": "t2", "engaged_seconds": 60}])
    assert ctx.hour == 13
    assert ctx.weekday == 5
    assert ctx.played_title_ids() == ("t1", "t2")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Title("t", runtime_minutes="90"), "runtime_minutes of title 't'"),
        (lambda: Title("t", runtime_minutes=True), "runtime_minutes of title 't'"),
        (lambda: Title("t", runtime_minutes=float("nan")), "runtime_minutes of title 't'"),
        (lambda: Title("t", metadata=[1, 2]), "metadata of title 't' must be a mapping"),
        (lambda: Title("t", metadata={1: "a"}), r"metadata of title 't'.*keys must be strings"),
        (lambda: Title("t", metadata={"a": object()}), r"metadata of title 't'\['a'\]"),
        (lambda: Title("t", metadata={"a": [1, {"b": {2}}]}), r"metadata of title 't'\['a'\]\[1\]\['b'\]"),
        (lambda: Title("t", metadata={"a": float("inf")}), r"metadata of title 't'\['a'\]"),
        (lambda: Title("t", name=3), "name of title 't'"),
        (lambda: Title("t", default_artwork_id=""), "default_artwork_id of title 't'"),
        (lambda: Title("t", active=1), "active of title 't'"),
        (lambda: Artwork("a", "t", active="no"), "active of artwork 'a'"),
        (lambda: Artwork("a", "t", embedding="123"), "embedding of artwork 'a'"),
        (lambda: Artwork("a", "t", embedding=(1.0, True)), "embedding of artwork 'a'"),
        (lambda: Artwork("a", "t", embedding=()), "embedding of artwork 'a'"),
    ],
)
def test_invalid_catalog_fields_are_validation_errors(make, match):
    with pytest.raises(ValidationError, match=match):
        make()


def test_metadata_is_normalized_to_json_native_values():
    t = Title("t", metadata={"a": (1, 2), "b": {"c": ("x",)}}, runtime_minutes=90)
    assert t.metadata == {"a": [1, 2], "b": {"c": ["x"]}}
    assert type(t.runtime_minutes) is float


def test_round_trip_with_nested_metadata_and_embeddings_is_exact(tmp_path):
    meta = {"year": 1999, "score": 0.1, "tags": ("a", "b"), "nested": {"k": [1, None, True, {"z": -2.5}]}}
    cat = Catalog(
        [Title("t", "The T", ("drama",), ("ann",), 95.5, meta, "a1"), Title("u", metadata={}, active=False)],
        [
            Artwork("a1", "t", ("drama",), ("ann",), "dark", ("x",), (0.1, -2.0, 1e-300)),
            Artwork("a2", "t", embedding=(1.0, 2.0, 3.0), active=False),
            Artwork("b1", "u"),
        ],
    )
    cat.save_json(tmp_path / "c.json")
    cat.save_parquet(tmp_path / "pq")
    for loaded in (Catalog.load_json(tmp_path / "c.json"), Catalog.load_parquet(tmp_path / "pq")):
        assert loaded == cat
        assert loaded.title("t") == cat.title("t")
        assert loaded.title("t").metadata["tags"] == ["a", "b"]
        assert [loaded.artwork(a) for a in ("a1", "a2", "b1")] == [cat.artwork(a) for a in ("a1", "a2", "b1")]


def test_saving_metadata_mutated_into_non_json_is_a_validation_error(tmp_path):
    cat = Catalog([Title("t", metadata={"a": 1})])
    cat.title("t").metadata["a"] = object()
    with pytest.raises(ValidationError, match=r"c\.json"):
        cat.save_json(tmp_path / "c.json")
    with pytest.raises(ValidationError, match="pq"):
        cat.save_parquet(tmp_path / "pq")
    assert not (tmp_path / "c.json").exists()
    assert not (tmp_path / "pq" / "titles.parquet").exists()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"format_version": 1, "titles": [{"x": 1}], "artworks": []}',
        '{"format_version": 1, "titles": [1], "artworks": []}',
        '{"format_version": 1, "titles": [{"title_id": "t", "metadata": [1]}], "artworks": []}',
    ],
)
def test_loading_a_corrupt_json_file_names_the_path(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValidationError, match=r"bad\.json"):
        Catalog.load_json(path)


def test_loading_a_missing_file_names_the_path_and_chains_the_cause(tmp_path):
    with pytest.raises(ValidationError, match=r"nope\.json") as info:
        Catalog.load_json(tmp_path / "nope.json")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(ValidationError, match="nodir") as info:
        Catalog.load_parquet(tmp_path / "nodir")
    assert isinstance(info.value.__cause__, OSError)


def test_loading_a_corrupt_parquet_file_names_the_path(tmp_path):
    make_catalog().save_parquet(tmp_path / "pq")
    (tmp_path / "pq" / "artworks.parquet").write_bytes(b"garbage")
    with pytest.raises(ValidationError, match="pq") as info:
        Catalog.load_parquet(tmp_path / "pq")
    assert info.value.__cause__ is not None


def test_load_keeps_the_specific_error_type(tmp_path):
    path = tmp_path / "dup.json"
    data = make_catalog().to_dict()
    data["titles"].append(data["titles"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(DuplicateIdError, match=r"dup\.json"):
        Catalog.load_json(path)


def test_catalog_rejects_embeddings_of_different_lengths():
    cat = Catalog([Title("t")], [Artwork("a", "t"), Artwork("b", "t", embedding=(1.0, 2.0))])
    before = cat.to_dict()
    with pytest.raises(DimensionError, match=r"'c'.*length 3.*'b'.*length 2"):
        cat.add_artworks([Artwork("n", "t"), Artwork("c", "t", embedding=(1.0, 2.0, 3.0))])
    assert cat.to_dict() == before
    with pytest.raises(DimensionError, match=r"'y'.*length 1.*'x'.*length 2"):
        Catalog([Title("t")], [Artwork("x", "t", embedding=(1.0, 2.0)), Artwork("y", "t", embedding=(1.0,))])
    cat.add_artwork(Artwork("d", "t", embedding=(0.0, 0.0)))
    assert len(cat.pool("t")) == 3


def test_numpy_numbers_are_accepted_as_plain_ones():
    a = Artwork("a", "t", embedding=np.arange(3, dtype=np.float32))
    t = Title("t", runtime_minutes=np.float32(90), metadata={"n": np.int64(3), "x": (np.float64(0.5),)})
    assert a.embedding == (0.0, 1.0, 2.0) and type(a.embedding[0]) is float
    assert t.runtime_minutes == 90.0 and t.metadata == {"n": 3, "x": [0.5]} and type(t.metadata["n"]) is int


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("titles", "genres"),
        ("titles", "cast"),
        ("artworks", "theme_genres"),
        ("artworks", "featured_cast"),
        ("artworks", "tags"),
    ],
)
def test_a_string_where_a_catalog_file_needs_a_list_is_refused_not_split(tmp_path, kind, field):
    """ "genres": "drama" once loaded as five one-letter genres; the file loader now refuses it as the
    constructors and the HTTP API do, and a list of the same value loads."""
    data = {
        "format_version": 1,
        "titles": [{"title_id": "t", "genres": ["drama"], "cast": ["robin"]}],
        "artworks": [{"artwork_id": "a", "title_id": "t", "featured_cast": ["robin"], "tags": ["dark"]}],
    }
    data[kind][0][field] = "drama"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationError, match=f"{field} of .* not a single string"):
        Catalog.load_json(path)
    data[kind][0][field] = ["drama"]
    path.write_text(json.dumps(data))
    loaded = Catalog.load_json(path)
    row = loaded.title("t") if kind == "titles" else loaded.artwork("a")
    assert getattr(row, field) == ("drama",)
