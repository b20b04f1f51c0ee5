"""Exact vocabularies that grow as values arrive: a config that extends another maps every old column
to its place, a growing featurizer widens its config on first sight of a value, and a model grows into the
wider config exactly (the same state as a model that had the wider config from its first event)."""

import dataclasses

import numpy as np
import pytest

from core_helpers import make_catalog, make_members
from keyart.catalog import Artwork
from keyart.errors import DimensionError
from keyart.features import EXACT_MAX, FeatureConfig, Featurizer, exact_vocabularies
from keyart.feedback import LoggedFeedback
from keyart.layout import Term
from keyart.policies import make_policy


def _contexts(catalog, n, seed, **values):
    return [dataclasses.replace(c, **values) for c in make_members(catalog, n, seed=seed)]


@pytest.mark.parametrize("crosses", [(), "all"])
def test_column_map_places_every_old_column_and_leaves_new_ones_zero(crosses):
    cat = make_catalog(n_titles=6, pool=5, seed=1)
    ctxs = make_members(cat, 40, seed=2)
    old = exact_vocabularies(cat, ctxs, FeatureConfig(crosses=crosses))
    new = old.grown("device", ["console"]).grown("country", ["SE", "DE"]).grown("style", ["neon"])
    assert new.vocabulary("country")[-2:] == ("SE", "DE")  # in the order given
    columns = new.column_map(old)
    assert columns is not None and np.unique(columns).size == old.dim and (np.diff(columns) > 0).all()
    # tokens both configs know, and one neither knows (hashed into the open bucket, which moved)
    for extra in ({}, {"device": "fridge", "language": "xx"}):
        rows = [c if not extra else dataclasses.replace(c, **extra) for c in ctxs[:5]]
        X_old = Featurizer(cat, old).pages(rows, [list(cat.titles)[:3]] * 5).X
        X_new = Featurizer(cat, new).pages(rows, [list(cat.titles)[:3]] * 5).X
        np.testing.assert_array_equal(X_new[..., columns], X_old)
        assert not np.delete(X_new, columns, axis=-1).any()


def test_column_map_is_none_when_the_config_does_not_extend():
    cat = make_catalog(n_titles=4, pool=4, seed=1)
    old = exact_vocabularies(cat, make_members(cat, 20, seed=2))
    new = old.grown("device", ["console"])
    assert old.column_map(new) is None  # shrinking
    assert new.column_map(FeatureConfig()) is None  # hashed fields made exact: old tokens move
    assert dataclasses.replace(new, crosses=(Term("x", ("device",), "style"),)).column_map(old) is None
    reordered = dict(old.vocabularies)
    reordered["device"] = tuple(reversed(reordered["device"]))
    assert dataclasses.replace(old, vocabularies=tuple(reordered.items())).column_map(old) is None
    more_open = dataclasses.replace(new, device_buckets=new.device_buckets + 1)
    assert more_open.column_map(old) is None  # the hashed tokens would land elsewhere
    np.testing.assert_array_equal(old.column_map(old), np.arange(old.dim))


