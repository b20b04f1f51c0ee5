"""``keyart evaluate``: a log in, a comparison table (Markdown + CSV) and one plot out.

A plain function with typed arguments (the ``keyart`` CLI registers it). Log formats:

- ``tabular``: a CSV/Parquet file of logged feedback (``keyart.tabular``: action, propensity, reward,
  optional position, context columns). Candidates: ``uniform`` or files with columns
  ``action[, position], probability`` (context-free) plus an optional ``row`` column (per event).
- ``obd``: an Open Bandit Dataset directory; evaluates Bernoulli TS (empirical item-by-position
  frequencies of the BTS logs) on the uniform-random logs and compares with its on-policy value.
- ``keyart``: a keyart event store (DuckDB file); needs ``catalog`` (JSON, today's catalog) and candidates
  saved with ``Policy.save``; rewards are joined with ``window_seconds`` and ``min_seconds`` (quality
  plays), on impressions only when the store holds ``impression`` outcomes (``require_impression``), and
  each candidate acts on the catalog's current pools (``pools="logged"``: on the pools as logged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import typer

from keyart.errors import ValidationError
from keyart.evaluation import ESTIMATORS, BanditLog, Comparison, Estimate, EstimatorConfig, compare, estimate
from keyart.evaluation.compare import POOLS, EvaluationPools, evaluation_pools
from keyart.evaluation.config import MODEL_BASED
from keyart.evaluation.reward_models import (
    LinearRewardModel,
    LogisticRewardModel,
    ModelChoice,
    RewardModel,
    TabularRewardModel,
    default_reward_model,
)
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS, JoinReport, RewardTable
from keyart.tabular import (
    DEFAULT_IGNORE,
    TabularFormat,
    TabularLog,
    load_item_context,
    load_tabular,
    obd_experiment,
    obd_report,
    read_table,
    tabular_reward_model,
)

FORMATS = ("tabular", "obd", "keyart")
REWARD_MODELS = ("auto", "tabular", "linear", "logistic")


@dataclass(frozen=True)
class EvaluationOutput:
    """What ``evaluate`` wrote and computed."""

    comparison: Comparison
    markdown: str
    table_path: Path
    markdown_path: Path
    plot_path: Path
    join_report: JoinReport | None = None
    new_mass: dict[str, float] | None = None  # fmt keyart: each candidate's mass on new artworks


def _model_note(model: RewardModel, names: list[str], choice: ModelChoice | None = None) -> str:
    """The line naming the reward model (and, when it was chosen, every model's held-out log loss), when
    an estimator uses one."""
    if not any(n in MODEL_BASED for n in names):
        return ""
    if choice is not None:
        return choice.describe()
    return f"Reward model of DM and the DR family: {type(model).__name__} (cross-fitted)."


def _context_note(tab: TabularLog) -> str:
    """Which columns the reward model saw as context, so no column is left out unnoticed."""
    if not tab.context_columns:
        return "Context: none (no column besides action, propensity, reward and position)."
    width = 0 if tab.log.context is None else tab.log.context.shape[1]
    return f"Context: {width} features from the columns {', '.join(tab.context_columns)}."


def reward_model_for(name: str, log: BanditLog) -> RewardModel:
    """The reward model of DM and the DR family named ``name`` (auto: chosen for ``log``)."""
    if name not in REWARD_MODELS:
        raise ValidationError(f"reward_model must be one of {', '.join(REWARD_MODELS)}. Got {name!r}.")
    if name == "tabular":
        return TabularRewardModel()
    if name == "linear":
        return LinearRewardModel()
    if name == "logistic":
        if log.action_mask is not None:
            raise ValidationError(
                "The logistic reward model is for logs with one action set (tabular, obd); keyart logs "
                "have per-title pools: use tabular, linear or auto."
            )
        return LogisticRewardModel()
    return default_reward_model(log)


def _candidate_from_file(
    path: Path, log: BanditLog, action_ids: tuple[object, ...], position_base: int = 0
) -> np.ndarray:
    """A candidate table (action[, position], probability[, row]) as (n, K, L) probabilities; its
    positions count from ``position_base`` like the log's."""
    table = read_table(path)
    for col in ("action", "probability"):
        if col not in table.column_names:
            raise ValidationError(
                f"Candidate {path} is missing the column {col!r} (needs action, probability)."
            )
    index = {str(a): i for i, a in enumerate(action_ids)}
    acts = [str(a) for a in table.column("action").to_pylist()]
    unknown = sorted({a for a in acts if a not in index})
    if unknown:
        raise ValidationError(
            f"Candidate {path} names actions the log does not know: {', '.join(unknown[:5])}."
        )
    a = np.array([index[x] for x in acts], dtype=np.int64)
    p = table.column("probability").to_numpy(zero_copy_only=False).astype(np.float64)
    pos = None
    if "position" in table.column_names:
        col = table.column("position")
        if col.null_count or not pa.types.is_integer(col.type):
            raise ValidationError(f"Candidate {path}: column 'position' must hold integers, none missing.")
        pos = col.to_numpy(zero_copy_only=False).astype(np.int64) - position_base
        if pos.min() < 0 or pos.max() >= log.n_positions:
            raise ValidationError(
                f"Candidate {path}: positions must be in {position_base}.."
                f"{log.n_positions - 1 + position_base} like the log's (position base {position_base}); got "
                f"{pos.min() + position_base}..{pos.max() + position_base}."
            )
    if "row" in table.column_names:
        rows = table.column("row").to_numpy(zero_copy_only=False).astype(np.int64)
        if rows.min() < 0 or rows.max() >= log.n:
            raise ValidationError(f"Candidate {path}: 'row' must index the log's {log.n} events.")
        dist = np.zeros((log.n, log.n_actions, log.n_positions))
        if pos is None:
            dist[rows, a, :] += p[:, None]
        else:
            dist[rows, a, pos] += p
        return dist
    dist2 = np.zeros((log.n_actions, log.n_positions))
    if pos is None:
        np.add.at(dist2, a, p[:, None])
    else:
        np.add.at(dist2, (a, pos), p)
    return np.broadcast_to(dist2, (log.n, log.n_actions, log.n_positions))


def _write(comp: Comparison, out: Path, title: str, extra: str = "") -> tuple[str, Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = f"# {title}\n\n" + comp.to_markdown() + ("\n\n" + extra if extra else "") + "\n"
    md_path = out / "evaluation.md"
    md_path.write_text(md)
    csv_path = out / "evaluation.csv"
    pacsv.write_csv(comp.to_arrow(), csv_path)
    png = comp.plot(out / "evaluation.png")
    return md, csv_path, md_path, png


def evaluate(
    log: Path | None,
    candidate: list[str] | None = None,
    fmt: str = "tabular",
    out: Path = Path("keyart-out/evaluate"),
    estimator: list[str] | None = None,
    reward_model: str = "auto",
    folds: int = 2,
    seed: int = 0,
    ci: str = "auto",
    refits: int = 200,
    catalog: Path | None = None,
    window_seconds: float = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: float = QUALITY_SECONDS,
    action_column: str = "action",
    propensity_column: str = "propensity",
    reward_column: str = "reward",
    position_column: str = "position",
    require_impression: bool | None = None,
    pools: str = "current",
    quiet: bool = False,
    state_dir: Path | None = None,
    lambda_: float | None = None,
    campaign: str = "all",
    position_base: int = 0,
    categorical: list[str] | None = None,
    ignore_column: list[str] | None = None,
    item_context: Path | None = None,
) -> EvaluationOutput:
    """Evaluate candidate policies offline on a log; write evaluation.md, evaluation.csv, evaluation.png.

    ``state_dir``: a keyart service's state directory, read as it is (its ``events.duckdb`` with fmt
    keyart, and its ``catalog.json`` unless ``catalog`` is given) instead of ``log``.

    ``ci``: auto | normal | percentile (= bootstrap) | bca; ``refits``: refit-bootstrap resamples for
    DM/Switch-DR/DR-os (lower it, or use ``--ci normal``, on very large logs); ``lambda_``: fixed lambda of
    Switch-DR and DR-os (None: SLOPE). fmt keyart: ``require_impression`` keeps only displayed
    decisions, so estimates are take fractions (default: on when the store holds impression outcomes);
    ``pools``: current (the candidate acts on the catalog's active pools) or logged (on the logged pools).
    fmt tabular: every other column is context (text one-hot encoded, ``categorical`` numeric columns
    too) but ``ignore_column``; ``item_context``: a table of per-action features (its id column named
    like the log's action column) for the logistic reward model.
    """
    if state_dir is not None:
        if log is not None:
            raise ValidationError("Give a log or --state-dir, not both.")
        state = Path(state_dir)
        log, fmt = state / "events.duckdb", "keyart"
        if not log.is_file():
            raise ValidationError(
                f"{state} holds no events.duckdb: it is not a keyart service state directory."
            )
        catalog = catalog if catalog is not None else state / "catalog.json"
    if log is None:
        raise ValidationError("Give a log to evaluate (or --state-dir).")
    result = _evaluate(
        log,
        candidate,
        fmt,
        out,
        estimator,
        reward_model,
        folds,
        seed,
        EstimatorConfig(
            ci=ci,
            n_refit=refits,
            switch_lambda="slope" if lambda_ is None else float(lambda_),
            dr_os_lambda="slope" if lambda_ is None else float(lambda_),
        ),
        catalog,
        window_seconds,
        min_seconds,
        require_impression,
        pools,
        campaign,
        TabularFormat(
            action=action_column,
            propensity=propensity_column,
            reward=reward_column,
            position=position_column,
            position_base=position_base,
            categorical=tuple(categorical or ()),
            ignore=(*DEFAULT_IGNORE, *(ignore_column or ())),
        ),
        item_context,
    )
    if not quiet:
        print(result.markdown)
        print(f"Wrote {result.markdown_path}, {result.table_path} and {result.plot_path}.")
    return result


#: The options of the reward join, shared by keyart evaluate, keyart train and keyart gate.
WindowSeconds = Annotated[
    float,
    typer.Option(
        "--window-seconds",
        min=0.001,
        help="Attribution window in seconds (keyart logs): an outcome counts for the latest decision of its "
        "member and title at most this long before it (the same default as keyart serve).",
    ),
]
MinSeconds = Annotated[
    float, typer.Option("--min-seconds", min=0, help="Engaged seconds of a quality play (keyart logs).")
]
#: The interval methods of ``EstimatorConfig.ci``, shared by keyart evaluate and keyart gate.
CI_METHODS = ("auto", "normal", "bootstrap", "percentile", "bca")
Ci = Annotated[
    Literal[CI_METHODS],  # type: ignore[valid-type]
    typer.Option(
        "--ci",
        help="Confidence intervals: normal, percentile (= bootstrap) or bca bootstrap, or auto (normal "
        "where valid, else a refit-bootstrap s.e.). The output names each interval's method.",
    ),
]


def evaluate_command(
    log: Annotated[
        Path | None,
        typer.Argument(
            help="The log: a CSV/Parquet file (--fmt tabular), an Open Bandit Dataset directory (obd), or a "
            "keyart event store, events.duckdb (keyart); omit it with --state-dir.",
            show_default=False,
        ),
    ] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            help="A candidate policy (repeat for several). tabular: 'uniform' or a CSV/Parquet file with "
            "columns action[, position], probability[, row]; keyart: a policy file saved by Policy.save or "
            "keyart train.",
        ),
    ] = None,
    fmt: Annotated[Literal[FORMATS], typer.Option("--fmt", help="Format of the log.")] = "tabular",
    out: Annotated[
        Path, typer.Option("--out", help="Folder for evaluation.md, evaluation.csv and evaluation.png.")
    ] = Path("keyart-out/evaluate"),
    estimator: Annotated[
        list[str] | None,
        typer.Option(
            "--estimator",
            help=f"An estimator to run (repeat for several; default: all): {', '.join(ESTIMATORS)}.",
        ),
    ] = None,
    reward_model: Annotated[
        Literal[REWARD_MODELS],
        typer.Option(
            "--reward-model",
            help="Reward model of DM/DR: tabular (per action and position), linear, logistic (per position "
            "on context and item features), or auto (tabular and obd logs with 0/1 rewards: tabular or "
            "logistic by cross-fitted held-out log loss; else linear with features, tabular without). The "
            "output names it.",
        ),
    ] = "auto",
    folds: Annotated[
        int, typer.Option("--folds", min=2, help="Cross-fitting folds of the reward model.")
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of folds and bootstrap resamples.")] = 0,
    ci: Ci = "auto",
    refits: Annotated[
        int,
        typer.Option(
            "--refits", min=1, help="Refit-bootstrap resamples of DM, Switch-DR, DR-os (lower on huge logs)."
        ),
    ] = 200,
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            help="keyart: today's catalog, still holding the logged artworks (any form of docs/data.md, "
            "also a service's state/catalog.json).",
        ),
    ] = None,
    window_seconds: WindowSeconds = ATTRIBUTION_WINDOW_SECONDS,
    min_seconds: MinSeconds = QUALITY_SECONDS,
    action_column: Annotated[
        str, typer.Option("--action-column", help="tabular: the action column.")
    ] = "action",
    propensity_column: Annotated[
        str, typer.Option("--propensity-column", help="tabular: the logging propensity column.")
    ] = "propensity",
    reward_column: Annotated[
        str, typer.Option("--reward-column", help="tabular: the reward column.")
    ] = "reward",
    position_column: Annotated[
        str, typer.Option("--position-column", help="tabular: the position column (optional in the file).")
    ] = "position",
    require_impression: Annotated[
        bool | None,
        typer.Option(
            "--require-impression/--no-require-impression",
            help="keyart: keep only displayed decisions, so values are take fractions (default: on when "
            "the store holds impression outcomes).",
            show_default=False,
        ),
    ] = None,
    pools: Annotated[
        Literal[POOLS],
        typer.Option(
            "--pools",
            help="keyart: candidates act on today's active pools (current) or on the pools as logged.",
        ),
    ] = "current",
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the table.")] = False,
    campaign: Annotated[
        str,
        typer.Option("--campaign", help="obd: the campaign to evaluate (a folder of random/ and bts/)."),
    ] = "all",
    position_base: Annotated[
        int,
        typer.Option(
            "--position-base",
            min=0,
            max=1,
            help="tabular: the first position's number in the log and candidate files (0 or 1).",
        ),
    ] = 0,
    categorical: Annotated[
        list[str] | None,
        typer.Option(
            "--categorical",
            help="tabular: a numeric context column to one-hot encode as categories (repeat for several); "
            "text columns are always one-hot encoded.",
        ),
    ] = None,
    ignore_column: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore-column",
            help="tabular: a column to leave out of the context (repeat for several), e.g. a member id: "
            "every other column is context.",
        ),
    ] = None,
    item_context: Annotated[
        Path | None,
        typer.Option(
            "--item-context",
            help="tabular: a CSV/Parquet file of per-action features (an id column named like the action "
            "column), used by the logistic reward model (obd reads random/CAMPAIGN/item_context.csv).",
        ),
    ] = None,
    lambda_: Annotated[
        float | None,
        typer.Option(
            "--lambda",
            min=0,
            help="lambda of Switch-DR and DR-os (default: chosen by SLOPE from 1, 2, 5, ..., 10,000, inf; "
            "the table names the lambda used).",
            show_default=False,
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="A keyart service's state directory, read as it is (stop the service first): its "
            "events.duckdb (fmt keyart) and catalog.json (unless --catalog is given).",
        ),
    ] = None,
) -> None:
    """Evaluate candidate policies offline on a log: one table with every estimator's value, interval and
    diagnostics (Markdown and CSV) and one plot."""
    evaluate(**locals())  # the same parameters, with their command-line help


