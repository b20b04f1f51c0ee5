"""End to end on keyart's own pieces: decisions -> store -> outcomes -> reward join -> feedback ->
offline evaluation of keyart policies, and the ``keyart evaluate`` function on all three log formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from keyart.catalog import Artwork, Catalog, Title
from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.evaluate_cli import evaluate
from keyart.evaluation import EstimatorConfig, evaluate_policy
from keyart.events import OutcomeRecord, decisions_from_batch
from keyart.features import Featurizer
from keyart.policies import make_policy
from keyart.rewards import QualityRule, join_store
from keyart.store import EventStore

T0 = 1_700_000_000.0
OBD = Path(__file__).resolve().parent / "data" / "obd"  # the OBD sample, shipped with its attribution
STYLES = ("dark", "bright", "face")


def _catalog() -> Catalog:
    titles = [Title(f"t{i}", genres=("drama",), runtime_minutes=60.0) for i in range(6)]
    arts = [Artwork(f"t{i}-a{j}", f"t{i}", style=STYLES[j]) for i in range(6) for j in range(3)]
    return Catalog(titles, arts)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """600 members x 3 titles shown with uniform artwork; 'face' artworks lead to quality plays more often."""
    tmp = tmp_path_factory.mktemp("keyart")
    cat = _catalog()
    cat.save_json(tmp / "catalog.json")
    feat = Featurizer(cat)
    logger = make_policy("uniform", seed=11)
    rng = np.random.default_rng(0)
    store_path = tmp / "events.duckdb"
    with EventStore(store_path) as store:
        outcomes, tables = [], []
        for m in range(600):
            ctx = MemberContext(
                member_id=f"m{m}", country=str(rng.choice(["FR", "US"])), timestamp=T0 + 10 * m
            )
            titles = rng.choice([f"t{i}" for i in range(6)], size=3, replace=False).tolist()
            page = feat.page(ctx, titles, request_id=f"r{m}")
            table = decisions_from_batch(logger.choose(page), ctx, page="home", positions=[0, 1, 2])
            tables.append(table)
            for row in table.to_pylist():
                p_play = {"dark": 0.2, "bright": 0.3, "face": 0.6}[cat.artwork(row["artwork_id"]).style]
                if rng.random() < p_play:
                    secs = float(rng.choice([30.0, 1800.0]))  # a clickbait click or a real watch
                    outcomes.append(
                        OutcomeRecord(
                            f"o-{row['event_id']}",
                            row["member_id"],
                            row["title_id"],
                            "play",
                            row["timestamp"] + 60,
                            None,
                            secs,
                        )
                    )
        for i in range(0, len(tables), 100):  # batches of 100 pages
            store.append_decisions(pa.concat_tables(tables[i : i + 100]))
        store.append_outcomes(outcomes)
        joined = join_store(store, window_seconds=3600.0, rule=QualityRule(min_seconds=600), as_of=T0 + 1e6)
    feedback = joined.to_feedback(feat)
    return tmp, cat, feat, joined, feedback


def test_logging_policy_evaluates_to_its_own_mean(logged) -> None:
    _, _, feat, joined, feedback = logged
    uniform = make_policy("uniform", seed=11)
    ests = evaluate_policy(joined, uniform, ["ips", "snips", "dr", "replay"], featurizer=feat)
    mean = feedback.reward.mean()
    for e in ests:
        assert e.unsupported_mass == 0.0
        assert e.ess == pytest.approx(feedback.n)
        if e.estimator in ("ips", "snips"):
            assert e.value == pytest.approx(mean)
        assert e.lower <= mean <= e.upper
    assert joined.report.plays_below_quality > 0  # clickbait clicks were seen and earned nothing


def test_a_learned_policy_is_estimated_above_uniform(logged) -> None:
    _, _, _, joined, feedback = logged
    half = feedback.n // 2
    learner = make_policy("greedy", seed=1, floor=0.1).update(feedback.take(np.arange(half)))
    test = feedback.take(np.arange(half, feedback.n))
    probs = joined.logging_probabilities()[half:]
    cfg = EstimatorConfig(n_refit=20)
    kw = {"config": cfg, "logging_probabilities": probs, "pools": "logged"}
    greedy = {e.estimator: e for e in evaluate_policy(test, learner, **kw)}
    base = {e.estimator: e for e in evaluate_policy(test, make_policy("uniform", seed=1), ["dr"], **kw)}
    assert greedy["dr"].value > base["dr"].value
    assert greedy["dr"].policy == "greedy"
    for e in greedy.values():
        assert np.isfinite(e.value) and e.lower <= e.value <= e.upper


def test_candidate_outside_the_logged_pools_is_flagged(logged) -> None:
    _, _, _, joined, feedback = logged
    probs = joined.logging_probabilities()
    only_first = np.zeros_like(probs)
    only_first[:, 0] = 1.0
    # pretend the logger never showed the first artwork: the candidate then lacks support
    logging = probs.copy()
    logging[:, 0] = 0.0
    logging /= logging.sum(axis=1, keepdims=True)
    (e,) = evaluate_policy(feedback, only_first, ["ips"], logging_probabilities=logging, pools="logged")
    assert "support_deficiency" in e.flags and e.unsupported_mass == pytest.approx(1.0)


def test_evaluate_command_on_a_keyart_store(logged, tmp_path: Path) -> None:
    tmp, _, _, _, feedback = logged
    pol = make_policy("greedy", seed=1, floor=0.1).update(feedback)
    pol.save(tmp_path / "greedy.npz")
    make_policy("uniform", seed=1).save(tmp_path / "uniform.npz")
    res = evaluate(
        tmp / "events.duckdb",
        candidate=[str(tmp_path / "greedy.npz"), str(tmp_path / "uniform.npz")],
        fmt="keyart",
        catalog=tmp / "catalog.json",
        out=tmp_path / "out",
        window_seconds=3600.0,
        estimator=["ips", "snips", "dr"],
        quiet=True,
    )
    assert res.plot_path.exists() and res.table_path.exists() and res.markdown_path.exists()
    assert res.join_report is not None and res.join_report.decisions == 1800
    assert {e.policy for e in res.comparison.estimates} == {"greedy:greedy", "uniform:uniform"}
    assert "Reward join" in res.markdown


def test_evaluate_reads_the_service_s_own_catalog_file(logged, tmp_path: Path) -> None:
    """The service's state/catalog.json ({"rev", "catalog"}) is a catalog for evaluate, no hand edit."""
    from keyart.catalog import Catalog
    from keyart.service import catalog_store

    tmp, _, _, _, _ = logged
    make_policy("uniform", seed=1).save(tmp_path / "uniform.npz")
    catalog_store.import_catalog(tmp_path / "state" / "catalog.json", Catalog.load(tmp / "catalog.json"))
    kw = {"candidate": [str(tmp_path / "uniform.npz")], "fmt": "keyart", "estimator": ["ips"], "quiet": True}
    kw["window_seconds"] = 3600.0
    ours = evaluate(tmp / "events.duckdb", catalog=tmp / "catalog.json", out=tmp_path / "a", **kw)
    served = evaluate(
        tmp / "events.duckdb", catalog=tmp_path / "state" / "catalog.json", out=tmp_path / "b", **kw
    )
    assert served.comparison.estimates == ours.comparison.estimates


