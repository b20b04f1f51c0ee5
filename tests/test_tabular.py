"""Importing logged bandit feedback from CSV/Parquet: the documented format, its errors, and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from keyart.errors import UnknownIdError, ValidationError
from keyart.evaluation import EmptyLogError, estimate
from keyart.tabular import TabularFormat, context_free_distribution, empirical_distribution, load_tabular


def _table(n: int = 300, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    actions = np.array(["red", "green", "blue"])
    a = rng.integers(0, 3, n)
    return pa.table(
        {
            "action": actions[a],
            "propensity": np.full(n, 1 / 3),
            "reward": rng.binomial(1, 0.2 + 0.2 * a).astype(float),
            "position": rng.integers(0, 2, n),
            "age": rng.uniform(18, 80, n),
            "device": rng.choice(["tv", "phone", "web"], n),
            "timestamp": np.arange(n, dtype=float),
        }
    )


def test_csv_and_parquet_give_the_same_log(tmp_path: Path) -> None:
    t = _table()
    pacsv.write_csv(t, tmp_path / "log.csv")
    pq.write_table(t, tmp_path / "log.parquet")
    fmt = TabularFormat(categorical=("device",))
    a = load_tabular(tmp_path / "log.csv", fmt)
    b = load_tabular(tmp_path / "log.parquet", fmt)
    assert a.action_ids == b.action_ids == ("blue", "green", "red")
    assert a.context_columns == ("age", "device")
    assert a.log.context.shape == (300, 1 + 2)  # age + device one-hot without one level
    np.testing.assert_array_equal(a.log.action, b.log.action)
    np.testing.assert_allclose(a.log.context, b.log.context)
    assert a.log.n_positions == 2


def test_imported_log_evaluates_like_the_arrays() -> None:
    tab = load_tabular(_table(), TabularFormat(categorical=("device",)))
    cand = pa.table({"action": ["red", "green"], "probability": [0.7, 0.3]})
    dist = context_free_distribution(cand, tab.log.n, tab.action_ids, tab.log.n_positions, position=None)
    (ips,) = estimate(tab.log, dist, ["ips"])
    w = dist[np.arange(tab.log.n), tab.log.action, tab.log.position] / tab.log.pscore
    assert ips.value == pytest.approx(np.mean(w * tab.log.reward))


def test_empirical_distribution_columns_sum_to_one() -> None:
    tab = load_tabular(_table())
    freq = empirical_distribution(tab.log)
    assert freq.shape == (3, 2)
    np.testing.assert_allclose(freq.sum(axis=0), 1.0)


BAD = [
    (lambda t: t.drop_columns(["propensity"]), {}, ValidationError, "Missing column 'propensity'"),
    (lambda t: t.drop_columns(["reward"]), {}, ValidationError, "Missing column 'reward'"),
    (
        lambda t: t.set_column(1, "propensity", pa.array(np.r_[0.0, np.full(299, 1 / 3)])),
        {},
        ValidationError,
        r"pscore must be in \(0, 1\]",
    ),
    (
        lambda t: t.set_column(1, "propensity", pa.array(np.r_[1.2, np.full(299, 1 / 3)])),
        {},
        ValidationError,
        r"pscore must be in \(0, 1\]",
    ),
    (lambda t: t.slice(0, 0), {}, EmptyLogError, "empty"),
    (lambda t: t, {"action_ids": ("red", "green")}, UnknownIdError, "unknown action 'blue'"),
    (
        lambda t: t.set_column(2, "reward", pa.array(["x"] * 300)),
        {},
        ValidationError,
        "'reward' must be numeric",
    ),
    (
        lambda t: t.set_column(1, "propensity", pa.array([None] + [0.3] * 299, pa.float64())),
        {},
        ValidationError,
        "'propensity' has 1 missing values",
    ),
]


@pytest.mark.parametrize(("edit", "kwargs", "exc", "match"), BAD)
def test_bad_tables(edit, kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        load_tabular(edit(_table()), TabularFormat(categorical=("device",)), **kwargs)


def test_unknown_file_type_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(ValidationError, match="Unsupported file type"):
        load_tabular(tmp_path / "log.json")
    with pytest.raises(ValidationError, match="No such file"):
        load_tabular(tmp_path / "nope.csv")


def test_candidate_naming_an_unknown_action() -> None:
    tab = load_tabular(_table())
    with pytest.raises(UnknownIdError, match="'purple'"):
        context_free_distribution(
            pa.table({"action": ["purple"], "probability": [1.0]}),
            tab.log.n,
            tab.action_ids,
            tab.log.n_positions,
            position=None,
        )


# ---- every column is context: text encoded, ids and unknown types refused, never dropped ------------------


def test_text_and_boolean_columns_are_encoded_without_being_declared() -> None:
    t = _table().append_column("subscribed", pa.array(np.arange(300) % 2 == 0))
    tab = load_tabular(t)
    assert tab.context_columns == ("age", "device", "subscribed")
    assert tab.log.context.shape == (300, 1 + 2 + 1)  # age, device one-hot without one level, 0/1
    np.testing.assert_array_equal(tab.log.context[:, 3], np.arange(300) % 2 == 0)
    device = np.asarray(t.column("device").to_pylist())
    first = device[0]  # the dropped level (order of appearance): all zeros in its rows
    assert not tab.log.context[device == first, 1:3].any()
    assert (tab.log.context[device != first, 1:3].sum(axis=1) == 1).all()
    declared = load_tabular(t, TabularFormat(categorical=("device",)))
    np.testing.assert_array_equal(declared.log.context, tab.log.context)


def test_an_id_column_is_refused_with_the_way_out_and_can_be_ignored() -> None:
    t = _table().append_column("member", pa.array([f"m{i}" for i in range(300)]))
    with pytest.raises(ValidationError, match=r"'member' is text with 300 distinct values.*--ignore-column"):
        load_tabular(t)
    tab = load_tabular(t, TabularFormat(ignore=("timestamp", "member")))
    assert tab.context_columns == ("age", "device")
    assert load_tabular(t, TabularFormat(max_levels=300)).log.context.shape == (300, 1 + 2 + 299)


def test_a_column_neither_number_nor_text_is_refused() -> None:
    t = _table().append_column("seen_at", pa.array(np.arange(300).astype("datetime64[s]")))
    with pytest.raises(ValidationError, match=r"'seen_at' holds timestamp\[s\], which is neither"):
        load_tabular(t)
    with pytest.raises(ValidationError, match="max_levels"):
        TabularFormat(max_levels=1)
    with pytest.raises(ValidationError, match="'device' has 1 missing values"):
        load_tabular(_table().set_column(5, "device", pa.array([None] + ["tv"] * 299, pa.string())))


OBD = Path(__file__).resolve().parent / "data" / "obd"  # the OBD sample, shipped with its attribution


def test_fmt_tabular_and_fmt_obd_agree_on_the_same_data(tmp_path: Path) -> None:
    """The OBD random log read as a plain tabular log (its text user features encoded, the item features
    given with --item-context) gives the obd path's numbers: same context, same reward model choice."""
    from keyart.evaluate_cli import evaluate
    from keyart.tabular import OBD_FORMAT

    random_log = OBD / "random" / "all" / "all.csv.gz"
    rand = load_tabular(random_log, OBD_FORMAT, n_positions=3)
    bts = load_tabular(OBD / "bts" / "all" / "all.csv.gz", OBD_FORMAT, action_ids=rand.action_ids)
    freq = empirical_distribution(bts.log)  # the obd path's candidate, as a candidate file
    k, pos = np.nonzero(freq >= 0)
    pacsv.write_csv(
        pa.table({"action": k, "position": pos + 1, "probability": freq[k, pos]}), tmp_path / "bts.csv"
    )
    common = {"estimator": ["ips", "dm", "dr"], "ci": "normal", "quiet": True, "reward_model": "auto"}
    obd = evaluate(OBD, fmt="obd", out=tmp_path / "obd", **common)
    tab = evaluate(
        random_log,
        candidate=[str(tmp_path / "bts.csv")],
        out=tmp_path / "tab",
        action_column="item_id",
        propensity_column="propensity_score",
        reward_column="click",
        position_base=1,
        item_context=OBD / "random" / "all" / "item_context.csv",
        **common,
    )
    plain = load_tabular(
        random_log,
        TabularFormat(action="item_id", propensity="propensity_score", reward="click", position_base=1),
    )
    np.testing.assert_array_equal(plain.log.context, rand.log.context)  # user features: text, encoded
    assert plain.context_columns == rand.context_columns
    for a, b in zip(obd.comparison.estimates, tab.comparison.estimates, strict=True):
        assert a.estimator == b.estimator
        assert (a.value, a.lower, a.upper) == pytest.approx((b.value, b.lower, b.upper), rel=1e-9, abs=1e-12)
    choice = next(line for line in obd.markdown.splitlines() if line.startswith("Reward model of DM"))
    assert "family: logistic, chosen by cross-fitted held-out log loss" in choice and choice in tab.markdown
    assert f"Context: {rand.log.context.shape[1]} features from the columns " in tab.markdown


def test_cli_refuses_an_id_column_in_one_line_and_leaves_it_out_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from keyart.cli import EXIT_INPUT, app

    t = _table().append_column("member", pa.array([f"m{i}" for i in range(300)]))
    pacsv.write_csv(t, tmp_path / "log.csv")
    args = [
        "evaluate",
        str(tmp_path / "log.csv"),
        "--estimator",
        "dm",
        "--ci",
        "normal",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_INPUT and result.stderr.count("\n") == 1
    assert "'member' is text with 300 distinct values" in result.stderr
    result = CliRunner().invoke(app, [*args, "--ignore-column", "member"])
    assert result.exit_code == 0, result.output
    assert "Context: 3 features from the columns age, device." in result.stdout
