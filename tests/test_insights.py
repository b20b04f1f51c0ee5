"""keyart.insights on small logs whose truth is known by construction (``logs_helpers``: 'face' artworks
lead to a quality play with probability 0.7, 'bright' 0.2, 'dark' 0.1), and on hand-made members."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext, Play
from keyart.errors import ValidationError
from keyart.events import OutcomeRecord, decisions_from_batch
from keyart.features import Featurizer
from keyart.insights.clickbait import benjamini_hochberg, clickbait, clickbait_of, odds_ratio_p_values
from keyart.insights.data import InsightLogs, load_logs, load_model
from keyart.insights.effects import attribute_effects
from keyart.insights.model import DESIGN_PREFIX, ModelView, design
from keyart.insights.segments import FAMILIES, KNEW, NEW, NO_HISTORY, member_segments, segment_list
from keyart.insights.shares import artwork_shares, over_time, segment_estimates, shown_to
from keyart.insights.suggestions import analyse_title
from keyart.layout import FeatureConfig
from keyart.policies import make_policy
from keyart.rewards import JoinReport
from keyart.service.snapshots import publish
from keyart.store import EventStore
from keyart.train import train
from logs_helpers import PLAY, T0, write_logs


@pytest.fixture(scope="module")
def uniform(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Catalog, InsightLogs]:
    tmp = write_logs(tmp_path_factory.mktemp("insights-uniform"))
    cat = Catalog.load(tmp / "catalog.json")
    return tmp, cat, load_logs(tmp / "events.duckdb", cat)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Catalog, InsightLogs]:
    """A logger that shows the 'face' artwork 80% of the time: IPS must undo the skew."""
    tmp = write_logs(tmp_path_factory.mktemp("insights-skewed"), face_probability=0.8)
    cat = Catalog.load(tmp / "catalog.json")
    return tmp, cat, load_logs(tmp / "events.duckdb", cat)


# ---- 1. shares, take fractions, IPS, who sees what, over time -------------------------------------


def test_shares_add_up_and_take_fractions_are_the_logged_ratios(uniform) -> None:
    logs = uniform[2]
    shares = artwork_shares(logs)
    assert sum(s.impressions for s in shares) == logs.n
    for t in set(logs.title.tolist()):
        mine = [s for s in shares if s.title_id == t]
        assert sum(s.share for s in mine) == pytest.approx(1.0)
        for s in mine:
            shown = (logs.title == t) & (logs.artwork == s.artwork_id)
            assert s.impressions == shown.sum()
            assert s.quality_plays == logs.reward[shown].sum()
            assert s.take_fraction == pytest.approx(s.quality_plays / s.impressions)
            assert s.take_lower <= s.take_fraction <= s.take_upper
            # under uniform logging the self-normalized IPS of "always this artwork" is its take fraction
            assert s.ips == pytest.approx(s.take_fraction)


def test_ips_recovers_each_artworks_true_take_under_a_skewed_logger(skewed) -> None:
    _, cat, logs = skewed
    shares = artwork_shares(logs)
    truth = np.array([PLAY[cat.artwork(s.artwork_id).style] for s in shares])
    lower = np.array([s.ips_lower for s in shares])
    upper = np.array([s.ips_upper for s in shares])
    covered = (lower <= truth) & (truth <= upper)
    assert covered.sum() >= len(shares) - 2, [(s.artwork_id, s.ips, s.ips_lower, s.ips_upper) for s in shares]
    face = [s for s in shares if cat.artwork(s.artwork_id).style == "face"]
    assert all(s.share > 0.7 for s in face)  # the logger's skew is in the shares, not in the estimates
    dark = [s for s in shares if cat.artwork(s.artwork_id).style == "dark"]
    assert max(s.ips_upper for s in dark) < min(s.ips_lower for s in face)


def test_who_sees_what_and_how_it_moved(uniform) -> None:
    _, cat, logs = uniform
    segments = member_segments(logs.contexts, logs.title, cat)
    rows = shown_to(logs, segments, "t0", min_rows=1)
    countries = {r["segment"] for r in rows if r["family"] == "Country"}
    assert countries == {"FR", "US"}
    for seg in countries:
        mine = [r for r in rows if r["family"] == "Country" and r["segment"] == seg]
        assert sum(r["share"] for r in mine) == pytest.approx(1.0)
        assert sum(r["impressions"] for r in mine) == mine[0]["segment_impressions"]
    moved = over_time(logs, "t0", periods=4)
    assert {r["period"] for r in moved} == {1, 2, 3, 4}
    assert sum(r["impressions"] for r in moved) == logs.rows_of("t0").size
    for p in (1, 2, 3, 4):
        assert sum(r["share"] for r in moved if r["period"] == p) == pytest.approx(1.0)


def test_each_segments_best_artwork_from_the_logs(uniform) -> None:
    """Per country, the IPS estimate of every artwork of a title: 'face' is every segment's best, and the
    intervals cover the truth (which does not depend on the country)."""
    _, cat, logs = uniform
    segments = member_segments(logs.contexts, logs.title, cat)
    rows = [r for t in ("t0", "t3") for r in segment_estimates(logs, segments, t, min_rows=50)]
    countries = [r for r in rows if r["family"] == "Country"]
    assert {r["segment"] for r in countries} == {"FR", "US"} and len(countries) == 12
    truth = [PLAY[cat.artwork(r["artwork_id"]).style] for r in countries]
    misses = [r for r, t in zip(countries, truth, strict=True) if not r["lower"] <= t <= r["upper"]]
    assert len(misses) <= 2, misses  # 95% intervals: 0.6 misses expected of 12, 3 or more in 2% of seeds
    for r in countries:
        assert r["shown"] == ((logs.artwork == r["artwork_id"]) & (segments["Country"] == r["segment"])).sum()
        assert r["best"] == (cat.artwork(r["artwork_id"]).style == "face")
        assert r["decisions"] >= 50
    # the best's lead over the runner-up: the difference of the two estimates, its interval covering the
    # true lead (face 0.7 against bright 0.2), and a lead clear enough (0.5; about 35 impressions of each
    # artwork per segment) to be called clear in most segments
    best = [r for r in countries if r["best"]]
    assert len(best) == 4 and sum(r["clear"] for r in best) >= 3
    assert not any(r["clear"] for r in countries if not r["best"])
    for r in best:
        rest = [
            x["estimate"]
            for x in countries
            if x["title_id"] == r["title_id"] and x["segment"] == r["segment"]
        ]
        assert r["margin"] == pytest.approx(r["estimate"] - sorted(rest)[-2])
        assert r["margin_lower"] < r["margin"] < r["margin_upper"]
    assert sum(not r["margin_lower"] <= 0.5 <= r["margin_upper"] for r in best) <= 1  # 0.2 expected of 4


def test_a_close_best_is_not_called_clear() -> None:
    """Two artworks of equal truth and a worse one: the best of the two is never clear, its lead's
    interval covers zero (seeded logs of 2,000 members, uniform logging)."""
    rng = np.random.default_rng(7)
    n = 2000
    pools = [("a", "b", "c")] * n
    action = rng.integers(0, 3, n)
    truth = np.array([0.5, 0.5, 0.2])
    played = rng.random(n) < truth[action]
    logs = InsightLogs(
        title=np.full(n, "t", dtype=object),
        artwork=np.asarray(["abc"[i] for i in action], dtype=object),
        member=np.asarray([f"m{i}" for i in range(n)], dtype=object),
        timestamp=T0 + np.arange(n, dtype=np.float64),
        played=played,
        reward=played.astype(np.float64),
        propensity=np.full(n, 1 / 3),
        pools=pools,
        probabilities=[(1 / 3,) * 3] * n,
        contexts=[MemberContext(member_id=f"m{i}", timestamp=T0 + i) for i in range(n)],
        report=JoinReport(**{f.name: 0 for f in dataclasses.fields(JoinReport)}),  # not read here
        source="test",
    )
    segments = {f: np.full(n, "all", dtype=object) for f in FAMILIES}
    rows = [r for r in segment_estimates(logs, segments, "t", 50) if r["family"] == FAMILIES[0]]
    best = next(r for r in rows if r["best"])
    assert best["artwork_id"] in ("a", "b") and not best["clear"]
    assert best["margin_lower"] <= 0.0 < best["margin"]  # the lead's interval reaches the true lead, 0


def _member_catalog() -> Catalog:
    titles = [Title(f"d{i}", genres=("drama",), cast=("Ana",)) for i in range(6)]
    titles += [Title("c0", genres=("comedy",), cast=("Bo",)), Title("x", genres=("drama", "comedy"))]
    return Catalog(titles, [Artwork(f"{t.title_id}-a", t.title_id) for t in titles])


def test_favourites_are_what_a_member_plays_more_than_others() -> None:
    cat = _member_catalog()
    dramas = tuple(Play(f"d{i}") for i in range(3))
    ctx = [
        MemberContext("m1", played=dramas, device="tv", country="FR"),
        MemberContext(
            "m2", played=(*dramas, Play("c0")), device="mobile", interacted_titles=frozenset({"x"})
        ),
        MemberContext("m3", played=dramas),
        MemberContext("m4"),
    ]
    seg = member_segments(ctx, ["x"] * 4, cat)
    assert set(seg) == set(FAMILIES)
    # drama is everyone's most played genre; m2 plays comedy more than the others do
    assert seg["Favourite genre"].tolist() == ["drama", "comedy", "drama", NO_HISTORY]
    assert seg["Favourite cast member"].tolist() == ["Ana", "Bo", "Ana", NO_HISTORY]
    assert seg["Prior interaction"].tolist() == [NEW, KNEW, NEW, NEW]
    assert seg["Device"].tolist() == ["tv", "mobile", "unknown", "unknown"]
    groups = segment_list(seg, np.arange(4), min_rows=2)
    assert ("Favourite genre", "drama") in [(f, s) for f, s, _ in groups]
    assert all(r.size >= 2 for _, _, r in groups)


# ---- 2. what works for whom: attribute effects from the posterior ---------------------------------


@pytest.fixture(scope="module")
def modelled(uniform) -> tuple[ModelView, dict[str, np.ndarray]]:
    """A linear TS model trained on the uniform logs (what ``keyart insights`` does without --model)."""
    tmp, cat, logs = uniform
    policy, where = load_model(tmp / "events.duckdb", cat)
    assert where.startswith("a linear_ts model trained here on")
    return ModelView(policy, cat), member_segments(logs.contexts, logs.title, cat)


def test_style_effects_rank_the_styles_as_the_truth_does(uniform, modelled) -> None:
    logs = uniform[2]
    view, segments = modelled
    effects = attribute_effects(view, logs, segments, min_rows=100)
    style = {(e.segment, e.value): e for e in effects if e.attribute == "Style"}
    for segment in ("all members", "FR", "US"):
        face, bright, dark = (style[segment, s] for s in ("face", "bright", "dark"))
        assert face.lower > 0 and dark.upper < 0 and face.clear and dark.clear
        assert face.effect > bright.effect > dark.effect
        # centred on the average style: the three effects sum to zero
        assert face.effect + bright.effect + dark.effect == pytest.approx(0.0, abs=1e-9)
    one_title = attribute_effects(view, logs, segments, "t1", min_rows=100)
    assert {e.scope for e in one_title} == {"t1"}
    t1 = {e.value: e for e in one_title if e.attribute == "Style" and e.segment == "all members"}
    assert t1["face"].lower > 0 and t1["dark"].upper < 0


def test_an_effect_is_the_policys_own_score_difference(uniform, modelled) -> None:
    """The effect's mean equals the policy's posterior mean scores of the two designs, averaged over the
    same rows: the insights read the model, they do not refit it."""
    logs = uniform[2]
    view, segments = modelled
    [face] = [
        e
        for e in attribute_effects(view, logs, segments, "t2", min_rows=10**9, max_rows=10**9)
        if e.attribute == "Style" and e.value == "face"
    ]
    rows = logs.rows_of("t2")
    designs = [design("t2", s, style=s) for s in ("bright", "dark", "face")]
    feat = view.featurizer(designs)
    batch = feat.events(
        [logs.contexts[i] for i in rows], ["t2"] * rows.size, [[d.artwork_id for d in designs]] * rows.size
    )
    scores = view.policy.scores(batch).mean(0)
    assert face.effect == pytest.approx(scores[2] - scores.mean(), abs=1e-9)
    assert face.rows == rows.size


def test_visual_features_where_the_model_reads_embeddings(uniform, modelled) -> None:
    """Embeddings standing for the styles (face: first dimension, dark: second): a model that reads them
    finds the first dimension raising the take and the second lowering it; one that does not, says
    nothing on them."""
    tmp, cat, logs = uniform
    emb = {"face": (1.0, 0.0), "dark": (0.0, 1.0), "bright": (0.0, 0.0)}
    arts = [replace(a, embedding=emb[a.style]) for a in cat.artworks.values()]
    with_emb = Catalog(cat.titles.values(), arts)
    policy, _ = train(
        [tmp / "events.duckdb"],
        with_emb,
        make_policy("linear_ts", seed=0),
        features=FeatureConfig(embedding_dim=2, crosses=()),  # the embedding's main effect, genre cross
    )
    view, segments = modelled
    found = attribute_effects(ModelView(policy, with_emb), logs, segments, min_rows=10**9)
    visual = {e.value: e for e in found if e.attribute == "Visual feature"}
    assert set(visual) == {"dimension 1", "dimension 2"}
    assert visual["dimension 1"].lower > 0 and visual["dimension 2"].upper < 0
    blind = attribute_effects(ModelView(view.policy, with_emb), logs, segments, min_rows=10**9)
    assert not [e for e in blind if e.attribute == "Visual feature"]


def test_models_the_insights_refuse(uniform, tmp_path: Path) -> None:
    tmp, cat, _ = uniform
    counts = make_policy("greedy", seed=0)
    counts.save(tmp_path / "greedy.npz")
    with pytest.raises(ValidationError, match="the insights need a shared linear model"):
        load_model(tmp / "events.duckdb", cat, tmp_path / "greedy.npz")
    logistic, _ = train([tmp / "events.duckdb"], cat, make_policy("logistic_ucb", seed=0))
    logistic.save(tmp_path / "logistic.npz")  # on the logit scale: its weights are no take differences
    with pytest.raises(ValidationError, match="is a logistic_ucb model: the insights need a shared linear"):
        load_model(tmp / "events.duckdb", cat, tmp_path / "logistic.npz")
    state = tmp_path / "state"  # a service's state whose model is the default, logistic_ucb
    state.mkdir()
    shutil.copy(tmp / "events.duckdb", state / "events.duckdb")
    publish(state / "snapshots", 1, logistic, None, {"generation": 1})
    policy, where = load_model(state, cat)
    assert policy.name == "linear_ts" and where.startswith("a linear_ts model trained here on 1,200 ")
    assert where.endswith("(the service's model, generation 1, is logistic_ucb: not linear)")
    fresh = make_policy("linucb", seed=0)
    fresh.save(tmp_path / "fresh.npz")
    with pytest.raises(ValidationError, match="has learned nothing yet"):
        load_model(tmp / "events.duckdb", cat, tmp_path / "fresh.npz")
    other = Catalog([Title("zz")], [Artwork("zz-a", "zz")])
    with pytest.raises(ValidationError, match="wrong catalog"):
        load_logs(tmp / "events.duckdb", other)


# ---- 3. clickbait -----------------------------------------------------------------------------------

#: (P(play), P(quality | play)) per style: 'lure' artworks are played often and rarely watched through.
CLICKS = {"dark": (0.15, 0.7), "bright": (0.25, 0.6), "lure": (0.45, 0.1)}


def _click_logs(tmp: Path, styles: tuple[str, ...]) -> tuple[Catalog, InsightLogs]:
    """8 titles whose pools hold one artwork of each of ``styles``; 3,000 members, 2 titles each, artwork
    drawn uniformly; a play is engaged 1,800 s (a quality play) with P(quality | play), else 60 s."""
    titles = [Title(f"t{i}", genres=("drama",), runtime_minutes=90.0) for i in range(8)]
    cat = Catalog(titles, [Artwork(f"t{i}-{s}", f"t{i}", style=s) for i in range(8) for s in styles])
    feat, logger, rng = Featurizer(cat), make_policy("uniform", seed=3), np.random.default_rng(5)
    contexts = [MemberContext(member_id=f"m{m}", timestamp=T0 + 10 * m) for m in range(3000)]
    pages = [[f"t{i}" for i in rng.choice(8, size=2, replace=False)] for _ in contexts]
    decisions = logger.choose(feat.pages(contexts, pages, [f"r{m}" for m in range(3000)]))
    table = decisions_from_batch(decisions, [c for c in contexts for _ in range(2)])
    outcomes = []
    for row in table.to_pylist():
        play, quality = CLICKS[cat.artwork(row["artwork_id"]).style]
        if rng.random() < play:
            seconds = 1800.0 if rng.random() < quality else 60.0
            outcomes.append(
                OutcomeRecord(
                    f"o-{row['event_id']}",
                    row["member_id"],
                    row["title_id"],
                    "play",
                    row["timestamp"] + 60,
                    row["event_id"],
                    seconds,
                )
            )
    outcomes.append(OutcomeRecord("close", "m0", "t0", "stop", T0 + 86_400.0))
    with EventStore(tmp / "events.duckdb") as store:
        store.append_decisions(table)
        store.append_outcomes(outcomes)
    return cat, load_logs(tmp / "events.duckdb", cat)


def test_clickbait_is_flagged_and_honest_artworks_are_not(tmp_path: Path) -> None:
    cat, logs = _click_logs(tmp_path, ("dark", "bright", "lure"))
    found = clickbait(logs)
    flagged = {c.artwork_id for c in found if c.flagged}
    assert flagged == {f"t{i}-lure" for i in range(8)}
    for c in found:
        assert c.play_share_lower <= c.play_share <= c.play_share_upper
        assert c.quality_share_lower <= c.quality_share <= c.quality_share_upper
        assert c.ratio_lower < c.ratio < c.ratio_upper
        # the ratio is quality plays per play against the honest rest of the pool's (flagged ones left
        # out), as the logs count them; for a flagged one the rest is the whole rest of its pool
        rest = (
            (logs.title == c.title_id) & (logs.artwork != c.artwork_id) & ~np.isin(logs.artwork, [*flagged])
        )
        rate = logs.reward[rest].sum() / logs.played[rest].sum()
        assert c.ratio == pytest.approx((c.quality_plays / c.plays) / rate, rel=0.05)
        if c.flagged:
            whole = (1 - c.quality_share) / (1 - c.play_share)
            assert c.ratio == pytest.approx((c.quality_share / c.play_share) / whole, rel=0.05)
        assert c.odds_ratio_lower < c.odds_ratio < c.odds_ratio_upper
        assert 0 <= c.p_value <= c.q_value <= 1
        if cat.artwork(c.artwork_id).style == "lure":
            assert c.play_share > c.quality_share and c.odds_ratio_upper < 0.5 and c.q_value <= 0.05
    assert [c.flagged for c in found] == sorted((c.flagged for c in found), reverse=True)  # flagged first


def test_a_second_clickbait_artwork_is_compared_with_the_honest_rest() -> None:
    """Counts of one title: two honest artworks (60 of 100 plays quality), a blatant clickbait (10 of 100)
    and a milder one (25 of 100). Against the whole rest (43% quality, the blatant one in it) the milder
    one's odds ratio is 0.44, too near the bar to flag; once the blatant one is flagged and left out, it is
    0.22 against the honest rest, and flagged. The honest ones are not."""
    counts = {"h1": (100, 60), "h2": (100, 60), "c1": (100, 10), "c2": (100, 25)}
    art = np.repeat(list(counts), 100).astype(object)
    played = np.ones(art.size, dtype=bool)
    quality = np.concatenate([np.arange(100) < q for _, q in counts.values()])
    found = {
        c.artwork_id: c for c in clickbait_of(np.full(art.size, "t", dtype=object), art, played, quality)
    }
    assert {a for a, c in found.items() if c.flagged} == {"c1", "c2"}
    assert found["c2"].ratio == pytest.approx(0.25 / 0.6)  # against the honest rest
    whole = odds_ratio_p_values(np.array([25]), np.array([100]), np.array([155]), np.array([400]), 0.5)
    assert whole[0] > 0.3 and found["c2"].p_value < 0.005
    with pytest.raises(ValidationError, match="quality play must be a play"):
        clickbait_of(np.array(["t"], dtype=object), np.array(["a"], dtype=object), [False], [True])


def test_odds_ratio_test_holds_its_level_and_fdr_matches_the_reference() -> None:
    """Under the null's boundary (true odds ratio exactly 0.5) the exact test rejects at most 5% of
    10,000 seeded tables at level 5% (its conditional size is at most the level; the bound adds 3
    binomial standard deviations); and the Benjamini-Hochberg q-values are scipy's."""
    rng = np.random.default_rng(3)
    n = 10_000
    plays, rest_plays, rest_rate = 40, 160, 0.6
    odds = 0.5 * rest_rate / (1 - rest_rate)
    q = rng.binomial(plays, odds / (1 + odds), n)
    rq = rng.binomial(rest_plays, rest_rate, n)
    p = odds_ratio_p_values(q, np.full(n, plays), q + rq, np.full(n, plays + rest_plays), 0.5)
    assert (p <= 0.05).mean() <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / n)
    assert (p <= 0.05).mean() >= 0.02  # not so conservative that it cannot find anything
    pv = rng.random(200) ** 3
    assert benjamini_hochberg(pv) == pytest.approx(stats.false_discovery_control(pv, method="bh"))


