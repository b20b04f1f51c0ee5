"""The layout's Kronecker form (keyart.kron): x = L (c (x) z) rebuilds every row, and the posterior's
(co)variances through it equal the plain computation on the rows, for pages and batches of many members."""

import dataclasses

import numpy as np
import pytest

from core_helpers import logged_feedback, make_catalog, make_members
from keyart.basis import candidate_vectors
from keyart.context import Play
from keyart.errors import ValidationError
from keyart.features import FeatureConfig, Featurizer
from keyart.kron import kron_plan
from keyart.layout import Term
from keyart.learning import spd_inverse
from keyart.policies import make_policy
from keyart.policies.shared import KRON_MIN_DIM

LAYOUTS = {
    "default": FeatureConfig(),
    "all crosses": FeatureConfig(tag_buckets=4, embedding_dim=2, crosses="all"),
    # two crossed per-title blocks in one product: no per-member decomposition, every row its own c
    "two levels": FeatureConfig(
        crosses=(
            Term("prior_x_score_x_style", ("prior_interaction", "recommender_score"), "style"),
            Term("country_x_theme", ("country",), "theme"),
        )
    ),
}


def _batch(config: FeatureConfig, members: int, seed: int = 3):
    """A batch of several members' pages (one member: a page) with prior interactions, scores and
    histories, and the featurizer's catalog."""
    cat = make_catalog(n_titles=12, pool=6, seed=seed)
    f = Featurizer(cat, config)
    tids = list(cat.titles)
    ctxs = [
        dataclasses.replace(
            ctx,
            played=tuple(Play(t, ctx.timestamp - 86_400.0 * (i + 1)) for i, t in enumerate(tids[i : i + 4])),
            interacted_titles=frozenset(tids[i : i + 3]),
            recommender_scores={t: 0.25 * ((i + j) % 4) for j, t in enumerate(tids)},
        )
        for i, ctx in enumerate(make_members(cat, members, seed=seed))
    ]
    pages = [tids[(3 * i) % 5 :][:7] for i in range(members)]
    return cat, f, f.pages(ctxs, pages, [f"r{i}" for i in range(members)])


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_kronecker_form_rebuilds_every_row_and_quadratic_form(name):
    config = LAYOUTS[name]
    _, _, batch = _batch(config, members=4)
    F = batch.factors
    X = F.materialize()
    plan = kron_plan(config.layout)
    assert plan.multi_level == (name == "two levels")
    c, Z = plan.contexts(F.ctx), candidate_vectors(config.layout, F.ctx, F.art_block, F.idx, F.pair)
    cz = (c[:, None, :, None] * Z[:, :, None, :]).reshape(batch.n, batch.k, -1)
    np.testing.assert_allclose(cz @ plan._LT.toarray(), X, atol=1e-12)
    # B(c) through the members and their levels = x^T S x for any symmetric S; the lift = x . a
    rng = np.random.default_rng(0)
    S = rng.normal(size=(config.dim, config.dim))
    S = S @ S.T
    blocks = plan.project(S)
    members, inverse, levels = plan.members(F.ctx)
    B = plan.quadratic(blocks, plan.member_quadratics(blocks, members), inverse, levels)
    want = np.einsum("nkd,de,nke->nk", X, S, X)
    np.testing.assert_allclose(np.einsum("nkr,nrs,nks->nk", Z, B, Z), want, rtol=1e-10, atol=1e-9)
    A = rng.normal(size=(batch.n * batch.k, config.dim))
    H = plan.lift(A[:, plan.j], c, batch.k)
    want = np.einsum("nkd,nkd->nk", X, A.reshape(batch.n, batch.k, -1))
    np.testing.assert_allclose(np.einsum("nkr,nkr->nk", Z, H), want, atol=1e-10)


