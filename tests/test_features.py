import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core_helpers import make_catalog, make_members
from keyart.batch import CandidateBatch
from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext, Play
from keyart.errors import DimensionError, UnknownIdError, ValidationError
from keyart.features import EXACT_MAX, FeatureConfig, Featurizer, exact_vocabularies
from keyart.hashing import stable_hash


def test_stable_hash_is_fixed_across_processes():
    # golden values: a change here silently invalidates every trained model
    assert stable_hash("comedy", "genre") == stable_hash("comedy", "genre")
    assert stable_hash("comedy", "genre") != stable_hash("comedy", "cast")
    assert stable_hash("comedy", "genre") == 0x4537_27EA_89D7_0FFC


def test_page_shapes_padding_and_determinism():
    cat = make_catalog()
    f1, f2 = Featurizer(cat), Featurizer(cat)
    ctx = make_members(cat, 1)[0]
    titles = ["t0", "t1", "t2"]
    a = f1.page(ctx, titles, request_id="r")
    b = f2.page(ctx, titles, request_id="r")
    assert a.X.shape == (3, 6, f1.dim)
    assert a.pool_sizes.tolist() == [6, 5, 4]
    np.testing.assert_array_equal(a.X, b.X)
    assert (a.X[~a.mask] == 0).all()
    assert a.artwork_ids[1, 5] == ""
    assert len(a.feature_names) == f1.dim


def test_page_equals_events_for_the_same_inputs():
    cat = make_catalog()
    f = Featurizer(cat)
    ctx = make_members(cat, 1)[0]
    page = f.page(ctx, ["t3", "t4"], request_id="r")
    pools = [[a.artwork_id for a in cat.pool(t)] for t in ("t3", "t4")]
    ev = f.events([ctx, ctx], ["t3", "t4"], pools)
    np.testing.assert_array_equal(page.X, ev.X)


def _col(f: Featurizer, name: str) -> int:
    return f.config.layout[name].start


def test_crosses_carry_the_members_taste():
    """A comedy fan's comedy-themed artwork has a higher theme match than its romance-themed one."""
    cat = Catalog(
        [
            Title("fun", genres=("comedy",), cast=("ann",)),
            Title("love", genres=("romance",), cast=("bob",)),
            Title("x", genres=("comedy", "romance"), cast=("ann", "bob")),
        ],
        [
            Artwork("fun1", "fun"),
            Artwork("love1", "love"),
            Artwork("x-comedy", "x", theme_genres=("comedy",), featured_cast=("ann",), style="bright"),
            Artwork("x-romance", "x", theme_genres=("romance",), featured_cast=("bob",), style="dark"),
        ],
    )
    f = Featurizer(cat)
    fan = MemberContext("m", played=(Play("fun"), Play("fun")), device="tv", timestamp=0.0)
    X = f.page(fan, ["x"]).X[0]
    tm, cm = _col(f, "theme_match"), _col(f, "cast_match")
    assert X[0, tm] == pytest.approx(1.0) and X[1, tm] == pytest.approx(0.0)
    assert X[0, cm] == pytest.approx(1.0) and X[1, cm] == pytest.approx(0.0)
    # device x style: exactly one active cell per candidate, different for the two styles
    dxs = f.config.layout["device_x_style"]
    assert X[0, dxs].sum() == 1.0 and X[1, dxs].sum() == 1.0
    assert X[0, dxs].argmax() != X[1, dxs].argmax()
    # prior interaction switches its crosses on
    known = MemberContext("m", played=(Play("fun"),), interacted_titles={"x"}, timestamp=0.0)
    Xk = f.page(known, ["x"]).X[0]
    px = f.config.layout["prior_x_artwork"]
    assert Xk[0, _col(f, "prior_interaction")] == 1.0 and Xk[0, px.start] == pytest.approx(1.0)
    assert (X[:, px] == 0).all()


