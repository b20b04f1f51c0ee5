"""The insights' inputs: joined logs (one row per decision whose reward is known) and the shared model.

Logs come from anything ``keyart train`` reads (``keyart.train.open_logs``): an ``events.duckdb`` file, a
service's state directory (its ``events.duckdb``; the service stopped, since DuckDB lets one process open
the file) or a Parquet export of imported logs. Rewards are joined as everywhere (``keyart.rewards``).
The model is the shared linear model of ``keyart.policies`` (its Gaussian posterior gives every effect
its interval): a given snapshot, else the service's newest verified generation, else one trained here on
the same logs (``keyart.train``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keyart.catalog import Catalog
from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.policies import Policy, load_policy, make_policy
from keyart.policies.linear import RidgePolicy
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS, JoinReport, QualityRule, join_store
from keyart.train import open_logs, train

#: The policy trained when no model is given: linear Thompson sampling's posterior, priors learned from
#: the data (empirical Bayes).
DEFAULT_MODEL = "linear_ts"


@dataclass(frozen=True)
class InsightLogs:
    """Joined decisions, one row each: who saw which artwork of which title, with which propensity,
    and whether it led to a play and to a quality play."""

    title: np.ndarray  # (n,) str
    artwork: np.ndarray  # (n,) str
    member: np.ndarray  # (n,) str
    timestamp: np.ndarray  # (n,) float, epoch s
    played: np.ndarray  # (n,) bool
    reward: np.ndarray  # (n,) float: 1 for a quality play
    propensity: np.ndarray  # (n,) float
    pools: list[tuple[str, ...]]  # the logged pool of each decision
    probabilities: list[tuple[float, ...]]  # the logging policy's whole distribution over the pool
    contexts: list[MemberContext]
    report: JoinReport
    source: str
    dropped: int = 0  # decisions whose title or artworks the catalog does not hold

    @property
    def n(self) -> int:
        return int(self.title.size)

    def rows_of(self, title_id: str) -> np.ndarray:
        """Row indices of one title's decisions."""
        return np.flatnonzero(self.title == title_id)


def load_logs(
    source: str | Path,
    catalog: Catalog,
    *,
    window_seconds: float = ATTRIBUTION_WINDOW_SECONDS,
    quality_seconds: float = QUALITY_SECONDS,
) -> InsightLogs:
    """The decisions of ``source`` whose attribution window has closed, joined to their outcomes; those
    of titles or artworks missing from ``catalog`` are dropped and counted (``InsightLogs.dropped``)."""
    with open_logs(source) as store:
        joined = join_store(
            store,
            window_seconds=window_seconds,
            rule=QualityRule(min_seconds=quality_seconds),
            runtimes=catalog,
        )
    t = joined.table
    if t.num_rows == 0:
        raise ValidationError(
            f"No decision in {source} has a known reward yet (window {window_seconds:g} s): "
            "nothing to learn from."
        )
    col = {name: t.column(name).to_pylist() for name in ("title_id", "artwork_id", "pool", "probabilities")}
    known = np.array(
        [
            tid in catalog and all(a in catalog.artworks for a in pool)
            for tid, pool in zip(col["title_id"], col["pool"], strict=True)
        ],
        dtype=bool,
    )
    if not known.any():
        raise ValidationError(
            f"No decision in {source} is of a title and pool the catalog holds: wrong catalog?"
        )
    keep = np.flatnonzero(known)
    rows = joined.take(keep)
    t = rows.table

    def arr(name: str, dtype: type) -> np.ndarray:
        return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=dtype)

    return InsightLogs(
        title=np.asarray(t.column("title_id").to_pylist(), dtype=object),
        artwork=np.asarray(t.column("artwork_id").to_pylist(), dtype=object),
        member=np.asarray(t.column("member_id").to_pylist(), dtype=object),
        timestamp=arr("timestamp", np.float64),
        played=arr("played", bool),
        reward=arr("reward", np.float64),
        propensity=arr("propensity", np.float64),
        pools=[tuple(p) for p in t.column("pool").to_pylist()],
        probabilities=[tuple(p) for p in t.column("probabilities").to_pylist()],
        contexts=rows.contexts(),
        report=joined.report,
        source=str(source),
        dropped=int((~known).sum()),
    )


def load_model(
    source: str | Path,
    catalog: Catalog,
    model: str | Path | None = None,
    *,
    seed: int = 0,
    window_seconds: float = ATTRIBUTION_WINDOW_SECONDS,
    quality_seconds: float = QUALITY_SECONDS,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[RidgePolicy, str]:
    """The shared linear model the effects are read from, and where it came from (in words): ``model`` (a
    snapshot file) when given, else the newest verified generation of a service state directory when it
    is a linear model, else ``DEFAULT_MODEL`` trained on ``source``'s logs (seeded by ``seed``). A
    logistic model (``logistic_ucb``, the service's default, or ``logistic_ts``) scores on the logit: its
    weights are not differences of take fractions, so it is not read as one."""
    if model is not None:
        return _shared(load_policy(Path(model)), str(model)), f"the snapshot {model}"
    snapshots = Path(source) / "snapshots"
    passed = ""
    if snapshots.is_dir():
        from keyart.service.snapshots import load_newest_good

        found = load_newest_good(snapshots).generation
        if found is not None and isinstance(found.primary, RidgePolicy):
            where = f"the service's model (generation {found.number})"
            return _shared(found.primary, where), where
        if found is not None:
            passed = f" (the service's model, generation {found.number}, is {found.primary.name}: not linear)"
    policy, info = train(
        [source],
        catalog,
        make_policy(DEFAULT_MODEL, seed=seed),
        window_seconds=window_seconds,
        quality_seconds=quality_seconds,
        progress=progress,
    )
    trained = f"a {DEFAULT_MODEL} model trained here on {info.rows:,} decisions{passed}"
    return _shared(policy, DEFAULT_MODEL), trained


def _shared(policy: Policy, where: str) -> RidgePolicy:
    if not isinstance(policy, RidgePolicy):
        raise ValidationError(
            f"{where} is a {policy.name} model: the insights need a shared linear model (epsilon_greedy, "
            "softmax, linucb or linear_ts), whose posterior gives the effects their intervals on the scale "
            "of take fractions (a logistic model's are on the logit)."
        )
    if policy.post_ is None:
        raise ValidationError(f"{where} has learned nothing yet: train it on logs first.")
    return policy
