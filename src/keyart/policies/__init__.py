"""Every policy keyart ships, behind one protocol and one registry.

A policy maps a ``CandidateBatch`` to a probability distribution over each pool (``probabilities``);
``choose`` then draws from it with sticky keyed-hash randomness, so the logged propensity is exactly the
probability of the shown artwork. ``update`` learns from a batch of ``keyart.feedback.LoggedFeedback``;
``snapshot`` / ``restore_policy`` reproduce a policy exactly.

Modules: ``base`` (the ``Policy`` protocol, snapshots, model-row lookups), ``registry`` (``POLICIES``,
``make_policy``, ``restore_policy``, ``load_policy``), ``counts`` (``uniform``, ``greedy``, ``beta_ts``),
``shared`` (the shared contextual model and its hook, ``SharedModelPolicy._distribution_from_model``),
``linear`` (the ridge model: ``epsilon_greedy``, ``softmax``, ``linucb``), ``logistic`` (the logistic
model: ``logistic_ucb``), ``thompson`` (``linear_ts``, ``logistic_ts`` and the Thompson machinery).

``Decision``, ``DecisionBatch``, ``LoggedFeedback`` and ``decision_id`` live in ``keyart.feedback``; their
old path here still works for one release, with a ``DeprecationWarning``.
"""

from typing import Any

import keyart.feedback as _feedback
from keyart.policies.base import SNAPSHOT_FORMAT, Policy, RowCache, batch_rows
from keyart.policies.counts import BetaThompson, GreedyBandit, UniformPolicy, beta_max_probabilities
from keyart.policies.linear import EpsilonGreedy, LinUCB, RidgePolicy, Softmax
from keyart.policies.logistic import LogisticModel, LogisticUCB
from keyart.policies.registry import DEFAULT_POLICY, POLICIES, load_policy, make_policy, restore_policy
from keyart.policies.shared import LEGACY_FEATURES, SharedModelPolicy, UpperConfidenceBound, model_features
from keyart.policies.thompson import (
    NORMALS_BLOCK,
    LinearThompson,
    LogisticThompson,
    ThompsonPolicy,
    sobol_normals,
    thompson_distribution,
)

__all__ = [
    "DEFAULT_POLICY",
    "LEGACY_FEATURES",
    "NORMALS_BLOCK",
    "POLICIES",
    "SNAPSHOT_FORMAT",
    "BetaThompson",
    "EpsilonGreedy",
    "GreedyBandit",
    "LinUCB",
    "LinearThompson",
    "LogisticModel",
    "LogisticThompson",
    "LogisticUCB",
    "Policy",
    "RidgePolicy",
    "RowCache",
    "SharedModelPolicy",
    "Softmax",
    "ThompsonPolicy",
    "UniformPolicy",
    "UpperConfidenceBound",
    "batch_rows",
    "beta_max_probabilities",
    "load_policy",
    "make_policy",
    "model_features",
    "restore_policy",
    "sobol_normals",
    "thompson_distribution",
]

_MOVED_TO_FEEDBACK = ("Decision", "DecisionBatch", "LoggedFeedback", "decision_id")


def __getattr__(name: str) -> Any:
    """The old import paths of the feedback types (moved to ``keyart.feedback``), kept for one release."""
    if name in _MOVED_TO_FEEDBACK:
        import warnings

        warnings.warn(
            f"keyart.policies.{name} moved to keyart.feedback.{name}; the old path goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_feedback, name)
    raise AttributeError(f"module 'keyart.policies' has no attribute {name!r}")
