"""Evaluating keyart policies on keyart feedback, and comparing several candidates in one table and plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from keyart.errors import EmptyPoolError, UnknownIdError, ValidationError
from keyart.evaluation.data import BanditLog
from keyart.evaluation.estimators import ESTIMATORS, FLAG_TEXT, Estimate, EstimatorConfig, estimate
from keyart.evaluation.reward_models import RewardModel, default_reward_model


class ProbabilisticPolicy(Protocol):
    """What evaluation needs of a keyart policy: its full distribution over each padded pool."""

    name: str

    def probabilities(self, batch: Any) -> np.ndarray: ...


def feedback_to_log(feedback: Any, logging_probabilities: np.ndarray | None = None) -> BanditLog:
    """A keyart ``LoggedFeedback`` as a ``BanditLog``: features ``batch.X``, arms = artwork ids, mask,
    clustered by member (intervals treat members, not decisions, as the independent units).

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
        cluster=batch.member_ids,  # sticky exploration and a member's taste tie a member's events together
    )


def candidate_distribution(candidate: ProbabilisticPolicy | np.ndarray, feedback: Any) -> np.ndarray:
    """(n, K) candidate probabilities: ``policy.probabilities(feedback.batch)`` or a given array."""
    if hasattr(candidate, "probabilities"):
        dist = np.asarray(candidate.probabilities(feedback.batch), dtype=np.float64)
        return np.where(np.asarray(feedback.batch.mask, dtype=bool), dist, 0.0)
    return np.asarray(candidate, dtype=np.float64)


POOLS = ("current", "logged")


@dataclass(frozen=True)
class EvaluationPools:
    """Logged keyart events laid out to evaluate a candidate on the pools it would choose from.

    Each event's action set is the union of its logged pool and the pool the candidate chooses from
    (``candidate_batch``, same rows and contexts): the logged pool first, in logged order (so the shown
    index is unchanged), then the artworks new since logging. ``logging_probabilities`` are the logged
    ones, 0 on new artworks, so the exact support check counts the candidate's mass on them as
    unsupported; artworks retired since logging get candidate probability 0 (``distribution``).
    """

    feedback: Any  # LoggedFeedback over the union pools
    logging_probabilities: np.ndarray  # (n, K)
    candidate_batch: Any  # CandidateBatch over the pools the candidate chooses from
    columns: np.ndarray  # (n, Kc): union column of each candidate_batch column, -1 on padding
    new: np.ndarray  # (n, K) bool: not in the logged pool
    retired: np.ndarray  # (n, K) bool: in the logged pool, not in the candidate's
    rows: np.ndarray  # rows of the reward table kept
    dropped_titles: tuple[str, ...]  # titles without a pool now: their events were left out
    n_dropped: int
    pools: str

    @property
    def n(self) -> int:
        return int(self.feedback.n)

    def distribution(self, candidate: ProbabilisticPolicy | np.ndarray) -> np.ndarray:
        """(n, K) candidate probabilities over the union pools: a policy's ``probabilities`` on
        ``candidate_batch`` scattered into the union (0 on retired artworks), or a given (n, K) array."""
        if not hasattr(candidate, "probabilities"):
            return np.asarray(candidate, dtype=np.float64)
        batch = self.candidate_batch
        p = np.where(batch.mask, np.asarray(candidate.probabilities(batch), dtype=np.float64), 0.0)
        out = np.zeros(self.new.shape)
        rows, cols = np.nonzero(self.columns >= 0)
        out[rows, self.columns[rows, cols]] = p[rows, cols]
        return out

    def new_mass(self, dist: np.ndarray) -> float:
        """Mean share of ``dist`` on artworks that are new since logging (unsupported by the log)."""
        return float((np.asarray(dist) * self.new).sum(axis=1).mean())

    def to_log(self) -> BanditLog:
        return feedback_to_log(self.feedback, self.logging_probabilities)


def _current_pools(catalog: Any, titles: Sequence[str]) -> dict[str, tuple[str, ...] | None]:
    """Each title's active pool in ``catalog``, None for a title retired, unknown or without artwork."""
    out: dict[str, tuple[str, ...] | None] = {}
    for t in dict.fromkeys(titles):
        try:
            out[t] = tuple(catalog.pool_ids(t))
        except (EmptyPoolError, UnknownIdError):
            out[t] = None
    return out