def test_title_affinity_is_the_members_genre_taste_dotted_with_the_titles_genres():
    """The per-title ``title_affinity`` column: the member's genre affinity . the title's genre vector (the
    genre affinity of a history of that one title), the same in one page, many pages and logged events."""
    cat = make_catalog(n_titles=8, pool=4, seed=5)
    f = Featurizer(cat)
    members = make_members(cat, 3, seed=5)
    tids = list(cat.titles)
    col = _col(f, "title_affinity")
    for ctx in members:
        taste, _ = f.member_vectors(ctx)
        genres = [f.member_vectors(MemberContext("one", played=(Play(t),), timestamp=0.0))[0] for t in tids]
        expected = np.array([taste @ g for g in genres])
        assert np.abs(expected).max() > 0  # the check is not vacuous
        page = f.page(ctx, tids, request_id="r")
        np.testing.assert_allclose(page.X[:, 0, col], expected, rtol=1e-12, atol=1e-15)
        assert (page.X[page.mask][:, col] == np.repeat(expected, page.pool_sizes)).all()
    batch = f.pages(members, [tids[:5], tids[2:], tids[::2]])
    pools = [[a.artwork_id for a in cat.pool(t)] for t in tids[:5]]
    events = f.events([members[0]] * 5, tids[:5], pools)
    np.testing.assert_array_equal(batch.X[:5], f.page(members[0], tids[:5]).X)
    np.testing.assert_array_equal(events.X, f.page(members[0], tids[:5]).X)


def test_recency_weighting_prefers_recent_plays():
    cat = Catalog(
        [Title("a", genres=("comedy",)), Title("b", genres=("romance",))],
        [Artwork("a1", "a"), Artwork("b1", "b")],
    )
    f = Featurizer(cat)
    day = 86_400.0
    ctx = MemberContext("m", played=(Play("a", 0.0), Play("b", 300 * day)), timestamp=300 * day)
    g, _ = f.member_vectors(ctx)
    comedy = f._genre("comedy")
    romance = f._genre("romance")
    assert abs(g[romance[0]]) > abs(g[comedy[0]]) * 10


def test_unknown_history_raises_or_is_ignored():
    cat = make_catalog()
    ctx = MemberContext("m", played=(Play("ghost"),))
    with pytest.raises(UnknownIdError, match="ghost"):
        Featurizer(cat).page(ctx, ["t0"])
    batch = Featurizer(cat, FeatureConfig(on_unknown_history="ignore")).page(ctx, ["t0"])
    assert np.isfinite(batch.X).all()


def test_catalog_change_invalidates_caches():
    cat = make_catalog()
    f = Featurizer(cat)
    ctx = make_members(cat, 1)[0]
    assert f.page(ctx, ["t0"]).k == 6
    cat.add_artwork(Artwork("t0-late", "t0", style="dark"))
    assert f.page(ctx, ["t0"]).k == 7


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda f, c: f.page(c, "t0"), ValidationError, "not a single string"),
        (lambda f, c: f.page(c, []), ValidationError, "must not be empty"),
        (lambda f, c: f.events([c], ["t0", "t1"], [["t0-a0"]]), DimensionError, "same length"),
        (lambda f, c: f.events([c], ["t0"], [[]]), ValidationError, r"pools\[0\] is empty"),
        (lambda f, c: f.events([c], ["t0"], [["t1-a0"]]), ValidationError, "of title 't1'"),
        (lambda f, c: f.events([c], ["t0"], [["nope"]]), UnknownIdError, "nope"),
        (
            lambda f, c: FeatureConfig(genre_buckets=0),
            ValidationError,
            "'genre_buckets' parameter of FeatureConfig",
        ),
    ],
)
def test_bad_featurizer_input(call, exc, match):
    cat = make_catalog()
    with pytest.raises(exc, match=match):
        call(Featurizer(cat), make_members(cat, 1)[0])


