"""Offline policy evaluation: replay, IPS, SNIPS, DM, DR, SNDR, Switch-DR and DR-os with honest intervals.

The core works on plain arrays (``BanditLog`` + an (n, K, L) candidate distribution) following Open Bandit
Pipeline's definitions; adapters evaluate keyart policies on keyart feedback. See docs/evaluation.md.
"""

from keyart.evaluation.compare import Comparison, compare, evaluate_policy, feedback_to_log
from keyart.evaluation.config import LAMBDA_GRID
from keyart.evaluation.data import BanditLog, EmptyLogError, as_action_dist
from keyart.evaluation.estimators import (
    ESTIMATORS,
    FLAG_TEXT,
    DiagnosticThresholds,
    Estimate,
    EstimatorConfig,
    estimate,
    importance_weights,
    point_estimate,
    point_estimates,
    replay_match,
    unsupported_mass,
)
from keyart.evaluation.reward_models import (
    LinearRewardModel,
    LogisticRewardModel,
    ModelChoice,
    RewardModel,
    TabularRewardModel,
    choose_reward_model,
    cross_fit,
)
from keyart.evaluation.tuning import slope_select

__all__ = [
    "ESTIMATORS",
    "FLAG_TEXT",
    "LAMBDA_GRID",
    "BanditLog",
    "Comparison",
    "DiagnosticThresholds",
    "EmptyLogError",
    "Estimate",
    "EstimatorConfig",
    "LinearRewardModel",
    "LogisticRewardModel",
    "ModelChoice",
    "RewardModel",
    "TabularRewardModel",
    "as_action_dist",
    "choose_reward_model",
    "compare",
    "cross_fit",
    "estimate",
    "evaluate_policy",
    "feedback_to_log",
    "importance_weights",
    "point_estimate",
    "point_estimates",
    "replay_match",
    "slope_select",
    "unsupported_mass",
]