@pytest.fixture(scope="module")
def displayed(tmp_path_factory):
    """800 members x 4 titles; only slots 0 and 1 are displayed (impression outcomes), and a displayed
    decision leads to a quality play with probability 0.3: take fraction 0.3, plays per decision 0.15."""
    tmp = tmp_path_factory.mktemp("impressions")
    cat = _catalog()
    cat.save_json(tmp / "catalog.json")
    feat = Featurizer(cat)
    logger = make_policy("uniform", seed=3)
    rng = np.random.default_rng(1)
    tables, outcomes = [], []
    for m in range(800):
        ctx = MemberContext(member_id=f"m{m}", timestamp=T0 + 10 * m)
        page = feat.page(ctx, ["t0", "t1", "t2", "t3"], request_id=f"r{m}")
        table = decisions_from_batch(logger.choose(page), ctx, page="home", positions=[0, 1, 2, 3])
        tables.append(table)
        for row in table.to_pylist():
            if row["position"] >= 2:  # below the fold: never displayed
                continue
            eid, mid, tid, ts = row["event_id"], row["member_id"], row["title_id"], row["timestamp"]
            outcomes.append(OutcomeRecord(f"i-{eid}", mid, tid, "impression", ts + 1, eid, None))
            if rng.random() < 0.3:
                outcomes.append(OutcomeRecord(f"p-{eid}", mid, tid, "play", ts + 5, eid, 1800.0))
    with EventStore(tmp / "events.duckdb") as store:
        store.append_decisions(pa.concat_tables(tables))
        store.append_outcomes(outcomes)
    make_policy("uniform", seed=1).save(tmp / "uniform.npz")
    return tmp