def _evaluate(
    log: Path,
    candidate: list[str] | None,
    fmt: str,
    out: Path,
    estimator: list[str] | None,
    reward_model: str,
    folds: int,
    seed: int,
    config: EstimatorConfig,
    catalog: Path | None,
    window_seconds: float,
    min_seconds: float,
    require_impression: bool | None,
    pools: str,
    campaign: str,
    tabular_format: TabularFormat,
    item_context: Path | None,
) -> EvaluationOutput:
    if fmt not in FORMATS:
        raise ValidationError(f"fmt must be one of {', '.join(FORMATS)}. Got {fmt!r}.")
    names = list(estimator) if estimator else list(ESTIMATORS)
    out = Path(out)
    if fmt == "obd":
        res = obd_experiment(
            log,
            campaign,
            estimators=names,
            n_folds=folds,
            seed=seed,
            config=config,
            reward_model=reward_model,
        )
        note = "\n\n".join(obd_report(res, "").splitlines()[:2])
        md, csv_path, md_path, png = _write(
            res.comparison,
            out,
            f"Open Bandit Dataset (campaign {campaign}): Bernoulli TS from random logs",
            note,
        )
        return EvaluationOutput(res.comparison, md, csv_path, md_path, png)
    if fmt == "tabular":
        tf = tabular_format
        if tf.position_base not in (0, 1):
            raise ValidationError(f"position_base must be 0 or 1. Got {tf.position_base!r}.")
        tab = load_tabular(log, tf)
        cands: dict[str, np.ndarray] = {}
        for c in candidate or ["uniform"]:
            if c == "uniform":
                cands[c] = np.full((tab.log.n, tab.log.n_actions, tab.log.n_positions), 1 / tab.log.n_actions)
            else:
                cands[Path(c).stem] = _candidate_from_file(Path(c), tab.log, tab.action_ids, tf.position_base)
        items = None if item_context is None else load_item_context(item_context, tab.action_ids, tf.action)
        _, model, choice = tabular_reward_model(reward_model, tab.log, items, folds, seed)
        comp = compare(tab.log, cands, names, reward_model=model, n_folds=folds, config=config, seed=seed)
        note = _model_note(model, names, choice)
        if note:
            note += "\n\n" + _context_note(tab)
        md, csv_path, md_path, png = _write(comp, out, f"Offline evaluation of {log}", note)
        return EvaluationOutput(comp, md, csv_path, md_path, png)
    return _evaluate_store(
        log,
        candidate or [],
        out,
        names,
        reward_model,
        folds,
        seed,
        config,
        catalog,
        window_seconds,
        min_seconds,
        require_impression,
        pools,
    )


