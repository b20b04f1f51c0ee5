"""Sticky, reproducible randomness and the closed-form action distributions built on it.

A decision's randomness is a keyed hash of (seed, member, title, period): nothing random is shared
between requests or replicas, and any decision can be replayed from its log. Choosing is inverse-CDF
sampling of the policy's distribution with that uniform, so the logged propensity is exactly the
probability with which the shown artwork was picked.

What stays fixed within a period is the uniform of each (member, title), not the artwork: the choice
changes only when the policy's distribution moves (the model learns, or context features such as the
hour of day and the weekday change the scores). Periods are staggered per member: member m's periods
start at ``offset(m) + k * sticky_seconds``, with ``offset(m)`` a keyed hash of the member in
``[0, sticky_seconds)``, so members' periods do not all end at the same instant (00:00 UTC for a day).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from keyart import kernels
from keyart.errors import DimensionError, ValidationError
from keyart.hashing import splitmix64, title_key
from keyart.kernels.reference import unit as _unit


def period_index(
    timestamps: np.ndarray, sticky_seconds: float, offsets: np.ndarray | float = 0.0
) -> np.ndarray:
    """The exploration period each timestamp falls in: ``floor((t - offset) / sticky_seconds)``.

    ``offsets`` (one per timestamp, or one for all) start the periods later than the epoch's multiples
    (``period_offsets`` gives each member's); all timestamps are in period 0 when ``sticky_seconds`` is inf.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if not np.isfinite(sticky_seconds):
        return np.zeros(ts.shape, dtype=np.int64)
    if sticky_seconds <= 0:
        raise ValidationError(f"sticky_seconds must be > 0. Got {sticky_seconds!r}.")
    return np.floor((ts - np.asarray(offsets, dtype=np.float64)) / sticky_seconds).astype(np.int64)


def _member_keys(seed: int, member_ids: Sequence[str]) -> np.ndarray:
    """(n,) uint64: BLAKE2b of each member id keyed with the seed (one hash per distinct member)."""
    key = int(seed).to_bytes(16, "little", signed=False)
    members: dict[str, int] = {}
    for m in member_ids:
        if m not in members:
            h = hashlib.blake2b(m.encode(), digest_size=8, key=key).digest()
            members[m] = int.from_bytes(h, "little")
    if len(members) == 1:
        return np.full(len(member_ids), next(iter(members.values())), dtype=np.uint64)
    return np.array([members[m] for m in member_ids], dtype=np.uint64)


# Separates the period offset's hash stream from the uniforms' (any fixed odd constant would do).
_OFFSET_SALT = np.uint64(0x5354414747455221)


def _offsets(member_keys: np.ndarray, sticky_seconds: float) -> np.ndarray:
    if not np.isfinite(sticky_seconds):
        return np.zeros(member_keys.shape, dtype=np.float64)
    return _unit(splitmix64(splitmix64(member_keys ^ _OFFSET_SALT))) * sticky_seconds


def period_offsets(seed: int, member_ids: Sequence[str], sticky_seconds: float) -> np.ndarray:
    """(n,) each member's period offset in seconds, uniform in [0, sticky_seconds) across members.

    A keyed hash of (seed, member), so it is the same in every process and replica, and members' periods
    end at times spread over the period instead of together (0 for every member when ``sticky_seconds``
    is inf: one period forever).
    """
    return _offsets(_member_keys(seed, member_ids), sticky_seconds)


def sticky_periods(
    seed: int, member_ids: Sequence[str], timestamps: np.ndarray, sticky_seconds: float
) -> np.ndarray:
    """(n,) the period of each (member, timestamp), with the member's keyed offset: what ``choose`` uses."""
    if len(member_ids) != np.shape(timestamps)[0]:
        raise DimensionError("member_ids and timestamps must have the same length.")
    return period_index(timestamps, sticky_seconds, period_offsets(seed, member_ids, sticky_seconds))


def _uniforms(member_keys: np.ndarray, title_ids: Sequence[str], periods: Sequence[int]) -> np.ndarray:
    tk = np.array([title_key(t) for t in title_ids], dtype=np.uint64)
    return kernels.sticky_mix(member_keys, tk, periods)


def keyed_uniforms(
    seed: int, member_ids: Sequence[str], title_ids: Sequence[str], periods: Sequence[int]
) -> np.ndarray:
    """One uniform in [0, 1) per (member, title, period).

    The member's key is BLAKE2b keyed with the seed (one hash per distinct member), the title's a stable
    hash; the three are combined and finished with SplitMix64, vectorized over the batch.
    """
    n = len(member_ids)
    if not (n == len(title_ids) == len(periods)):
        raise DimensionError("member_ids, title_ids and periods must have the same length.")
    return _uniforms(_member_keys(seed, member_ids), title_ids, periods)


def sticky_uniforms(
    seed: int,
    member_ids: Sequence[str],
    title_ids: Sequence[str],
    timestamps: np.ndarray,
    sticky_seconds: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(uniforms, periods) of decisions at ``timestamps``: ``keyed_uniforms`` of each decision's
    (member, title, staggered period), hashing each distinct member once for both."""
    n = len(member_ids)
    if not (n == len(title_ids) == np.shape(timestamps)[0]):
        raise DimensionError("member_ids, title_ids and timestamps must have the same length.")
    if np.isfinite(sticky_seconds) and sticky_seconds <= 0:
        raise ValidationError(f"sticky_seconds must be > 0. Got {sticky_seconds!r}.")
    tk = np.array([title_key(t) for t in title_ids], dtype=np.uint64)
    return kernels.sticky_draw(_member_keys(seed, member_ids), tk, timestamps, sticky_seconds, _OFFSET_SALT)


def sample_index(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one index per row of ``probabilities`` (n, K) with the given uniforms (n,).

    Zero-probability entries are never returned, whatever rounding does to the cumulative sum.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    u = np.asarray(uniforms, dtype=np.float64)
    if p.ndim != 2 or u.shape != (p.shape[0],):
        raise DimensionError(f"probabilities must be (n, K) and uniforms (n,). Got {p.shape} and {u.shape}.")
    return kernels.sample_index(p, u)


def greedy_distribution(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """All mass on the best-scoring candidates, ties shared equally (a deterministic policy)."""
    return kernels.greedy_distribution(scores, mask)


def uniform_distribution(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float64)
    return m / m.sum(axis=1, keepdims=True)


def epsilon_greedy_distribution(scores: np.ndarray, mask: np.ndarray, epsilon: float) -> np.ndarray:
    """epsilon / K to every candidate, the rest to the greedy choice (VW's generate_epsilon_greedy)."""
    return epsilon * uniform_distribution(mask) + (1.0 - epsilon) * greedy_distribution(scores, mask)


def softmax_distribution(scores: np.ndarray, mask: np.ndarray, temperature: float) -> np.ndarray:
    """Boltzmann exploration: p proportional to exp(score / temperature) over the pool."""
    s = np.where(mask, scores / temperature, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s) * mask
    return e / e.sum(axis=1, keepdims=True)


def apply_floor(probabilities: np.ndarray, mask: np.ndarray, floor: float) -> np.ndarray:
    """Mix with uniform so that every candidate has at least floor / K (K = its pool size)."""
    if floor <= 0:
        return probabilities
    return floor * uniform_distribution(mask) + (1.0 - floor) * probabilities


def apply_new_share(probabilities: np.ndarray, mask: np.ndarray, new: np.ndarray, share: float) -> np.ndarray:
    """Mix so that every new candidate (``new`` (n, K), on the pool) has at least ``share`` of its row:
    p' = s 1_new + (1 - |new| s) p, with s = min(share, 1 / |new|) (a pool of new artworks only is then
    uniform over them). A mixture of distributions, so the logged propensities stay exact."""
    new = new & mask
    count = new.sum(axis=1, keepdims=True)
    if share <= 0 or not count.any():
        return probabilities
    s = np.minimum(share, 1.0 / np.maximum(count, 1))
    return np.where(new, s, 0.0) + (1.0 - count * s) * probabilities


def monte_carlo_samples(abs_error: float, confidence: float) -> int:
    """Draws needed so that a frequency estimate is within ``abs_error`` of its probability at ``confidence``.

    The worst case of a binomial proportion (p = 1/2) under the normal approximation:
    n = (z / (2 * abs_error))^2; 0.01 at 95% gives 9,604.
    """
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2.0))
    return int(np.ceil((z / (2.0 * abs_error)) ** 2))
