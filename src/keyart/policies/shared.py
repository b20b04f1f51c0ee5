"""The shared contextual model's policies: one Gaussian posterior over x . theta + beta_artwork.

``SharedModelPolicy`` holds the model (member taste x artwork attributes, plus each artwork's own bias, see
``keyart.learning``), its lifecycle (retire, warm start) and its state; a policy of this family says only
how the model turns into choice probabilities, through one hook, ``_distribution_from_model``. How the
model learns is the other half: ``keyart.policies.linear.RidgePolicy`` (conjugate, from additive
``LinearStats``) or a subclass's own ``_learn`` (``LogisticModel``: a Newton fit per update).

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

from keyart.basis import candidate_vectors
from keyart.batch import CandidateBatch
from keyart.errors import DimensionError, SnapshotError, UnknownIdError, ValidationError
from keyart.exploration import greedy_distribution
from keyart.feedback import LoggedFeedback
from keyart.kron import kron_plan
from keyart.layout import FeatureConfig
from keyart.learning import ArtworkIndex, BlockGaussian, Posterior, bias_at
from keyart.params import Interval, OneOf
from keyart.policies.base import Policy, RowCache, warm_start_rows
from keyart.priors import (
    INITIAL_NOISE,
    UNSHRUNK_FAMILIES,
    DataStats,
    Priors,
    column_groups,
    fit_priors,
)

REFIT_FIRST = 256  # events before the first empirical-Bayes fit of the priors
REFIT_MAX_GAP = 65_536  # later fits when the events seen double, at least every this many events
#: From this width on, factored batches' (co)variances go through the layout's Kronecker form
#: (``keyart.kron``): 5-15x faster than the dense rows and the page basis with every cross declared
#: (d = 1,584), 2-3x slower for the default layout (d = 171): ``benchmarks/bench_moments.py``
KRON_MIN_DIM = 384
#: Factored batches of at most this many candidates (n x K: a title or two of 12) take their moments from
#: the dense rows in float64: the page basis and the artworks' projections it needs cost more than the
#: d x d products of so few rows (``benchmarks/bench_one_title.py``)
SMALL_BATCH = 24


#: The declared layout with no extra crosses, no title affinity, no cast-count levels and tags divided by
#: their number (every field hashed), the default of every model saved before
#: models recorded their ``FeatureConfig``: such a model of this width was made with it, whatever the
#: default becomes
LEGACY_FEATURES = FeatureConfig(crosses=(), title_affinity=False, cast_count_levels=0, tags_normalized=True)


def model_features(policy: Policy, default: FeatureConfig | None = None) -> FeatureConfig:
    """The ``FeatureConfig`` to featurize ``policy``'s inputs with: the one its model recorded; for a model
    that recorded none, ``default`` (``FeatureConfig()`` when None) or, for a model saved before models
    recorded it, the legacy default of the model's width. Policies without a model take ``default``."""
    recorded = getattr(policy, "features_", None)
    if recorded is not None:
        return recorded
    config = default or FeatureConfig()
    dim = getattr(policy, "dim_", None)
    if dim is None or dim == config.dim:
        return config
    if dim == LEGACY_FEATURES.dim:
        return LEGACY_FEATURES
    raise DimensionError(
        f"The model has {dim} columns and recorded no FeatureConfig; the default has {config.dim}: pass the "
        "config it was trained with."
    )


