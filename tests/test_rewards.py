"""Reward join: attribution window, quality-play rule, every outcome and decision accounted for."""

from __future__ import annotations

from dataclasses import replace

import pytest

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.events import (
    DecisionRecord,
    OutcomeRecord,
    context_to_json,
    decisions_from_batch,
    decisions_table,
)
from keyart.rewards import QualityRule, join_closed, join_rewards, join_store
from keyart.store import EventStore

T0 = 1_700_000_000.0
H = 3600.0


def dec(eid: str, member: str, title: str, t: float, **over) -> DecisionRecord:
    rec = DecisionRecord(
        event_id=eid,
        timestamp=t,
        member_id=member,
        title_id=title,
        pool=("a", "b"),
        probabilities=(0.5, 0.5),
        chosen_index=0,
        artwork_id="a",
        propensity=0.5,
        policy="uniform",
        model_version=0,
        explored=True,
        context_json=context_to_json(MemberContext(member_id=member, timestamp=t)),
    )
    return replace(rec, **over)


def out(
    eid: str,
    member: str,
    title: str,
    t: float,
    kind: str = "play",
    secs: float | None = None,
    decision_id: str | None = None,
) -> OutcomeRecord:
    return OutcomeRecord(eid, member, title, kind, t, decision_id, secs)


def scenario():
    decisions = [
        dec("d1", "m1", "t1", T0),  # quality play via decision id
        dec("d2", "m1", "t2", T0),  # clickbait: a play of 30 s, no decision id
        dec("d3", "m2", "t1", T0),  # its only outcome is late
        dec("d4", "m2", "t2", T0 + 100),  # an outcome claims it but happened before it
        dec("d5", "m3", "t1", T0),  # never gets an outcome
        dec("d6", "m4", "t1", T0),  # superseded by d7 for the same member and title
        dec("d7", "m4", "t1", T0 + 1000),
        dec("d8", "m5", "t1", T0 + 30 * H),  # still inside its window at as_of: pending
    ]
    outcomes = [
        out("o1", "m1", "t1", T0 + 60, "impression", decision_id="d1"),
        out("o2", "m1", "t1", T0 + 100, "play", 700.0, decision_id="d1"),
        out("o3", "m1", "t2", T0 + 50, "play", 30.0),
        out("o4", "m1", "t2", T0 + 80, "stop", 30.0),
        out("o5", "m2", "t1", T0 + 25 * H, "play", 5000.0),  # window is 24 h
        out("o6", "m2", "t2", T0 + 50, "play", 900.0, decision_id="d4"),  # early
        out("o7", "m9", "t9", T0 + 10, "play", 900.0),  # no decision for this member and title
        out("o8", "m1", "t1", T0 + 10, "play", 900.0, decision_id="nope"),  # unknown decision id
        out("o9", "m4", "t1", T0 + 1500, "play", 800.0),  # attributed to d7, the latest before it
    ]
    return decisions, outcomes


def test_join_counts_everything_and_labels_quality_plays() -> None:
    decisions, outcomes = scenario()
    res = join_rewards(
        decisions_table(decisions),
        outcomes,
        window_seconds=24 * H,
        rule=QualityRule(min_seconds=600),
        as_of=T0 + 40 * H,
    )
    r = res.report
    assert r.outcomes == 9 and r.decisions == 8
    assert (r.joined_outcomes, r.late_outcomes, r.early_outcomes, r.unmatched_outcomes) == (5, 1, 1, 2)
    assert r.joined_outcomes + r.late_outcomes + r.early_outcomes + r.unmatched_outcomes == r.outcomes
    assert r.decisions_with_outcome == 3  # d1, d2, d7
    assert r.decisions_without_outcome == 5  # d3 (late), d4 (early), d5, d6, d8
    assert r.decisions_pending == 1
    assert (r.plays, r.quality_plays, r.plays_below_quality) == (3, 2, 1)
    rewards = dict(zip(res.table.column("event_id").to_pylist(), res.reward.tolist(), strict=True))
    assert rewards == {"d1": 1.0, "d2": 0.0, "d3": 0.0, "d4": 0.0, "d5": 0.0, "d6": 0.0, "d7": 1.0}
    assert "late outcomes: 1" in str(r)