def _evaluate_store(
    path: Path,
    candidates: list[str],
    out: Path,
    names: list[str],
    reward_model: str,
    folds: int,
    seed: int,
    config: EstimatorConfig,
    catalog: Path | None,
    window_seconds: float,
    min_seconds: float,
    require_impression: bool | None,
    pools: str,
) -> EvaluationOutput:
    from keyart.catalog import Catalog
    from keyart.features import Featurizer
    from keyart.policies import load_policy, model_features
    from keyart.store import EventStore

    if catalog is None:
        raise ValidationError(
            "fmt 'keyart' needs catalog (today's catalog JSON, still holding the logged artworks: retired "
            "ones marked inactive)."
        )
    if not candidates:
        raise ValidationError("fmt 'keyart' needs at least one candidate (a policy saved with Policy.save).")
    if pools not in POOLS:
        raise ValidationError(f"pools must be one of {', '.join(POOLS)}. Got {pools!r}.")
    cat = Catalog.load(catalog)
    with EventStore(path, read_only=True) as store:
        joined, impressions = join_logs(store, cat, window_seconds, min_seconds, require_impression)
    names, unlogged_note = _propensity_free(joined, names)
    policies = [load_policy(c) for c in candidates]
    # each candidate scores rows of its own featurization (the one its model recorded); the pools and the
    # log are the same whatever the featurization, so one of them gives the log
    features = [model_features(p) for p in policies]
    views = {f: evaluation_pools(joined, Featurizer(cat, f), pools) for f in features}
    ev = next(iter(views.values()))
    log = ev.to_log()
    model = reward_model_for(reward_model, log)
    ests: list[Estimate] = []
    new_mass: dict[str, float] = {}
    for c, policy, f in zip(candidates, policies, features, strict=True):
        dist = views[f].distribution(policy)
        label = f"{policy.name}:{Path(c).stem}"
        new_mass[label] = ev.new_mass(dist)
        ests += estimate(
            log, dist, names, reward_model=model, n_folds=folds, config=config, seed=seed, policy=label
        )
    comp = Comparison(tuple(ests))
    model_note = _model_note(model, names)
    unlogged_note = "\n\n".join(x for x in (model_note, unlogged_note) if x)
    report = _store_report(joined.report.as_dict(), impressions, require_impression, ev, new_mass)
    report = f"{unlogged_note}\n\n{report}" if unlogged_note else report
    md, csv_path, md_path, png = _write(comp, out, f"Offline evaluation of {path}", report)
    return EvaluationOutput(comp, md, csv_path, md_path, png, joined.report, new_mass)


