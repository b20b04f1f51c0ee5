"""Experiment 2, ``offline_replay``: from a uniform-random exploration log, the replay estimate (with its
interval) of Random, the non-contextual Bandit and contextual bandits, next to each policy's true value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keyart.errors import ValidationError
from keyart.evaluation import BanditLog, estimate
from keyart.features import Featurizer
from keyart.feedback import LoggedFeedback
from keyart.policies import Policy, UniformPolicy
from keyart.simulation.experiments.suite import make_suite_policy
from keyart.simulation.runner import ProgressCallback, bucketed_probabilities, stream_windows
from keyart.simulation.world import World


@dataclass(frozen=True)
class ReplayRow:
    """One policy's replay estimate on the test part of the log, with the world's true value."""

    policy: str
    estimate: float
    lower: float
    upper: float
    truth: float
    ess: float
    n_events: int
    estimator: str

    @property
    def covered(self) -> bool:
        return self.lower <= self.truth <= self.upper


@dataclass(frozen=True)
class ReplayResult:
    """Experiment 2's table and the trained candidates (reused by experiment 3)."""

    rows: list[ReplayRow]
    policies: dict[str, Policy]
    n_train_events: int
    n_test_events: int
    alpha: float
    log: BanditLog  # the held-out part of the log, clustered by member

    @property
    def train_share(self) -> float:
        """The share of the log's events the candidates were trained on."""
        return self.n_train_events / (self.n_train_events + self.n_test_events)

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "policy": r.policy,
                "replay": r.estimate,
                "ci_low": r.lower,
                "ci_high": r.upper,
                "true_value": r.truth,
                "covered": r.covered,
                "ess": r.ess,
            }
            for r in self.rows
        ]


def offline_replay(
    world: World,
    n_requests: int,
    *,
    seed: int = 0,
    candidates: Sequence[str] = (
        "Random",
        "Bandit",
        "LinUCB",
        "Epsilon-greedy",
        "Logistic TS",
        "Logistic UCB",
    ),
    train_fraction: float = 0.7,
    window: int = 500,
    alpha: float = 0.05,
    progress: ProgressCallback | None = None,
) -> ReplayResult:
    """Experiment 2: train candidates on the first part of a uniform-random log, replay them on the rest.

    Logging is uniform over each pool, whose size varies, so the replay estimate is the self-normalized
    one: sum_i w_i r_i / sum_i w_i with w_i = pi(a_i | x_i) / (1 / K_i). With one pool size it is exactly
    Li et al.'s replay (mean reward of the events where the candidate agrees with the log); with varying
    sizes it removes replay's over-weighting of small pools. Intervals come from ``keyart.evaluation``
    (delta method), clustered by member. The log is split after ``round(train_fraction * n_requests)``
    requests (an update window ends there), so the train share is the one asked. The true value of a
    candidate is the mean over the same test events of sum_a pi(a | x_i) P(quality play | x_i, a) under
    the hidden truth.
    """
    if not 0 < train_fraction < 1:
        raise ValidationError(f"train_fraction must be in (0, 1). Got {train_fraction!r}.")
    world.reset()
    featurizer = Featurizer(world.catalog)
    logger = UniformPolicy(seed=seed)
    policies = {name: make_suite_policy(name, seed) for name in candidates}
    n_train = round(train_fraction * n_requests)
    k_max = world.config.max_pool
    reward, action, pscore, masks, members = [], [], [], [], []
    dists: dict[str, list[np.ndarray]] = {name: [] for name in candidates}
    truths: dict[str, list[np.ndarray]] = {name: [] for name in candidates}
    n_train_events = 0
    windows = stream_windows(
        world,
        n_requests,
        window=window,
        seed=seed,
        featurizer=featurizer,
        cut=lambda request: n_train if request < n_train else n_requests,
    )
    for w in windows:
        decisions = logger.choose(w.batch)
        chosen = np.fromiter((d.index for d in decisions), dtype=np.int64, count=len(decisions))
        prop = np.fromiter((d.propensity for d in decisions), dtype=np.float64, count=len(decisions))
        r = world.draw(w.events, chosen, uniforms=w.uniforms).quality.astype(np.float64)
        if w.start < n_train:
            fb = LoggedFeedback(w.batch, chosen, prop, r)
            for p in policies.values():
                p.update(fb)
            n_train_events += w.batch.n
        else:
            q = world.expected(w.events)
            pad = k_max - w.batch.k
            for name, p in policies.items():
                dist = bucketed_probabilities(p, w.batch)
                truths[name].append((dist * q).sum(1))
                dists[name].append(np.pad(dist, ((0, 0), (0, pad))))
            reward.append(r)
            action.append(chosen)
            pscore.append(prop)
            masks.append(np.pad(w.batch.mask, ((0, 0), (0, pad))))
            members.append(w.batch.member_ids)
        if progress is not None:
            progress(w.requests.n)
    if not reward:
        raise ValidationError("n_requests is too small: the test part of the log is empty.")
    mask = np.concatenate(masks)
    log = BanditLog.from_arrays(
        reward=np.concatenate(reward),
        action=np.concatenate(action),
        pscore=np.concatenate(pscore),
        n_actions=k_max,
        action_mask=mask,
        cluster=np.concatenate(members),
    )
    from keyart.evaluation import EstimatorConfig

    cfg = EstimatorConfig(alpha=alpha)
    rows = []
    for name in candidates:
        dist = np.concatenate(dists[name])
        est = estimate(log, dist, ["snips"], config=cfg, policy=name)[0]
        rows.append(
            ReplayRow(
                name,
                est.value,
                est.lower,
                est.upper,
                float(np.concatenate(truths[name]).mean()),
                est.ess,
                log.n,
                "replay (self-normalized)",
            )
        )
    return ReplayResult(rows, policies, n_train_events, log.n, alpha, log)