def test_growing_featurizer_gives_each_new_value_a_bucket_up_to_the_cap():
    cat = make_catalog(n_titles=4, pool=4, seed=1)
    config = exact_vocabularies(cat, grow=True)
    assert config.vocabulary("device") == () and config.device_buckets == 1
    f = Featurizer(cat, config, grow=True)
    f.page(make_members(cat, 1, seed=3)[0], list(cat.titles))
    assert f.config.vocabulary("device") in {("tv",), ("mobile",), ("web",)}
    f.pages(make_members(cat, 30, seed=4), [list(cat.titles)[:2]] * 30)
    assert f.config.vocabulary("device")[1:] == tuple(sorted(set(f.config.vocabulary("device")[1:])))
    assert set(f.config.vocabulary("device")) == {"tv", "mobile", "web"}
    assert f.config.device_buckets == 4 and f.config.country_buckets == 4  # US, FR, BR + the open one
    assert f.page(make_members(cat, 1, seed=3)[0], list(cat.titles)).d == f.config.dim
    # past EXACT_MAX values, new ones share the open bucket
    many = [dataclasses.replace(c, device=f"d{i:03d}") for i, c in enumerate(make_members(cat, 80, seed=5))]
    f.pages(many, [list(cat.titles)[:1]] * 80)
    assert len(f.config.vocabulary("device")) == EXACT_MAX and f.config.device_buckets == EXACT_MAX + 1
    # the catalog's values: a new artwork with a new tag and style grows the artwork blocks
    tags = f.config.tag_buckets
    cat.add_artwork(Artwork("t0-new", "t0", theme_genres=("comedy",), style="neon", tags=("sequel",)))
    batch = f.page(make_members(cat, 1, seed=3)[0], ["t0"])
    assert f.config.tag_buckets == tags + 1 and "neon" in f.config.vocabulary("style")
    assert "t0-new" in set(batch.artwork_ids[0].tolist())


def test_a_growing_featurizer_without_a_config_grows_the_contexts_vocabularies_too():
    """``Featurizer(catalog, grow=True)``: the catalog's exact vocabularies, and countries, languages and
    devices that start empty and take each value as requests carry it (as the service's new model and the
    simulation's closed loop featurize), so no two countries share a column."""
    cat = make_catalog(n_titles=4, pool=4, seed=1)
    f = Featurizer(cat, grow=True)
    assert f.config == exact_vocabularies(cat, grow=True) and f.config.vocabulary("country") == ()
    members = make_members(cat, 30, seed=4)
    batch = f.pages(members, [list(cat.titles)[:2]] * 30)
    countries = sorted({m.country for m in members})
    assert len(countries) > 1 and sorted(f.config.vocabulary("country")) == countries
    col = {c: f.feature_names.index(f"country[{f.config.vocabulary('country').index(c)}]") for c in countries}
    for i, m in enumerate(members):  # each member's own country column, and no other (2 rows a page)
        x = batch.X[2 * i, 0]
        assert x[col[m.country]] == 1 and sum(x[j] for j in col.values()) == 1
    assert Featurizer(cat).config == exact_vocabularies(cat)  # without grow: hashed, as before


def test_a_featurizer_that_does_not_grow_hashes_new_values():
    cat = make_catalog(n_titles=4, pool=4, seed=1)
    config = exact_vocabularies(cat, make_members(cat, 20, seed=2))
    f = Featurizer(cat, config)
    f.page(dataclasses.replace(make_members(cat, 1, seed=3)[0], device="console"), list(cat.titles))
    assert f.config is config


def _stream(cat, n_windows=8, per_window=80, seed=7):
    """Windows of logged events; after the first refit of the priors (256 events) windows bring a new
    device (window 5), a new country (window 6) and (window 5) a new artwork with a new tag and style."""
    rng = np.random.default_rng(seed)
    out = []
    for w in range(n_windows):
        values = {}
        if w >= 4:
            values["device"] = "console" if w % 2 else "tv"
        if w >= 6:
            values["country"] = "SE"
        ctxs = _contexts(cat, per_window, seed=100 + w, **values)
        tids = rng.choice(list(cat.titles), size=per_window).tolist()
        out.append((w, ctxs, tids, rng.random(per_window), rng.random(per_window)))
    return out


def _learn(policy, featurizer, cat, stream, grow_at=5):
    for w, ctxs, tids, u_show, u_reward in stream:
        if w == grow_at:
            cat.add_artwork(Artwork("t1-new", "t1", theme_genres=("drama",), style="neon", tags=("sequel",)))
        pools = [[a.artwork_id for a in cat.pool(t)] for t in tids]
        shown = [p[int(u * len(p))] for p, u in zip(pools, u_show, strict=True)]
        reward = (u_reward < np.where([s.endswith(("0", "new")) for s in shown], 0.5, 0.2)).astype(float)
        prop = [1.0 / len(p) for p in pools]
        policy.update(LoggedFeedback.from_events(featurizer, ctxs, tids, pools, shown, prop, reward))
    return policy


