"""Evaluating keyart policies on keyart feedback, and comparing several candidates in one table and plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from keyart.errors import ValidationError
from keyart.evaluation.data import BanditLog
from keyart.evaluation.estimators import ESTIMATORS, FLAG_TEXT, Estimate, EstimatorConfig, estimate
from keyart.evaluation.reward_models import RewardModel, default_reward_model


class ProbabilisticPolicy(Protocol):
    """What evaluation needs of a keyart policy: its full distribution over each padded pool."""

    name: str

    def probabilities(self, batch: Any) -> np.ndarray: ...


def feedback_to_log(feedback: Any, logging_probabilities: np.ndarray | None = None) -> BanditLog:
    """A keyart ``LoggedFeedback`` as a ``BanditLog``: features ``batch.X``, arms = artwork ids, mask.

    ``logging_probabilities`` (n, K): the logged full distribution (from ``keyart.rewards``); it makes the
    support-deficiency check exact.
    """
    batch = feedback.batch
    ids = np.asarray(batch.artwork_ids).astype(str)
    _, arm = np.unique(ids, return_inverse=True)
    return BanditLog.from_arrays(
        reward=feedback.reward,
        action=feedback.chosen,
        pscore=feedback.propensity,
        n_actions=int(batch.mask.shape[1]),
        n_positions=1,
        action_context=batch.X,
        arm=arm.reshape(ids.shape),
        action_mask=batch.mask,
        logging_dist=None if logging_probabilities is None else np.asarray(logging_probabilities)[:, :, None],
    )


def candidate_distribution(candidate: ProbabilisticPolicy | np.ndarray, feedback: Any) -> np.ndarray:
    """(n, K) candidate probabilities: ``policy.probabilities(feedback.batch)`` or a given array."""
    if hasattr(candidate, "probabilities"):
        dist = np.asarray(candidate.probabilities(feedback.batch), dtype=np.float64)
        return np.where(np.asarray(feedback.batch.mask, dtype=bool), dist, 0.0)
    return np.asarray(candidate, dtype=np.float64)


def evaluate_policy(
    feedback: Any,
    candidate: ProbabilisticPolicy | np.ndarray,
    estimators: Sequence[str] = ESTIMATORS,
    *,
    logging_probabilities: np.ndarray | None = None,
    reward_model: RewardModel | None = None,
    n_folds: int = 2,
    config: EstimatorConfig | None = None,
    seed: int = 0,
) -> list[Estimate]:
    """Estimate the value of a keyart policy (or an (n, K) probability table) on logged keyart feedback."""
    log = feedback_to_log(feedback, logging_probabilities)
    name = getattr(candidate, "name", "candidate")
    return estimate(
        log,
        candidate_distribution(candidate, feedback),
        estimators,
        reward_model=reward_model,
        n_folds=n_folds,
        config=config,
        seed=seed,
        policy=str(name),
    )


@dataclass(frozen=True)
class Comparison:
    """Estimates of several candidates on one log: a table (Arrow / Markdown) and one plot."""

    estimates: tuple[Estimate, ...]
    truth: Mapping[str, float] | None = None

    def to_arrow(self) -> pa.Table:
        rows = [e.as_row() for e in self.estimates]
        table = pa.Table.from_pylist(rows)
        if self.truth:
            truth = [self.truth.get(e.policy) for e in self.estimates]
            rel = [
                None if t in (None, 0) else (e.value - t) / t
                for e, t in zip(self.estimates, truth, strict=True)
            ]
            table = table.append_column("truth", pa.array(truth, pa.float64()))
            table = table.append_column("relative_error", pa.array(rel, pa.float64()))
        return table

    def to_markdown(self, digits: int = 5) -> str:
        head = ["policy", "estimator", "value", "95% CI", "ESS", "max w", "flags"]
        if self.truth:
            head[4:4] = ["truth", "rel. error"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for e in self.estimates:
            cells = [
                e.policy,
                e.estimator,
                f"{e.value:.{digits}f}",
                f"[{e.lower:.{digits}f}, {e.upper:.{digits}f}]",
            ]
            if self.truth:
                t = self.truth.get(e.policy)
                cells += [
                    "" if t is None else f"{t:.{digits}f}",
                    "" if not t else f"{(e.value - t) / t:+.1%}",
                ]
            cells += [f"{e.ess:.0f}", f"{e.max_weight:.3g}", ", ".join(e.flags) or "-"]
            lines.append("| " + " | ".join(cells) + " |")
        used = sorted({f for e in self.estimates for f in e.flags})
        if used:
            lines.append("")
            lines += [f"- `{f}`: {FLAG_TEXT[f]}" for f in used]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """One figure: each candidate's estimates with their intervals (and the truth when known)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        policies = list(dict.fromkeys(e.policy for e in self.estimates))
        names = list(dict.fromkeys(e.estimator for e in self.estimates))
        fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) * len(policies) ** 0.5 + 3), 4.0))
        width = 0.8 / max(len(policies), 1)
        for j, pol in enumerate(policies):
            es = {e.estimator: e for e in self.estimates if e.policy == pol}
            xs = np.array([i + (j - (len(policies) - 1) / 2) * width for i, n in enumerate(names) if n in es])
            vals = np.array([es[n].value for n in names if n in es])
            lo = np.array([es[n].lower for n in names if n in es])
            hi = np.array([es[n].upper for n in names if n in es])
            ax.errorbar(
                xs,
                vals,
                yerr=[np.maximum(vals - lo, 0), np.maximum(hi - vals, 0)],
                fmt="o",
                capsize=3,
                label=pol or "candidate",
            )
            if self.truth and pol in self.truth:
                ax.axhline(self.truth[pol], linestyle="--", linewidth=1, color=ax.lines[-1].get_color())
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("estimated value (95% CI)")
        ax.set_title("Offline policy evaluation" + (" (dashed: truth)" if self.truth else ""))
        ax.legend(fontsize="small")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out


def compare(
    log: BanditLog,
    candidates: Mapping[str, np.ndarray],
    estimators: Sequence[str] = ESTIMATORS,
    *,
    reward_model: RewardModel | None = None,
    n_folds: int = 2,
    config: EstimatorConfig | None = None,
    seed: int = 0,
    truth: Mapping[str, float] | None = None,
) -> Comparison:
    """Evaluate several candidates (name -> action_dist) on one log with the same cross-fitted model."""
    if not candidates:
        raise ValidationError("candidates must hold at least one policy.")
    model = reward_model or default_reward_model(log)
    out: list[Estimate] = []
    for name, dist in candidates.items():
        # same seed -> same folds -> the same cross-fitted model for every candidate
        out += estimate(
            log, dist, estimators, reward_model=model, n_folds=n_folds, config=config, seed=seed, policy=name
        )
    return Comparison(tuple(out), truth)
