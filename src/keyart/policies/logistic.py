"""The shared model learned by Bayesian logistic regression, and its upper-confidence-bound policy.

``LogisticModel`` is logistic regression with a Laplace posterior, updated batch by batch: each update is
a Newton fit of the batch with the previous posterior as its prior (Chapelle & Li 2011), and scores are
logits. A binary reward's effects are additive on the logit scale, so an artwork's appeal to a member and
its appeal to everyone combine as they do in the data, not as a sum of probabilities (on the zoo's
development worlds a least-squares fit of the true probabilities on the logit scale chose better
artworks than one on the probability scale, docs/simulation.md). Its policies: ``logistic_ucb`` (here) and
``logistic_ts`` (``keyart.policies.thompson``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keyart.errors import SnapshotError
from keyart.feedback import LoggedFeedback
from keyart.logistic import fit_logistic
from keyart.policies.shared import SharedModelPolicy, UpperConfidenceBound


class LogisticModel(SharedModelPolicy):
    """The shared model as Bayesian logistic regression with a Laplace posterior.

    Not conjugate, so it learns from events only (``update`` / ``update_partitions``, whose partitions
    contribute Newton sums): it has no ``update_stats``. Learned priors (the default) are fitted on the
    Laplace approximation (MacKay's evidence framework for classification); there is no noise to learn.
    Subclasses implement ``_distribution_from_model``.
    """

    def _learn(
        self, parts: Sequence[LoggedFeedback], decay: float, weights: Sequence[np.ndarray | None]
    ) -> None:
        prior = self._decayed(self._base(parts[0].batch.d, parts[0].batch.feature_names), decay)
        post, ids = fit_logistic(
            [
                (fb.shown_X, fb.shown_ids, fb.reward, np.ones(fb.n) if w is None else w)
                for fb, w in zip(parts, weights, strict=True)
            ],
            prior,
            list(self.index_.ids),
            self.bias_ridge_,
        )
        index = self.index_.copy()
        index.extend(ids)
        self._commit(post, index, decay)
        self.n_ = decay * self.n_ + sum(
            fb.n if w is None else float(w.sum()) for fb, w in zip(parts, weights, strict=True)
        )
        shown = decay * self._artwork_impressions()
        for fb, w in zip(parts, weights, strict=True):
            np.add.at(shown, index.rows(fb.shown_ids), 1.0 if w is None else w)
        self.shown_ = shown

    # its bias precision is the fit's curvature, not a count: the impressions are counted on their own
    def _reset(self) -> None:
        super()._reset()
        self.shown_ = np.zeros(0)

    def _artwork_impressions(self) -> np.ndarray:
        return np.concatenate([self.shown_, np.zeros(len(self.index_) - self.shown_.size)])

    def retire_artwork(self, artwork_id: str) -> None:
        row = self.index_.ids.index(artwork_id) if artwork_id in self.index_.ids else None
        super().retire_artwork(artwork_id)
        if row is not None and row < self.shown_.size:
            self.shown_ = np.delete(self.shown_, row)

    def _get_state(self) -> dict[str, Any]:
        state = super()._get_state()
        if state.get("dim") is not None:
            state["shown"] = self._artwork_impressions()
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        m = len(self.index_)
        # a snapshot from before impressions were counted: its artworks count as not new
        shown = np.asarray(state.get("shown", np.full(m, np.inf)), dtype=np.float64).copy()
        if shown.shape != (m,):
            raise SnapshotError("Snapshot arrays do not match its dimensions.")
        self.shown_ = shown


class LogisticUCB(UpperConfidenceBound, LogisticModel):
    """Upper confidence bound on the logit: the candidate with the highest posterior mean logit plus
    ``alpha`` posterior standard deviations (Laplace), ties and the floor as ``linucb``'s. A generalized
    linear bandit's optimism (Filippi et al. 2010, "Parametric bandits: the generalized linear case"),
    with the link's monotonicity: the highest bound on the logit is the highest on the probability."""

    name = "logistic_ucb"
