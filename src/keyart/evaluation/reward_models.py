"""Reward models for DM and the DR family, and cross-fitting (each event predicted by a model not fit on it).

A model predicts q(x_i, a, l) for every event, action and position: an (n, K, L) array. Cross-fitting
(``cross_fit``) splits the log into folds and predicts each fold with a model fit on the others, so the
doubly robust correction is not fooled by the model's own overfitting (Chernozhukov et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from keyart.errors import ValidationError
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


def fold_ids(n: int, n_folds: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A seeded balanced assignment of n events to ``n_folds`` folds."""
    return np.random.default_rng(seed).permutation(n) % n_folds


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
    "RewardModel",
    "TabularRewardModel",
    "cross_fit",
    "default_reward_model",
    "fold_ids",
]