def join_logs(
    store: Any,
    catalog: Any,
    window_seconds: float,
    min_seconds: float,
    require_impression: bool | None,
) -> tuple[RewardTable, bool]:
    """The store's decisions with their rewards, and whether only displayed ones were kept (by default:
    when the store holds impression outcomes, so values are take fractions)."""
    from keyart.rewards import QualityRule, join_store

    has_impressions = bool(
        store.connection.execute(
            "SELECT EXISTS (SELECT 1 FROM outcomes WHERE event_type = 'impression')"
        ).fetchall()[0][0]
    )
    impressions = has_impressions if require_impression is None else bool(require_impression)
    joined = join_store(
        store,
        window_seconds=window_seconds,
        rule=QualityRule(min_seconds=min_seconds),
        runtimes=catalog,
        require_impression=impressions,
    )
    return joined, impressions


#: Estimators that do not use the logged propensities (valid on logs imported without them).
PROPENSITY_FREE = ("dm",)


def unlogged(joined: RewardTable) -> int:
    """How many decisions were imported without propensities (``keyart.imports.UNLOGGED_POLICY``)."""
    import pyarrow.compute as pc

    from keyart.imports import UNLOGGED_POLICY

    return int(pc.sum(pc.equal(joined.table.column("policy"), UNLOGGED_POLICY)).as_py() or 0)


