"""Reward models for DM and the DR family, and cross-fitting (each event predicted by a model not fit on it).

A model predicts q(x_i, a, l) for every event, action and position: an (n, K, L) array. Cross-fitting
(``cross_fit``) splits the log into folds and predicts each fold with a model fit on the others, so the
doubly robust correction is not fooled by the model's own overfitting (Chernozhukov et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from keyart.errors import ConvergenceError, DimensionError, ValidationError
from keyart.evaluation.clusters import _Clusters, _folds, fold_ids
from keyart.evaluation.data import BanditLog
from keyart.params import Interval, check_param


class RewardModel(Protocol):
    """Fit on a log, predict (m, K, L) expected rewards. ``fit`` returns a fitted copy (self is unchanged)."""

    def fit(self, log: BanditLog) -> FittedRewardModel: ...


class FittedRewardModel(Protocol):
    def predict(self, log: BanditLog) -> np.ndarray: ...


@dataclass(frozen=True)
class _FittedTable:
    table: np.ndarray  # (n_arms, L)
    fallback: np.ndarray  # (L,) prior means for unseen arms

    def predict(self, log: BanditLog) -> np.ndarray:
        keys = log.arm_keys()
        out = np.empty((log.n, log.n_actions, log.n_positions))
        known = keys < self.table.shape[0]
        safe = np.where(known, keys, 0)
        out[:] = self.table[safe]
        out[~known] = self.fallback
        return out


@dataclass(frozen=True)
class TabularRewardModel:
    """Context-free mean reward per (arm, position), shrunk toward the position's mean.

    q(a, l) = (sum of rewards + m * mean_l) / (count + m) with ``prior_strength`` m: unseen pairs get the
    position's mean, rare ones are pulled toward it. Cheap (bincounts), and right for context-free
    candidates such as the OBD item-by-position frequencies.
    """

    prior_strength: float = 10.0

    def __post_init__(self) -> None:
        check_param("TabularRewardModel", "prior_strength", self.prior_strength, Interval(0, None))

    def fit(self, log: BanditLog) -> _FittedTable:
        keys = log.arm_keys()[np.arange(log.n), log.action]
        n_arms = int(log.arm_keys().max()) + 1
        el = log.n_positions
        flat = keys * el + log.position
        cnt = np.bincount(flat, minlength=n_arms * el).reshape(n_arms, el)
        tot = np.bincount(flat, weights=log.reward, minlength=n_arms * el).reshape(n_arms, el)
        pos_cnt = cnt.sum(axis=0)
        pos_mean = np.where(pos_cnt > 0, tot.sum(axis=0) / np.maximum(pos_cnt, 1), log.reward.mean())
        m = float(self.prior_strength)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = (tot + m * pos_mean) / (cnt + m)
        table = np.where(cnt + m > 0, table, pos_mean)
        return _FittedTable(table=table, fallback=pos_mean)


@dataclass(frozen=True)
class _FittedLinear:
    coef: np.ndarray
    n_arms: int
    use_arms: bool
    lo: float
    hi: float

    def predict(self, log: BanditLog) -> np.ndarray:
        return np.clip(_linear_predict(self, log), self.lo, self.hi)


def _blocks(log: BanditLog, use_arms: bool, n_arms: int) -> list[int]:
    d_c = 0 if log.context is None else log.context.shape[1]
    d_a = 0 if log.action_context is None else log.action_context.shape[2]
    return [1, log.n_positions - 1, d_c, d_a, n_arms if use_arms else 0]


def _linear_predict(f: _FittedLinear, log: BanditLog) -> np.ndarray:
    """Evaluate the additive linear model on every (event, action, position) without building a design."""
    sizes = np.cumsum([0, *_blocks(log, f.use_arms, f.n_arms)])
    c = f.coef
    pos_eff = np.concatenate([[0.0], c[sizes[1] : sizes[2]]])  # (L,)
    out = np.full((log.n, log.n_actions, log.n_positions), c[0])
    out += pos_eff[None, None, :]
    if log.context is not None:
        out += (log.context @ c[sizes[2] : sizes[3]])[:, None, None]
    if log.action_context is not None:
        out += (log.action_context @ c[sizes[3] : sizes[4]])[:, :, None]
    if f.use_arms:
        keys = log.arm_keys()
        arm_coef = c[sizes[4] : sizes[5]]
        known = keys < f.n_arms
        out += np.where(known, arm_coef[np.where(known, keys, 0)], 0.0)[:, :, None]
    return out


@dataclass(frozen=True)
class LinearRewardModel:
    """Additive ridge regression: intercept + position + context + per-candidate features + arm identity.

    The arm one-hot block is used when there are at most ``max_arms`` distinct arms. Predictions are
    clipped to the observed reward range. A good default when features exist (keyart's ``batch.X``).
    """

    alpha: float = 1.0
    max_arms: int = 2000

    def __post_init__(self) -> None:
        check_param("LinearRewardModel", "alpha", self.alpha, Interval(0, None, closed="neither"))
        check_param("LinearRewardModel", "max_arms", self.max_arms, Interval(0, None, integer=True))

    def fit(self, log: BanditLog) -> _FittedLinear:
        keys_all = log.arm_keys()
        n_arms = int(keys_all.max()) + 1
        use_arms = n_arms <= self.max_arms
        rows = np.arange(log.n)
        parts = [np.ones((log.n, 1))]
        el = log.n_positions
        if el > 1:
            pos_1h = np.zeros((log.n, el - 1))
            nz = log.position > 0
            pos_1h[rows[nz], log.position[nz] - 1] = 1.0
            parts.append(pos_1h)
        if log.context is not None:
            parts.append(log.context)
        if log.action_context is not None:
            parts.append(log.action_context[rows, log.action])
        if use_arms:
            arm_1h = np.zeros((log.n, n_arms))
            arm_1h[rows, keys_all[rows, log.action]] = 1.0
            parts.append(arm_1h)
        phi = np.hstack(parts)
        gram = phi.T @ phi
        reg = np.full(gram.shape[0], self.alpha)
        reg[0] = 1e-8  # do not shrink the intercept
        coef = np.linalg.solve(gram + np.diag(reg), phi.T @ log.reward)
        return _FittedLinear(coef, n_arms, use_arms, float(log.reward.min()), float(log.reward.max()))


@dataclass(frozen=True)
class _FittedLogistic:
    coef: tuple[np.ndarray | None, ...]  # per position: [intercept, context..., item block...] or None
    fallback: float  # prediction at a position the training log never shows
    item_features: np.ndarray | None

    def predict(self, log: BanditLog) -> np.ndarray:
        block = _item_block(self.item_features, log.n_actions)  # (K, p)
        d_c = 0 if log.context is None else log.context.shape[1]
        out = np.full((log.n, log.n_actions, log.n_positions), self.fallback)
        for pos, beta in enumerate(self.coef[: log.n_positions]):
            if beta is None:
                continue
            z = beta[0] + (block @ beta[1 + d_c :])[None, :]
            if log.context is not None:
                z = z + (log.context @ beta[1 : 1 + d_c])[:, None]
            out[:, :, pos] = _sigmoid(z)
        return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _item_block(item_features: np.ndarray | None, n_actions: int) -> np.ndarray:
    """(K, p) features of each action: the given item features, else the action's one-hot (OBP's default
    action context)."""
    if item_features is None:
        return np.eye(n_actions)
    if item_features.shape[0] != n_actions:
        raise DimensionError(
            f"item_features has {item_features.shape[0]} rows but the log has {n_actions} actions."
        )
    return item_features


def _newton_logistic(phi: np.ndarray, r: np.ndarray, penalty: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """argmin_b sum_i [log(1 + exp(phi_i b)) - r_i phi_i b] + 0.5 sum_j penalty_j b_j^2 by Newton's
    method with step halving (the objective is strictly convex, so this converges to the optimum)."""

    def objective(b: np.ndarray) -> float:
        z = phi @ b
        return float(np.logaddexp(0.0, z).sum() - r @ z + 0.5 * penalty @ (b * b))

    beta = np.zeros(phi.shape[1])
    f = objective(beta)
    for _ in range(max_iter):
        p = _sigmoid(phi @ beta)
        grad = phi.T @ (p - r) + penalty * beta
        hess = (phi * (p * (1 - p))[:, None]).T @ phi + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            cand = beta - t * step
            f_new = objective(cand)
            if f_new <= f + 1e-12 * (1 + abs(f)) or t < 1e-10:
                break
            t /= 2
        done = float(grad @ step) < 1e-12 * (1 + abs(f))  # Newton decrement: at the optimum
        beta, f = cand, f_new
        if done:
            return beta
    raise ConvergenceError(f"Logistic reward model: Newton's method did not converge in {max_iter} steps.")


@dataclass(frozen=True)
class LogisticRewardModel:
    """Per-position logistic regression of 0/1 rewards on the context and the shown item's features.

    For each position l: P(r = 1 | x, a, l) = sigmoid(b0_l + x b_l + f(a) c_l), with x the log's context
    (``BanditLog.context``) and f(a) the row of ``item_features`` (K, p) for action a (OBD's
    ``item_context.csv``, categorical columns one-hot encoded), or the action's one-hot when none are
    given. This is Open Bandit Pipeline's ``RegressionModel`` with a logistic base model and
    ``action_context`` (Saito et al. 2021: one model per position on [context, action context]). Fit by
    Newton's method on the L2-penalized log likelihood, penalty ``alpha`` / 2 ||(b_l, c_l)||^2 (scikit-learn's
    ``LogisticRegression(C=1 / alpha)``), with a tiny 1e-6 ridge on the intercept so that a position without
    a click in a fold stays finite. A position absent from the training log predicts its mean reward.
    """

    item_features: np.ndarray | None = field(default=None, compare=False)
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_param("LogisticRewardModel", "alpha", self.alpha, Interval(0, None, closed="neither"))
        if self.item_features is not None:
            f = np.asarray(self.item_features, dtype=np.float64)
            if f.ndim != 2 or not np.all(np.isfinite(f)):
                raise ValidationError("item_features must be a finite (n_actions, p) array.")
            object.__setattr__(self, "item_features", f)

    def fit(self, log: BanditLog) -> _FittedLogistic:
        r = log.reward
        if not np.all((r == 0) | (r == 1)):
            raise ValidationError("LogisticRewardModel needs 0/1 rewards (clicks, quality plays).")
        block = _item_block(self.item_features, log.n_actions)
        parts = [np.ones((log.n, 1))]
        if log.context is not None:
            parts.append(log.context)
        parts.append(block[log.action])
        phi = np.hstack(parts)
        penalty = np.full(phi.shape[1], float(self.alpha))
        penalty[0] = 1e-6
        coef: list[np.ndarray | None] = []
        for pos in range(log.n_positions):
            rows = log.position == pos
            coef.append(_newton_logistic(phi[rows], r[rows], penalty) if rows.any() else None)
        return _FittedLogistic(tuple(coef), float(r.mean()), self.item_features)


def held_out_log_loss(log: BanditLog, q_hat: np.ndarray) -> float:
    """Mean log loss of out-of-fold predictions at each event's logged action and position,
    -mean(r log q + (1 - r) log(1 - q)), q clipped to [1e-6, 1 - 1e-6]; rewards must be in [0, 1]."""
    if np.any((log.reward < 0) | (log.reward > 1)):
        raise ValidationError("Log loss needs rewards in [0, 1].")
    q = np.clip(q_hat[np.arange(log.n), log.action, log.position], 1e-6, 1 - 1e-6)
    r = log.reward
    return float(-np.mean(r * np.log(q) + (1 - r) * np.log1p(-q)))


@dataclass(frozen=True)
class ModelChoice:
    """The reward model chosen by held-out log loss, and every candidate's loss (lower is better)."""

    name: str
    model: RewardModel
    log_loss: Mapping[str, float]

    def describe(self) -> str:
        others = ", ".join(f"{k} {v:.5f}" for k, v in self.log_loss.items() if k != self.name)
        return (
            f"Reward model of DM and the DR family: {self.name}, chosen by cross-fitted held-out log loss "
            f"({self.log_loss[self.name]:.5f}" + (f"; {others})." if others else ").")
        )


