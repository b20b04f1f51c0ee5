"""The shared contextual model's policies: one Gaussian posterior over x . theta + beta_artwork.

``SharedModelPolicy`` holds the model (member taste x artwork attributes, plus each artwork's own bias, see
``keyart.learning``), its lifecycle (retire, warm start) and its state; a policy of this family says only
how the model turns into choice probabilities, through one hook, ``_distribution_from_model``. How the
model learns is the other half: ``keyart.policies.linear.RidgePolicy`` (conjugate, from additive
``LinearStats``) or a subclass's own ``_learn`` (``LogisticThompson``: a Newton fit per update).

Writing a new shared-model policy::

    class Greedy(RidgePolicy):
        name = "ridge_greedy"

        def _distribution_from_model(self, batch):
            mean = self._mean(batch)
            return greedy_distribution(mean, batch.mask), mean
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from keyart.batch import CandidateBatch
from keyart.errors import DimensionError, SnapshotError, UnknownIdError, ValidationError
from keyart.learning import ArtworkIndex, BlockGaussian, Posterior
from keyart.params import Interval
from keyart.policies.base import Policy, RowCache, warm_start_rows


class SharedModelPolicy(Policy):
    """A policy over the shared model x . theta + beta_artwork, with a Gaussian posterior (ridge prior).

    ``ridge`` is the prior precision of theta and ``bias_ridge`` that of each artwork's bias; with
    ``half_life`` (in events) older evidence decays towards the prior.

    Subclasses implement the hook ``_distribution_from_model`` (how the posterior becomes choice
    probabilities) and ``_learn`` (inherit it from ``RidgePolicy`` for the conjugate Gaussian model);
    ``scores``, ``probabilities``, ``choose``, snapshots and the artwork lifecycle come from here.
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **Policy._parameter_constraints,
        "ridge": Interval(0, None, closed="neither"),
        "bias_ridge": Interval(0, None, closed="neither"),
    }

    def __init__(self, *, seed: int, ridge: float = 1.0, bias_ridge: float = 1.0, **kwargs: Any) -> None:
        self.ridge = ridge
        self.bias_ridge = bias_ridge
        super().__init__(seed=seed, **kwargs)

    def _reset(self) -> None:
        super()._reset()
        self.dim_: int | None = None
        self.index_ = ArtworkIndex()
        self.post_: BlockGaussian | None = None
        self._solved: Posterior | None = None
        self._row_cache = RowCache()

    # ---- the hook ------------------------------------------------------------------------------
    @abstractmethod
    def _distribution_from_model(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """The one hook of a shared-model policy: ``(distribution, scores)``, both (n, K), for a batch
        already checked (a ``CandidateBatch`` of the model's width).

        ``distribution`` is the choice probabilities before the exploration floor: each row sums to 1
        over ``batch.mask`` (``keyart.exploration`` has greedy, epsilon-greedy and softmax helpers);
        ``scores`` is the policy's estimate of each candidate's value (its argmax is the best guess that
        ``explored`` is measured against). Build both from the posterior with ``_mean(batch)`` (posterior
        mean, cheap: never builds the batch's rows), ``_mean_and_sd(batch)`` (and the posterior standard
        deviation of each score) or ``_mean_and_cov(batch)`` (and the covariance of a row's scores). The
        floor, the sticky draw, ``probabilities`` and ``choose`` are the base class's.
        """

    def _evaluate(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        return self._distribution_from_model(batch)

    def _distribution(self, batch: CandidateBatch) -> np.ndarray:
        return self._distribution_from_model(batch)[0]

    def scores(self, batch: CandidateBatch) -> np.ndarray:
        """Posterior mean score of every candidate."""
        self._check_batch(batch)
        return self._mean(batch)

    # ---- the model's moments, for the hook -----------------------------------------------------
    def _mean(self, batch: CandidateBatch) -> np.ndarray:
        """(n, K) posterior mean of the candidates' scores, from the batch's factors when it has them."""
        self._ensure_dim(batch.d)
        post = self.posterior_
        return batch.dot(post.theta) + post.bias(self._rows(batch))

    def _mean_and_sd(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) posterior mean and standard deviation of the candidates' scores."""
        mean, var = self._moments(batch)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def _mean_and_cov(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) posterior mean and (n, K, K) covariance of each row's candidates' scores (a new array,
        the caller's to scale in place)."""
        return self._moments(batch, covariance=True)

    def _moments(self, batch: CandidateBatch, covariance: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n, K) and variance (n, K) or covariance (n, K, K) of the candidates' scores; a page of
        one member goes through its low-dimensional basis, other batches through their rows."""
        self._ensure_dim(batch.d)
        basis = batch.basis()
        if basis is None:
            return self.posterior_.moments(batch.X, self._rows(batch), 1.0 / self.bias_ridge, covariance)
        return self.posterior_.page_moments(basis, self._rows(batch), 1.0 / self.bias_ridge, covariance)

    def _rows(self, batch: CandidateBatch) -> np.ndarray:
        """Model rows of the batch's artworks (-1: unknown), through the policy's ``RowCache``."""
        return self._row_cache.rows(self.index_, batch)

    # ---- the posterior -------------------------------------------------------------------------
    def _ensure_dim(self, d: int) -> None:
        if self.dim_ is None:
            self.dim_ = d
            self.post_ = BlockGaussian.prior(d, 0, self.ridge, self.bias_ridge)
        elif d != self.dim_:
            raise DimensionError(f"Features have {d} columns but the model was built for {self.dim_}.")

    def _check_batch(self, batch: CandidateBatch) -> None:
        super()._check_batch(batch)
        if self.dim_ is not None and batch.d != self.dim_:
            raise DimensionError(f"Features have {batch.d} columns but the model was built for {self.dim_}.")

    @property
    def posterior_(self) -> Posterior:
        if self._solved is None:
            if self.post_ is None:
                raise ValidationError("The model has no width yet: choose or update once first.")
            self._solved = self.post_.posterior()
        return self._solved

    def _grown(self, post: BlockGaussian, m: int) -> BlockGaussian:
        """The same posterior with prior rows for artworks new to the index."""
        extra = m - post.P_d.size
        if extra == 0:
            return post
        d = post.P_ss.shape[0]
        return BlockGaussian(
            post.P_ss,
            np.vstack([post.P_sa, np.zeros((extra, d))]),
            np.concatenate([post.P_d, np.full(extra, self.bias_ridge)]),
            post.eta_s,
            np.concatenate([post.eta_a, np.zeros(extra)]),
        )

    def _decayed(self, post: BlockGaussian, decay: float) -> BlockGaussian:
        """Evidence scaled by ``decay`` towards the prior, keeping the mean's direction of evidence."""
        if decay == 1.0:
            return post
        d = post.P_ss.shape[0]
        eye = self.ridge * np.eye(d)
        return BlockGaussian(
            eye + decay * (post.P_ss - eye),
            decay * post.P_sa,
            self.bias_ridge + decay * (post.P_d - self.bias_ridge),
            decay * post.eta_s,
            decay * post.eta_a,
        )

    def _base(self, d: int) -> BlockGaussian:
        """The current posterior, or the prior of width ``d`` before the first update (nothing is set)."""
        if self.dim_ is not None and d != self.dim_:
            raise DimensionError(f"Features have {d} columns but the model was built for {self.dim_}.")
        return (
            self.post_ if self.post_ is not None else BlockGaussian.prior(d, 0, self.ridge, self.bias_ridge)
        )

    def _commit(self, post: BlockGaussian, index: ArtworkIndex) -> None:
        """Adopt a new posterior unless it is not finite (features so large that sums overflowed)."""
        if not all(np.isfinite(a).all() for a in (post.P_ss, post.P_sa, post.P_d, post.eta_s, post.eta_a)):
            raise ValidationError(
                "feedback makes the model's statistics non-finite (features too large); "
                "the model is unchanged."
            )
        self.dim_, self.post_, self.index_, self._solved = post.P_ss.shape[0], post, index, None

    # ---- the artwork lifecycle and state --------------------------------------------------------
    def retire_artwork(self, artwork_id: str) -> None:
        """Drop an artwork's bias by marginalizing it out: what it taught the shared model stays."""
        if artwork_id not in self.index_.ids or self.post_ is None:
            raise UnknownIdError(f"Unknown artwork_id {artwork_id!r}.")
        p = self.post_
        row = self.index_.ids.index(artwork_id)
        u = p.P_sa[row] / p.P_d[row]
        P_ss = p.P_ss - np.outer(p.P_sa[row], u)
        eta_s = p.eta_s - u * p.eta_a[row]
        self.index_.remove(artwork_id)
        self.post_ = BlockGaussian(
            P_ss, np.delete(p.P_sa, row, axis=0), np.delete(p.P_d, row), eta_s, np.delete(p.eta_a, row)
        )
        self._solved = None

    def warm_start(self, artwork_id: str, like: Sequence[str]) -> None:
        """Start a new artwork's bias at the mean bias of similar artworks (its prior mean; the prior's
        strength stays ``bias_ridge``), on top of what its attributes already carry."""
        rows = warm_start_rows(self.index_, artwork_id, like)
        beta = float(self.posterior_.beta[rows].mean())
        assert self.post_ is not None
        self.index_.extend([artwork_id])
        grown = self._grown(self.post_, len(self.index_))
        eta_a = grown.eta_a.copy()
        eta_a[-1] = self.bias_ridge * beta
        self.post_ = BlockGaussian(grown.P_ss, grown.P_sa, grown.P_d, grown.eta_s, eta_a)
        self._solved = None

    def _get_state(self) -> dict[str, Any]:
        if self.post_ is None:
            return {"dim": None, "artwork_ids": []}
        p = self.post_
        return {
            "dim": self.dim_,
            "artwork_ids": list(self.index_.ids),
            "P_ss": p.P_ss.copy(),
            "P_sa": p.P_sa.copy(),
            "P_d": p.P_d.copy(),
            "eta_s": p.eta_s.copy(),
            "eta_a": p.eta_a.copy(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._reset()
        if state.get("dim") is None:
            return
        self.dim_ = int(state["dim"])
        self.index_ = ArtworkIndex([str(a) for a in state["artwork_ids"]])
        arr = {
            k: np.asarray(state[k], dtype=np.float64).copy()
            for k in ("P_ss", "P_sa", "P_d", "eta_s", "eta_a")
        }
        m, d = len(self.index_), self.dim_
        if arr["P_ss"].shape != (d, d) or arr["P_sa"].shape != (m, d) or arr["P_d"].shape != (m,):
            raise SnapshotError("Snapshot arrays do not match its dimensions.")
        self.post_ = BlockGaussian(**arr)