def test_fraction_of_runtime_rule_and_complete_event() -> None:
    decisions = [
        dec("d1", "m1", "t1", T0),
        dec("d2", "m1", "t2", T0),
        dec("d3", "m1", "t3", T0),
        dec("d4", "m1", "t4", T0),
    ]
    outcomes = [
        out("o1", "m1", "t1", T0 + 10, "play", 1300.0),  # 1300 / 2400 s: passes 0.5
        out("o2", "m1", "t2", T0 + 10, "play", 1100.0),  # 1100 / 2400 s: fails
        out("o3", "m1", "t3", T0 + 10, "play", 10.0),
        out("o4", "m1", "t3", T0 + 20, "complete"),  # complete = the whole runtime
        out("o5", "m1", "t4", T0 + 10, "play", 5000.0),  # runtime unknown: the fraction rule fails
    ]
    runtimes = {"t1": 2400.0, "t2": 2400.0, "t3": 2400.0}
    rule = QualityRule(min_seconds=None, min_fraction_of_runtime=0.5)
    res = join_rewards(
        decisions_table(decisions), outcomes, rule=rule, runtimes=runtimes, as_of=T0 + 10 * 86_400
    )
    assert res.reward.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert res.report.runtime_unknown == 1
    either = QualityRule(min_seconds=1000, min_fraction_of_runtime=0.5, require="any")
    res2 = join_rewards(decisions_table(decisions), outcomes, rule=either, runtimes=runtimes, as_of=T0 + 1e6)
    assert res2.reward.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_runtimes_from_catalog() -> None:
    cat = Catalog([Title("t1", runtime_minutes=40.0)], [Artwork("a", "t1"), Artwork("b", "t1")])
    decisions = [dec("d1", "m1", "t1", T0)]
    outcomes = [out("o1", "m1", "t1", T0 + 10, "play", 1300.0)]
    res = join_rewards(
        decisions_table(decisions), outcomes, rule=QualityRule(None, 0.5), runtimes=cat, as_of=T0 + 1e6
    )
    assert res.reward.tolist() == [1.0]


def test_require_impression_keeps_only_displayed_decisions() -> None:
    decisions, outcomes = scenario()
    res = join_rewards(
        decisions_table(decisions),
        outcomes,
        window_seconds=24 * H,
        as_of=T0 + 40 * H,
        require_impression=True,
    )
    assert res.table.column("event_id").to_pylist() == ["d1"]
    assert res.report.decisions_not_displayed == 6


def test_default_as_of_leaves_recent_decisions_pending() -> None:
    decisions, outcomes = scenario()
    res = join_rewards(decisions_table(decisions), outcomes, window_seconds=24 * H)
    assert res.report.decisions_pending >= 1
    assert "d8" not in res.table.column("event_id").to_pylist()


def test_join_from_store_and_feedback_for_learning(tmp_path) -> None:
    from keyart.features import Featurizer
    from keyart.feedback import LoggedFeedback
    from keyart.policies import make_policy

    cat = Catalog(
        [Title(f"t{i}", genres=("drama",), runtime_minutes=50.0) for i in range(3)],
        [Artwork(f"t{i}-a{j}", f"t{i}", style=f"s{j}") for i in range(3) for j in range(1 + i)],
    )
    feat = Featurizer(cat)
    policy = make_policy("uniform", seed=1)
    ctx = MemberContext(member_id="m1", country="FR", timestamp=T0)
    page = feat.page(ctx, ["t0", "t1", "t2"], request_id="r1")
    table = decisions_from_batch(policy.choose(page), ctx, page="home", positions=[0, 1, 2])
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions(table)
        ids = table.column("event_id").to_pylist()
        store.append_outcomes([out("o1", "m1", "t1", T0 + 5, "play", 2000.0, decision_id=ids[1])])
        res = join_store(store, window_seconds=3600.0, as_of=T0 + 7200)
    fb = res.to_feedback(feat)
    assert isinstance(fb, LoggedFeedback)
    by_title = dict(zip(fb.batch.title_ids.tolist(), fb.reward.tolist(), strict=True))
    assert by_title == {"t0": 0.0, "t1": 1.0, "t2": 0.0}
    stored = {r["title_id"]: r for r in table.to_pylist()}
    for i, t in enumerate(fb.batch.title_ids.tolist()):
        assert fb.chosen[i] == stored[t]["chosen_index"]
        assert fb.batch.artwork_ids[i, fb.chosen[i]] == stored[t]["artwork_id"]
        assert fb.propensity[i] == pytest.approx(1 / len(stored[t]["pool"]))
    assert res.logging_probabilities().shape == (3, 3)
    policy.update(fb)  # learners take it as is


