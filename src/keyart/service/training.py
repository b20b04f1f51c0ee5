"""The learner's training step: the decisions whose attribution window closed, their rewards, the updates.

``closed_rewards`` joins the outcomes of the stored decisions in ``[start, end)`` (``keyart.rewards``:
attribution window, quality-play rule) and keeps those the policies may learn from: drawn from a policy
(no fallback) on pools the catalog still knows. ``with_direct_rewards`` replaces a joined label by the
reward a client reported directly for the decision. ``update_policies`` rebuilds the features from the
logged contexts and pools and updates each policy in chunks, halving a chunk that fails validation down to
the rows at fault, which are set aside. ``add_artwork_stats`` keeps the per-artwork sums behind the
unpersonalized defaults.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keyart.catalog import Catalog
from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.events import context_from_json
from keyart.features import Featurizer
from keyart.feedback import LoggedFeedback
from keyart.policies import Policy
from keyart.rewards import QualityRule, RewardTable, join_closed
from keyart.service.metrics import Metrics
from keyart.store import EventStore

log = logging.getLogger("keyart.service.learner")
CHUNK = 4096  # events per policy update (bounds the feature tensor's memory)


def closed_rewards(
    store: EventStore,
    catalog: Catalog,
    start: float | None,
    end: float,
    *,
    window: float,
    quality_seconds: float,
    as_of: float,
) -> RewardTable | None:
    """The learnable decisions of ``[start, end)`` with their joined rewards (None: nothing to join)."""
    rule = QualityRule(min_seconds=quality_seconds)
    try:
        rt = join_closed(store, start, end, window_seconds=window, rule=rule, runtimes=catalog, as_of=as_of)
    except ValidationError as exc:
        log.warning("nothing to join: %s", exc)
        return None
    return learnable(rt, catalog, end)


def learnable(rt: RewardTable, catalog: Catalog, end: float) -> RewardTable:
    """The rows of ``rt`` a policy may learn from: before ``end``, drawn from a policy (no fallback), on
    pools the catalog still knows (shared by the learner and ``keyart train``)."""
    t = rt.table
    ts = t.column("timestamp").to_numpy(zero_copy_only=False)
    fallback = t.column("fallback").to_numpy(zero_copy_only=False)
    fallback = np.asarray([bool(f) for f in fallback]) if fallback.dtype == object else fallback.astype(bool)
    pools = t.column("pool").combine_chunks()
    unknown = pc.invert(
        pc.is_in(pc.list_flatten(pools), value_set=pa.array(list(catalog.artworks), pa.string()))
    )
    parents = pc.list_parent_indices(pools).to_numpy(zero_copy_only=False)
    in_catalog = np.ones(t.num_rows, dtype=bool)
    in_catalog[parents[unknown.to_numpy(zero_copy_only=False)]] = False  # a pool naming an unknown artwork
    keep = (ts < end) & ~fallback & in_catalog
    return RewardTable(t.filter(pa.array(keep)), rt.report)


def direct_rewards(
    rewards_db: duckdb.DuckDBPyConnection, store: EventStore, t: pa.Table, window: float
) -> dict[str, float]:
    """The rewards reported directly for the decisions of ``t`` (decision id -> the highest one).

    A reward named by decision id applies to it; one named by member and title applies to their latest
    stored decision at or before the reward, inside the attribution window (``window`` seconds). The
    latter are resolved here, when the decisions are learned, not when the reward is ingested: the
    decision's line may come from another worker's segment and be ingested after the reward.
    """
    ids = t.column("event_id").to_pylist()
    rows = rewards_db.execute(
        "SELECT decision_id, max(reward) FROM rewards WHERE decision_id IN (SELECT unnest(?)) GROUP BY 1",
        [ids],
    ).fetchall()
    out: dict[str, float] = {str(d): float(r) for d, r in rows}
    if not ids:
        return out
    ts = t.column("timestamp").to_numpy(zero_copy_only=False)
    members = sorted(set(t.column("member_id").to_pylist()))
    keyed = rewards_db.execute(
        "SELECT member_id, title_id, reward, timestamp FROM rewards WHERE decision_id IS NULL "
        "AND member_id IN (SELECT unnest(?)) AND timestamp >= ? AND timestamp <= ?",
        [members, float(ts.min()), float(ts.max()) + window],
    ).fetchall()
    if not keyed:
        return out
    con = store.connection
    m, tt, r, rts = (list(c) for c in zip(*keyed, strict=True))
    con.register("_keyed_rewards", pa.table({"m": m, "t": tt, "r": r, "ts": rts}))
    try:
        resolved = con.execute(
            "SELECT r.r, (SELECT d.event_id FROM decisions d "
            "WHERE d.member_id = r.m AND d.title_id = r.t "
            "AND d.timestamp <= r.ts AND d.timestamp >= r.ts - ? "
            "ORDER BY d.timestamp DESC, d.event_id DESC LIMIT 1) FROM _keyed_rewards r",
            [window],
        ).fetchall()
    finally:
        con.unregister("_keyed_rewards")
    wanted = set(ids)
    for reward, did in resolved:
        if did in wanted:
            out[did] = max(float(reward), out.get(did, -math.inf))
    return out


def with_direct_rewards(t: pa.Table, direct: dict[str, float]) -> pa.Table:
    """``t`` with the joined label replaced by the reward reported directly for a decision (``direct``)."""
    if not direct:
        return t
    ids = t.column("event_id").to_pylist()
    reward = t.column("reward").to_numpy(zero_copy_only=False).copy()
    for i, d in enumerate(ids):
        if d in direct:
            reward[i] = direct[d]
    return t.set_column(t.schema.get_field_index("reward"), "reward", pa.array(reward))


class LearnerFeaturizer(Featurizer):
    """The learner's featurizer: a page's decisions share one logged context, so a member's history is
    weighted once per page, not once per title (``member_vectors`` is memoized per context object; the
    memo is emptied by ``forget`` before each batch of updates)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._memo: dict[int, tuple[MemberContext, tuple[np.ndarray, np.ndarray]]] = {}

    def member_vectors(self, context: MemberContext) -> tuple[np.ndarray, np.ndarray]:
        hit = self._memo.get(id(context))
        if hit is not None and hit[0] is context:
            return hit[1]
        out = super().member_vectors(context)
        self._memo[id(context)] = (context, out)  # the context is kept: its id cannot be reused meanwhile
        return out

    def forget(self) -> None:
        """Empty the memo (its contexts are released)."""
        self._memo.clear()


