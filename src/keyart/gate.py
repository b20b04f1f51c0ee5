"""``keyart gate``: off-policy evaluation as a deployment gate.

The candidate policy and the logging policy are estimated on the same keyart logs: the candidate with
an off-policy estimator (``snips`` by default; any of ``keyart.evaluation.ESTIMATORS``), the logging
policy with its own on-policy value (the ``ips`` estimator of the logged distribution: every weight is 1,
so it is the mean reward, with the same clustered interval). The verdict:

- ``untrustworthy`` (exit 3) when a reliability flag fires on either estimate (``keyart.evaluation``'s
  diagnostics: low ESS, dominated or tiny-propensity weights, missing support, wrong propensities, few
  reward events or clusters, ...) or the logs carry no propensities: the numbers cannot be trusted, the
  flags are named;
- ``pass`` (exit 0) when the candidate's lower bound is at least the baseline's value plus ``margin``;
- ``not_better`` (exit 1) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyart.errors import ValidationError
from keyart.evaluation import ESTIMATORS, Estimate, EstimatorConfig, estimate

PASS, NOT_BETTER, UNTRUSTWORTHY = "pass", "not_better", "untrustworthy"
#: The exit code of each verdict (``keyart.cli.EXIT_CODES``).
EXIT = {PASS: 0, NOT_BETTER: 1, UNTRUSTWORTHY: 3}


@dataclass(frozen=True)
class GateResult:
    """The two estimates, the margin, the verdict and the flags behind it."""

    candidate: Estimate
    baseline: Estimate
    margin: float
    verdict: str
    flags: tuple[str, ...]  # "flag (whose)" of every reliability flag that fired

    @property
    def exit_code(self) -> int:
        return EXIT[self.verdict]

    @property
    def gain_lower(self) -> float:
        """How far the candidate's lower bound is above the baseline's value."""
        return self.candidate.lower - self.baseline.value

    def reason(self) -> str:
        if self.verdict == UNTRUSTWORTHY:
            return f"not trustworthy: {', '.join(self.flags)}"
        cmp = ">=" if self.verdict == PASS else "<"
        return (
            f"candidate lower bound {self.candidate.lower:.4f} {cmp} baseline {self.baseline.value:.4f} + "
            f"margin {self.margin:g}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "reason": self.reason(),
            "margin": self.margin,
            "flags": list(self.flags),
            "candidate": self.candidate.as_row(),
            "baseline": self.baseline.as_row(),
        }

    def lines(self) -> list[str]:
        """The estimates, their interval methods and the verdict as text."""
        out = [f"{'policy':28s} {'estimator':9s} {'value':>8s} {'95% interval':>20s} {'ess':>8s} flags"]
        for e in (self.candidate, self.baseline):
            interval = f"[{e.lower:.4f}, {e.upper:.4f}]"
            flags = ",".join(e.flags) or "-"
            out.append(f"{e.policy:28s} {e.estimator:9s} {e.value:8.4f} {interval:>20s} {e.ess:8.0f} {flags}")
        methods = dict.fromkeys(e.ci_method for e in (self.candidate, self.baseline))
        out.append(f"Intervals: {'; '.join(methods)}.")
        out.append(f"{self.verdict.upper().replace('_', ' ')} (exit {self.exit_code}): {self.reason()}")
        return out


def decide(
    candidate: Estimate, baseline: Estimate, margin: float, extra_flags: tuple[str, ...] = ()
) -> GateResult:
    """The verdict on two estimates (see the module docstring)."""
    flags = tuple(f"{f} (candidate)" for f in candidate.flags) + tuple(
        f"{f} (baseline)" for f in baseline.flags
    )
    flags = extra_flags + flags
    if flags:
        verdict = UNTRUSTWORTHY
    elif candidate.lower >= baseline.value + margin:
        verdict = PASS
    else:
        verdict = NOT_BETTER
    return GateResult(candidate, baseline, float(margin), verdict, flags)


def gate(
    logs: str | Path,
    catalog: str | Path,
    candidate: str | Path,
    *,
    margin: float = 0.0,
    estimator: str = "snips",
    window_seconds: float,
    min_seconds: float,
    require_impression: bool | None = None,
    pools: str = "current",
    config: EstimatorConfig | None = None,
    seed: int = 0,
) -> GateResult:
    """Gate ``candidate`` (a policy snapshot) against the logging policy on the keyart ``logs`` (an
    events.duckdb, a service state directory or a Parquet export)."""
    from keyart.catalog import Catalog
    from keyart.evaluate_cli import join_logs, reward_model_for, unlogged
    from keyart.evaluation.compare import evaluation_pools
    from keyart.features import Featurizer
    from keyart.policies import load_policy, model_features
    from keyart.train import open_logs

    if estimator not in ESTIMATORS:
        raise ValidationError(f"estimator must be one of {', '.join(ESTIMATORS)}. Got {estimator!r}.")
    if not (isinstance(margin, int | float) and margin >= 0):
        raise ValidationError(f"margin must be >= 0. Got {margin!r}.")
    cat = Catalog.load(catalog)
    policy = load_policy(candidate)
    with open_logs(logs) as store:
        joined, _ = join_logs(store, cat, window_seconds, min_seconds, require_impression)
    extra = ("propensities_not_logged (logs)",) if unlogged(joined) else ()
    ev = evaluation_pools(joined, Featurizer(cat, model_features(policy)), pools)
    log = ev.to_log()
    model = reward_model_for("auto", log) if estimator not in ("replay", "ips", "snips") else None
    label = f"{policy.name}:{Path(candidate).stem}"
    kw: dict[str, Any] = {"n_folds": 2, "config": config, "seed": seed}
    (cand,) = estimate(log, ev.distribution(policy), [estimator], reward_model=model, policy=label, **kw)
    (base,) = estimate(log, ev.logging_probabilities, ["ips"], policy="logging", **kw)
    return decide(cand, base, margin, extra)


__all__ = ["EXIT", "NOT_BETTER", "PASS", "UNTRUSTWORTHY", "GateResult", "decide", "gate"]
