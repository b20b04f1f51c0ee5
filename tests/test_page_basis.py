"""The page fast path: a one-member page's low-dimensional basis reproduces its feature rows exactly, and
the posterior's variances and covariances from it equal the plain (x - U)^T Sigma (x - U) computation."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core_helpers import make_catalog, make_members, trained
from keyart.batch import split_rows
from keyart.context import Play
from keyart.features import FeatureConfig, Featurizer
from keyart.policies import batch_rows, make_policy


def _page(seed: int, n_inter: int, config: FeatureConfig | None = None, device: str = "tv"):
    cat = make_catalog(n_titles=14, pool=7, seed=seed)
    f = Featurizer(cat, config)
    ctx = make_members(cat, 1, seed=seed)[0]
    tids = list(cat.titles)
    ctx = dataclasses.replace(
        ctx,
        device=device,
        played=tuple(Play(t, ctx.timestamp - 86_400.0 * (i + 1)) for i, t in enumerate(tids[:6])),
        interacted_titles=frozenset(tids[:n_inter]),
        recommender_scores={t: 0.1 * i for i, t in enumerate(tids[::2])},
        extra={"tenure": 2.5},
    )
    return cat, f, f.page(ctx, tids, request_id="r")


def _rows_from_basis(batch):
    basis = batch.basis()
    eye = split_rows(basis.layout, np.eye(batch.d))
    out = np.empty((batch.n, batch.k, batch.d))
    for i in range(batch.n):
        V = basis.project(eye, basis.prior[i])  # (d, r): column j is V's j-th basis vector
        out[i] = basis.Z[i] @ V.T
    return out


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_inter=st.integers(0, 14),
    device=st.sampled_from(["tv", "mobile", ""]),
    embedding=st.sampled_from([0, 3]),
)
def test_basis_rebuilds_every_row_exactly(seed, n_inter, device, embedding):
    _, _, batch = _page(seed, n_inter, FeatureConfig(embedding_dim=embedding), device)
    assert batch.basis() is not None
    np.testing.assert_allclose(_rows_from_basis(batch), batch.factors.materialize(), rtol=0, atol=1e-12)


def test_batches_of_several_members_have_no_basis():
    cat = make_catalog()
    f = Featurizer(cat)
    m = make_members(cat, 2)
    pools = [[a.artwork_id for a in cat.pool(t)] for t in ("t0", "t1")]
    assert f.events(m, ["t0", "t1"], pools).basis() is None
    assert f.events([m[0], m[0]], ["t0", "t1"], pools).basis() is not None


@pytest.mark.parametrize("name", ["linucb", "linear_ts", "logistic_ts"])
@pytest.mark.parametrize("n_inter", [0, 3])
def test_page_moments_equal_the_plain_computation(name, n_inter):
    cat, _, batch = _page(5, n_inter)
    policy = trained(make_policy(name, seed=1), cat, n=60)
    # some of the page's artworks were never seen (prior bias, U = 0) and pools differ in size (padding)
    rows = policy._rows(batch)
    assert (rows[batch.mask] < 0).any() and (rows[batch.mask] >= 0).any()
    assert len(set(batch.pool_sizes.tolist())) > 1
    post = policy.posterior_
    beta, U, inv_d = post.gather(rows, 1.0 / policy.bias_ridge)
    D = batch.X - U
    cov_ref = np.einsum("nkd,de,nle->nkl", D, post.sigma, D)
    cov_ref[:, np.arange(batch.k), np.arange(batch.k)] += inv_d
    mean_ref = batch.X @ post.theta + beta

    mean, var = policy._moments(batch)
    _, cov = policy._moments(batch, covariance=True)
    m = batch.mask
    np.testing.assert_allclose(mean[m], mean_ref[m], rtol=0, atol=1e-12)
    np.testing.assert_allclose(var[m], np.diagonal(cov_ref, axis1=1, axis2=2)[m], rtol=1e-10, atol=1e-14)
    both = m[:, :, None] & m[:, None, :]
    np.testing.assert_allclose(cov[both], cov_ref[both], rtol=1e-10, atol=1e-14)


def test_model_rows_follow_a_growing_artwork_table_and_index():
    """Rows looked up through the featurizer's table stay right as both the table and the model grow."""
    cat = make_catalog(n_titles=40, pool=5)
    f = Featurizer(cat)
    policy = make_policy("linucb", seed=3)
    ctx = make_members(cat, 1)[0]
    tids = list(cat.titles)
    for step in range(4):
        batch = f.page(ctx, tids[: 10 * (step + 1)], request_id=f"r{step}")  # new artworks each step
        np.testing.assert_array_equal(
            batch_rows(policy.index_, batch, policy._row_cache),
            policy.index_.rows_for_keys(batch.artwork_keys),
        )
        trained(policy, cat, n=100, seed=step)  # the index learns new artworks
        np.testing.assert_array_equal(
            batch_rows(policy.index_, batch, policy._row_cache),
            policy.index_.rows_for_keys(batch.artwork_keys),
        )


def test_a_long_lived_featurizer_equals_a_fresh_one():
    """Capacity growth of the artwork, title and pool tables keeps every row where it was."""
    cat = make_catalog(n_titles=90, pool=9, seed=2)
    old = Featurizer(cat)
    members = make_members(cat, 30, seed=4)
    tids = list(cat.titles)
    rng = np.random.default_rng(0)
    for i, ctx in enumerate(members):
        page = rng.choice(tids, size=12, replace=False).tolist()
        a = old.page(ctx, page, request_id=str(i))
        b = Featurizer(cat).page(ctx, page, request_id=str(i))
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.artwork_ids, b.artwork_ids)
