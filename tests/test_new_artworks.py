"""New-artwork exploration: with ``new_share``, an artwork the policy has learned fewer than
``new_impressions`` impressions of gets at least that share of its title's traffic, with exact
propensities, until it has them."""

import numpy as np
import pytest
from scipy.stats import binom

from core_helpers import logged_feedback, make_catalog, make_events, make_members
from keyart.catalog import Artwork
from keyart.exploration import apply_new_share
from keyart.features import Featurizer
from keyart.feedback import LoggedFeedback
from keyart.policies import make_policy, restore_policy

LEARNING = ["linucb", "linear_ts", "logistic_ts", "epsilon_greedy", "softmax", "beta_ts", "greedy"]


def test_apply_new_share_is_the_documented_mixture():
    rng = np.random.default_rng(0)
    mask = rng.random((200, 7)) < 0.8
    mask[:, 0] = True
    p = np.where(mask, rng.random((200, 7)), 0.0)
    p /= p.sum(axis=1, keepdims=True)
    new = rng.random((200, 7)) < 0.3
    for share in (0.05, 0.3, 0.9):
        out = apply_new_share(p, mask, new, share)
        count = (new & mask).sum(axis=1)
        s = np.minimum(share, 1.0 / np.maximum(count, 1))
        for i in range(200):  # row by row, the plain formula
            want = (1.0 - count[i] * s[i]) * p[i] + np.where(new[i] & mask[i], s[i], 0.0)
            np.testing.assert_allclose(out[i], want, atol=1e-15)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
        assert (out[new & mask] >= np.repeat(s, (new & mask).sum(axis=1)) - 1e-15).all()
        assert not out[~mask].any()
    np.testing.assert_array_equal(apply_new_share(p, mask, np.zeros_like(new), 0.5), p)


def _setup(name, **params):
    cat = make_catalog(n_titles=6, pool=4, seed=1)
    policy = make_policy(name, seed=0, **params).update(
        logged_feedback(make_events(cat, 1200, seed=2), seed=2)
    )
    cat.add_artwork(Artwork("t0-fresh", "t0", theme_genres=("comedy",), style="dark"))
    return cat, policy


@pytest.mark.parametrize("name", LEARNING)
def test_a_new_artwork_gets_its_share_until_it_has_its_impressions(name):
    cat, plain = _setup(name)
    _, boosted = _setup(name, new_share=0.25, new_impressions=20)
    f = Featurizer(cat)
    batch = f.pages(make_members(cat, 30, seed=5), [["t0", "t1"]] * 30)
    p_plain, p = plain.probabilities(batch), boosted.probabilities(batch)
    new = batch.artwork_ids == "t0-fresh"
    assert new.sum() == 30
    # the new artwork has its share; every other row is the plain policy's (all its artworks are known)
    assert (p[new] >= 0.25 - 1e-12).all()
    assert not np.allclose(p, p_plain) or np.allclose(p_plain[new], 1.0)  # (greedy: all on the new one)
    np.testing.assert_allclose(p, apply_new_share(p_plain, batch.mask, new, 0.25), atol=1e-12)
    decisions = boosted.choose(batch)
    np.testing.assert_allclose(decisions.propensity, p[np.arange(batch.n), decisions.index], atol=1e-12)
    # after 20 impressions of it, the share is no longer forced
    members = make_members(cat, 20, seed=6)
    pools = [[a.artwork_id for a in cat.pool("t0")]] * 20
    shown = ["t0-fresh"] * 20
    for model in (plain, boosted):
        model.update(
            LoggedFeedback.from_events(f, members, ["t0"] * 20, pools, shown, [0.25] * 20, [0.0] * 20)
        )
    np.testing.assert_allclose(boosted.probabilities(batch), plain.probabilities(batch), atol=1e-12)


def test_the_share_shows_in_the_choices():
    cat, policy = _setup("linucb", new_share=0.3, new_impressions=10)  # the others have more
    n = 4000
    batch = Featurizer(cat).pages(make_members(cat, n, seed=8), [["t0"]] * n)
    assert (policy.probabilities(batch)[batch.artwork_ids == "t0-fresh"] >= 0.3 - 1e-12).all()
    index = policy.choose(batch).index
    shown = int((batch.artwork_ids[np.arange(n), index] == "t0-fresh").sum())
    assert shown >= binom.ppf(1e-6, n, 0.3)  # at least its share, beyond chance at 1e-6


def test_the_logistic_models_impressions_are_in_its_snapshots():
    _, a = _setup("logistic_ts", new_share=0.2, new_impressions=5)
    again = restore_policy(a.snapshot())
    np.testing.assert_array_equal(again.shown_, a.shown_)
    assert a.shown_.sum() == pytest.approx(1200)  # one per learned event
    old = a.snapshot()
    del old["state"]["shown"]  # saved before impressions were counted: its artworks are not new
    assert np.isinf(restore_policy(old).shown_).all()