def test_candidate_batch_rejects_nan_and_concat_pads():
    cat = make_catalog()
    f = Featurizer(cat)
    ctx = make_members(cat, 1)[0]
    a, b = f.page(ctx, ["t2"]), f.page(ctx, ["t0"])
    both = CandidateBatch.concat([a, b])
    assert both.k == 6 and both.pool_sizes.tolist() == [4, 6]
    np.testing.assert_array_equal(both.take([1]).X, b.X)
    X = a.X.copy()
    X[0, 0, 0] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        CandidateBatch(X, a.mask, a.artwork_ids, a.title_ids, a.member_ids, a.request_ids, a.timestamps)


def _assert_same_batch(a: CandidateBatch, b: CandidateBatch) -> None:
    np.testing.assert_array_equal(a.X, b.X)
    for name in ("mask", "artwork_ids", "title_ids", "member_ids", "request_ids", "timestamps"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_concat_of_one_featurizers_batches_stays_factored_and_equals_the_stacked_rows():
    """Pages featurized while the artwork table grows (new titles appear between them) concatenate in
    factored form, with the same rows, scores and shown rows as stacking their materialized rows; batches
    of two featurizers fall back to stacking."""
    cat = make_catalog(n_titles=40)
    f = Featurizer(cat)
    members = make_members(cat, 6, seed=3)
    pages = [
        f.page(m, [f"t{(7 * i + j) % 40}" for j in range(i + 1)], f"r{i}") for i, m in enumerate(members)
    ]
    assert len({p.factors.keys.size for p in pages}) > 1  # the table grew between pages
    both = CandidateBatch.concat(pages)
    assert both.factors is not None and both._X is None
    stacked = CandidateBatch.concat([CandidateBatch(p.X, *_fields(p)) for p in pages])
    assert stacked.factors is None
    _assert_same_batch(both, stacked)
    theta = np.random.default_rng(0).normal(size=f.dim)
    np.testing.assert_allclose(both.dot(theta), np.where(both.mask, stacked.X @ theta, 0.0), atol=1e-12)
    chosen = np.random.default_rng(1).integers(0, both.pool_sizes)
    np.testing.assert_array_equal(both.shown_X(chosen), stacked.shown_X(chosen))
    other = Featurizer(cat).page(members[0], ["t1"], "x")
    mixed = CandidateBatch.concat([pages[0], other])
    assert mixed.factors is None
    _assert_same_batch(
        mixed, CandidateBatch.concat([CandidateBatch(p.X, *_fields(p)) for p in (pages[0], other)])
    )


def _fields(b: CandidateBatch) -> tuple:
    return (b.mask, b.artwork_ids, b.title_ids, b.member_ids, b.request_ids, b.timestamps, b.feature_names)


def test_pages_equals_one_page_per_request():
    cat = make_catalog(n_titles=30)
    members = make_members(cat, 8, seed=5)
    rng = np.random.default_rng(2)
    titles = [
        rng.choice([f"t{i}" for i in range(30)], size=int(rng.integers(1, 6)), replace=False).tolist()
        for _ in members
    ]
    rids = [f"q{i}" for i in range(len(members))]
    many = Featurizer(cat).pages(members, titles, rids)
    f = Featurizer(cat)
    one_by_one = CandidateBatch.concat(
        [f.page(m, t, r) for m, t, r in zip(members, titles, rids, strict=True)]
    )
    assert many.factors is not None
    _assert_same_batch(many, one_by_one)
    with pytest.raises(ValidationError, match=r"title_ids\[1\] must be a non-empty list"):
        Featurizer(cat).pages(members[:2], [["t0"], []])
    with pytest.raises(ValidationError, match=r"title_ids\[0\] must be a non-empty list"):
        Featurizer(cat).pages(members[:1], ["t0"])
    with pytest.raises(DimensionError, match="same length"):
        Featurizer(cat).pages(members[:2], [["t0"]])


@settings(max_examples=30, deadline=None)
@given(
    genres=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=0, max_size=3),
    styles=st.lists(st.text(min_size=0, max_size=5), min_size=1, max_size=8),
    hour=st.floats(min_value=0, max_value=2e9, allow_nan=False),
)
def test_any_catalog_gives_finite_deterministic_features(genres, styles, hour):
    cat = Catalog(
        [Title("t", genres=tuple(genres))],
        [Artwork(f"a{i}", "t", theme_genres=tuple(genres), style=s) for i, s in enumerate(styles)],
    )
    ctx = MemberContext("m", played=(Play("t"),), timestamp=hour, extra={"z": 2.0})
    x1 = Featurizer(cat).page(ctx, ["t"], request_id="r").X
    x2 = Featurizer(cat).page(ctx, ["t"], request_id="r").X
    assert np.isfinite(x1).all() and np.array_equal(x1, x2)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), prior=st.booleans())