def logged_contexts(t: pa.Table) -> list[MemberContext]:
    """The logged ``MemberContext`` of every row of a decisions table, each distinct ``context_json``
    parsed once (a page logs one context for all its titles: one object per page, not per row)."""
    texts = t.column("context_json").to_pylist()
    if any(c is None for c in texts):
        raise ValidationError("Decisions without context_json cannot be featurized; log the context.")
    parsed: dict[str, MemberContext] = {}
    return [parsed[c] if c in parsed else parsed.setdefault(c, context_from_json(c)) for c in texts]


def _feedback(t: pa.Table, report: Any, featurizer: Featurizer, contexts: list[MemberContext]) -> Any:
    """``LoggedFeedback`` of the rows of ``t`` (``contexts``: theirs, see ``logged_contexts``)."""
    return RewardTable(t, report).to_feedback(featurizer, contexts=contexts)


def update_policies(
    policies: Sequence[Policy], rewards: RewardTable, featurizers: Sequence[Featurizer], metrics: Metrics
) -> set[int]:
    """Update the policies in chunks, each from rows built by its featurizer (one per policy: a model's
    own featurization; each distinct one runs once per chunk); returns the rows set aside (indices into
    ``rewards.table``).

    A chunk whose featurization or update fails validation (features so large that the statistics
    overflow) is split in halves down to single rows, per policy (an invalid update changes nothing), so
    only the offending rows are set aside (logged, counted) and every other row is learned once.
    Contexts are parsed once per page (``logged_contexts``), and with a ``LearnerFeaturizer`` a member's
    history is weighted once per page.
    """
    t = rewards.table
    bad: set[int] = set()
    for s in range(0, t.num_rows, CHUNK):
        part = t.slice(s, CHUNK)
        try:
            contexts: list[MemberContext] | None = logged_contexts(part)
        except ValidationError:
            contexts = None
        built: dict[int, LoggedFeedback | None] = {}
        for policy, featurizer in zip(policies, featurizers, strict=True):
            if id(featurizer) not in built:
                if isinstance(featurizer, LearnerFeaturizer):
                    featurizer.forget()
                try:
                    built[id(featurizer)] = (
                        None if contexts is None else _feedback(part, rewards.report, featurizer, contexts)
                    )
                except ValidationError:
                    built[id(featurizer)] = None
            fb = built[id(featurizer)]
            if fb is not None:
                try:
                    policy.update(fb)
                    continue
                except ValidationError:
                    pass
            bad.update(s + i for i in _update_split(policy, part, rewards.report, featurizer, contexts))
    if bad:
        ids = t.column("event_id").to_pylist()
        log.warning(
            "%d decisions set aside: their update failed validation (e.g. %s)",
            len(bad),
            ", ".join(ids[i] for i in sorted(bad)[:3]),
        )
        metrics.learner_skipped.labels("invalid_update").inc(len(bad))
    return bad


def _update_split(
    policy: Policy,
    t: pa.Table,
    report: Any,
    featurizer: Featurizer,
    contexts: list[MemberContext] | None,
) -> list[int]:
    """Update ``policy`` with the rows of ``t``, halving on a validation failure; the rows that fail alone
    are not learned and are returned (indices into ``t``). ``contexts``: those of ``t``'s rows, or None
    (parsed here: one may be what fails)."""
    try:
        if contexts is None:
            contexts = logged_contexts(t)
        policy.update(_feedback(t, report, featurizer, contexts))
        return []
    except ValidationError:
        if t.num_rows <= 1:
            return list(range(t.num_rows))
    h = t.num_rows // 2
    head, tail = (None, None) if contexts is None else (contexts[:h], contexts[h:])
    left = _update_split(policy, t.slice(0, h), report, featurizer, head)
    return left + [h + i for i in _update_split(policy, t.slice(h), report, featurizer, tail)]


def add_artwork_stats(stats: dict[str, list[float]], t: pa.Table, skip: Collection[int]) -> None:
    """Add the rows of ``t`` but ``skip`` to ``stats`` (shown artwork id -> [reward sum, decisions])."""
    shown = t.column("artwork_id").to_pylist()
    reward = t.column("reward").to_numpy(zero_copy_only=False)
    for i, (a, r) in enumerate(zip(shown, reward.tolist(), strict=True)):
        if i in skip:
            continue
        st = stats.setdefault(a, [0.0, 0.0])
        st[0] += r
        st[1] += 1.0


__all__ = [
    "CHUNK",
    "LearnerFeaturizer",
    "add_artwork_stats",
    "closed_rewards",
    "direct_rewards",
    "learnable",
    "logged_contexts",
    "update_policies",
    "with_direct_rewards",
]
