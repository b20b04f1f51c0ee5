"""Every estimator as mean(A) + mean(B) / mean(C) over per-event terms, and the pieces of those terms:
importance weights, the reward model's values, replay's matches, the candidate's unsupported mass.

``keyart.evaluation.tuning.point_estimate`` is the fast path (a value, no interval; lambda tuned first);
``keyart.evaluation.estimators.estimate`` adds intervals and flags. The definitions are in that module's
docstring.
"""

from __future__ import annotations

import math

import numpy as np

from keyart.errors import ValidationError
from keyart.evaluation.config import ESTIMATORS, EstimatorConfig
from keyart.evaluation.data import BanditLog


def importance_weights(log: BanditLog, action_dist: np.ndarray) -> np.ndarray:
    """w_i = pi_e(a_i | x_i, l_i) / pscore_i."""
    rows = np.arange(log.n)
    return action_dist[rows, log.action, log.position] / log.pscore


def _q_parts(log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q_pi (n,), q-hat of the logged action (n,)) at each event's logged position."""
    rows = np.arange(log.n)
    q_at = q_hat[rows, :, log.position]
    pi_at = action_dist[rows, :, log.position]
    q_pi = np.einsum("nk,nk->n", q_at, pi_at)
    return q_pi, q_at[rows, log.action]


def replay_match(log: BanditLog, action_dist: np.ndarray, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Boolean (n,): the candidate's choice at the logged position equals the logged action.

    A deterministic candidate (one-hot rows) needs no randomness; otherwise its choice is drawn once per
    event by inverse-CDF sampling with a seeded generator (vectorized).
    """
    rows = np.arange(log.n)
    pi_at = action_dist[rows, :, log.position]
    if np.all((pi_at == 0) | (pi_at == 1)):
        return pi_at[rows, log.action] == 1
    rng = np.random.default_rng(seed)
    u = rng.random(log.n)[:, None]
    cdf = np.cumsum(pi_at, axis=1)
    choice = np.minimum((cdf < u * cdf[:, -1:]).sum(axis=1), log.n_actions - 1)
    return choice == log.action


def unsupported_mass(log: BanditLog, action_dist: np.ndarray) -> float:
    """Share of the candidate's probability on actions the logging policy could not (or did not) show.

    Exact when the log carries the logging policy's full distribution (keyart logs it): mass on
    zero-probability actions. Otherwise an empirical check: mass on (arm, position) pairs never logged.
    """
    rows = np.arange(log.n)
    pi_at = action_dist[rows, :, log.position]
    if log.logging_dist is not None:
        never = log.logging_dist[rows, :, log.position] <= 0
    else:
        keys = log.arm_keys()
        el = log.n_positions
        logged = keys[rows, log.action] * el + log.position
        seen = np.zeros((int(keys.max()) + 1) * el, dtype=bool)
        seen[logged] = True
        never = ~seen[keys * el + log.position[:, None]]
    if log.action_mask is not None:
        never &= log.action_mask
    return float((pi_at * never).sum(axis=1).mean())


def _components(
    name: str, log: BanditLog, dist: np.ndarray, w: np.ndarray, q_hat: np.ndarray | None, cfg: EstimatorConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    n = log.n
    zeros, ones = np.zeros(n), np.ones(n)
    r = log.reward
    if name == "replay":
        match = replay_match(log, dist, cfg.replay_seed).astype(np.float64)
        return zeros, match * r, match, int(match.sum())
    if name == "ips":
        wc = w if cfg.ips_clip is None else np.minimum(w, cfg.ips_clip)
        return zeros, wc * r, ones, None
    if name == "snips":
        return zeros, w * r, w, None
    assert q_hat is not None
    q_pi, q_a = _q_parts(log, dist, q_hat)
    if name == "dm":
        return q_pi, zeros, ones, None
    if name == "dr":
        wc = w if cfg.dr_clip is None else np.minimum(w, cfg.dr_clip)
        return q_pi, wc * (r - q_a), ones, None
    if name == "sndr":
        return q_pi, w * (r - q_a), w, None
    if name == "switch_dr":
        return q_pi, (w <= float(cfg.switch_lambda)) * w * (r - q_a), ones, None
    if name == "dr_os":
        lam = float(cfg.dr_os_lambda)  # resolved (not "slope") by the caller
        w_os = w if math.isinf(lam) else (lam * w) / (w**2 + lam) if lam > 0 else zeros
        return q_pi, w_os * (r - q_a), ones, None
    raise ValidationError(f"Unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}.")


def as_estimated_rewards(values: object, log: BanditLog) -> np.ndarray:
    """Validate q-hat of shape (n, K) or (n, K, L)."""
    q = np.asarray(values, dtype=np.float64)
    if q.ndim == 2:
        q = q[:, :, None]
    if q.ndim != 3 or q.shape[:2] != (log.n, log.n_actions):
        raise ValidationError(
            f"estimated_rewards must have shape (n={log.n}, K={log.n_actions}[, L]), got {np.shape(values)}."
        )
    if q.shape[2] == 1 and log.n_positions > 1:
        q = np.broadcast_to(q, (log.n, log.n_actions, log.n_positions))
    if q.shape[2] != log.n_positions:
        raise ValidationError(
            f"estimated_rewards has {q.shape[2]} positions but the log has {log.n_positions}."
        )
    if not np.all(np.isfinite(q)):
        raise ValidationError("estimated_rewards holds NaN or inf.")
    return q
