"""The shared model learned by Bayesian ridge regression, and its epsilon-greedy, softmax and LinUCB policies.

``RidgePolicy`` is the conjugate Gaussian-linear model: its posterior is a sum of additive sufficient
statistics (``keyart.learning.LinearStats``), so it learns from events (``update``), from per-partition sums
(``update_partitions``) or from statistics computed elsewhere, e.g. with SQL over the event store
(``update_stats``).
Its policies: ``epsilon_greedy``, ``softmax`` and ``linucb`` (here) and ``linear_ts``
(``keyart.policies.thompson``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from keyart.batch import CandidateBatch
from keyart.errors import ValidationError
from keyart.exploration import epsilon_greedy_distribution, softmax_distribution
from keyart.feedback import LoggedFeedback
from keyart.learning import BlockGaussian, LinearStats
from keyart.params import Interval
from keyart.policies.base import Policy
from keyart.policies.shared import SharedModelPolicy, UpperConfidenceBound, refit_points


class RidgePolicy(SharedModelPolicy):
    """The shared model with its conjugate Gaussian posterior, learned from additive ``LinearStats``:
    ``update``, ``update_partitions`` and ``update_stats`` all add statistics to the (decayed) posterior.
    Subclasses implement ``_distribution_from_model`` only. With learned priors (``priors="empirical"``,
    see ``SharedModelPolicy``) the noise variance is learned too (it has a closed form given the ridges).
    """

    _learns_noise = True

    def _learn(
        self, parts: Sequence[LoggedFeedback], decay: float, weights: Sequence[np.ndarray | None]
    ) -> None:
        stats = functools.reduce(
            LinearStats.merge,
            (
                LinearStats.from_events(fb.shown_X, fb.shown_ids, fb.reward, w)
                for fb, w in zip(parts, weights, strict=True)
            ),
        )
        self._add_stats(stats, decay, parts[0].batch.feature_names)

    def update_stats(self, stats: LinearStats, events: int | None = None) -> Policy:
        """Learn from sufficient statistics computed elsewhere (``LinearStats.from_events`` per partition,
        merged, e.g. by a SQL or partitioned job): the same model as ``update`` on those events. With
        ``half_life``, the events must be weighted 0.5 ** (events after them / half_life) and ``events`` is
        their number, by which the current state decays. With learned priors, a refit point crossed inside
        the statistics is fitted after them (they cannot be split). Invalid input changes nothing."""
        if not isinstance(stats, LinearStats):
            raise ValidationError(f"stats must be LinearStats. Got {type(stats).__name__}.")
        if self.half_life is not None and (
            isinstance(events, bool) or not isinstance(events, int) or events < 0
        ):
            raise ValidationError(
                f"events must be the number of events (an int >= 0) with half_life. Got {events!r}."
            )
        arrays = (stats.xx, stats.xa, stats.aa, stats.xr, stats.ar)
        if not all(np.isfinite(a).all() for a in arrays) or not np.isfinite([stats.n, stats.rr]).all():
            raise ValidationError("stats contain NaN or inf.")
        self._add_stats(stats, 1.0 if self.half_life is None else 0.5 ** (events / self.half_life))  # type: ignore[operator]
        before = self.events_
        self.events_ += round(stats.n) if events is None else events
        if self.priors == "empirical" and self.events_ >= refit_points(before):
            self.refit_priors()
        self.version_ += 1
        return self

    def _add_stats(self, stats: LinearStats, decay: float, feature_names: Sequence[str] = ()) -> None:
        base = self._base(stats.xx.shape[0], feature_names)
        index = self.index_.copy()
        index.extend(stats.artwork_ids)
        rows = index.rows(np.array(stats.artwork_ids, dtype=object))
        post = self._decayed(self._grown(base, len(index)), decay)
        # the artwork arrays change in the rows of the statistics' artworks only: add there (on a copy
        # unless growing or decaying made one), and check those rows for overflow
        P_sa, P_d, eta_a = (
            a.copy() if a is b else a
            for a, b in ((post.P_sa, base.P_sa), (post.P_d, base.P_d), (post.eta_a, base.eta_a))
        )
        P_sa[rows] += stats.xa
        P_d[rows] += stats.aa
        eta_a[rows] += stats.ar
        self._commit(
            BlockGaussian(post.P_ss + stats.xx, P_sa, P_d, post.eta_s + stats.xr, eta_a),
            index,
            decay,
            rows,
        )
        # binary rewards when the statistics were made without sum w r^2 (then sum w r^2 = sum w r)
        rr = stats.rr if stats.rr > 0 or not stats.ar.any() else float(stats.ar.sum())
        self.rr_, self.n_ = decay * self.rr_ + rr, decay * self.n_ + stats.n


class EpsilonGreedy(RidgePolicy):
    """Greedy on the shared ridge model's mean, with probability epsilon spread uniformly over the pool."""

    name = "epsilon_greedy"
    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **RidgePolicy._parameter_constraints,
        "epsilon": Interval(0, 1),
    }

    def __init__(self, *, seed: int, epsilon: float = 0.05, **kwargs: Any) -> None:
        self.epsilon = epsilon
        super().__init__(seed=seed, **kwargs)

    def _distribution_from_model(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        mean = self._mean(batch)
        return epsilon_greedy_distribution(mean, batch.mask, self.epsilon), mean


class Softmax(RidgePolicy):
    """Boltzmann exploration over the shared ridge model's mean: p proportional to exp(mean / temperature)."""

    name = "softmax"
    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **RidgePolicy._parameter_constraints,
        "temperature": Interval(0, None, closed="neither"),
    }

    def __init__(self, *, seed: int, temperature: float = 0.02, **kwargs: Any) -> None:
        self.temperature = temperature
        super().__init__(seed=seed, **kwargs)

    def _distribution_from_model(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        mean = self._mean(batch)
        return softmax_distribution(mean, batch.mask, self.temperature), mean


class LinUCB(UpperConfidenceBound, RidgePolicy):
    """LinUCB (Li et al. 2010, hybrid form): the highest mean + alpha * posterior standard deviation (the
    noise level included: with learned priors, alpha is in units of the score's own uncertainty)."""

    name = "linucb"
    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **RidgePolicy._parameter_constraints,
        **UpperConfidenceBound._parameter_constraints,
    }