def _superseded_world() -> tuple[list, list]:
    """Decisions of [T0, T0 + 1 h) and their outcomes; d1 is superseded by d2 (after the hour, another
    artwork): the play at +2.5 h belongs to d2."""
    decisions = [
        dec("d1", "m1", "t1", T0),
        dec("d2", "m1", "t1", T0 + 2 * H, chosen_index=1, artwork_id="b"),
        dec("d3", "m2", "t1", T0 + 10),  # a quality play by key
        dec("d4", "m3", "t1", T0 + 20),  # a quality play by decision id
        dec("d5", "m4", "t2", T0 + 30),  # nothing happens
    ]
    outcomes = [
        out("o1", "m1", "t1", T0 + 2.5 * H, "play", 4000.0),
        out("o2", "m2", "t1", T0 + 40, "play", 4000.0),
        out("o3", "m3", "t1", T0 + 50, "play", 4000.0, decision_id="d4"),
    ]
    return decisions, outcomes


def test_join_closed_equals_the_full_join_while_reading_only_what_matters(tmp_path) -> None:
    """The learner's incremental join: decisions of [start, end) get the same rewards as with a join over
    everything, although later decisions are read only for members and titles that have outcomes."""
    end, window = T0 + H, 3 * H
    decisions, outcomes = _superseded_world()
    decisions += [dec(f"x{i}", f"q{i}", "t1", end + 60 * i) for i in range(50)]  # later, without outcomes
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions(decisions)
        store.append_outcomes(outcomes)
        later = store.decisions_with_outcomes(end, T0)
        assert later.column("event_id").to_pylist() == ["d2"]  # not the 50 later decisions
        kwargs = {"window_seconds": window, "as_of": end + window}
        closed = join_closed(store, T0, end, **kwargs).table
        full = join_store(store, start=T0, **kwargs).table

    def labels(t) -> dict[str, float]:
        rows = zip(
            t.column("event_id").to_pylist(),
            t.column("timestamp").to_pylist(),
            t.column("reward").to_pylist(),
            strict=True,
        )
        return {e: r for e, ts, r in rows if ts < end}

    assert labels(closed) == labels(full) == {"d1": 0.0, "d3": 1.0, "d4": 1.0, "d5": 0.0}


def test_join_store_with_an_end_gives_outcomes_to_the_later_decision_they_belong_to(tmp_path) -> None:
    """An outcome without decision id goes to the latest decision of its (member, title) before it, even
    when that decision is at or after ``end``: it must not fall back to an earlier decision in range. The
    later decision takes it and is then left out of the table and the report."""
    end, window = T0 + H, 3 * H
    decisions, outcomes = _superseded_world()
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions(decisions)
        store.append_outcomes(outcomes)
        res = join_store(store, start=T0, end=end, window_seconds=window, as_of=end + window)
        full = join_store(store, start=T0, window_seconds=window, as_of=end + window)
    labels = dict(zip(res.table.column("event_id").to_pylist(), res.reward.tolist(), strict=True))
    assert labels == {"d1": 0.0, "d3": 1.0, "d4": 1.0, "d5": 0.0}
    full_labels = dict(zip(full.table.column("event_id").to_pylist(), full.reward.tolist(), strict=True))
    assert {k: full_labels[k] for k in labels} == labels
    r = res.report  # about the decisions of [start, end) and the outcomes that are theirs (not o1)
    assert (r.decisions, r.outcomes, r.joined_outcomes, r.quality_plays) == (4, 2, 2, 2)
    assert r.joined_outcomes + r.late_outcomes + r.early_outcomes + r.unmatched_outcomes == r.outcomes