def refit_points(events: int) -> int:
    """The event count of the first refit after ``events``: 256, 512, ..., 65,536, then every 65,536.
    A function of the count alone, so where the refits fall does not depend on how events are batched."""
    point = REFIT_FIRST
    while point <= events and point < REFIT_MAX_GAP:
        point *= 2
    if point <= events:
        point = (events // REFIT_MAX_GAP + 1) * REFIT_MAX_GAP
    return point


class SharedModelPolicy(Policy):
    """A policy over the shared model x . theta + beta_artwork, with a Gaussian posterior (ridge prior).

    ``ridge`` is the prior precision of theta and ``bias_ridge`` that of each artwork's bias, relative to
    the noise (ridge = noise variance / prior variance); with ``half_life`` (in events) older evidence
    decays towards the prior. What the model uses is its learned state: ``ridge_cols_`` (one ridge per
    column), ``bias_ridge_`` and ``noise_`` (the noise variance that scales the posterior's (co)variances).

    ``priors="empirical"`` (the default) learns them from the data: one ridge per feature family and the
    artwork biases' ridge by empirical Bayes (``keyart.priors``; the noise too where the model has one,
    ``_learns_noise``), re-fitted when the events learned reach 256, 512, ... (``refit_points``). An update
    that crosses such a point is applied in parts around the fits, so a batch still equals its events one by
    one. ``ridge`` and ``bias_ridge`` are then only the starting values. ``priors="fixed"`` keeps them,
    with noise 1.

    ``refit_restart`` (default True): every refit starts from the constructor's ``ridge`` and ``bias_ridge``,
    so the priors are a function of the data learned alone (as ``keyart train``'s). False starts each refit
    from the current priors: the evidence is flat where a family is shrunk hard (its gradient in the log
    ridge vanishes there), so such a refit keeps a family off that an early fit switched off, however much
    later data shows it: in a closed loop, whether the contextual signal was ever learned then hung on the
    luck of the first fits (docs/simulation.md).

    ``covariance_refresh`` (default 0.1): the (co)variances that exploration reads are recomputed when the
    events learned have grown by this fraction since the last full solve (the mean stays exact after every
    update); 0 recomputes them after every update. With every cross declared (d ~ 1,600) the full solve
    dominates an update; the lag cost nothing measurable on the zoo's development worlds.

    Subclasses implement the hook ``_distribution_from_model`` (how the posterior becomes choice
    probabilities) and ``_learn`` (inherit it from ``RidgePolicy`` for the conjugate Gaussian model);
    ``scores``, ``probabilities``, ``choose``, snapshots and the artwork lifecycle come from here.
    """

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **Policy._parameter_constraints,
        "ridge": Interval(0, None, closed="neither"),
        "bias_ridge": Interval(0, None, closed="neither"),
        "priors": OneOf(("empirical", "fixed")),
        "covariance_refresh": Interval(0, None),
        "refit_restart": OneOf((True, False)),
    }
    _learns_noise: ClassVar[bool] = False  # the Gaussian model's noise variance; a logistic model has none
    #: the refits' tolerance in log evidence (``fit_priors``), for the ridge and the logistic model: with
    #: fits that stop on the gradient, 1e-4 for the logistic one gained nothing and took 37% longer
    #: (development worlds 3 and 6 of the zoo: docs/simulation.md, "Where a refit stops")
    _prior_tol: ClassVar[float] = 0.01

    def __init__(
        self,
        *,
        seed: int,
        ridge: float = 1.0,
        bias_ridge: float = 1.0,
        priors: str = "empirical",
        covariance_refresh: float = 0.1,
        refit_restart: bool = True,
        **kwargs: Any,
    ) -> None:
        self.ridge = ridge
        self.bias_ridge = bias_ridge
        self.priors = priors
        self.covariance_refresh = covariance_refresh
        self.refit_restart = refit_restart
        super().__init__(seed=seed, **kwargs)

    def _reset(self) -> None:
        super()._reset()
        self.dim_: int | None = None
        #: the featurization the model's columns come from (``FeatureConfig``), recorded from the first
        #: factored batch and kept in snapshots; None for a model fed raw rows
        self.features_: FeatureConfig | None = None
        self._features_seen: FeatureConfig | None = None  # the last config found to match, by identity
        self.index_ = ArtworkIndex()
        self.post_: BlockGaussian | None = None
        self._solved: Posterior | None = None
        self._means: tuple[np.ndarray, np.ndarray] | None = None  # exact (theta, beta) of post_
        self._lagging: tuple[Posterior, int] | None = None  # the last full solve and events_ then
        self._row_cache = RowCache()
        self.ridge_cols_: np.ndarray = np.zeros(0)  # prior precision of each column, relative to the noise
        self.bias_ridge_ = float(self.bias_ridge)
        self.noise_ = 1.0  # noise variance: the posterior's covariance is noise_ * precision^-1
        self.groups_: tuple[str, ...] = ()  # column groups (feature families), from the feature names
        self.column_group_ = np.zeros(0, dtype=np.int64)
        self.eta0_ = np.zeros(0)  # the part of eta_a that is a prior mean (warm starts), decayed with it
        self.rr_ = 0.0  # sum w r^2 and sum w of the events learned, decayed with the model
        self.n_ = 0.0
        self.events_ = 0  # events learned (not decayed): where the refits fall
        if self.priors == "empirical" and self._learns_noise:
            self.noise_ = INITIAL_NOISE

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
        self._ensure_dim(batch)
        theta, beta = self._mean_parts()
        return batch.dot(theta) + bias_at(beta, self._rows(batch))

    def _mean_and_sd(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) posterior mean and standard deviation of the candidates' scores."""
        mean, var = self._moments(batch)
        return mean, np.sqrt(np.maximum(var * self.noise_, 0.0))

    def _mean_and_cov(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) posterior mean and (n, K, K) covariance of each row's candidates' scores (a new array,
        the caller's to scale in place)."""
        mean, cov = self._moments(batch, covariance=True)
        if self.noise_ != 1.0:
            cov *= self.noise_
        return mean, cov

    def _moments(self, batch: CandidateBatch, covariance: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n, K) and variance (n, K) or covariance (n, K, K) of the candidates' scores. A factored
        batch of a wide layout (``KRON_MIN_DIM`` columns or more) goes through the layout's Kronecker
        form, a one-member page of a narrower one through its basis, other batches through their rows."""
        self._ensure_dim(batch)
        post, rows, prior_var = self._covariance_posterior(), self._rows(batch), 1.0 / self.bias_ridge_
        if post is not self._solved:  # lagging: artworks new since its solve have the prior's variance
            rows = np.where(rows < post.inv_d.size, rows, -1)
        f = batch.factors
        if f is not None and batch.d >= KRON_MIN_DIM:
            plan = kron_plan(f.layout)
            Z = candidate_vectors(f.layout, f.ctx, f.art_block, f.idx, f.pair)
            return self._mean(batch), post.kron_moments(plan, f.ctx, Z, rows, prior_var, covariance)
        if f is not None and batch.n * batch.k <= SMALL_BATCH:  # a title or two: the rows, in float64
            moments = post.moments(batch.X, rows, prior_var, covariance, exact=True)
            return moments if post is self._solved else (self._mean(batch), moments[1])
        basis = batch.basis()
        if basis is None:
            moments = post.moments(batch.X, rows, prior_var, covariance)
        else:
            moments = post.page_moments(basis, rows, prior_var, covariance)
        return moments if post is self._solved else (self._mean(batch), moments[1])

    def _rows(self, batch: CandidateBatch) -> np.ndarray:
        """Model rows of the batch's artworks (-1: unknown), through the policy's ``RowCache``."""
        return self._row_cache.rows(self.index_, batch)

    def _impressions(self, batch: CandidateBatch) -> np.ndarray:
        rows, counts = self._rows(batch), self._artwork_impressions()
        return np.where(rows >= 0, counts[np.maximum(rows, 0)] if counts.size else 0.0, 0.0)

    def _artwork_impressions(self) -> np.ndarray:
        """Impressions learned of each artwork row (weighted, decayed with the model): for the ridge model
        its bias's precision less the prior's (each event of an artwork adds its weight there)."""
        return np.zeros(0) if self.post_ is None else self.post_.P_d - self.bias_ridge_

    # ---- the posterior -------------------------------------------------------------------------
    def _ensure_dim(self, batch: CandidateBatch) -> None:
        if self.dim_ is None:
            self.post_ = self._prior(batch.d, batch.feature_names)
            self.dim_ = batch.d
            self.features_ = self.features_ or self._batch_features(batch)
        elif batch.d != self.dim_:
            raise DimensionError(f"Features have {batch.d} columns but the model was built for {self.dim_}.")

    def _check_batch(self, batch: CandidateBatch) -> None:
        super()._check_batch(batch)
        self._batch_features(batch)
        if self.dim_ is not None and batch.d != self.dim_:
            raise DimensionError(f"Features have {batch.d} columns but the model was built for {self.dim_}.")

    def _batch_features(self, batch: CandidateBatch) -> FeatureConfig | None:
        """The featurization of a factored batch (None for raw rows), after checking that its columns mean
        what the model's do: a batch of another config of the same width would be read silently wrong. A
        config that extends the model's (vocabularies grown by new tokens: ``FeatureConfig.column_map``)
        grows the model to it first (``grow_features``)."""
        config = None if batch.factors is None else batch.factors.layout.config
        if config is None or self.features_ is None or config is self._features_seen:
            return config
        if not self.features_.same_columns(config):
            columns = config.column_map(self.features_)
            if columns is None or self.dim_ != self.features_.dim:
                raise DimensionError(
                    "The batch was featurized with another FeatureConfig than the model was trained on "
                    f"(d = {config.dim} vs {self.features_.dim}): featurize with the model's "
                    "(keyart.policies.model_features(policy))."
                )
            self._grow(config, columns)
        self._features_seen = config
        return config

    def grow_features(self, config: FeatureConfig) -> None:
        """Grow the model to ``config``, a featurization that extends the model's (its exact vocabularies
        grew: ``FeatureConfig.grown``): each column moves to its place in the wider rows, and the new
        columns start at their family's prior, as if the model had had them all along (nothing it learned
        touched them: their tokens were unknown). Predictions do not change. Batches of such a config grow
        the model on their own; a ``DimensionError`` when ``config`` does not extend the model's."""
        if self.features_ is None and self.dim_ in (None, config.dim):
            self.features_ = config
            return
        if self.features_ is not None and self.features_.same_columns(config):
            return
        columns = None if self.features_ is None else config.column_map(self.features_)
        if columns is None or self.dim_ != self.features_.dim:
            raise DimensionError("The FeatureConfig does not extend the model's; it cannot grow into it.")
        self._grow(config, columns)

    def _grow(self, config: FeatureConfig, columns: np.ndarray) -> None:
        d = config.dim
        groups, column_group = column_groups(config.layout.feature_names(), d)
        ridge_of = dict(zip(self.groups_, self._group_ridges(), strict=True))
        ridge = np.array([ridge_of.get(g, float(self.ridge)) for g in groups])[column_group]
        ridge[columns] = self.ridge_cols_
        p = self.post_
        if p is not None:
            P_ss, P_sa, eta_s = np.diag(ridge), np.zeros((p.P_sa.shape[0], d)), np.zeros(d)
            P_ss[np.ix_(columns, columns)] = p.P_ss
            P_sa[:, columns], eta_s[columns] = p.P_sa, p.eta_s
            self.post_ = BlockGaussian(P_ss, P_sa, p.P_d, eta_s, p.eta_a)
        self.groups_, self.column_group_, self.ridge_cols_ = groups, column_group, ridge
        self.dim_, self.features_, self._features_seen = d, config, None
        self._changed(covariance=True)

    @property
    def posterior_(self) -> Posterior:
        """The exact posterior of the current state (solved on first use after a change)."""
        if self._solved is None:
            if self.post_ is None:
                raise ValidationError("The model has no width yet: choose or update once first.")
            self._solved = self.post_.posterior()
            self._means = (self._solved.theta, self._solved.beta)
            self._lagging = (self._solved, self.events_)
        return self._solved

    def _mean_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact posterior mean (theta, beta): by conjugate gradients from the lagging posterior
        while it serves (``covariance_refresh``), else from the full solve."""
        if self._means is None:
            lag = self._lagging_posterior()
            solved = None if lag is None else self.post_.mean_by_cg(lag.sigma, lag.theta)  # type: ignore[union-attr]
            if solved is None:
                post = self.posterior_
                return post.theta, post.beta
            self._means = solved
        return self._means

    def _covariance_posterior(self) -> Posterior:
        """The posterior whose (co)variances exploration reads: the lagging one while it serves, else
        the exact one (when it is solved already, or the lag has run out)."""
        lag = None if self._solved is not None else self._lagging_posterior()
        return self.posterior_ if lag is None else lag

    def _lagging_posterior(self) -> Posterior | None:
        """The last full solve, while ``covariance_refresh`` lets it stand for the current state."""
        if self._lagging is None or self.covariance_refresh <= 0 or self.half_life is not None:
            return None
        post, events = self._lagging
        return None if self.events_ >= events * (1.0 + self.covariance_refresh) else post

    def _changed(self, covariance: bool = False) -> None:
        """Forget the solved posterior after a change of state (and the lagging one with ``covariance``:
        a change that is not more data, e.g. new priors)."""
        self._solved, self._means = None, None
        if covariance:
            self._lagging = None

    def _grown(self, post: BlockGaussian, m: int) -> BlockGaussian:
        """The same posterior with prior rows for artworks new to the index."""
        extra = m - post.P_d.size
        if extra == 0:
            return post
        d = post.P_ss.shape[0]
        return BlockGaussian(
            post.P_ss,
            np.vstack([post.P_sa, np.zeros((extra, d))]),
            np.concatenate([post.P_d, np.full(extra, self.bias_ridge_)]),
            post.eta_s,
            np.concatenate([post.eta_a, np.zeros(extra)]),
        )

    def _decayed(self, post: BlockGaussian, decay: float) -> BlockGaussian:
        """Evidence scaled by ``decay`` towards the prior, keeping the mean's direction of evidence."""
        if decay == 1.0:
            return post
        eye = np.diag(self.ridge_cols_)
        return BlockGaussian(
            eye + decay * (post.P_ss - eye),
            decay * post.P_sa,
            self.bias_ridge_ + decay * (post.P_d - self.bias_ridge_),
            decay * post.eta_s,
            decay * post.eta_a,
        )

    def _base(self, d: int, feature_names: Sequence[str] = ()) -> BlockGaussian:
        """The current posterior, or the prior of width ``d`` before the first update."""
        if self.dim_ is not None and d != self.dim_:
            raise DimensionError(f"Features have {d} columns but the model was built for {self.dim_}.")
        return self.post_ if self.post_ is not None else self._prior(d, feature_names)

    def _prior(self, d: int, feature_names: Sequence[str]) -> BlockGaussian:
        """The prior of width ``d``; the feature names give the column groups whose ridges are learned."""
        self.groups_, self.column_group_ = column_groups(feature_names, d)
        self.ridge_cols_ = np.full(d, float(self.ridge))
        return BlockGaussian.prior(d, 0, self.ridge_cols_, self.bias_ridge_)

    def _commit(
        self, post: BlockGaussian, index: ArtworkIndex, decay: float = 1.0, rows: np.ndarray | None = None
    ) -> None:
        """Adopt a new posterior unless it is not finite (features so large that sums overflowed); with
        ``rows``, only those artwork rows changed (the others were finite before)."""
        arts = (
            (post.P_sa, post.P_d, post.eta_a)
            if rows is None
            else (post.P_sa[rows], post.P_d[rows], post.eta_a[rows])
        )
        if not all(np.isfinite(a).all() for a in (post.P_ss, post.eta_s, *arts)):
            raise ValidationError(
                "feedback makes the model's statistics non-finite (features too large); "
                "the model is unchanged."
            )
        self.dim_, self.post_, self.index_ = post.P_ss.shape[0], post, index
        self._changed()
        self.eta0_ = np.concatenate([decay * self.eta0_, np.zeros(len(index) - self.eta0_.size)])

    # ---- learning, with the priors re-fitted at the refit points -------------------------------
    def update_partitions(self, parts: Sequence[LoggedFeedback]) -> Policy:
        parts = self._valid_parts(parts)
        if not parts:
            return self
        configs = [self._batch_features(fb.batch) for fb in parts]  # may grow the model (no prediction moves)
        if self.dim_ is not None and parts[0].batch.d != self.dim_:  # before any part is learned
            d = parts[0].batch.d
            raise DimensionError(f"Features have {d} columns but the model was built for {self.dim_}.")
        config = self.features_ or next((c for c in configs if c is not None), None)
        if config is not None and any(c is not None and not config.same_columns(c) for c in configs):
            raise DimensionError("The partitions were featurized with different FeatureConfigs.")
        if self.priors == "fixed":
            super().update_partitions(parts)
            self.events_ += sum(fb.n for fb in parts)
            self.features_ = config
            return self
        version, rest = self.version_, parts
        spans = sum(fb.n for fb in rest) >= refit_points(self.events_) - self.events_
        saved = self._get_state() if spans and self.post_ is not None else None
        try:
            while rest:
                head, rest = _split_events(rest, refit_points(self.events_) - self.events_)
                self._learn_parts(head)
                self.events_ += sum(fb.n for fb in head)
                if rest or self.events_ == refit_points(self.events_ - 1):
                    self.refit_priors()
        except Exception:  # a later part failed (e.g. overflowing sums): back to the state before the call
            if spans and saved is None:  # (without a refit point there was one part: it changed nothing)
                self._reset()
            elif spans:
                self._set_state(saved)  # type: ignore[arg-type]
            self.version_ = version
            raise
        self.version_ = version + 1
        self.features_ = config
        return self

    # ---- learned priors ------------------------------------------------------------------------
    def data_stats(self) -> DataStats:
        """The data part of the model's statistics (the precision less the prior), for ``fit_priors``. For
        a logistic model it is the Laplace approximation's: the Hessian at the mode and precision x mode."""
        p = self.post_
        if p is None:
            raise ValidationError("The model has no data yet.")
        return DataStats(
            p.P_ss - np.diag(self.ridge_cols_),
            p.P_sa,
            p.P_d - self.bias_ridge_,
            p.eta_s,
            p.eta_a - self.eta0_,
            self.rr_,
            self.n_,
        )

    def refit_priors(self, restart: bool = False, tol: float | None = None) -> Priors | None:
        """Fit the priors (and the noise, ``_learns_noise``) to the data learned so far by empirical Bayes
        and adopt them; the data part of the model is unchanged. None (nothing changes) before any data,
        and when the fit is degenerate (``Priors.degenerate``: the data, too few for the parameters, let
        the profiled noise fall to 0; the priors stay until a later refit has the data to set them).
        It starts from the constructor's ``ridge`` and ``bias_ridge`` (``refit_restart``, or ``restart``
        for this fit alone), so the result depends on the data alone (two models holding the same data,
        however they got it, end with the same priors: ``keyart train`` and its merges), else from the
        current priors. ``tol``: the fit's tolerance in nats (default the online refits', 0.01)."""
        if self.post_ is None or self.n_ <= 0:
            return None
        fit = fit_priors(**self.refit_problem(restart, tol))
        if self._learns_noise and fit.degenerate:
            return None
        p, ridge_cols = self.post_, fit.group_ridge[self.column_group_]
        ratio = fit.bias_ridge / self.bias_ridge_
        self.post_ = BlockGaussian(
            p.P_ss + np.diag(ridge_cols - self.ridge_cols_),
            p.P_sa,
            p.P_d + (fit.bias_ridge - self.bias_ridge_),
            p.eta_s,
            p.eta_a + (ratio - 1.0) * self.eta0_,
        )
        self.eta0_ = ratio * self.eta0_
        self.ridge_cols_, self.bias_ridge_, self.noise_ = ridge_cols, fit.bias_ridge, fit.noise
        self._changed(covariance=True)
        return fit

    def refit_problem(self, restart: bool = False, tol: float | None = None) -> dict[str, Any]:
        """The arguments of ``fit_priors`` for a refit now (data, groups, starting ridges, which groups it
        learns, the noise if the model does not learn it, the tolerance): what ``refit_priors`` fits, for
        inspecting or timing a fit without adopting it."""
        learn = np.array([g not in UNSHRUNK_FAMILIES for g in self.groups_], dtype=bool)
        current = self._group_ridges()
        if restart or self.refit_restart:
            start = (np.where(learn, float(self.ridge), current), float(self.bias_ridge))
        else:
            start = (current, self.bias_ridge_)
        return {
            "data": self.data_stats(),
            "column_group": self.column_group_,
            "group_ridge": start[0],
            "bias_ridge": start[1],
            "tol": self._prior_tol if tol is None else tol,
            "learn": learn,
            "noise": None if self._learns_noise else self.noise_,
        }

    def _group_ridges(self) -> np.ndarray:
        """One ridge per column group (a group's columns share it; the mean keeps that exact)."""
        g, k = self.column_group_, len(self.groups_)
        return np.bincount(g, weights=self.ridge_cols_, minlength=k) / np.maximum(
            np.bincount(g, minlength=k), 1
        )

    def learned_priors(self) -> dict[str, Any] | None:
        """The noise variance, the artwork biases' ridge and each feature family's ridge (prior precision
        relative to the noise) with its prior standard deviation sqrt(noise / ridge); None before data."""
        if self.dim_ is None or self.ridge_cols_.size == 0:
            return None
        counts = np.bincount(self.column_group_, minlength=len(self.groups_))
        ridge = self._group_ridges()
        return {
            "mode": self.priors,
            "noise": float(self.noise_),
            "bias_ridge": float(self.bias_ridge_),
            "bias_prior_sd": float(np.sqrt(self.noise_ / self.bias_ridge_)),
            "families": {
                name: {"columns": int(c), "ridge": float(r), "prior_sd": float(np.sqrt(self.noise_ / r))}
                for name, c, r in zip(self.groups_, counts, ridge, strict=True)
            },
        }

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
        self.eta0_ = np.delete(self.eta0_, row)
        self.post_ = BlockGaussian(
            P_ss, np.delete(p.P_sa, row, axis=0), np.delete(p.P_d, row), eta_s, np.delete(p.eta_a, row)
        )
        self._changed(covariance=True)

    def warm_start(self, artwork_id: str, like: Sequence[str]) -> None:
        """Start a new artwork's bias at the mean bias of similar artworks (its prior mean; the prior's
        strength stays ``bias_ridge_``), on top of what its attributes already carry."""
        rows = warm_start_rows(self.index_, artwork_id, like)
        beta = float(self.posterior_.beta[rows].mean())
        assert self.post_ is not None
        self.index_.extend([artwork_id])
        grown = self._grown(self.post_, len(self.index_))
        eta_a = grown.eta_a.copy()
        eta_a[-1] = self.bias_ridge_ * beta
        self.eta0_ = np.concatenate([self.eta0_, np.zeros(len(self.index_) - self.eta0_.size)])
        self.eta0_[-1] = eta_a[-1]
        self.post_ = BlockGaussian(grown.P_ss, grown.P_sa, grown.P_d, grown.eta_s, eta_a)
        self._changed()

    def _get_state(self) -> dict[str, Any]:
        features = None if self.features_ is None else self.features_.to_dict()
        if self.post_ is None:
            return {"dim": None, "artwork_ids": [], "features": features}
        p = self.post_
        return {
            "features": features,
            "dim": self.dim_,
            "artwork_ids": list(self.index_.ids),
            "P_ss": p.P_ss.copy(),
            "P_sa": p.P_sa.copy(),
            "P_d": p.P_d.copy(),
            "eta_s": p.eta_s.copy(),
            "eta_a": p.eta_a.copy(),
            "ridge_cols": self.ridge_cols_.copy(),
            "bias_ridge": self.bias_ridge_,
            "noise": self.noise_,
            "groups": list(self.groups_),
            "column_group": self.column_group_.copy(),
            "eta0": self.eta0_.copy(),
            "rr": self.rr_,
            "n": self.n_,
            "events": self.events_,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._reset()
        self.rr_, self.n_ = float(state.get("rr", 0.0)), float(state.get("n", 0.0))
        self.events_ = int(state.get("events", 0))
        features = state.get("features")  # None: fed raw rows, or saved before models recorded it
        try:
            self.features_ = None if features is None else FeatureConfig.from_dict(features)
        except ValidationError as exc:
            raise SnapshotError(f"Snapshot features: {exc}") from exc
        if state.get("dim") is None:
            return
        self.dim_ = int(state["dim"])
        if self.features_ is not None and self.features_.dim != self.dim_:
            raise SnapshotError(
                f"Snapshot features have {self.features_.dim} columns, its model {self.dim_}."
            )
        self.index_ = ArtworkIndex([str(a) for a in state["artwork_ids"]])
        arr = {
            k: np.asarray(state[k], dtype=np.float64).copy()
            for k in ("P_ss", "P_sa", "P_d", "eta_s", "eta_a")
        }
        m, d = len(self.index_), self.dim_
        if arr["P_ss"].shape != (d, d) or arr["P_sa"].shape != (m, d) or arr["P_d"].shape != (m,):
            raise SnapshotError("Snapshot arrays do not match its dimensions.")
        self.post_ = BlockGaussian(**arr)
        # learned priors (snapshots from before they were learned hold the constructor's values)
        self.ridge_cols_ = np.asarray(
            state.get("ridge_cols", np.full(d, float(self.ridge))), dtype=np.float64
        )
        self.bias_ridge_ = float(state.get("bias_ridge", self.bias_ridge))
        self.noise_ = float(state.get("noise", 1.0))
        self.groups_ = tuple(str(g) for g in state.get("groups", ("features",)))
        self.column_group_ = np.asarray(state.get("column_group", np.zeros(d)), dtype=np.int64)
        self.eta0_ = np.asarray(state.get("eta0", np.zeros(m)), dtype=np.float64)
        if (
            self.ridge_cols_.shape != (d,)
            or self.column_group_.shape != (d,)
            or self.eta0_.shape != (m,)
            or self.column_group_.max(initial=0) >= max(len(self.groups_), 1)
            or not (self.ridge_cols_ > 0).all()
            or not self.bias_ridge_ > 0
            or not self.noise_ > 0
        ):
            raise SnapshotError("Snapshot priors do not match its dimensions or are not positive.")


def _split_events(
    parts: Sequence[LoggedFeedback], count: int
) -> tuple[list[LoggedFeedback], list[LoggedFeedback]]:
    """The first ``count`` events of the partitions, in order, and the rest."""
    head: list[LoggedFeedback] = []
    rest = list(parts)
    while rest and count > 0:
        fb = rest.pop(0)
        if fb.n <= count:
            head.append(fb)
            count -= fb.n
        else:
            head.append(fb.take(np.arange(count)))
            rest.insert(0, fb.take(np.arange(count, fb.n)))
            count = 0
    return head, rest


class UpperConfidenceBound(SharedModelPolicy):
    """All but the floor on the candidate with the highest posterior mean score plus ``alpha`` posterior
    standard deviations (``linucb`` on the ridge model, ``logistic_ucb`` on the logit): mixed in before
    the model's class."""

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        **SharedModelPolicy._parameter_constraints,
        "alpha": Interval(0, None),
    }

    def __init__(self, *, seed: int, alpha: float = 1.0, **kwargs: Any) -> None:
        self.alpha = alpha
        super().__init__(seed=seed, **kwargs)

    def _distribution_from_model(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        mean, sd = self._mean_and_sd(batch)
        return greedy_distribution(mean + self.alpha * sd, batch.mask), mean