def test_factored_scores_and_rows_equal_the_full_matrix(seed, prior):
    cat = make_catalog(n_titles=10, pool=7, seed=seed % 5)
    ctx = make_members(cat, 1, seed=seed)[0]
    if prior:
        ctx = MemberContext(
            ctx.member_id, ctx.played, device="tv", timestamp=ctx.timestamp, interacted_titles={"t1"}
        )
    batch = Featurizer(cat).page(ctx, ["t0", "t1", "t2", "t5"], request_id="r")
    assert batch.factors is not None
    theta = np.random.default_rng(seed).normal(size=batch.d)
    fast = batch.dot(theta)
    chosen = np.minimum(np.arange(batch.n), batch.pool_sizes - 1)
    rows = batch.shown_X(chosen)
    X = batch.X  # materialized now
    np.testing.assert_allclose(fast, X @ theta, atol=1e-12)
    np.testing.assert_array_equal(rows, X[np.arange(batch.n), chosen])
    part = batch.take([2, 0])
    np.testing.assert_array_equal(part.X, X[[2, 0]])


def test_exact_vocabularies_never_collide_and_unseen_tokens_are_hashed():
    cat = make_catalog()
    devices = ("tv", "mobile", "web")
    f = Featurizer(cat, FeatureConfig(vocabularies={"device": devices}))
    col = f.config.layout["device"]
    slots = []
    for device in (*devices, "console", "fridge"):
        x = f.page(MemberContext("m", device=device, timestamp=0.0), ["t0"]).X[0, 0, col]
        assert x.sum() == 1.0
        slots.append(int(x.argmax()))
    assert slots[:3] == [0, 1, 2]  # the vocabulary owns the first buckets, in order
    assert slots[3] == slots[4] == 3  # everything else shares the buckets left (here one)
    with pytest.raises(ValidationError, match="fewer of them than device_buckets"):
        FeatureConfig(vocabularies={"device": ("a", "b", "c", "d")})
    with pytest.raises(ValidationError, match="unknown field 'colour'"):
        FeatureConfig(vocabularies={"colour": ("red",)})