def test_no_clickbait_is_flagged_in_an_honest_catalog(tmp_path: Path) -> None:
    _, logs = _click_logs(tmp_path, ("dark", "bright"))
    found = clickbait(logs)
    assert len(found) == 16 and not any(c.flagged for c in found)


# ---- 4. what to add, what is redundant --------------------------------------------------------------


def test_a_pool_without_the_winning_style_is_told_to_add_it(uniform, modelled) -> None:
    """t0's 'face' artwork retired: every segment is poorly served and the suggestion is a face design,
    whose predicted gain is clearly positive (truly +0.5: 0.7 against the best left, 0.2)."""
    _, cat, logs = uniform
    view, segments = modelled
    lacking = Catalog(cat.titles.values(), cat.artworks.values())
    lacking.retire_artwork("t0-a2")
    found = analyse_title(ModelView(view.policy, lacking), logs, segments, "t0", min_rows=50)
    assert found.artworks == ["t0-a0", "t0-a1"]
    s = found.suggestion
    assert s is not None and s.artwork.style == "face" and s.artwork.artwork_id.startswith(DESIGN_PREFIX)
    assert 0.1 < s.gain_lower <= s.gain <= s.gain_upper < 0.7
    assert s.take_with == pytest.approx(s.take_now + s.gain)
    assert "face style" in s.description
    assert found.gaps and all(g.poorly_served and g.best_artwork == "t0-a1" for g in found.gaps)
    assert all("face style" in g.design for g in found.gaps)


def test_redundant_artworks_and_each_segments_favourite(uniform, modelled) -> None:
    logs = uniform[2]
    view, segments = modelled
    found = analyse_title(view, logs, segments, "t1", min_rows=50)
    assert sorted(s for f, s in found.segments if f == "Country") == ["FR", "US"]
    assert found.takes.shape == (len(found.segments), 3)
    assert all(found.preferred(f, s) == "t1-a2" for f, s in found.segments)
    uses = {u.artwork_id: u for u in found.uses}
    assert not uses["t1-a2"].redundant and uses["t1-a2"].segments_preferring == len(found.segments)
    assert uses["t1-a0"].redundant and uses["t1-a1"].redundant  # dark and bright: nobody's best
    assert sum(u.best_for_share for u in found.uses) == pytest.approx(1.0)
    # the pool holds the best style already: no segment is poorly served
    assert not any(g.poorly_served for g in found.gaps)