def _propensity_free(joined: RewardTable, names: list[str]) -> tuple[list[str], str]:
    """The estimators valid on ``joined`` and a note: when decisions were imported without propensities
    (policy ``keyart.imports.UNLOGGED_POLICY``), only those that do not use them."""
    from keyart.imports import UNLOGGED_POLICY

    n = unlogged(joined)
    if not n:
        return names, ""
    valid = [e for e in names if e in PROPENSITY_FREE]
    skipped = [e for e in names if e not in PROPENSITY_FREE]
    if not valid:
        raise ValidationError(
            f"{n} of the {joined.table.num_rows} decisions were imported without propensities: only "
            f"{', '.join(PROPENSITY_FREE)} is valid on them (asked: {', '.join(names)})."
        )
    note = (
        f"{n} of the {joined.table.num_rows} decisions were imported without propensities (policy "
        f"{UNLOGGED_POLICY!r}): only {', '.join(valid)} is valid"
        + (f"; not run: {', '.join(skipped)}." if skipped else ".")
    )
    return valid, note


def _store_report(
    join: dict[str, int],
    impressions: bool,
    asked: bool | None,
    ev: EvaluationPools,
    new_mass: dict[str, float],
) -> str:
    """The Markdown notes under a keyart evaluation: what the values measure, the pools, the join."""
    why = "as asked" if asked is not None else "the store holds impression outcomes" if impressions else ""
    if impressions:
        metric = (
            f"Values are take fractions (quality plays / impressions): require impression on ({why}); "
            f"{join['decisions_not_displayed']} decisions never displayed were left out."
        )
    else:
        why = why or "the store holds no impression outcome"
        metric = (
            f"Values are quality plays / decisions, not take fractions: require impression off ({why}); "
            "decisions never displayed count as 0."
        )
    n_new = int(ev.new.any(axis=1).sum())
    n_retired = int(ev.retired.any(axis=1).sum())
    if ev.pools == "logged":
        pools = "Pools: as logged (artworks retired or added since are not taken into account)."
    else:
        pools = (
            "Pools: today's (each candidate acts on the catalog's active pools; artworks retired since "
            "logging get probability 0, new ones are unsupported by the log). "
            f"{ev.n} events evaluated; {n_retired} had artworks retired since, {n_new} have new artworks; "
            f"{ev.n_dropped} events of titles without an active pool were left out"
            + (f" ({', '.join(ev.dropped_titles[:5])})." if ev.dropped_titles else ".")
        )
    lines = [metric, "", pools, ""]
    lines += [f"- {name}: {m:.1%} of its mass on artworks new since logging" for name, m in new_mass.items()]
    lines += ["", "Reward join:", ""]
    lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in join.items()]
    return "\n".join(lines)


__all__ = ["FORMATS", "EvaluationOutput", "evaluate", "evaluate_command"]