def test_vocabularies_from_the_catalog_and_requests_give_every_known_value_its_own_bucket():
    """``exact_vocabularies``: each genre, style, tag, cast member of the catalog and each country, language,
    device of the requests owns a bucket (sorted, so the catalog's order does not matter), one more bucket
    takes values first seen later, and a field past ``EXACT_MAX`` values keeps its hashed width."""
    cat = make_catalog()
    members = [
        MemberContext(f"m{i}", country=c, language=lang, device=d, timestamp=0.0)
        for i, (c, lang, d) in enumerate([("FR", "fr", "tv"), ("US", "en", "mobile"), ("JP", "ja", "tv")])
    ]
    config = exact_vocabularies(cat, members)
    shuffled = Catalog(list(cat.titles.values())[::-1], list(cat.artworks.values())[::-1])
    assert exact_vocabularies(shuffled, members[::-1]) == config
    vocab = dict(config.vocabularies)
    assert vocab["country"] == ("FR", "JP", "US") and config.country_buckets == 4
    assert vocab["device"] == ("mobile", "tv") and config.device_buckets == 3
    assert vocab["style"] == tuple(sorted({a.style for a in cat.artworks.values()}))
    assert config.genre_buckets == len(vocab["genre"]) + 1 and config.cast_buckets == len(vocab["cast"]) + 1
    f = Featurizer(cat, config)
    theme, style = f.config.layout["theme"], f.config.layout["style"]
    for a in cat.artworks.values():  # one exact bucket per value: the style one-hot names the style
        x = f.events([members[0]], [a.title_id], [[a.artwork_id]]).X[0, 0]
        assert x[style].argmax() == vocab["style"].index(a.style)
        assert x[theme].argmax() == vocab["genre"].index(a.theme_genres[0]) and x[theme].sum() == 1.0
    col = f.config.layout["country"]
    for i, country in enumerate(("FR", "JP", "US", "BR", "NZ")):
        x = f.page(MemberContext("m", country=country, timestamp=0.0), ["t0"]).X[0, 0, col]
        assert x.argmax() == min(i, 3) and x.sum() == 1.0  # unseen countries share the one bucket left
    wide = Catalog(
        list(cat.titles.values()),
        [dataclasses.replace(a, tags=(f"tag{j}", f"more{j}")) for j, a in enumerate(cat.artworks.values())],
    )
    assert 2 * len(wide.artworks) > EXACT_MAX
    config = exact_vocabularies(wide)
    assert "tag" not in dict(config.vocabularies) and config.tag_buckets == FeatureConfig().tag_buckets
    assert "device" not in dict(config.vocabularies)  # no requests: the context fields stay hashed


def test_the_default_featurizer_gives_every_value_of_the_catalog_a_column():
    """``Featurizer(catalog)``: the catalog's exact vocabularies (a function of the catalog alone: two
    featurizers of one catalog, in any order, give the same rows), the context fields hashed."""
    cat = make_catalog()
    f = Featurizer(cat)
    assert not f.grow and f.config == exact_vocabularies(cat)
    vocab = dict(f.config.vocabularies)
    assert vocab["tag"] == ("tag0", "tag1", "tag2") and "country" not in vocab
    shuffled = Catalog(list(cat.titles.values())[::-1], list(cat.artworks.values())[::-1])
    members = make_members(cat, 5)
    tids = list(cat.titles)[:5]
    pools = [[a.artwork_id for a in cat.pool(t)] for t in tids]
    np.testing.assert_array_equal(
        Featurizer(shuffled).events(members, tids, pools).X, f.events(members, tids, pools).X
    )
    assert Featurizer(cat, FeatureConfig()).config == FeatureConfig()  # a given config is kept as it is


