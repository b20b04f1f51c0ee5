"""``keyart evaluate``: a log in, a comparison table (Markdown + CSV) and one plot out.

A plain function with typed arguments (the ``keyart`` CLI registers it). Log formats:

- ``tabular``: a CSV/Parquet file of logged feedback (``keyart.tabular``: action, propensity, reward,
  optional position, context columns). Candidates: ``uniform`` or files with columns
  ``action[, position], probability`` (context-free) plus an optional ``row`` column (per event).
- ``obd``: an Open Bandit Dataset directory; evaluates Bernoulli TS (empirical item-by-position
  frequencies of the BTS logs) on the uniform-random logs and compares with its on-policy value.
- ``keyart``: a keyart event store (DuckDB file); needs ``catalog`` (JSON) and candidates saved with
  ``Policy.save``; rewards are joined with ``window_seconds`` and ``min_seconds`` (quality plays).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv

from keyart.errors import ValidationError
from keyart.evaluation import ESTIMATORS, BanditLog, Comparison, Estimate, EstimatorConfig, compare, estimate
from keyart.evaluation.compare import candidate_distribution, feedback_to_log
from keyart.evaluation.reward_models import (
    LinearRewardModel,
    RewardModel,
    TabularRewardModel,
    default_reward_model,
)
from keyart.rewards import JoinReport
from keyart.tabular import TabularFormat, load_tabular, obd_experiment, obd_report, read_table

FORMATS = ("tabular", "obd", "keyart")
REWARD_MODELS = ("auto", "tabular", "linear")


@dataclass(frozen=True)
class EvaluationOutput:
    """What ``evaluate`` wrote and computed."""

    comparison: Comparison
    markdown: str
    table_path: Path
    markdown_path: Path
    plot_path: Path
    join_report: JoinReport | None = None


def _model(name: str, log: BanditLog) -> RewardModel:
    if name not in REWARD_MODELS:
        raise ValidationError(f"reward_model must be one of {', '.join(REWARD_MODELS)}. Got {name!r}.")
    if name == "tabular":
        return TabularRewardModel()
    if name == "linear":
        return LinearRewardModel()
    return default_reward_model(log)


def _candidate_from_file(path: Path, log: BanditLog, action_ids: tuple[object, ...]) -> np.ndarray:
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
    pos = (
        table.column("position").to_numpy(zero_copy_only=False).astype(np.int64)
        if "position" in table.column_names
        else None
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
        if pos.min() < 0 or pos.max() >= log.n_positions:
            raise ValidationError(f"Candidate {path}: positions must be in [0, {log.n_positions}).")
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
    log: Path,
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
    window_seconds: float = 86_400.0,
    min_seconds: float = 600.0,
    action_column: str = "action",
    propensity_column: str = "propensity",
    reward_column: str = "reward",
    position_column: str = "position",
    quiet: bool = False,
) -> EvaluationOutput:
    """Evaluate candidate policies offline on a log; write evaluation.md, evaluation.csv, evaluation.png.

    ``ci``: auto | normal | bootstrap; ``refits``: refit-bootstrap resamples for DM/Switch-DR/DR-os (lower
    it, or use ``--ci normal``, on very large logs).
    """
    result = _evaluate(
        log,
        candidate,
        fmt,
        out,
        estimator,
        reward_model,
        folds,
        seed,
        EstimatorConfig(ci=ci, n_refit=refits),
        catalog,
        window_seconds,
        min_seconds,
        action_column,
        propensity_column,
        reward_column,
        position_column,
    )
    if not quiet:
        print(result.markdown)
        print(f"Wrote {result.markdown_path}, {result.table_path} and {result.plot_path}.")
    return result


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
    action_column: str,
    propensity_column: str,
    reward_column: str,
    position_column: str,
) -> EvaluationOutput:
    if fmt not in FORMATS:
        raise ValidationError(f"fmt must be one of {', '.join(FORMATS)}. Got {fmt!r}.")
    names = list(estimator) if estimator else list(ESTIMATORS)
    out = Path(out)
    if fmt == "obd":
        res = obd_experiment(
            log,
            estimators=names,
            n_folds=folds,
            seed=seed,
            config=config,
            reward_model=TabularRewardModel() if reward_model in ("auto", "tabular") else LinearRewardModel(),
        )
        note = obd_report(res, "").splitlines()[0]
        md, csv_path, md_path, png = _write(
            res.comparison, out, "Open Bandit Dataset: Bernoulli TS from random logs", note
        )
        return EvaluationOutput(res.comparison, md, csv_path, md_path, png)
    if fmt == "tabular":
        tf = TabularFormat(
            action=action_column, propensity=propensity_column, reward=reward_column, position=position_column
        )
        tab = load_tabular(log, tf)
        cands: dict[str, np.ndarray] = {}
        for c in candidate or ["uniform"]:
            if c == "uniform":
                cands[c] = np.full((tab.log.n, tab.log.n_actions, tab.log.n_positions), 1 / tab.log.n_actions)
            else:
                cands[Path(c).stem] = _candidate_from_file(Path(c), tab.log, tab.action_ids)
        comp = compare(
            tab.log,
            cands,
            names,
            reward_model=_model(reward_model, tab.log),
            n_folds=folds,
            config=config,
            seed=seed,
        )
        md, csv_path, md_path, png = _write(comp, out, f"Offline evaluation of {log}")
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
) -> EvaluationOutput:
    from keyart.catalog import Catalog
    from keyart.features import Featurizer
    from keyart.policies import load_policy
    from keyart.rewards import QualityRule, join_store
    from keyart.store import EventStore

    if catalog is None:
        raise ValidationError("fmt 'keyart' needs catalog (the catalog JSON the decisions were made from).")
    if not candidates:
        raise ValidationError("fmt 'keyart' needs at least one candidate (a policy saved with Policy.save).")
    cat = Catalog.load_json(catalog)
    with EventStore(path, read_only=True) as store:
        joined = join_store(
            store, window_seconds=window_seconds, rule=QualityRule(min_seconds=min_seconds), runtimes=cat
        )
    feedback = joined.to_feedback(Featurizer(cat))
    log = feedback_to_log(feedback, joined.logging_probabilities())
    model = _model(reward_model, log)
    ests: list[Estimate] = []
    for c in candidates:
        policy = load_policy(c)
        dist = candidate_distribution(policy, feedback)
        ests += estimate(
            log,
            dist,
            names,
            reward_model=model,
            n_folds=folds,
            config=config,
            seed=seed,
            policy=f"{policy.name}:{Path(c).stem}",
        )
    comp = Comparison(tuple(ests))
    report = "Reward join:\n\n" + "\n".join(
        f"- {k.replace('_', ' ')}: {v}" for k, v in joined.report.as_dict().items()
    )
    md, csv_path, md_path, png = _write(comp, out, f"Offline evaluation of {path}", report)
    return EvaluationOutput(comp, md, csv_path, md_path, png, joined.report)


__all__ = ["FORMATS", "EvaluationOutput", "evaluate"]
