"""What the estimators are asked: their names, their hyperparameters and when an estimate is flagged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from keyart.errors import ValidationError
from keyart.params import Interval, OneOf, check_param

ESTIMATORS: tuple[str, ...] = ("replay", "ips", "snips", "dm", "dr", "sndr", "switch_dr", "dr_os")
MODEL_BASED = frozenset({"dm", "dr", "sndr", "switch_dr", "dr_os"})
#: Estimators whose error is mostly the reward model's: their interval must refit the model.
MODEL_DOMINATED = frozenset({"dm", "switch_dr", "dr_os"})
#: ``EstimatorConfig.ci`` values that give bootstrap intervals ("bootstrap" is "percentile").
BOOTSTRAP_CIS = frozenset({"bootstrap", "percentile", "bca"})
#: The lambdas SLOPE chooses from for Switch-DR and DR-os (``EstimatorConfig.lambda_grid``): a log grid
#: from 1 to 10,000 and infinity (Switch-DR and DR-os at lambda = inf are DR).
LAMBDA_GRID: tuple[float, ...] = (
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1e3,
    2e3,
    5e3,
    1e4,
    math.inf,
)


@dataclass(frozen=True)
class DiagnosticThresholds:
    """When an estimate is flagged. Defaults are deliberately conservative; every flag is explained.

    ``min_ess``: effective sample size (sum w)^2 / sum w^2 below this -> ``low_ess``.
    ``max_top_share``: the largest 1% of weights carry more than this share of sum w -> ``dominated``.
    ``min_pscore``: a logged propensity below this on an event the candidate wants -> ``tiny_propensity``.
    ``max_unsupported``: candidate mass on actions the log never shows above this -> ``support_deficiency``.
    ``min_matches``: replay with fewer matched events -> ``few_matches``.
    ``min_reward_events``: fewer events with a positive weight carry a nonzero reward (e.g. clicks) ->
    ``few_reward_events``: the normal interval is then unreliable.
    ``min_clusters``: a clustered log with fewer clusters -> ``few_clusters``: the cluster-robust s.e. is
    then unreliable.
    """

    min_ess: float = 100.0
    max_top_share: float = 0.5
    min_pscore: float = 1e-3
    max_unsupported: float = 0.01
    min_matches: int = 100
    min_reward_events: int = 30
    min_clusters: int = 30


@dataclass(frozen=True)
class EstimatorConfig:
    """Hyperparameters: clipping for IPS/DR (``None`` = none), Switch-DR's threshold, DR-os's lambda.

    ``switch_lambda`` / ``dr_os_lambda``: a number (``math.inf`` allowed), or ``"slope"`` (default): chosen
    from ``lambda_grid`` on the log by SLOPE (``keyart.evaluation.tuning``; Su et al. 2020, as OBP's
    ``SwitchDoublyRobustTuning`` / ``DoublyRobustWithShrinkageTuning`` with ``tuning_method="slope"``),
    with one-sided Student-t widths at level ``slope_delta``. The chosen lambda is in ``Estimate.lambda_``.

    ``ci``: ``"auto"`` (default) gives normal intervals for replay, IPS, SNIPS, DR and SNDR, and a refit
    bootstrap s.e. (``n_refit`` resamples, the reward model cross-fitted again on each; normal interval)
    for DM, Switch-DR and DR-os, whose error is mostly the reward model's; ``"normal"`` normal everywhere;
    ``"percentile"`` (or ``"bootstrap"``) percentile bootstrap everywhere, ``"bca"`` bias-corrected and
    accelerated bootstrap everywhere (``n_bootstrap`` resamples; ``n_refit`` refit resamples for the
    model-based estimators, their BCa acceleration from the jackknife with the fitted model held fixed).
    On a clustered log every resample draws whole clusters.
    """

    ips_clip: float | None = None
    dr_clip: float | None = None
    switch_lambda: float | str = "slope"
    dr_os_lambda: float | str = "slope"
    lambda_grid: tuple[float, ...] = LAMBDA_GRID
    slope_delta: float = 0.05
    alpha: float = 0.05
    ci: str = "auto"
    n_bootstrap: int = 1000
    n_refit: int = 200
    replay_seed: int = 0
    thresholds: DiagnosticThresholds = field(default_factory=DiagnosticThresholds)

    def __post_init__(self) -> None:
        for name in ("ips_clip", "dr_clip"):
            v = getattr(self, name)
            if v is not None:
                check_param("EstimatorConfig", name, v, Interval(0, None, closed="neither"))
        for name in ("switch_lambda", "dr_os_lambda"):  # math.inf allowed: no switching / no shrinkage
            v = getattr(self, name)
            if isinstance(v, str):
                check_param("EstimatorConfig", name, v, OneOf(("slope",)))
            elif not (isinstance(v, float) and v == math.inf):
                check_param("EstimatorConfig", name, v, Interval(0, None))
        grid = tuple(self.lambda_grid)
        if not grid or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0 for v in grid
        ):
            raise ValidationError(
                "EstimatorConfig.lambda_grid must be a non-empty list of numbers >= 0. "
                f"Got {self.lambda_grid!r}."
            )
        object.__setattr__(self, "lambda_grid", tuple(float(v) for v in grid))
        check_param("EstimatorConfig", "slope_delta", self.slope_delta, Interval(0, 1, closed="neither"))
        check_param("EstimatorConfig", "alpha", self.alpha, Interval(0, 1, closed="neither"))
        check_param(
            "EstimatorConfig", "ci", self.ci, OneOf(("auto", "normal", "bootstrap", "percentile", "bca"))
        )
        check_param("EstimatorConfig", "n_bootstrap", self.n_bootstrap, Interval(10, None, integer=True))
        check_param("EstimatorConfig", "n_refit", self.n_refit, Interval(10, None, integer=True))