def evaluation_pools(
    rewards: Any, featurizer: Any, pools: str | Mapping[str, Sequence[str]] = "current"
) -> EvaluationPools:
    """Lay out a ``RewardTable`` for evaluating candidates on ``pools``.

    ``pools``: ``"current"`` (default) the active pools of ``featurizer.catalog`` today, ``"logged"`` the
    pools as they were logged, or a mapping title -> artwork ids. Events of titles without a pool there
    are left out (``n_dropped``, ``dropped_titles``). Every union candidate is featurized with the logged
    context, so a reward model can score artworks new since logging.
    """
    t = rewards.table
    if t.num_rows == 0:
        raise ValidationError("No decision has a known reward: there is nothing to evaluate on.")
    titles = [str(x) for x in t.column("title_id").to_pylist()]
    logged = [tuple(p) for p in t.column("pool").to_pylist()]
    if isinstance(pools, str):
        if pools not in POOLS:
            raise ValidationError(f"pools must be one of {', '.join(POOLS)} or a mapping. Got {pools!r}.")
        label = pools
        now = None if pools == "logged" else _current_pools(featurizer.catalog, titles)
    elif isinstance(pools, Mapping):
        label = "given"
        now = {t_: None for t_ in titles}
        for k, v in pools.items():
            if isinstance(v, str) or not len(v):
                raise ValidationError(f"pools[{k!r}] must be a non-empty list of artwork ids. Got {v!r}.")
            now[str(k)] = tuple(str(a) for a in v)
    else:
        raise ValidationError(
            f"pools must be one of {', '.join(POOLS)} or a mapping. Got {type(pools).__name__}."
        )
    if now is None:
        keep = np.ones(len(titles), dtype=bool)
        dropped: tuple[str, ...] = ()
    else:
        keep = np.array([now[x] is not None for x in titles], dtype=bool)
        dropped = tuple(sorted({x for x, k in zip(titles, keep.tolist(), strict=True) if not k}))
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise ValidationError(
            "No logged event's title has a pool to evaluate on "
            f"(titles without one: {', '.join(dropped[:5])})."
        )
    if rows.size < len(titles):
        rewards = rewards.take(rows)
        titles = [titles[i] for i in rows.tolist()]
        logged = [logged[i] for i in rows.tolist()]
    cand = logged if now is None else [now[x] for x in titles]
    union = []
    for lp, cp in zip(logged, cand, strict=True):
        seen = set(lp)
        union.append(lp + tuple(a for a in cp if a not in seen))  # type: ignore[union-attr]
    contexts = rewards.contexts()
    feedback = rewards.to_feedback(featurizer, union, contexts)
    n, k = feedback.batch.mask.shape
    probs = np.zeros((n, k))
    new = np.zeros((n, k), dtype=bool)
    for i, p in enumerate(t.take(pa.array(rows)).column("probabilities").to_pylist()):
        probs[i, : len(p)] = p
        new[i, len(p) : len(union[i])] = True
    if now is None:
        cand_batch = feedback.batch
        columns = np.where(feedback.batch.mask, np.arange(k), -1)
    else:
        cand_batch = rewards.candidate_batch(featurizer, cand, contexts)
        columns = np.full(cand_batch.mask.shape, -1, dtype=np.int64)
        for i, (u, cp) in enumerate(zip(union, cand, strict=True)):
            where = {a: j for j, a in enumerate(u)}
            columns[i, : len(cp)] = [where[a] for a in cp]  # type: ignore[union-attr]
    in_cand = np.zeros((n, k), dtype=bool)
    r, c = np.nonzero(columns >= 0)
    in_cand[r, columns[r, c]] = True
    retired = feedback.batch.mask & ~new & ~in_cand
    return EvaluationPools(
        feedback=feedback,
        logging_probabilities=probs,
        candidate_batch=cand_batch,
        columns=columns,
        new=new,
        retired=retired,
        rows=rows,
        dropped_titles=dropped,
        n_dropped=int(len(keep) - rows.size),
        pools=label,
    )


def evaluate_policy(
    feedback: Any,
    candidate: ProbabilisticPolicy | np.ndarray,
    estimators: Sequence[str] = ESTIMATORS,
    *,
    featurizer: Any | None = None,
    pools: str | Mapping[str, Sequence[str]] = "current",
    logging_probabilities: np.ndarray | None = None,
    reward_model: RewardModel | None = None,
    n_folds: int = 2,
    config: EstimatorConfig | None = None,
    seed: int = 0,
) -> list[Estimate]:
    """Estimate the value of a keyart policy (or an (n, K) probability table) on logged keyart data.

    ``feedback`` is a ``RewardTable`` (with ``featurizer``: evaluated on ``pools``, by default today's
    active pools of ``featurizer.catalog``, see ``evaluation_pools``), an ``EvaluationPools``, or a
    ``LoggedFeedback``, which holds only the logged pools and so needs ``pools="logged"`` (then
    ``logging_probabilities`` (n, K) make the support check exact).
    """
    from keyart.feedback import LoggedFeedback

    if isinstance(feedback, LoggedFeedback):
        if pools != "logged":
            raise ValidationError(
                "A LoggedFeedback holds only the logged pools: pass pools='logged' to evaluate on them, or "
                "the RewardTable and a featurizer to evaluate on today's pools."
            )
        log = feedback_to_log(feedback, logging_probabilities)
        dist = candidate_distribution(candidate, feedback)
    else:
        if logging_probabilities is not None:
            raise ValidationError(
                "logging_probabilities go with a LoggedFeedback; a RewardTable carries its own."
            )
        if not isinstance(feedback, EvaluationPools):
            if not hasattr(feedback, "contexts"):
                raise ValidationError(
                    "feedback must be a RewardTable, EvaluationPools or LoggedFeedback. "
                    f"Got {type(feedback).__name__}."
                )
            if featurizer is None:
                raise ValidationError("Evaluating a RewardTable needs the featurizer (and its catalog).")
            feedback = evaluation_pools(feedback, featurizer, pools)
        log = feedback.to_log()
        dist = feedback.distribution(candidate)
    name = getattr(candidate, "name", "candidate")
    return estimate(
        log,
        dist,
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
                e.label,
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
        methods: dict[str, list[str]] = {}
        for e in self.estimates:
            names = methods.setdefault(e.ci_method, [])
            if e.estimator not in names:
                names.append(e.estimator)
        lines.append("")
        lines.append("Intervals: " + "; ".join(f"{m} ({', '.join(ns)})" for m, ns in methods.items()) + ".")
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
