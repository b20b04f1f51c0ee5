"""The policies of the experiments: ``POLICY_SUITE`` by display name, and which of them ignore context."""

from __future__ import annotations

from typing import Any

from keyart.errors import ValidationError
from keyart.policies import DEFAULT_POLICY, Policy, make_policy

#: Display name -> (registry name, hyperparameters). Thompson policies use 512 quasi-Monte Carlo points
#: for their probabilities (the policies' default is 1,024) to keep closed loops fast; the propensity of every
#: decision is still the exact probability of the distribution it was drawn from.
POLICY_SUITE: dict[str, tuple[str, dict[str, Any]]] = {
    "Random": ("uniform", {}),
    "Bandit": ("greedy", {"epsilon": 0.05}),
    "Bandit (Thompson)": ("beta_ts", {}),
    "LinUCB": ("linucb", {}),
    "Epsilon-greedy": ("epsilon_greedy", {"epsilon": 0.05}),
    "Linear TS": ("linear_ts", {"mc_points": 512}),
    "Logistic TS": ("logistic_ts", {"mc_points": 512}),
    "Logistic UCB": ("logistic_ucb", {}),
}
NON_CONTEXTUAL = frozenset({"Random", "Bandit", "Bandit (Thompson)"})
#: The display name of ``keyart.policies.DEFAULT_POLICY``: the experiments' personalized policy unless told.
DEFAULT_SUITE_POLICY = next(name for name, (reg, _) in POLICY_SUITE.items() if reg == DEFAULT_POLICY)


def make_suite_policy(name: str, seed: int) -> Policy:
    """A fresh policy of ``POLICY_SUITE`` by display name."""
    try:
        registry, params = POLICY_SUITE[name]
    except KeyError:
        raise ValidationError(f"Unknown policy {name!r}; choose from {', '.join(POLICY_SUITE)}.") from None
    return make_policy(registry, seed=seed, **params)
