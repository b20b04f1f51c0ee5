"""The shared model read for real and hypothetical artworks: posterior means and covariances of the
predicted take fraction (the linear model's expected reward, a probability of a quality play), averaged
over a segment's members.

A hypothetical artwork (a design: theme, featured cast, style, tags, embedding) is featurized like any
artwork of its title; its own bias is unknown to the model, so it gets the prior's (mean 0, variance
1 / bias_ridge_): a prediction for a new artwork carries the uncertainty of its own appeal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keyart.catalog import Artwork, Catalog
from keyart.context import MemberContext
from keyart.features import Featurizer
from keyart.policies import model_features
from keyart.policies.shared import SharedModelPolicy

#: Hypothetical artwork ids start with this (never a catalog's: ids are checked against it).
DESIGN_PREFIX = "~design"


class ModelView:
    """Posterior moments of predicted take fractions for (member, title, artwork) rows."""

    def __init__(self, policy: SharedModelPolicy, catalog: Catalog) -> None:
        self.policy = policy
        self.catalog = catalog
        self.features = model_features(policy)
        post = policy.posterior_
        self.theta = post.theta
        self.posterior = post
        self.noise = float(policy.noise_)
        self.prior_var = 1.0 / float(policy.bias_ridge_)

    def featurizer(self, designs: Sequence[Artwork]) -> Featurizer:
        """A featurizer over the catalog with the hypothetical artworks ``designs`` added."""
        if not designs:
            return Featurizer(self.catalog, self.features)
        cat = Catalog(self.catalog.titles.values(), [*self.catalog.artworks.values(), *designs])
        return Featurizer(cat, self.features)

    def rows(
        self,
        featurizer: Featurizer,
        contexts: Sequence[MemberContext],
        title_ids: Sequence[str],
        candidates: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """(n, K, d) feature rows of each row's K candidates (every row the same K)."""
        batch = featurizer.events(contexts, title_ids, candidates)
        return batch.X

    def segment_means(
        self,
        featurizer: Featurizer,
        contexts: Sequence[MemberContext],
        title_ids: Sequence[str],
        candidates: Sequence[Sequence[str]],
        membership: np.ndarray,
        chunk: int = 512,
    ) -> np.ndarray:
        """(S, K, d) mean feature rows of each segment's rows (``membership`` (S, n) 0/1), computed by
        chunks of rows so that only (chunk, K, d) rows are ever held."""
        n = len(contexts)
        m = np.asarray(membership, dtype=np.float64)
        sizes = np.maximum(m.sum(1, keepdims=True), 1.0)
        total = None
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            X = self.rows(featurizer, contexts[lo:hi], title_ids[lo:hi], candidates[lo:hi])
            part = m[:, lo:hi] @ X.reshape(hi - lo, -1)
            total = part if total is None else total + part
        assert total is not None
        k = len(candidates[0])
        return (total / sizes).reshape(m.shape[0], k, -1)

    def moments(
        self, xbar: np.ndarray, artwork_ids: Sequence[str], with_bias: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (K,) and covariance (K, K) of K candidates' mean predicted take, from their mean
        feature rows ``xbar`` (K, d); ``with_bias``: each artwork's own bias included (the prior's for a
        design), else the attributes' part only."""
        K = xbar.shape[0]
        if with_bias:
            rows = self.policy.index_.rows(np.asarray(artwork_ids, dtype=object))
            beta, U, inv_d = self.posterior.gather(rows, self.prior_var)
        else:
            beta, U, inv_d = np.zeros(K), np.zeros_like(xbar), np.zeros(K)
        Z = xbar - U
        cov = self.noise * (Z @ self.posterior.sigma @ Z.T + np.diag(inv_d))
        return xbar @ self.theta + beta, cov

    def member_scores(self, X: np.ndarray, artwork_ids: Sequence[str]) -> np.ndarray:
        """(n, K) posterior mean predicted take of each row's candidates (same K artworks in each row)."""
        rows = self.policy.index_.rows(np.asarray(artwork_ids, dtype=object))
        return X @ self.theta + self.posterior.bias(rows)[None, :]

    def sample_scores(
        self, X: np.ndarray, artwork_ids: Sequence[str], draws: int, rng: np.random.Generator
    ) -> np.ndarray:
        """(draws, n, K) predicted takes under ``draws`` posterior draws of (theta, the K biases): the
        joint uncertainty of statistics that are not linear in the scores (a max over a pool)."""
        rows = self.policy.index_.rows(np.asarray(artwork_ids, dtype=object))
        beta, U, inv_d = self.posterior.gather(rows, self.prior_var)
        chol = np.linalg.cholesky(self.noise * self.posterior.sigma + 1e-12 * np.eye(self.theta.size))
        dtheta = rng.standard_normal((draws, self.theta.size)) @ chol.T  # (draws, d)
        # beta | theta = beta_mean - U (theta - theta_mean) + N(0, noise * inv_d)  (block form)
        dbeta = -dtheta @ U.T + rng.standard_normal((draws, len(artwork_ids))) * np.sqrt(self.noise * inv_d)
        mean = X @ self.theta + beta[None, :]
        return mean[None] + np.einsum("nkd,sd->snk", X, dtheta) + dbeta[:, None, :]


def design(title_id: str, label: str, **attributes: object) -> Artwork:
    """A hypothetical artwork of ``title_id`` (id ``~design:<title>:<label>``)."""
    return Artwork(f"{DESIGN_PREFIX}:{title_id}:{label}", title_id, **attributes)  # type: ignore[arg-type]