# the logistic model with fixed priors: its learned ones are fitted to 1e-4 nats of a flat evidence, where
# rounding (other widths, other BLAS blocking) sends the optimizer along another path to another stopping
# point; the growth itself is exact, which the fixed priors show
@pytest.mark.parametrize(
    ("name", "params"), [("linucb", {}), ("linear_ts", {}), ("logistic_ts", {"priors": "fixed"})]
)
@pytest.mark.parametrize("crosses", [(), "all"])
def test_a_model_grows_into_the_wider_config_exactly(name, params, crosses):
    stream = _stream(make_catalog(n_titles=6, pool=4, seed=1))
    cat_a = make_catalog(n_titles=6, pool=4, seed=1)
    start = exact_vocabularies(
        cat_a, make_members(cat_a, 20, seed=2), FeatureConfig(crosses=crosses), grow=True
    )
    grower = Featurizer(cat_a, start, grow=True)
    a = _learn(make_policy(name, seed=0, **params), grower, cat_a, stream)
    final = grower.config
    assert final.dim > start.dim and a.features_ == final and a.dim_ == final.dim
    assert {"console", "SE", "neon", "sequel"} <= {t for _, v in final.vocabularies for t in v}
    # the same events, featurized from the first with the final config
    cat_b = make_catalog(n_titles=6, pool=4, seed=1)
    b = _learn(make_policy(name, seed=0, **params), Featurizer(cat_b, final), cat_b, stream)
    assert a.events_ == b.events_ >= 512  # refits of the priors happened before and after growing
    rtol = 1e-9
    for x, y in zip(
        (a.post_.P_ss, a.post_.P_sa, a.post_.P_d, a.post_.eta_s, a.post_.eta_a, a.ridge_cols_),
        (b.post_.P_ss, b.post_.P_sa, b.post_.P_d, b.post_.eta_s, b.post_.eta_a, b.ridge_cols_),
        strict=True,
    ):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(1.0, np.abs(y).max()))
    page_a = grower.pages(make_members(cat_a, 5, seed=9), [list(cat_a.titles)] * 5)
    page_b = Featurizer(cat_b, final).pages(make_members(cat_b, 5, seed=9), [list(cat_b.titles)] * 5)
    np.testing.assert_allclose(a.probabilities(page_a), b.probabilities(page_b), atol=rtol)


def test_choosing_with_a_grown_config_grows_the_model_and_keeps_its_predictions():
    cat = make_catalog(n_titles=5, pool=4, seed=1)
    start = exact_vocabularies(cat, make_members(cat, 20, seed=2), grow=True)
    f = Featurizer(cat, start, grow=True)
    model = _learn(make_policy("linucb", seed=0), f, cat, _stream(cat, n_windows=3))
    members = make_members(cat, 4, seed=11)
    before = model.probabilities(f.pages(members, [list(cat.titles)] * 4))
    seen = f.pages([dataclasses.replace(members[0], device="console")], [list(cat.titles)])  # grows f
    assert f.config.dim > start.dim and model.features_ == start
    model.choose(seen)
    assert model.features_ == f.config and model.dim_ == f.config.dim
    after = model.probabilities(f.pages(members, [list(cat.titles)] * 4))
    np.testing.assert_allclose(after, before, atol=1e-12)
    # a batch of the narrower config no longer fits: the model only grows
    with pytest.raises(DimensionError, match="another FeatureConfig"):
        model.choose(Featurizer(cat, start).pages(members, [list(cat.titles)] * 4))
    with pytest.raises(DimensionError, match="does not extend"):
        model.grow_features(start)
