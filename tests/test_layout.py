"""The declarative feature layout: a declared term appears identically in the dense rows, the factored
dot product and the page basis, and its columns are the product the declaration names."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core_helpers import logged_feedback, make_catalog, make_members
from keyart.batch import split_rows
from keyart.catalog import Catalog
from keyart.context import Play
from keyart.errors import ValidationError
from keyart.features import FeatureConfig, Featurizer
from keyart.layout import ARTWORK_BLOCKS, CONTEXT_BLOCKS, TERMS, Term, all_crosses
from keyart.policies import make_policy

CROSSES = (
    Term("country_x_theme", ("country",), "theme"),  # outer, wide context
    Term("genre_x_style", ("member_genre_affinity",), "style"),  # outer, dense context
    Term("prior_x_tags", ("prior_interaction",), "tags"),  # a crossed per-title block
    Term("score_x_style", ("recommender_score",), "style"),  # the score crossed too: two level blocks
    Term("device_x_hour", ("device", "hour")),  # context x context
    Term("prior_x_device_x_cast_match", ("prior_interaction", "device"), "cast_match"),
)


def _page(config: FeatureConfig, seed: int = 3, n_inter: int = 4):
    cat = make_catalog(n_titles=12, pool=6, seed=seed)
    if config.embedding_dim:  # every other artwork with an embedding (the others read zeros)
        rng = np.random.default_rng(seed)
        arts = list(cat.artworks.values())
        cat = Catalog(
            list(cat.titles.values()),
            [
                a if i % 2 else dataclasses.replace(a, embedding=tuple(rng.normal(size=config.embedding_dim)))
                for i, a in enumerate(arts)
            ],
        )
    f = Featurizer(cat, config)
    ctx = make_members(cat, 1, seed=seed)[0]
    tids = list(cat.titles)
    ctx = dataclasses.replace(
        ctx,
        country="se",
        played=tuple(Play(t, ctx.timestamp - 86_400.0 * (i + 1)) for i, t in enumerate(tids[:5])),
        interacted_titles=frozenset(tids[:n_inter]),
        recommender_scores={t: 0.25 * (i % 3) for i, t in enumerate(tids)},
    )
    return cat, f, f.page(ctx, tids, request_id="r")


def _reference(X: np.ndarray, lay, term: Term) -> np.ndarray:
    """The term's columns computed from the dense rows' own plain blocks, as the declaration says."""
    parts = [X[..., lay[name]] for name in term.context] or [np.ones((*X.shape[:2], 1))]
    P = parts[0]
    for q in parts[1:]:
        P = (P[..., :, None] * q[..., None, :]).reshape(*X.shape[:2], -1)
    S = np.ones((*X.shape[:2], 1)) if term.candidate == "one" else X[..., lay[term.candidate]]
    if term.mode == "outer":
        return (P[..., :, None] * S[..., None, :]).reshape(*X.shape[:2], -1)
    if term.mode == "diagonal":
        return P * S
    return (P * S).sum(axis=-1, keepdims=True)


def test_default_declaration_keeps_the_published_layout():
    assert FeatureConfig() == FeatureConfig(crosses="all")  # every cross by default
    assert FeatureConfig().dim == 1712 and FeatureConfig().layout.basis_width == 37
    lay = FeatureConfig(crosses=()).layout  # the declared terms only
    assert lay.dim == 174 and lay.basis_width == 39
    assert list(lay)[:3] == ["bias", "member_genre_affinity", "country"]
    assert lay["prior_x_artwork"] == slice(lay["prior_x_theme_match"].start, lay["prior_x_style"].stop)
    assert lay.z_blocks == ["recommender_score", "title_affinity"] and lay.level_blocks == [
        "prior_interaction"
    ]


@pytest.mark.parametrize("term", [*TERMS[-7:], *CROSSES], ids=lambda t: t.name)
def test_a_declared_cross_is_the_product_it_names_in_rows_dot_and_basis(term):
    crosses = () if term in TERMS else (term,)
    config = FeatureConfig(embedding_dim=2, tag_buckets=4, crosses=crosses)
    _, _, batch = _page(config)
    lay = config.layout
    X = batch.factors.materialize()
    # dense rows: the declared product of the row's own blocks, zero on padding
    np.testing.assert_allclose(
        X[..., lay[term.name]], _reference(X, lay, term) * batch.mask[..., None], atol=1e-12
    )
    assert np.abs(X[..., lay[term.name]][batch.mask]).sum() > 0  # the page exercises the term
    # factored dot product: a weight on the term's columns alone scores exactly those columns
    theta = np.zeros(lay.dim)
    theta[lay[term.name]] = np.random.default_rng(0).normal(size=lay[term.name].stop - lay[term.name].start)
    np.testing.assert_allclose(batch.dot(theta), X @ theta, atol=1e-12)
    # page basis: x = V(level) z rebuilds the term's columns exactly
    basis = batch.basis()
    eye = split_rows(lay, np.eye(lay.dim))
    for i in range(batch.n):
        V = basis.project(eye, basis.prior[i])
        np.testing.assert_allclose((basis.Z[i] @ V.T)[:, lay[term.name]], X[i][:, lay[term.name]], atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_inter=st.integers(0, 12), scores=st.booleans())
def test_rows_dot_and_basis_agree_with_every_cross_declared(seed, n_inter, scores):
    config = FeatureConfig(tag_buckets=4, crosses=CROSSES)
    _, _, batch = _page(config, seed=seed, n_inter=n_inter)
    X = batch.factors.materialize()
    theta = np.random.default_rng(seed).normal(size=config.dim)
    np.testing.assert_allclose(batch.dot(theta), X @ theta, atol=1e-10)
    basis = batch.basis()
    eye = split_rows(config.layout, np.eye(config.dim))
    for i in range(batch.n):
        np.testing.assert_allclose(basis.Z[i] @ basis.project(eye, basis.prior[i]).T, X[i], atol=1e-12)
    chosen = np.zeros(batch.n, dtype=np.int64)
    np.testing.assert_array_equal(batch.shown_X(chosen), X[:, 0])


@pytest.mark.parametrize("name", ["linucb", "linear_ts"])
def test_page_moments_with_declared_crosses_equal_the_plain_computation(name):
    config = FeatureConfig(tag_buckets=4, crosses=CROSSES)
    cat, f, batch = _page(config, n_inter=5)
    members = make_members(cat, 60, seed=7)
    tids = [list(cat.titles)[i % len(cat.titles)] for i in range(60)]
    events = f.events(members, tids, [[a.artwork_id for a in cat.pool(t)] for t in tids])
    policy = make_policy(name, seed=1).update(logged_feedback(events))
    rows = policy._rows(batch)
    post = policy.posterior_
    beta, U, inv_d = post.gather(rows, 1.0 / policy.bias_ridge)
    D = batch.X - U
    var_ref = np.einsum("nkd,de,nke->nk", D, post.sigma, D) + inv_d
    mean, var = policy._moments(batch)
    m = batch.mask
    np.testing.assert_allclose(mean[m], (batch.X @ post.theta + beta)[m], atol=1e-10)
    np.testing.assert_allclose(var[m], var_ref[m], rtol=1e-9, atol=1e-12)


def test_all_crosses_are_every_context_by_artwork_family_once_and_agree_everywhere():
    terms = all_crosses()
    art = {b.name for b in ARTWORK_BLOCKS}
    pairs = [(t.context, t.candidate) for t in (*TERMS, *terms) if t.mode == "outer" and len(t.context) == 1]
    pairs = [p for p in pairs if p[1] in art]
    # every (context family, artwork family) pair is an outer term exactly once, declared or added
    want = [((c.name,), a.name) for c in CONTEXT_BLOCKS if c.name != "bias" for a in ARTWORK_BLOCKS]
    # declared already: device, hour and prior x style, genre x embedding
    assert sorted(pairs) == sorted(want) and len(terms) == len(want) - 4
    config = FeatureConfig(tag_buckets=4, embedding_dim=2, crosses="all")
    assert config.crosses == terms and config.dim == FeatureConfig(
        tag_buckets=4, embedding_dim=2, crosses=()
    ).dim + sum(config.layout[t.name].stop - config.layout[t.name].start for t in terms)
    _, _, batch = _page(config)
    X = batch.factors.materialize()
    for t in terms:  # each is the product it names
        np.testing.assert_allclose(
            X[..., config.layout[t.name]], _reference(X, config.layout, t) * batch.mask[..., None]
        )
    theta = np.random.default_rng(1).normal(size=config.dim)
    np.testing.assert_allclose(batch.dot(theta), X @ theta, atol=1e-10)
    basis, eye = batch.basis(), split_rows(config.layout, np.eye(config.dim))
    for i in range(batch.n):
        np.testing.assert_allclose(basis.Z[i] @ basis.project(eye, basis.prior[i]).T, X[i], atol=1e-12)
    # absent families cost nothing: their crosses have no columns
    lean = FeatureConfig(tag_buckets=0, country_buckets=0, crosses="all").layout
    assert lean["country_x_theme"] == slice(lean["country_x_theme"].start, lean["country_x_theme"].start)
    assert lean["device_x_tags"].stop == lean["device_x_tags"].start


@pytest.mark.parametrize(
    ("crosses", "message"),
    [
        ((Term("theme", (), "theme"),), "distinct names. Repeated: theme"),
        ((Term("x", ("colour",), "theme"),), "unknown context block 'colour'"),
        ((Term("x", ("device",), "poster"),), "unknown candidate block 'poster'"),
        ((Term("x", ("device",), "theme", "diagonal"),), r"\(diagonal\) pairs a context product of width 4"),
        ((Term("x", ("device", "device"), "theme"),), "repeats a context block"),
        ((Term("x", ("device",), "theme", "sideways"),), "mode must be outer, diagonal or inner"),
        ((Term("prior_x_artwork", ("device",)),), "Group names clash with term names: prior_x_artwork"),
        (("device_x_theme",), "crosses must be a sequence of keyart.layout.Term"),
        ("some", 'crosses must be "all" or a sequence'),
    ],
)
def test_bad_crosses_are_refused_when_the_config_is_made(crosses, message):
    with pytest.raises(ValidationError, match=message):
        FeatureConfig(crosses=crosses)


@pytest.mark.parametrize("crosses", [(), "all"], ids=["declared", "every cross"])
def test_a_config_saved_before_title_affinity_keeps_the_layout_it_was_saved_with(crosses):
    """``title_affinity`` (the per-title column "member's genre affinity . title's genres" and its crosses)
    came after configs were first saved: one saved without the field reads back without those columns, and
    its rows are exactly today's rows with them left out."""
    config = FeatureConfig(tag_buckets=4, embedding_dim=2, crosses=crosses)
    saved = config.to_dict()
    del saved["title_affinity"]
    old = FeatureConfig.from_dict(saved)
    assert old == dataclasses.replace(config, title_affinity=False)
    assert FeatureConfig.from_dict(config.to_dict()) == config
    _, _, new_page = _page(config)
    _, _, old_page = _page(old)
    names = new_page.feature_names
    keep = [i for i, n in enumerate(names) if not n.startswith("title_affinity")]
    assert len(keep) == old.dim < config.dim
    assert [names[i] for i in keep] == list(old_page.feature_names)
    np.testing.assert_array_equal(new_page.X[..., keep], old_page.X)
    assert np.abs(new_page.X[..., [i for i in range(len(names)) if i not in keep]]).max() > 0
