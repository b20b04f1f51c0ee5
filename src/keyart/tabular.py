"""Importing logged bandit feedback from other systems: one documented tabular format (CSV or Parquet).

A row is one logged event. Columns (names configurable through ``TabularFormat``):

- ``action``      the shown action: an integer index or any string/int id (mapped to indices)
- ``propensity``  the logging policy's probability of that action (at that position), in (0, 1]
- ``reward``      the observed reward (a number; clicks and quality plays are 0/1)
- ``position``    optional slot of a multi-slot page (0-based unless ``position_base`` says otherwise)
- context         every other column (or the ``context`` columns named): numbers as they are, booleans as
                  0/1, text (and the numeric columns named in ``categorical``) one-hot encoded; a text
                  column with more than ``max_levels`` distinct values (an id) is refused, not dropped:
                  name it in ``ignore`` (``keyart evaluate --ignore-column``) to leave it out

``OBD_FORMAT`` reads the Open Bandit Dataset (Saito et al. 2021) as shipped. ``python -m keyart.tabular obd
--data tests/data/obd`` reproduces the README's OBD table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from keyart.errors import UnknownIdError, ValidationError
from keyart.evaluation import ESTIMATORS, BanditLog, Comparison, EstimatorConfig, compare
from keyart.evaluation.reward_models import (
    LinearRewardModel,
    LogisticRewardModel,
    ModelChoice,
    RewardModel,
    TabularRewardModel,
    choose_reward_model,
    default_reward_model,
)
from keyart.params import Interval, check_param

#: Columns no context takes: an unnamed pandas index, a timestamp.
DEFAULT_IGNORE: tuple[str, ...] = ("", "timestamp", "index", "__index_level_0__")


@dataclass(frozen=True)
class TabularFormat:
    """Which columns hold what. ``context=None`` takes every remaining column but those in ``ignore``:
    numbers as they are, booleans as 0/1, text and ``categorical`` columns one-hot encoded (one level
    dropped: the intercept carries it). A text column with more than ``max_levels`` distinct values is
    refused: one-hot encoding an id would give one feature per member (leave it out with ``ignore``)."""

    action: str = "action"
    propensity: str = "propensity"
    reward: str = "reward"
    position: str | None = "position"
    context: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = ()
    position_base: int = 0
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    max_levels: int = 100

    def __post_init__(self) -> None:
        check_param("TabularFormat", "max_levels", self.max_levels, Interval(2, None, integer=True))


OBD_FORMAT = TabularFormat(
    action="item_id",
    propensity="propensity_score",
    reward="click",
    position="position",
    context=None,
    categorical=("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"),
    position_base=1,
)


def read_table(path: str | Path) -> pa.Table:
    """Read a CSV or Parquet file (or a directory of Parquet files) as Arrow."""
    p = Path(path)
    if not p.exists():
        raise ValidationError(f"No such file: {p}.")
    if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
        return pq.read_table(p)
    if p.suffix.lower() in (".csv", ".gz", ".txt"):
        return pacsv.read_csv(p)
    raise ValidationError(f"Unsupported file type {p.suffix!r} for {p}: use .csv or .parquet.")


@dataclass(frozen=True)
class TabularLog:
    """An imported log: the validated arrays and the original action ids (index -> id)."""

    log: BanditLog
    action_ids: tuple[object, ...]
    context_columns: tuple[str, ...]


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ValidationError(
            f"Missing column {name!r} ({what}); the table has: {', '.join(table.column_names)}."
        )
    return table.column(name)


def load_tabular(
    source: str | Path | pa.Table,
    fmt: TabularFormat = TabularFormat(),
    action_ids: Sequence[object] | None = None,
    n_positions: int | None = None,
) -> TabularLog:
    """Validate a logged-feedback table into a ``BanditLog``.

    ``action_ids``: the action universe (index i is ``action_ids[i]``); by default the sorted distinct
    logged actions (integer actions 0..max keep their own index). A logged action outside a given universe
    raises ``UnknownIdError``.
    """
    table = source if isinstance(source, pa.Table) else read_table(source)
    if table.num_rows == 0:
        from keyart.evaluation import EmptyLogError

        raise EmptyLogError("The log is empty: the table has no rows.")
    act_col = _column(table, fmt.action, "the shown action")
    prop = _column(table, fmt.propensity, "the logging propensity")
    rew = _column(table, fmt.reward, "the reward")
    for name, col in ((fmt.propensity, prop), (fmt.reward, rew)):
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise ValidationError(f"Column {name!r} must be numeric, got {col.type}.")
        if col.null_count:
            raise ValidationError(f"Column {name!r} has {col.null_count} missing values.")
    if act_col.null_count:
        raise ValidationError(f"Column {fmt.action!r} has {act_col.null_count} missing values.")
    acts = act_col.to_numpy(zero_copy_only=False)
    if action_ids is None:
        if np.issubdtype(acts.dtype, np.integer) and acts.min() >= 0:
            universe: tuple[object, ...] = tuple(range(int(acts.max()) + 1))
        else:
            universe = tuple(sorted(set(acts.tolist()), key=str))
    else:
        universe = tuple(action_ids)
    index = {a: i for i, a in enumerate(universe)}
    try:
        action = np.fromiter((index[a] for a in acts.tolist()), dtype=np.int64, count=acts.size)
    except KeyError as exc:
        raise UnknownIdError(f"Column {fmt.action!r} holds an unknown action {exc.args[0]!r}.") from None
    position = None
    has_pos = fmt.position is not None and fmt.position in table.column_names
    if has_pos:
        assert fmt.position is not None
        pos_col = table.column(fmt.position)
        if pos_col.null_count or not pa.types.is_integer(pos_col.type):
            raise ValidationError(
                f"Column {fmt.position!r} must hold integer positions with no missing values."
            )
        position = pos_col.to_numpy() - fmt.position_base
        low = int(position.min())
        if low != 0:
            first = low + fmt.position_base
            raise ValidationError(
                f"Column {fmt.position!r}: the smallest position is {first}, not {fmt.position_base} (the "
                f"position base): "
                + (
                    f"if positions count from {first}, set the position base to {first} "
                    "(keyart evaluate --position-base)."
                    if first in (0, 1)
                    else "positions must start at the position base."
                )
            )
    used = {fmt.action, fmt.propensity, fmt.reward, *(fmt.ignore), *([fmt.position] if has_pos else [])}
    ctx_names = (
        fmt.context if fmt.context is not None else tuple(c for c in table.column_names if c not in used)
    )
    parts = [_context_block(_column(table, c, "a context column"), c, fmt) for c in ctx_names]
    context = np.hstack(parts) if parts else None
    log = BanditLog.from_arrays(
        reward=rew.to_numpy(zero_copy_only=False),
        action=action,
        pscore=prop.to_numpy(zero_copy_only=False),
        position=position,
        n_actions=len(universe),
        n_positions=n_positions,
        context=context,
        action_names=tuple(str(a) for a in universe),
    )
    return TabularLog(log, universe, tuple(ctx_names))


def _context_block(col: pa.ChunkedArray, name: str, fmt: TabularFormat) -> np.ndarray:
    """One context column as features (n, p): numbers as they are, booleans 0/1, text and ``categorical``
    columns one-hot with the first level (in order of appearance) dropped; anything else is refused."""
    kind = col.type
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)
    if name not in fmt.categorical and not numeric:
        if not text:
            raise ValidationError(
                f"Context column {name!r} holds {kind}, which is neither a number nor text: leave it out "
                "(TabularFormat.ignore, keyart evaluate --ignore-column) or convert it."
            )
        n_levels = pc.count_distinct(col).as_py()
        if n_levels > fmt.max_levels:
            raise ValidationError(
                f"Context column {name!r} is text with {n_levels:,} distinct values, more than "
                f"{fmt.max_levels} to one-hot encode (an id?): leave it out (TabularFormat.ignore, keyart "
                "evaluate --ignore-column) or raise max_levels."
            )
    if col.null_count:
        raise ValidationError(f"Context column {name!r} has {col.null_count} missing values.")
    if name in fmt.categorical or not numeric:
        codes = pc.dictionary_encode(col.cast(pa.string())).combine_chunks()
        idx = codes.indices.to_numpy(zero_copy_only=False)
        onehot = np.zeros((len(idx), len(codes.dictionary)))
        onehot[np.arange(len(idx)), idx] = 1.0
        return onehot[:, 1:]  # drop one level: the intercept carries it
    return col.to_numpy(zero_copy_only=False).astype(np.float64)[:, None]


def context_free_distribution(
    table: pa.Table,
    n: int,
    action_ids: Sequence[object],
    n_positions: int,
    action: str = "action",
    position: str | None = "position",
    probability: str = "probability",
    position_base: int = 0,
) -> np.ndarray:
    """A candidate given as a table (action[, position], probability) broadcast to (n, K, L)."""
    act = _column(table, action, "the candidate's action").to_numpy(zero_copy_only=False)
    prob = (
        _column(table, probability, "the candidate's probability")
        .to_numpy(zero_copy_only=False)
        .astype(float)
    )
    pos = (
        np.zeros(act.size, dtype=np.int64)
        if position is None or position not in table.column_names
        else table.column(position).to_numpy() - position_base
    )
    index = {a: i for i, a in enumerate(action_ids)}
    dist = np.zeros((len(action_ids), n_positions))
    for a, lpos, p in zip(act.tolist(), pos.tolist(), prob.tolist(), strict=True):
        if a not in index:
            raise UnknownIdError(f"The candidate names action {a!r}, which is not in the action universe.")
        if not 0 <= lpos < n_positions:
            raise UnknownIdError(
                f"The candidate names position {lpos + position_base}, outside the log's positions."
            )
        dist[index[a], lpos] += p
    if position is None or position not in table.column_names:
        dist[:] = dist[:, :1]
    return np.broadcast_to(dist, (n, len(action_ids), n_positions))


def empirical_distribution(log: BanditLog) -> np.ndarray:
    """Context-free (K, L) frequencies of each action at each position in a log (columns sum to 1)."""
    cnt = np.bincount(
        log.action * log.n_positions + log.position, minlength=log.n_actions * log.n_positions
    ).reshape(log.n_actions, log.n_positions)
    tot = cnt.sum(axis=0, keepdims=True)
    if (tot == 0).any():
        raise ValidationError("Some position never occurs in the log: its frequencies are undefined.")
    return cnt / tot


# ---- the Open Bandit Dataset check ----------------------------------------------------------------


@dataclass(frozen=True)
class ObdResult:
    comparison: Comparison
    on_policy_value: float
    on_policy_se: float
    n_random: int
    n_bts: int
    reward_model: str = "tabular"
    model_choice: ModelChoice | None = None


#: The reward models of a tabular or OBD log, by name ("auto": chosen by held-out log loss on 0/1 rewards).
OBD_REWARD_MODELS = ("auto", "tabular", "logistic", "linear")


def tabular_reward_model(
    name: str,
    log: BanditLog,
    item_features: np.ndarray | None = None,
    n_folds: int = 2,
    seed: int = 0,
) -> tuple[str, RewardModel, ModelChoice | None]:
    """The reward model of DM and the DR family for a tabular or OBD log, named ``name``: ``"tabular"``
    (the shrunk per action-and-position mean), ``"logistic"`` (per position on the log's context and
    ``item_features`` (K, p), else the action's one-hot), ``"linear"``, or ``"auto"``: on 0/1 rewards the
    one of tabular and logistic with the lower cross-fitted held-out log loss (the choice is returned, to
    be reported), otherwise linear on the context (tabular without one). One function for ``--fmt
    tabular`` and ``--fmt obd``, so both give the same model on the same data."""
    if name not in OBD_REWARD_MODELS:
        raise ValidationError(f"reward_model must be one of {', '.join(OBD_REWARD_MODELS)}. Got {name!r}.")
    named: dict[str, RewardModel] = {
        "tabular": TabularRewardModel(),
        "logistic": LogisticRewardModel(item_features),
        "linear": LinearRewardModel(),
    }
    if name != "auto":
        return name, named[name], None
    if not np.all((log.reward == 0) | (log.reward == 1)):
        model = default_reward_model(log)
        return ("tabular" if isinstance(model, TabularRewardModel) else "linear"), model, None
    choice = choose_reward_model(
        log, {k: named[k] for k in ("tabular", "logistic")}, n_folds=n_folds, seed=seed
    )
    return choice.name, choice.model, choice


def load_item_context(
    path: str | Path, action_ids: Sequence[object], id_column: str = "item_id"
) -> np.ndarray:
    """(K, p) item features in the order of ``action_ids`` from an OBD ``item_context.csv`` (or any table
    whose ``id_column`` holds the action ids): numeric columns as they are, every other column one-hot
    encoded (all its levels, sorted; none dropped). An index column (unnamed, ``index``) is ignored; a
    missing item is a ValidationError."""
    table = read_table(path)
    if id_column not in table.column_names:
        raise ValidationError(f"{path} has no {id_column!r} column (the action ids).")
    ids = [str(v) for v in table.column(id_column).to_pylist()]
    where = {v: i for i, v in enumerate(ids)}
    missing = [str(a) for a in action_ids if str(a) not in where]
    if missing:
        raise ValidationError(f"{path} has no features for item(s) {', '.join(missing[:5])}.")
    order = np.array([where[str(a)] for a in action_ids], dtype=np.int64)
    parts = []
    for name in table.column_names:
        if name in (id_column, "", "index", "__index_level_0__"):
            continue
        col = table.column(name)
        if col.null_count:
            raise ValidationError(f"{path}: column {name!r} has {col.null_count} missing values.")
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            parts.append(col.to_numpy(zero_copy_only=False).astype(np.float64)[:, None])
        else:
            values = [str(v) for v in col.to_pylist()]
            levels = {v: j for j, v in enumerate(sorted(set(values)))}
            onehot = np.zeros((len(values), len(levels)))
            onehot[np.arange(len(values)), [levels[v] for v in values]] = 1.0
            parts.append(onehot)
    if not parts:
        raise ValidationError(f"{path} has no feature columns besides {id_column}.")
    return np.hstack(parts)[order]


def _obd_file(csv: Path) -> Path:
    """The campaign's CSV, or its gzipped copy (``.csv.gz``) when only that exists."""
    gz = csv.with_name(csv.name + ".gz")
    return gz if not csv.exists() and gz.exists() else csv


def obd_experiment(
    data_dir: str | Path,
    campaign: str = "all",
    estimators: Sequence[str] = ESTIMATORS,
    reward_model: RewardModel | str | None = None,
    n_folds: int = 2,
    seed: int = 0,
    config: EstimatorConfig | None = None,
) -> ObdResult:
    """Estimate Bernoulli TS's value from the uniform-random logs and compare with its on-policy value.

    The candidate is the BTS logs' empirical item-by-position frequencies (context-free); the truth is the
    mean click of the BTS logs (its standard error is reported too: the truth is itself an estimate).

    ``reward_model``: a model, or by name: ``"tabular"`` (default, the shrunk per item-and-position mean),
    ``"logistic"`` (``LogisticRewardModel`` per position on the user features and the item features of
    ``random/CAMPAIGN/item_context.csv`` when it exists, else item one-hots), ``"linear"``, or ``"auto"``:
    the one of tabular and logistic with the lower cross-fitted held-out log loss (reported in
    ``model_choice``).
    """
    root = Path(data_dir)
    if not (root / "random" / campaign).is_dir():
        found = (
            sorted(p.name for p in (root / "random").iterdir() if p.is_dir())
            if (root / "random").is_dir()
            else []
        )
        raise ValidationError(
            f"No campaign {campaign!r} in {root}: "
            + (f"it has {', '.join(found)}." if found else "it has no random/ folder of OBD campaigns.")
        )
    random_path = _obd_file(root / "random" / campaign / f"{campaign}.csv")
    bts_path = _obd_file(root / "bts" / campaign / f"{campaign}.csv")
    rand = load_tabular(random_path, OBD_FORMAT, action_ids=None, n_positions=3)
    bts = load_tabular(bts_path, OBD_FORMAT, action_ids=rand.action_ids, n_positions=3)
    freq = empirical_distribution(bts.log)
    dist = np.broadcast_to(freq, (rand.log.n, *freq.shape))
    clicks = bts.log.reward
    truth = float(clicks.mean())
    se = float(clicks.std(ddof=1) / np.sqrt(clicks.size))
    choice = None
    if reward_model is None or isinstance(reward_model, str):
        items = _obd_file(root / "random" / campaign / "item_context.csv")
        features = load_item_context(items, rand.action_ids) if items.exists() else None
        name, model, choice = tabular_reward_model(
            reward_model or "tabular", rand.log, features, n_folds=n_folds, seed=seed
        )
    else:
        model, name = reward_model, type(reward_model).__name__
    comp = compare(
        rand.log,
        {"bts": dist},
        estimators,
        reward_model=model,
        n_folds=n_folds,
        config=config,
        seed=seed,
        truth={"bts": truth},
    )
    return ObdResult(comp, truth, se, rand.log.n, bts.log.n, name, choice)


def obd_report(result: ObdResult, command: str) -> str:
    """The README's OBD table as Markdown, with the command that produced it."""
    lines = [
        f"On-policy value of Bernoulli TS (mean click, {result.n_bts} BTS events): "
        f"{result.on_policy_value:.5f} (s.e. {result.on_policy_se:.5f}); "
        f"estimated from {result.n_random} uniform-random events.",
        result.model_choice.describe()
        if result.model_choice is not None
        else f"Reward model of DM and the DR family: {result.reward_model}.",
        "",
        "| estimator | estimate | 95% CI | relative error | flags |",
        "|---|---|---|---|---|",
    ]
    t = result.on_policy_value
    for e in result.comparison.estimates:
        name = e.label if e.n_matches is None else f"{e.estimator} ({e.n_matches} matches)"
        lines.append(
            f"| {name} | {e.value:.5f} | [{e.lower:.5f}, {e.upper:.5f}] | "
            f"{(e.value - t) / t:+.1%} | {', '.join(e.flags) or '-'} |"
        )
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keyart.tabular obd [--data DIR] [--campaign NAME] [--reward-model MODEL] [--seed N]``
    (MODEL: auto, tabular, logistic or linear)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m keyart.tabular", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("obd", help="estimate Bernoulli TS from the uniform-random OBD logs")
    o.add_argument("--data", default=str(Path.cwd().parent / "shared" / "data" / "obd"))
    o.add_argument("--campaign", default="all")
    o.add_argument("--reward-model", choices=OBD_REWARD_MODELS, default="tabular")
    o.add_argument("--folds", type=int, default=2)
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--refits", type=int, default=200, help="refit-bootstrap resamples for DM/Switch-DR/DR-os")
    args = parser.parse_args(argv)
    res = obd_experiment(
        args.data,
        args.campaign,
        reward_model=args.reward_model,
        n_folds=args.folds,
        seed=args.seed,
        config=EstimatorConfig(n_refit=args.refits),
    )
    cmd = "python -m keyart.tabular " + " ".join(argv if argv is not None else sys.argv[1:])
    print(obd_report(res, cmd.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