@pytest.mark.parametrize(
    ("require", "truth", "note"),
    [
        (None, 0.30, "require impression on (the store holds impression outcomes)"),
        (True, 0.30, "require impression on (as asked)"),
        (False, 0.15, "require impression off (as asked)"),
    ],
)
def test_evaluate_command_measures_the_take_fraction_when_impressions_are_logged(
    displayed, tmp_path: Path, require, truth, note
) -> None:
    res = evaluate(
        displayed / "events.duckdb",
        candidate=[str(displayed / "uniform.npz")],
        fmt="keyart",
        catalog=displayed / "catalog.json",
        out=tmp_path / "o",
        window_seconds=3600.0,
        estimator=["ips", "snips"],
        require_impression=require,
        quiet=True,
    )
    for e in res.comparison.estimates:
        assert abs(e.value - truth) <= 4 * e.se, (e.estimator, e.value, truth, e.se)
    assert note in res.markdown
    assert res.join_report is not None
    n_hidden = res.join_report.decisions_not_displayed
    if truth == 0.30:  # half of the decisions that are not pending were never displayed
        assert n_hidden > 0 and f"{n_hidden} decisions never displayed were left out" in res.markdown
    else:
        assert n_hidden == 0 and "decisions never displayed count as 0" in res.markdown


def test_evaluate_command_says_when_there_are_no_impressions(logged, tmp_path: Path) -> None:
    tmp = logged[0]
    make_policy("uniform", seed=1).save(tmp_path / "uniform.npz")
    kw = {
        "candidate": [str(tmp_path / "uniform.npz")],
        "fmt": "keyart",
        "catalog": tmp / "catalog.json",
        "window_seconds": 3600.0,
        "estimator": ["ips"],
        "quiet": True,
    }
    res = evaluate(tmp / "events.duckdb", out=tmp_path / "o", **kw)
    assert (
        "not take fractions: require impression off (the store holds no impression outcome)" in res.markdown
    )
    with pytest.raises(ValidationError, match="No decision has a known reward"):
        evaluate(tmp / "events.duckdb", out=tmp_path / "o2", require_impression=True, **kw)


def test_evaluate_command_on_a_csv_log(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    n = 500
    a = rng.integers(0, 3, n)
    pacsv.write_csv(
        pa.table(
            {
                "action": a,
                "propensity": np.full(n, 1 / 3),
                "reward": rng.binomial(1, 0.2 + 0.2 * a),
                "x": rng.normal(size=n),
            }
        ),
        tmp_path / "log.csv",
    )
    pacsv.write_csv(pa.table({"action": [2], "probability": [1.0]}), tmp_path / "best.csv")
    res = evaluate(
        tmp_path / "log.csv", candidate=["uniform", str(tmp_path / "best.csv")], out=tmp_path / "o", refits=20
    )
    printed = capsys.readouterr().out
    assert "| best | ips |" in printed and "| uniform | ips |" in printed
    got = {(e.policy, e.estimator): e.value for e in res.comparison.estimates}
    assert got[("best", "ips")] == pytest.approx(3 * np.mean((a == 2) * rng_reward(tmp_path)))


def rng_reward(tmp_path: Path) -> np.ndarray:
    return pacsv.read_csv(tmp_path / "log.csv").column("reward").to_numpy().astype(float)


def test_evaluate_command_on_obd(tmp_path: Path) -> None:
    res = evaluate(OBD, fmt="obd", out=tmp_path / "obd", estimator=["ips", "dr"], quiet=True)
    assert "rel. error" in res.markdown and "On-policy value" in res.markdown and res.plot_path.exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "xml"}, "fmt must be one of"),
        ({"fmt": "keyart"}, "needs catalog"),
        ({"reward_model": "forest"}, "reward_model must be one of"),
        ({"ci": "exact"}, "'ci' parameter"),
    ],
)
def test_evaluate_command_bad_arguments(tmp_path: Path, kwargs, match) -> None:
    pacsv.write_csv(
        pa.table({"action": [0, 1], "propensity": [0.5, 0.5], "reward": [1.0, 0.0]}), tmp_path / "l.csv"
    )
    with pytest.raises(ValidationError, match=match):
        evaluate(tmp_path / "l.csv", out=tmp_path / "o", quiet=True, **kwargs)
