import pytest

from core_helpers import make_catalog
from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext, Play
from keyart.errors import DuplicateIdError, EmptyPoolError, UnknownIdError, ValidationError


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