def choose_reward_model(
    log: BanditLog, models: Mapping[str, RewardModel], n_folds: int = 2, seed: int = 0
) -> ModelChoice:
    """Cross-fit every model on the same folds (the folds ``estimate`` uses with this seed) and keep the
    one with the lowest held-out log loss (ties: the first given)."""

    if not models:
        raise ValidationError("choose_reward_model needs at least one model.")
    folds = _folds(log, _Clusters.of(log), n_folds, seed)
    losses = {
        name: held_out_log_loss(log, cross_fit(m, log, n_folds=n_folds, seed=seed, folds=folds))
        for name, m in models.items()
    }
    best = min(losses, key=lambda k: (losses[k], list(losses).index(k)))
    if not math.isfinite(losses[best]):
        raise ValidationError("No reward model gave a finite held-out log loss.")
    return ModelChoice(best, models[best], losses)


def cross_fit(
    model: RewardModel,
    log: BanditLog,
    n_folds: int = 2,
    seed: int | np.random.Generator = 0,
    folds: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold predictions (n, K, L): each event's q-hat comes from a model fit without it.

    ``n_folds=1`` fits and predicts on the whole log (no cross-fitting; biased toward overfit). ``folds``
    gives the assignment explicitly (the refit bootstrap keeps duplicates of an event in one fold).
    """
    check_param("cross_fit", "n_folds", n_folds, Interval(1, None, integer=True))
    if n_folds > log.n:
        raise ValidationError(f"n_folds ({n_folds}) must not exceed the number of events ({log.n}).")
    if n_folds == 1:
        return model.fit(log).predict(log)
    fold = fold_ids(log.n, n_folds, seed) if folds is None else folds
    out = np.empty((log.n, log.n_actions, log.n_positions))
    for f in np.unique(fold):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        if train.size == 0:
            out[test] = model.fit(log.take(test)).predict(log.take(test))
            continue
        out[test] = model.fit(log.take(train)).predict(log.take(test))
    return out


def default_reward_model(log: BanditLog) -> RewardModel:
    """Linear ridge when the log has features, else the tabular shrunk mean."""
    if log.context is None and log.action_context is None:
        return TabularRewardModel()
    return LinearRewardModel()


__all__ = [
    "FittedRewardModel",
    "LinearRewardModel",
    "LogisticRewardModel",
    "ModelChoice",
    "RewardModel",
    "TabularRewardModel",
    "choose_reward_model",
    "cross_fit",
    "default_reward_model",
    "fold_ids",
    "held_out_log_loss",
]
