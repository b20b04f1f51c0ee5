"""Logged bandit feedback as plain arrays (OBP's layout) and the one place that validates it.

Every estimator takes a ``BanditLog`` plus the candidate's action distribution ``action_dist`` of shape
(n, K, L): the probability that the candidate shows action ``a`` at position ``l`` for event ``i``
(L = 1 without positions). Keeping the core on arrays lets tabular imports (the Open Bandit Dataset:
80 items x 3 positions) and keyart's own feedback (pools padded to K) share one implementation.

Logged decisions are often not independent: keyart's exploration is sticky per (member, title, period) and a
member's rewards correlate across titles and page views. ``cluster`` (e.g. the member ids) tells the
estimators which events belong together; their intervals then treat clusters, not events, as the
independent units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from keyart.errors import DimensionError, UnknownIdError, ValidationError

#: Tolerance on "each position's action distribution sums to 1".
SUM_TOL = 1e-6


class EmptyLogError(ValidationError):
    """The log holds no events: nothing can be estimated from it."""


def _first_rows(mask: np.ndarray, k: int = 5) -> str:
    rows = np.flatnonzero(mask)[:k]
    return ", ".join(str(int(r)) for r in rows)


def as_1d(name: str, values: object, dtype: type | None = None) -> np.ndarray:
    """A 1-d numpy array or a ``DimensionError`` naming the argument."""
    try:
        arr = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} must be numeric. ({exc})") from None
    if arr.ndim != 1:
        raise DimensionError(f"{name} must be 1-dimensional, got shape {arr.shape}.")
    return arr


@dataclass(frozen=True)
class BanditLog:
    """Validated logged feedback: what was shown, with which probability, and what it earned.

    ``reward (n,)`` float, ``action (n,)`` int in [0, K), ``pscore (n,)`` in (0, 1] (the logging policy's
    probability of the logged action at the logged position), ``position (n,)`` int in [0, L).
    Optional: ``context (n, d)`` event features, ``action_context (n, K, d_a)`` per-candidate features
    (keyart's ``batch.X``), ``arm (n, K)`` int identity of each candidate (keyart: the artwork id; by
    default action index ``a`` is its own identity), ``action_mask (n, K)`` valid candidates (keyart pads
    pools), ``logging_dist (n, K, L)`` the logging policy's full distribution when it was logged,
    ``cluster (n,)`` int codes of the independent unit each event belongs to (keyart: the member), built
    by ``from_arrays`` from any hashable ids. ``None``: every event is its own cluster. ``cluster_names``
    (g,) the text of each code's id (``str(id)``): cross-fitting folds hash it, so an event's fold
    depends on its cluster's id alone, not on the other ids in the log (``clusters._folds``).
    """

    reward: np.ndarray
    action: np.ndarray
    pscore: np.ndarray
    position: np.ndarray
    n_actions: int
    n_positions: int
    context: np.ndarray | None = None
    action_context: np.ndarray | None = None
    arm: np.ndarray | None = None
    action_mask: np.ndarray | None = None
    logging_dist: np.ndarray | None = None
    action_names: tuple[str, ...] | None = None
    cluster: np.ndarray | None = None
    cluster_names: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    def arm_keys(self) -> np.ndarray:
        """(n, K) int identity of each candidate (defaults to the action index)."""
        if self.arm is not None:
            return self.arm
        return np.broadcast_to(np.arange(self.n_actions, dtype=np.int64), (self.n, self.n_actions))

    def take(self, index: np.ndarray) -> BanditLog:
        """The sub-log of rows ``index`` (used by cross-fitting)."""

        def sub(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return BanditLog(
            reward=self.reward[index],
            action=self.action[index],
            pscore=self.pscore[index],
            position=self.position[index],
            n_actions=self.n_actions,
            n_positions=self.n_positions,
            context=sub(self.context),
            action_context=sub(self.action_context),
            arm=sub(self.arm),
            action_mask=sub(self.action_mask),
            logging_dist=sub(self.logging_dist),
            action_names=self.action_names,
            cluster=sub(self.cluster),
            cluster_names=self.cluster_names,  # indexed by the codes, which a sub-log keeps
        )

    @classmethod
    def from_arrays(
        cls,
        reward: object,
        action: object,
        pscore: object,
        position: object | None = None,
        *,
        n_actions: int | None = None,
        n_positions: int | None = None,
        context: object | None = None,
        action_context: object | None = None,
        arm: object | None = None,
        action_mask: object | None = None,
        logging_dist: object | None = None,
        action_names: tuple[str, ...] | None = None,
        cluster: object | None = None,
    ) -> BanditLog:
        """Validate and wrap arrays; every problem raises a keyart error naming the argument.

        ``cluster``: one hashable id per event (member ids, say), coded as ints in sorted id order (their
        text kept in ``cluster_names``).
        """
        r = as_1d("reward", reward, np.float64)
        n = r.shape[0]
        if n == 0:
            raise EmptyLogError("The log is empty: reward has 0 rows.")
        a_raw = as_1d("action", action)
        p = as_1d("pscore", pscore, np.float64)
        pos_raw = np.zeros(n, dtype=np.int64) if position is None else as_1d("position", position)
        for name, arr in (("action", a_raw), ("pscore", p), ("position", pos_raw)):
            if arr.shape[0] != n:
                raise DimensionError(
                    f"{name} has {arr.shape[0]} rows but reward has {n}: lengths must match."
                )
        for name, arr in (("action", a_raw), ("position", pos_raw)):
            if not np.issubdtype(arr.dtype, np.integer):
                if (
                    np.issubdtype(arr.dtype, np.floating)
                    and np.all(np.isfinite(arr))
                    and np.all(arr == np.round(arr))
                ):
                    continue
                raise ValidationError(f"{name} must hold integer indices, got dtype {arr.dtype}.")
        a = a_raw.astype(np.int64)
        pos = pos_raw.astype(np.int64)
        if not np.all(np.isfinite(r)):
            raise ValidationError(f"reward holds NaN or inf at rows {_first_rows(~np.isfinite(r))}.")
        bad = ~np.isfinite(p) | (p <= 0.0) | (p > 1.0)
        if bad.any():
            raise ValidationError(
                f"pscore must be in (0, 1]: {int(bad.sum())} values are not "
                f"(rows {_first_rows(bad)}; e.g. {p[bad][0]!r})."
            )
        k = int(a.max()) + 1 if n_actions is None else int(n_actions)
        el = int(pos.max()) + 1 if n_positions is None else int(n_positions)
        if k <= 0:
            raise ValidationError(f"n_actions must be >= 1. Got {k}.")
        if el <= 0:
            raise ValidationError(f"n_positions must be >= 1. Got {el}.")
        bad = (a < 0) | (a >= k)
        if bad.any():
            raise UnknownIdError(
                f"action holds {int(bad.sum())} unknown action indices outside [0, {k}) "
                f"(rows {_first_rows(bad)}; e.g. {int(a[bad][0])})."
            )
        bad = (pos < 0) | (pos >= el)
        if bad.any():
            raise UnknownIdError(
                f"position holds {int(bad.sum())} positions outside [0, {el}) (rows {_first_rows(bad)})."
            )
        ctx = None
        if context is not None:
            ctx = np.asarray(context, dtype=np.float64)
            if ctx.ndim == 1:
                ctx = ctx[:, None]
            if ctx.ndim != 2 or ctx.shape[0] != n:
                raise DimensionError(f"context must have shape (n={n}, d), got {ctx.shape}.")
            if not np.all(np.isfinite(ctx)):
                raise ValidationError("context holds NaN or inf.")
        actx = None
        if action_context is not None:
            actx = np.asarray(action_context, dtype=np.float64)
            if actx.ndim != 3 or actx.shape[:2] != (n, k):
                raise DimensionError(f"action_context must have shape (n={n}, K={k}, d), got {actx.shape}.")
        arm_arr = None
        if arm is not None:
            arm_arr = np.asarray(arm, dtype=np.int64)
            if arm_arr.shape != (n, k):
                raise DimensionError(f"arm must have shape (n={n}, K={k}), got {arm_arr.shape}.")
            if (arm_arr < 0).any():
                raise ValidationError("arm identities must be >= 0.")
        mask = None
        if action_mask is not None:
            mask = np.asarray(action_mask, dtype=bool)
            if mask.shape != (n, k):
                raise DimensionError(f"action_mask must have shape (n={n}, K={k}), got {mask.shape}.")
            bad = ~mask[np.arange(n), a]
            if bad.any():
                raise UnknownIdError(
                    f"action points at a padded (masked) candidate at rows {_first_rows(bad)}."
                )
        ldist = None
        if logging_dist is not None:
            ldist = as_action_dist("logging_dist", logging_dist, n, k, el)
        if action_names is not None and len(action_names) != k:
            raise DimensionError(f"action_names has {len(action_names)} names for {k} actions.")
        codes, names = (None, None) if cluster is None else cluster_codes(cluster, n)
        return cls(r, a, p, pos, k, el, ctx, actx, arm_arr, mask, ldist, action_names, codes, names)


def cluster_codes(ids: object, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int64 codes 0..g-1 of hashable cluster ids (sorted id order when the ids are sortable), and
    (g,) the text of each code's id (``str(id)``, what the cross-fitting folds hash).

    Missing ids (``None``, NaN) raise ``ValidationError``; a wrong length raises ``DimensionError``.
    """
    if isinstance(ids, (str, bytes)):
        raise ValidationError("cluster must be a sequence of ids (one per event), not a single string.")
    if isinstance(ids, np.ndarray):
        arr = ids
    else:  # any iterable of ids, kept as Python objects (np.asarray would turn [7, "7"] into one id)
        try:
            items = list(ids)  # type: ignore[call-overload]
        except TypeError:
            raise DimensionError(
                f"cluster must be 1-dimensional (one id per event), got {type(ids).__name__}."
            ) from None
        arr = np.fromiter(items, dtype=object, count=len(items))
    if arr.ndim != 1:
        raise DimensionError(f"cluster must be 1-dimensional (one id per event), got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise DimensionError(f"cluster has {arr.shape[0]} rows but reward has {n}: lengths must match.")
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
    elif arr.dtype.kind == "O":
        try:
            missing = np.array([_is_missing(x) for x in arr], dtype=bool)
        except TypeError as exc:
            raise ValidationError(f"cluster ids must be hashable. ({exc})") from None
    else:
        missing = np.zeros(n, dtype=bool)
    if missing.any():
        raise ValidationError(f"cluster holds missing ids (None or NaN) at rows {_first_rows(missing)}.")
    try:
        uniq, codes = np.unique(arr, return_inverse=True)
        firsts = uniq.tolist()
    except TypeError:  # ids of mixed types: code them in order of first appearance
        seen: dict[object, int] = {}
        codes = np.array([seen.setdefault(x, len(seen)) for x in arr.tolist()], dtype=np.int64)
        firsts = list(seen)
    names = np.array([str(x) for x in firsts], dtype=object)
    return np.asarray(codes, dtype=np.int64).reshape(n), names


def _is_missing(x: object) -> bool:
    """A missing id (None, NaN); raises ``TypeError`` for an unhashable one."""
    hash(x)
    return x is None or (isinstance(x, float) and math.isnan(x))


def as_action_dist(name: str, values: object, n: int, k: int, n_positions: int) -> np.ndarray:
    """Validate an (n, K) or (n, K, L) distribution: in [0, 1], each (event, position) sums to 1."""
    try:
        dist = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} must be numeric. ({exc})") from None
    if dist.ndim == 2:
        dist = dist[:, :, None]
    if dist.ndim != 3:
        raise DimensionError(f"{name} must have shape (n, K) or (n, K, L), got {dist.shape}.")
    if dist.shape[0] != n:
        raise DimensionError(f"{name} has {dist.shape[0]} rows but the log has {n}: lengths must match.")
    if dist.shape[1] != k:
        raise DimensionError(f"{name} has {dist.shape[1]} actions but the log has K={k}.")
    if dist.shape[2] == 1 and n_positions > 1:
        dist = np.broadcast_to(dist, (n, k, n_positions))
    if dist.shape[2] != n_positions:
        raise DimensionError(f"{name} has {dist.shape[2]} positions but the log has L={n_positions}.")
    if not np.all(np.isfinite(dist)) or (dist < 0).any() or (dist > 1 + SUM_TOL).any():
        raise ValidationError(f"{name} must hold probabilities in [0, 1].")
    sums = dist.sum(axis=1)
    bad = np.abs(sums - 1.0) > SUM_TOL
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValidationError(
            f"{name} must sum to 1 over actions for every event and position; "
            f"{rows.size} events do not (rows {', '.join(str(int(x)) for x in rows[:5])})."
        )
    return dist
