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