def test_default_as_of_is_the_latest_outcome_so_lagging_outcomes_do_not_score_zero(tmp_path) -> None:
    """Outcomes are ingested up to T0 + 1 h while decisions go on to T0 + 30 h: a decision at T0 (window
    24 h) may still get its play, so it is pending, not a 0 (the latest decision would have scored it)."""
    decisions = [dec("d1", "m1", "t1", T0), dec("d2", "m2", "t1", T0 + 30 * H)]
    outcomes = [out("o1", "m3", "t1", T0 + H, "impression")]
    res = join_rewards(decisions_table(decisions), outcomes, window_seconds=24 * H)
    assert res.table.num_rows == 0 and res.report.decisions_pending == 2
    with EventStore(tmp_path / "e.duckdb") as store:
        store.append_decisions(decisions)
        store.append_outcomes([*outcomes, out("o2", "m3", "t1", T0 + 26 * H, "impression")])
        # the store's latest outcome (T0 + 26 h) sets as_of, although end bounds the outcomes read
        res = join_store(store, start=T0, end=T0 + H, window_seconds=H)
        assert res.table.column("event_id").to_pylist() == ["d1"] and res.report.decisions_pending == 0
        assert join_store(store, window_seconds=24 * H).report.decisions_pending == 1  # d2
    none = join_rewards(decisions_table(decisions), [], window_seconds=H)
    assert none.table.num_rows == 0 and none.report.decisions_pending == 2  # no outcome has arrived yet


def test_feedback_over_other_pools_maps_the_shown_artwork(tmp_path) -> None:
    from keyart.errors import UnknownIdError
    from keyart.features import Featurizer

    cat = Catalog([Title("t1")], [Artwork("a", "t1"), Artwork("b", "t1"), Artwork("c", "t1")])
    res = join_rewards(decisions_table([dec("d1", "m1", "t1", T0)]), [], as_of=T0 + 1e6)
    fb = res.to_feedback(Featurizer(cat), pools=[("c", "b", "a")])
    assert fb.batch.artwork_ids[0, fb.chosen[0]] == "a" and fb.chosen[0] == 2
    with pytest.raises(UnknownIdError, match="does not hold the shown artwork 'a'"):
        res.to_feedback(Featurizer(cat), pools=[("c", "b")])


BAD = [
    ({"window_seconds": 0.0}, ValidationError, "'window_seconds'"),
    ({"decisions": []}, ValidationError, "decisions table is empty"),
    ({"outcomes": [out("o1", "m", "t", T0, "clicked")]}, ValidationError, "unknown type 'clicked'"),
]


@pytest.mark.parametrize(("over", "exc", "match"), BAD)
def test_bad_join_arguments(over, exc, match) -> None:
    decisions, outcomes = scenario()
    kwargs = {"decisions": decisions_table(decisions), "outcomes": outcomes}
    kwargs.update(over)
    d = kwargs.pop("decisions")
    o = kwargs.pop("outcomes")
    with pytest.raises(exc, match=match):
        join_rewards(decisions_table(d) if isinstance(d, list) else d, o, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_seconds": -1.0}, "'min_seconds'"),
        ({"min_seconds": None}, "needs min_seconds"),
        ({"min_fraction_of_runtime": 1.5}, "'min_fraction_of_runtime'"),
        ({"require": "most"}, "'require'"),
    ],
)
def test_bad_quality_rule(kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        QualityRule(**kwargs)
