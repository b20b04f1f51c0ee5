"""Joining outcomes to the decisions that caused them, and labelling quality plays.

An outcome is attributed to a decision by its ``decision_id`` when the client sent one, else to the
latest decision for the same (member, title) at or before the outcome. It counts only inside the
attribution window (``window_seconds`` after the decision). A decision earns reward 1 only for a
*quality play*: a ``play`` whose engagement passes the ``QualityRule`` (clickbait clicks earn nothing).

Nothing is dropped silently: the ``JoinReport`` counts joined, late, early (before their decision) and
unmatched outcomes, decisions without any outcome, decisions whose window is still open at ``as_of``
(excluded: their reward is not known yet; by default ``as_of`` is the latest outcome, because the outcome
stream may lag the decisions), plays that missed the quality bar, and runtimes unknown.

Engagement of a decision = the largest ``engaged_seconds`` among its attributed outcomes (clients report
cumulative engagement); a ``complete`` event counts as the full runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keyart.errors import UnknownIdError, ValidationError
from keyart.events import context_from_json, decisions_table, outcomes_table
from keyart.feedback import LoggedFeedback
from keyart.params import Interval, Optional_, check_param

#: The attribution window's one default, everywhere (``join_rewards``, ``keyart serve``, ``keyart
#: evaluate``, ``keyart train``, ``keyart gate``): an outcome counts for the latest decision of its (member,
#: title) at most this many seconds before it. One hour: long enough for a play that follows the page,
#: short enough that the service's learner learns a decision an hour after it was made.
ATTRIBUTION_WINDOW_SECONDS = 3_600.0
#: The default quality-play threshold (engaged seconds), everywhere.
QUALITY_SECONDS = 600.0


@dataclass(frozen=True)
class QualityRule:
    """When a play is a quality play: engagement >= ``min_seconds`` and/or >= ``min_fraction_of_runtime``.

    With both set, ``require="all"`` needs both and ``require="any"`` either. A fraction rule on a title
    whose runtime is unknown fails (and is counted in the report).
    """

    min_seconds: float | None = QUALITY_SECONDS
    min_fraction_of_runtime: float | None = None
    require: str = "all"

    def __post_init__(self) -> None:
        check_param("QualityRule", "min_seconds", self.min_seconds, Optional_(Interval(0, None)))
        check_param(
            "QualityRule",
            "min_fraction_of_runtime",
            self.min_fraction_of_runtime,
            Optional_(Interval(0, 1, closed="right")),
        )
        if self.require not in ("all", "any"):
            raise ValidationError(
                f"The 'require' parameter of QualityRule must be 'all' or 'any'. Got {self.require!r}."
            )
        if self.min_seconds is None and self.min_fraction_of_runtime is None:
            raise ValidationError("QualityRule needs min_seconds or min_fraction_of_runtime.")

    def passes(self, engaged: np.ndarray, runtime: np.ndarray) -> np.ndarray:
        """Vectorized test; ``runtime`` in seconds, NaN when unknown."""
        checks = []
        if self.min_seconds is not None:
            checks.append(engaged >= self.min_seconds)
        if self.min_fraction_of_runtime is not None:
            with np.errstate(invalid="ignore"):
                checks.append(np.isfinite(runtime) & (engaged >= self.min_fraction_of_runtime * runtime))
        stacked = np.vstack(checks)
        return stacked.all(axis=0) if self.require == "all" else stacked.any(axis=0)


@dataclass(frozen=True)
class JoinReport:
    """Counts of everything the join saw; ``joined + late + early + unmatched == outcomes``."""

    decisions: int
    outcomes: int
    joined_outcomes: int
    late_outcomes: int
    early_outcomes: int
    unmatched_outcomes: int
    decisions_with_outcome: int
    decisions_without_outcome: int
    decisions_pending: int
    decisions_not_displayed: int
    plays: int
    quality_plays: int
    plays_below_quality: int
    runtime_unknown: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return "\n".join(f"{k.replace('_', ' ')}: {v}" for k, v in self.as_dict().items())


@dataclass(frozen=True)
class RewardTable:
    """One row per decision that entered the feedback: the decision's columns plus ``reward``,
    ``engaged_seconds``, ``played``, ``n_outcomes``. ``to_feedback`` turns it into ``LoggedFeedback``."""

    table: pa.Table
    report: JoinReport

    @property
    def reward(self) -> np.ndarray:
        return self.table.column("reward").to_numpy(zero_copy_only=False)

    def logging_probabilities(self) -> np.ndarray:
        """(n, K) logged probability vectors, zero-padded to the largest pool (for exact support checks)."""
        probs = self.table.column("probabilities").to_pylist()
        k = max((len(p) for p in probs), default=0)
        out = np.zeros((len(probs), k))
        for i, p in enumerate(probs):
            out[i, : len(p)] = p
        return out

    def take(self, rows: np.ndarray) -> RewardTable:
        """The rows ``rows`` (indices or a boolean mask) of the table, with the same report."""
        idx = np.asarray(rows)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
        return RewardTable(self.table.take(pa.array(idx, pa.int64())), self.report)

    def contexts(self) -> list[Any]:
        """The logged ``MemberContext`` of every row (``ValidationError`` when one was not logged)."""
        t = self.table
        if t.num_rows == 0:
            raise ValidationError("No decision has a known reward: the feedback would be empty.")
        ctx_json = t.column("context_json").to_pylist()
        missing = [i for i, c in enumerate(ctx_json) if c is None]
        if missing:
            raise ValidationError(
                f"Decisions without context_json cannot be featurized (rows {missing[:5]}); log the context."
            )
        return [context_from_json(c) for c in ctx_json]

    def candidate_batch(
        self,
        featurizer: Any,
        pools: Sequence[Sequence[str]] | None = None,
        contexts: Sequence[Any] | None = None,
    ) -> Any:
        """``CandidateBatch`` of the logged contexts, over the logged pools or the given ``pools`` (one
        sequence of artwork ids of the event's title per row), built with ``featurizer.events``."""
        t = self.table
        ctx = list(contexts) if contexts is not None else self.contexts()
        request_ids = [
            r or e
            for r, e in zip(t.column("request_id").to_pylist(), t.column("event_id").to_pylist(), strict=True)
        ]
        return featurizer.events(
            ctx,
            t.column("title_id").to_pylist(),
            [tuple(p) for p in t.column("pool").to_pylist()] if pools is None else [tuple(p) for p in pools],
            request_ids=request_ids,
        )

    def to_feedback(
        self,
        featurizer: Any,
        pools: Sequence[Sequence[str]] | None = None,
        contexts: Sequence[Any] | None = None,
    ) -> Any:
        """``LoggedFeedback`` rebuilt from the logged contexts with ``featurizer.events``: over the logged
        pools, or over ``pools`` (each must hold the shown artwork; the shown index is mapped into it)."""
        t = self.table
        batch = self.candidate_batch(featurizer, pools, contexts)
        chosen = t.column("chosen_index").to_numpy(zero_copy_only=False).astype(np.int64)
        if pools is not None:
            shown = t.column("artwork_id").to_pylist()
            index = []
            for i, (a, pool) in enumerate(zip(shown, pools, strict=True)):
                try:
                    index.append(list(pool).index(a))
                except ValueError:
                    raise UnknownIdError(
                        f"pools[{i}] does not hold the shown artwork {a!r}: its feedback cannot be mapped."
                    ) from None
            chosen = np.asarray(index, dtype=np.int64)
        propensity = t.column("propensity").to_numpy(zero_copy_only=False)
        return LoggedFeedback(batch, chosen, propensity, self.reward)


def _runtimes(runtimes: Mapping[str, float] | Any | None) -> dict[str, float]:
    """Seconds per title from a mapping (title -> seconds) or a ``Catalog`` (runtime_minutes)."""
    if runtimes is None:
        return {}
    if hasattr(runtimes, "titles"):
        return {t.title_id: 60.0 * t.runtime_minutes for t in runtimes.titles.values() if t.runtime_minutes}
    return {str(k): float(v) for k, v in dict(runtimes).items()}


_CLASSIFY = """
WITH o AS (SELECT * FROM _o),
by_id AS (
    SELECT o.event_id AS oid, o.event_type, o.engaged_seconds, o.timestamp AS ots, o.decision_id AS claimed,
           d.event_id AS did, d.timestamp AS dts
    FROM o LEFT JOIN _d d ON o.decision_id = d.event_id
    WHERE o.decision_id IS NOT NULL
),
by_key AS (
    SELECT o.event_id AS oid, o.event_type, o.engaged_seconds, o.timestamp AS ots, NULL AS claimed,
           d.event_id AS did, d.timestamp AS dts
    FROM (SELECT * FROM o WHERE decision_id IS NULL) o
    ASOF LEFT JOIN _d d
      ON o.member_id = d.member_id AND o.title_id = d.title_id AND o.timestamp >= d.timestamp
),
u AS (SELECT * FROM by_id UNION ALL SELECT * FROM by_key)
SELECT *, CASE
    WHEN did IS NULL THEN 'unmatched'
    WHEN ots < dts THEN 'early'
    WHEN ots - dts > ? THEN 'late'
    ELSE 'joined' END AS status
FROM u
"""

_AGG = """
SELECT did,
       count(*) AS n_outcomes,
       bool_or(event_type = 'play') AS played,
       bool_or(event_type = 'impression') AS displayed,
       bool_or(event_type = 'complete') AS completed,
       max(coalesce(engaged_seconds, 0.0)) AS engaged_seconds
FROM _c WHERE status = 'joined' GROUP BY did
"""


def join_rewards(
    decisions: pa.Table,
    outcomes: pa.Table,
    *,
    window_seconds: float = ATTRIBUTION_WINDOW_SECONDS,
    rule: QualityRule | None = None,
    runtimes: Mapping[str, float] | Any | None = None,
    as_of: float | None = None,
    require_impression: bool = False,
    until: float | None = None,
) -> RewardTable:
    """Attribute outcomes to decisions and label each decision's reward (1 = quality play, else 0).

    ``as_of`` (epoch s): decisions whose window is still open then are left out and counted as pending.
    The default is the latest *outcome* timestamp: the outcome stream may lag the decision stream, and a
    decision is not scored 0 before its outcome could have arrived (with no outcome at all, every decision
    is pending). ``require_impression``: keep only decisions confirmed by an ``impression`` outcome.
    ``until``: decisions at or after it only take the outcomes that are theirs: they are left out of the
    table and of the report, and so are the outcomes attributed to them (``join_store`` reads them so that
    a later decision's outcome is not given to an earlier one).
    """
    check_param("join_rewards", "window_seconds", window_seconds, Interval(0, None, closed="neither"))
    rule = rule or QualityRule()
    d = decisions_table(decisions)
    o = outcomes_table(outcomes)
    if d.num_rows == 0:
        raise ValidationError("The decisions table is empty: there is nothing to join outcomes to.")
    run = _runtimes(runtimes)
    con = duckdb.connect(":memory:")
    try:
        con.register("_d", d)
        con.register("_o", o)
        classified = con.sql(_CLASSIFY, params=[float(window_seconds)]).to_arrow_table()
        con.register("_c", classified)
        agg = con.sql(_AGG).to_arrow_table()
    finally:
        con.close()
    status = classified.column("status").to_numpy(zero_copy_only=False)
    if until is not None:  # outcomes of decisions outside [.., until) are theirs, not this join's
        dts = np.asarray(classified.column("dts").to_pylist(), dtype=np.float64)  # NaN when unmatched
        status = status[~(dts >= until)]
    counts = {s: int((status == s).sum()) for s in ("joined", "late", "early", "unmatched")}

    dec_ids = d.column("event_id").to_numpy(zero_copy_only=False)
    n = dec_ids.size
    pos = {k: i for i, k in enumerate(dec_ids.tolist())}
    rows = np.array([pos[k] for k in agg.column("did").to_pylist()], dtype=np.int64)

    def spread(name: str, fill: object, dtype: type) -> np.ndarray:
        out = np.full(n, fill, dtype=dtype)
        out[rows] = agg.column(name).to_numpy(zero_copy_only=False)
        return out

    n_out = spread("n_outcomes", 0, np.int64)
    played = spread("played", False, bool)
    displayed = spread("displayed", False, bool)
    completed = spread("completed", False, bool)
    engaged = spread("engaged_seconds", 0.0, np.float64)
    titles = d.column("title_id").to_pylist()
    runtime = np.array([run.get(t, math.nan) for t in titles], dtype=np.float64)
    engaged = np.where(completed & np.isfinite(runtime), np.maximum(engaged, runtime), engaged)
    quality = played & rule.passes(engaged, runtime)
    ts = d.column("timestamp").to_numpy(zero_copy_only=False)
    if as_of is None:
        horizon = float(o.column("timestamp").to_numpy().max()) if o.num_rows else -math.inf
    else:
        horizon = float(as_of)
    pending = ts + window_seconds > horizon
    inside = np.ones(n, dtype=bool) if until is None else ts < until
    keep = inside & ~pending & (displayed if require_impression else True)
    needs_runtime = rule.min_fraction_of_runtime is not None
    report = JoinReport(
        decisions=int(inside.sum()),
        outcomes=int(status.size),
        joined_outcomes=counts["joined"],
        late_outcomes=counts["late"],
        early_outcomes=counts["early"],
        unmatched_outcomes=counts["unmatched"],
        decisions_with_outcome=int((inside & (n_out > 0)).sum()),
        decisions_without_outcome=int((inside & (n_out == 0)).sum()),
        decisions_pending=int((inside & pending).sum()),
        decisions_not_displayed=int((inside & ~displayed & ~pending).sum()) if require_impression else 0,
        plays=int((inside & played).sum()),
        quality_plays=int((inside & quality).sum()),
        plays_below_quality=int((inside & played & ~quality).sum()),
        runtime_unknown=int((inside & played & ~np.isfinite(runtime)).sum()) if needs_runtime else 0,
    )
    table = (
        d.append_column("reward", pa.array(quality.astype(np.float64)))
        .append_column("engaged_seconds", pa.array(engaged))
        .append_column("played", pa.array(played))
        .append_column("n_outcomes", pa.array(n_out))
        .filter(pa.array(np.broadcast_to(keep, (n,))))
    )
    return RewardTable(table, report)


def _latest_outcome(store: Any) -> float:
    """The latest outcome timestamp in ``store`` (-inf when it holds none)."""
    con = getattr(store, "connection", None)
    if con is not None:
        latest = con.execute("SELECT max(timestamp) FROM outcomes").fetchall()[0][0]
    else:
        ts = store.outcomes().column("timestamp").to_numpy()
        latest = ts.max() if ts.size else None
    return -math.inf if latest is None else float(latest)


def join_store(
    store: Any, start: float | None = None, end: float | None = None, **kwargs: Any
) -> RewardTable:
    """``join_rewards`` on an ``EventStore``'s decisions in [start, end) and their outcomes.

    An outcome goes to the latest decision of its (member, title) before it, which may be at or after
    ``end``: those later decisions are read too (only for pairs with an outcome since ``start``), so they
    take their outcomes, and are then left out of the table and the report. The default ``as_of`` is the
    latest outcome timestamp in the whole store."""
    if kwargs.get("as_of") is None:
        kwargs["as_of"] = _latest_outcome(store)
    if end is None:
        return join_rewards(store.decisions(start, None), store.outcomes(start, None), **kwargs)
    window = float(kwargs.get("window_seconds", ATTRIBUTION_WINDOW_SECONDS))
    decisions = store.decisions(start, end)
    if decisions.num_rows == 0:
        raise ValidationError("The decisions table is empty: there is nothing to join outcomes to.")
    later = store.decisions_with_outcomes(end, start)
    later = later.filter(pc.less(later.column("timestamp"), end + window))
    if later.num_rows:
        decisions = pa.concat_tables([decisions, later])
    return join_rewards(decisions, store.outcomes(start, end + window), until=float(end), **kwargs)


def join_closed(store: Any, start: float | None, end: float, **kwargs: Any) -> RewardTable:
    """The learner's incremental join: ``join_store`` of the decisions in [start, end), which reads only
    those decisions, the later ones whose (member, title) has an outcome since ``start``, and the outcomes
    up to ``end`` + the window, never every decision up to now."""
    return join_store(store, start, end, **kwargs)


__all__ = [
    "ATTRIBUTION_WINDOW_SECONDS",
    "QUALITY_SECONDS",
    "JoinReport",
    "QualityRule",
    "RewardTable",
    "join_closed",
    "join_rewards",
    "join_store",
]