def test_cast_count_levels_and_multi_hot_tags():
    """``cast_count_level`` holds indicators of the featured cast count (one, two or more; no one: zeros,
    so an effect of the count need not be linear in it); tags are multi-hot (each counts whole), or
    divided by their number with ``tags_normalized`` (the rows of configs saved before)."""
    cat = Catalog(
        [Title("t", genres=("drama",), cast=("ann", "bob", "cy"))],
        [
            Artwork("none", "t", tags=("dark",)),
            Artwork("one", "t", featured_cast=("ann",), tags=("dark", "face")),
            Artwork("two", "t", featured_cast=("ann", "bob"), tags=("dark", "face", "logo")),
            Artwork("three", "t", featured_cast=("ann", "bob", "cy")),
        ],
    )
    ctx = MemberContext("m", timestamp=0.0)
    f = Featurizer(cat)
    X = f.page(ctx, ["t"]).X[0]
    levels, tags = f.config.layout["cast_count_level"], f.config.layout["tags"]
    np.testing.assert_array_equal(X[:, levels], [[0, 0], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(X[:, tags], [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    mean = Featurizer(cat, dataclasses.replace(f.config, tags_normalized=True)).page(ctx, ["t"]).X[0]
    np.testing.assert_allclose(mean[:, tags], X[:, tags] / np.maximum(X[:, tags].sum(1, keepdims=True), 1))
    wider = Featurizer(cat, dataclasses.replace(f.config, cast_count_levels=3))
    three = wider.page(ctx, ["t"]).X[0][:, wider.config.layout["cast_count_level"]]
    np.testing.assert_array_equal(three, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # a config saved before these fields existed reads back with its rows: no levels, mean tags
    old = FeatureConfig.from_dict({"crosses": []})
    assert old.cast_count_levels == 0 and old.tags_normalized is True
    assert np.arange(old.dim)[old.layout["cast_count_level"]].size == 0


@pytest.mark.parametrize("length", [3, 20])
def test_embedding_of_another_length_than_embedding_dim_is_a_dimension_error(length):
    cat = Catalog([Title("t")], [Artwork("a", "t"), Artwork("e", "t", embedding=tuple(range(length)))])
    ctx = MemberContext("m")
    with pytest.raises(DimensionError, match=rf"Artwork 'e'.*length {length}.*embedding_dim.*8"):
        Featurizer(cat, FeatureConfig(embedding_dim=8)).page(ctx, ["t"])
    assert Featurizer(cat).page(ctx, ["t"]).k == 2  # embedding_dim 0: embeddings are ignored


def test_embeddings_of_embedding_dim_enter_the_features_and_missing_ones_are_zero():
    emb = tuple(0.5 * i for i in range(4))
    cat = Catalog([Title("t")], [Artwork("a", "t"), Artwork("e", "t", embedding=emb)])
    f = Featurizer(cat, FeatureConfig(embedding_dim=4))
    X = f.page(MemberContext("m"), ["t"]).X[0]
    cols = f.config.layout["embedding"]
    np.testing.assert_array_equal(X[0, cols], np.zeros(4))
    np.testing.assert_array_equal(X[1, cols], emb)


def test_the_embedding_is_crossed_with_the_members_genre_taste():
    """An artwork known only by its embedding (pixels, no tags) is scored per member: the genre taste x
    embedding columns hold the outer product, genre-major; without an embedding the term has no columns."""
    emb = (1.0, -2.0, 0.5)
    cat = Catalog(
        [Title("t", genres=("drama",)), Title("h", genres=("comedy", "drama"))],
        [Artwork("a", "t", embedding=emb), Artwork("b", "h")],
    )
    f = Featurizer(cat, FeatureConfig(embedding_dim=3))
    member = MemberContext("m", played=(Play("h"),))
    X = f.page(member, ["t"]).X[0, 0]
    affinity = f.member_vectors(member)[0]
    assert np.abs(affinity).sum() > 0
    np.testing.assert_allclose(X[f.config.layout["genre_x_embedding"]], np.outer(affinity, emb).ravel())
    lay = FeatureConfig().layout  # embedding_dim 0: no columns, for this term and every cross with it
    for name in (
        "genre_x_embedding",
        *(t.name for t in FeatureConfig().crosses if t.candidate == "embedding"),
    ):
        assert lay[name].stop == lay[name].start


def test_hour_bucket_and_day_of_week_come_from_the_timestamp():
    cat = make_catalog()
    f = Featurizer(cat)
    lay = f.config.layout
    monday_9am = 1_700_000_000 - 1_700_000_000 % 604_800 + 4 * 86_400 + 9 * 3_600  # epoch day 0 is a Thursday
    for days, weekday in ((0, 0), (5, 5), (6, 6), (7, 0)):
        for hours, bucket in ((0, 1), (4, 2), (10, 3), (-8, 0)):
            ts = monday_9am + days * 86_400 + hours * 3_600
            ctx = MemberContext("m", timestamp=float(ts))
            row = f.page(ctx, ["t0"]).X[0, 0]
            assert row[lay["weekday"]].tolist() == [float(i == weekday) for i in range(7)]
            assert row[lay["hour"]].tolist() == [float(i == bucket) for i in range(4)]
            assert (ctx.weekday, ctx.hour // 6) == (weekday, bucket)