@pytest.mark.parametrize("name", ["linucb", "linear_ts"])
@pytest.mark.parametrize("layout", ["all crosses", "two levels"])
@pytest.mark.parametrize("members", [1, pytest.param(6, marks=pytest.mark.slow)])
def test_kronecker_moments_equal_the_plain_computation(name, layout, members):
    config = LAYOUTS[layout]
    cat, f, batch = _batch(config, members)
    people = make_members(cat, 80, seed=7)
    tids = [list(cat.titles)[i % 9] for i in range(80)]  # titles 9-11 stay unseen: unknown artworks
    events = f.events(people, tids, [[a.artwork_id for a in cat.pool(t)] for t in tids])
    policy = make_policy(name, seed=1).update(logged_feedback(events))
    post, rows = policy.posterior_, policy._rows(batch)
    assert (rows < 0).any() and (rows >= 0).any()
    assert post.coupled is not None and post.coupled.size < config.dim  # untouched columns solved apart
    beta, U, inv_d = post.gather(rows, 1.0 / policy.bias_ridge_)
    D = batch.X - U
    cov_ref = np.einsum("nkd,de,nle->nkl", D, post.sigma, D)
    cov_ref[:, np.arange(batch.k), np.arange(batch.k)] += inv_d
    F = batch.factors
    plan = kron_plan(config.layout)
    Z = candidate_vectors(config.layout, F.ctx, F.art_block, F.idx, F.pair)
    var = post.kron_moments(plan, F.ctx, Z, rows, 1.0 / policy.bias_ridge_)
    cov = post.kron_moments(plan, F.ctx, Z, rows, 1.0 / policy.bias_ridge_, covariance=True)
    m = batch.mask
    both = m[:, :, None] & m[:, None, :]
    np.testing.assert_allclose(var[m], np.diagonal(cov_ref, axis1=1, axis2=2)[m], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov[both], cov_ref[both], rtol=1e-9, atol=1e-12)
    if config.dim >= KRON_MIN_DIM:  # the policy takes this path, and its means are the rows' too
        mean, var_p = policy._moments(batch)
        np.testing.assert_allclose(mean[m], (batch.X @ post.theta + beta)[m], atol=1e-10)
        np.testing.assert_allclose(var_p[m], var[m])


def test_spd_inverse_is_the_inverse_and_refuses_what_is_not_positive_definite():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(30, 30))
    M = A @ A.T + np.eye(30)
    inv = spd_inverse(M)
    np.testing.assert_allclose(inv @ M, np.eye(30), atol=1e-9)
    np.testing.assert_array_equal(inv, inv.T)
    with pytest.raises(ValidationError, match="not positive definite"):
        spd_inverse(M - 100.0 * np.eye(30))


def test_projected_rows_are_computed_once_and_equal_the_full_product():
    _, _, batch = _batch(FeatureConfig(), 3)
    policy = make_policy("linucb", seed=0).update(logged_feedback(batch))
    post = policy.posterior_
    Y, c = post.projected_rows(np.array([0, 2, -1]))
    full = post.U @ post.sigma
    np.testing.assert_allclose(Y[[0, 2]], full[[0, 2]])
    assert not Y[1].any() and not Y[-1].any()  # only the rows asked were computed
    np.testing.assert_allclose(c[[0, 2]], np.einsum("ad,ad->a", full, post.U)[[0, 2]])
    Y_all, c_all, _ = post._projected
    np.testing.assert_allclose(Y_all[:-1], full)
    np.testing.assert_allclose(c_all[:-1], np.einsum("ad,ad->a", full, post.U))


@pytest.mark.parametrize("name", ["linucb", "linear_ts", "logistic_ts"])
def test_an_untrained_policy_chooses_through_the_kronecker_form(name):
    config = LAYOUTS["all crosses"]
    _, _, batch = _batch(config, 3)
    assert config.dim >= KRON_MIN_DIM
    policy = make_policy(name, seed=0)
    p = policy.probabilities(batch)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # before any data every artwork is unknown: mean 0, the prior's variance
    mean, var = policy._moments(batch)
    m = batch.mask
    assert np.all(mean[m] == 0.0) and np.all(var[m] > 0)
