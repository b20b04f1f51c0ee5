"""Decision rows, built one way: ``DecisionColumns``, and the page record in which the service logs them.

``DecisionColumns`` holds decisions by column and is the one way keyart makes a decision table
(``DECISION_SCHEMA``): the pools and their probability vectors become Arrow lists, and the shown
``artwork_id`` and its ``propensity`` are read from them at ``chosen_index``, so they agree by
construction. It is filled from a policy's ``DecisionBatch`` (``decisions_from_batch``: offline logs,
experiments) and from the service's logged pages (``page_rows``: the learner expands each line into rows
before it stores them); ``keyart.store`` validates and stores the table, and everything downstream
(``keyart.rewards``, evaluation, the learner's training step) reads those rows.

A *page record* is one page of decisions as a service worker logs it (one JSON line of its segment,
written before the response; ``keyart.service.segments``): what the page's rows share, once (request,
time, member, page name, context, policy, model version, fallback), the per-title columns (``title_ids``,
``decision_ids``, ``pools``, ``index``, ``explored``), and the policy's (n, K) probability matrix as
``probabilities_b64`` (float64, little-endian, row-major, base64: exact, and a few times cheaper to write
than ~500 JSON numbers). A shadow policy's choices on the same pools ride along under ``shadow``
(``shadow_record``: its own decision ids, policy, version, probabilities, indices and flags).
``page_record`` builds the record from the columns the decide path already holds (a dict: no per-title
objects, no Arrow); ``page_rows`` turns it back into ``DecisionColumns``.

The service's other line, an *outcome batch record* (``outcomes_record``), holds a request's outcomes
as items of ``OUTCOME_SCHEMA``'s fields (``member_id`` and ``title_id`` may be null when the decision id
is given, ``event_type`` null for a bare reward) plus an optional direct ``reward`` in [0, 1].

Page record history (the reader keeps reading every form; document changes here):
- ``probabilities``: per-row lists of numbers (the first lines); still read.
- ``probabilities_b64``: the padded (n, K) matrix, base64 (the current form).
"""

from __future__ import annotations

import binascii
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa

from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.events.schema import DECISION_SCHEMA, context_to_json
from keyart.events.tables import decisions_table

#: ``k`` of a page record (a segment line of decisions).
PAGE_RECORD = "page"
#: ``k`` of an outcome batch record (a segment line of outcomes, see ``outcomes_record``).
OUTCOMES_RECORD = "outcomes"


@dataclass(frozen=True)
class DecisionColumns:
    """Decisions by column: every field has one entry per decision, except the pools.

    The pools are flat: ``pool_ids`` holds every row's artwork ids one pool after the other,
    ``pool_sizes`` each row's pool length, and ``probabilities`` is aligned with ``pool_ids``. Columns may
    be lists or NumPy arrays. ``table`` builds the ``DECISION_SCHEMA`` table (not yet validated: the
    store, or ``keyart.events.decisions_table``, does that), ``concat`` joins several.
    """

    event_id: Sequence[str]
    request_id: Sequence[str | None]
    timestamp: Sequence[float]
    member_id: Sequence[str]
    title_id: Sequence[str]
    page: Sequence[str | None]
    position: Sequence[int | None]
    context_json: Sequence[str | None]
    pool_sizes: Sequence[int]
    pool_ids: Sequence[str]
    probabilities: Sequence[float]
    chosen_index: Sequence[int]
    policy: Sequence[str]
    model_version: Sequence[int]
    explored: Sequence[bool]
    fallback: Sequence[bool | None]

    def __len__(self) -> int:
        return len(self.event_id)

    @classmethod
    def concat(cls, parts: Sequence[DecisionColumns]) -> DecisionColumns:
        """The rows of ``parts``, one part after the other."""
        if len(parts) == 1:
            return parts[0]
        out: dict[str, Any] = {}
        for f in fields(cls):
            cols = [getattr(p, f.name) for p in parts]
            if all(isinstance(c, np.ndarray) for c in cols):
                out[f.name] = np.concatenate(cols)
            else:
                out[f.name] = list(itertools.chain.from_iterable(cols))
        return cls(**out)

    def table(self) -> pa.Table:
        """The rows as a ``DECISION_SCHEMA`` table (``features`` null); ``ValidationError`` when the columns
        differ in length or a ``chosen_index`` points outside its pool."""
        n = len(self.event_id)
        for f in fields(self):
            if f.name not in ("pool_ids", "probabilities") and len(getattr(self, f.name)) != n:
                raise ValidationError(
                    f"Column {f.name!r} has {len(getattr(self, f.name))} entries for {n} rows."
                )
        sizes = np.asarray(self.pool_sizes, dtype=np.int64).reshape(n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        pool_ids = pa.array(self.pool_ids, pa.string())
        probs = pa.array(self.probabilities, pa.float64())
        if len(pool_ids) != offsets[-1] or len(probs) != offsets[-1]:
            raise ValidationError(
                f"The pools hold {offsets[-1]} artworks; "
                f"got {len(pool_ids)} ids and {len(probs)} probabilities."
            )
        idx = np.asarray(self.chosen_index, dtype=np.int64).reshape(n)
        bad = (idx < 0) | (idx >= sizes)
        if bad.any():
            rows = ", ".join(str(int(i)) for i in np.flatnonzero(bad)[:5])
            raise ValidationError(f"Column 'chosen_index' points outside the pool at rows {rows}.")
        chosen = pa.array(offsets[:-1] + idx)
        list_offsets = pa.array(offsets.astype(np.int32))
        cols = {
            "event_id": pa.array(self.event_id, pa.string()),
            "request_id": pa.array(self.request_id, pa.string()),
            "timestamp": pa.array(self.timestamp, pa.float64()),
            "member_id": pa.array(self.member_id, pa.string()),
            "title_id": pa.array(self.title_id, pa.string()),
            "page": pa.array(self.page, pa.string()),
            "position": pa.array(self.position, pa.int32()),
            "context_json": pa.array(self.context_json, pa.string()),
            "features": pa.nulls(n, DECISION_SCHEMA.field("features").type),
            "pool": pa.ListArray.from_arrays(list_offsets, pool_ids),
            "probabilities": pa.ListArray.from_arrays(list_offsets, probs),
            "chosen_index": pa.array(idx.astype(np.int32)),
            "artwork_id": pool_ids.take(chosen),
            "propensity": probs.take(chosen),
            "policy": pa.array(self.policy, pa.string()),
            "model_version": pa.array(self.model_version, pa.int64()),
            "explored": pa.array(self.explored, pa.bool_()),
            "fallback": pa.array(self.fallback, pa.bool_()),
        }
        return pa.Table.from_arrays(list(cols.values()), schema=DECISION_SCHEMA)


def decisions_from_batch(
    decisions: Any,
    contexts: MemberContext | Sequence[MemberContext] | None = None,
    page: str | None = None,
    positions: Sequence[int] | None = None,
) -> pa.Table:
    """A validated ``DECISION_SCHEMA`` table straight from a policy's ``DecisionBatch`` (column-wise, no
    per-decision objects). ``contexts``: one context for the whole page, or one per decision."""
    b = decisions.batch
    n = int(b.n)
    mask = np.asarray(b.mask, dtype=bool)  # each row's pool first, then padding
    if contexts is None:
        ctx: list[str | None] = [None] * n
    elif isinstance(contexts, MemberContext):
        ctx = [context_to_json(contexts)] * n
    else:
        if len(contexts) != n:
            raise ValidationError(f"contexts has {len(contexts)} entries for {n} decisions.")
        ctx = [context_to_json(c) for c in contexts]
    if positions is not None and len(positions) != n:
        raise ValidationError(f"positions has {len(positions)} entries for {n} decisions.")
    cols = DecisionColumns(
        event_id=list(decisions.decision_ids),
        request_id=np.asarray(b.request_ids).astype(str),
        timestamp=np.asarray(b.timestamps, dtype=np.float64),
        member_id=np.asarray(b.member_ids).astype(str),
        title_id=np.asarray(b.title_ids).astype(str),
        page=[page] * n,
        position=list(positions) if positions is not None else [None] * n,
        context_json=ctx,
        pool_sizes=mask.sum(axis=1),
        pool_ids=np.asarray(b.artwork_ids)[mask].astype(str),
        probabilities=np.asarray(decisions.probabilities, dtype=np.float64)[mask],
        chosen_index=np.asarray(decisions.index, dtype=np.int64),
        policy=[str(decisions.policy)] * n,
        model_version=[int(decisions.model_version)] * n,
        explored=np.asarray(decisions.explored, dtype=bool),
        fallback=[False] * n,
    )
    return decisions_table(cols.table())


# ---- the page record -------------------------------------------------------------------------------


def encode_probabilities(probs: np.ndarray) -> str:
    """An (n, K) probability array as logged: float64 little-endian bytes, row-major, base64."""
    data = np.ascontiguousarray(probs, dtype="<f8").tobytes()
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def decode_probabilities(text: str, n: int) -> np.ndarray:
    """The (n, K) array ``encode_probabilities`` wrote (``ValueError`` when it is not one)."""
    return np.frombuffer(binascii.a2b_base64(text), dtype="<f8").reshape(n, -1)


def page_record(
    *,
    request_id: str,
    timestamp: float,
    member_id: str,
    page: str | None,
    context_json: str,
    policy: str,
    model_version: int,
    fallback: bool,
    title_ids: Sequence[str],
    decision_ids: Sequence[str],
    pools: Sequence[Sequence[str]],
    probabilities: np.ndarray,
    index: Sequence[int] | np.ndarray,
    explored: Sequence[bool] | np.ndarray,
    shadow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One page of decisions as logged (a JSON-ready dict; NumPy arrays need orjson's
    ``OPT_SERIALIZE_NUMPY``): ``probabilities`` is the (n, K) matrix, row i's first ``len(pools[i])``
    entries over its pool; ``shadow`` a ``shadow_record`` on the same pools."""
    record = {
        "k": PAGE_RECORD,
        "request_id": request_id,
        "timestamp": timestamp,
        "member_id": member_id,
        "page": page,
        "context_json": context_json,
        "policy": policy,
        "model_version": model_version,
        "fallback": fallback,
        "title_ids": title_ids,
        "decision_ids": decision_ids,
        "pools": pools,
        "probabilities_b64": encode_probabilities(probabilities),
        "index": index,
        "explored": explored,
    }
    if shadow is not None:
        record["shadow"] = shadow
    return record


def shadow_record(
    *,
    policy: str,
    model_version: int,
    decision_ids: Sequence[str],
    probabilities: np.ndarray,
    index: Sequence[int] | np.ndarray,
    explored: Sequence[bool] | np.ndarray,
) -> dict[str, Any]:
    """A shadow policy's choices on a logged page's pools (the ``shadow`` of ``page_record``)."""
    return {
        "policy": policy,
        "model_version": model_version,
        "decision_ids": decision_ids,
        "probabilities_b64": encode_probabilities(probabilities),
        "index": index,
        "explored": explored,
    }


def page_probabilities(part: Mapping[str, Any], sizes: Sequence[int]) -> list[list[float]]:
    """Each row's probabilities over its pool (``sizes[i]`` of them) from a logged page or its shadow."""
    if "probabilities" in part:  # lines written before probabilities_b64
        return list(part["probabilities"])
    a = decode_probabilities(part["probabilities_b64"], len(sizes))
    return [a[i, :k].tolist() for i, k in enumerate(sizes)]


def _flat_probabilities(part: Mapping[str, Any], sizes: list[int]) -> Sequence[float]:
    """The probabilities of a logged page's pools, one pool after the other."""
    if "probabilities" in part:  # lines written before probabilities_b64
        rows = list(part["probabilities"])
        if len(rows) != len(sizes):
            raise ValueError(f"a page of {len(sizes)} titles has {len(rows)} probability rows")
        flat: list[float] = []
        for row, k in zip(rows, sizes, strict=True):
            row = list(row)
            if len(row) != k:
                raise ValueError(f"a probability row of {len(row)} entries for a pool of {k}")
            flat += row
        return flat
    a = decode_probabilities(part["probabilities_b64"], len(sizes))
    k = np.asarray(sizes, dtype=np.int64)
    if k.size and a.shape[1] < k.max():
        raise ValueError(f"probabilities of {a.shape[1]} columns for a pool of {k.max()}")
    return a[np.arange(a.shape[1]) < k[:, None]]


def page_rows(record: Mapping[str, Any], shadow: bool = False) -> DecisionColumns:
    """The decisions of one page record (``shadow``: its shadow policy's), by column.

    Raises ``ValueError``, ``KeyError``, ``TypeError`` (or pyarrow's errors later, in ``table``) when the
    record is malformed: the reader sets such a line aside.
    """
    part = record["shadow"] if shadow else record
    titles = list(record["title_ids"])
    n = len(titles)
    pools = [list(p) for p in record["pools"]]
    index = [int(i) for i in part["index"]]
    explored = [bool(e) for e in part["explored"]]
    ids = list(part["decision_ids"])
    if not len(pools) == len(index) == len(explored) == len(ids) == n:
        raise ValueError(f"a page of {n} titles has columns of other lengths")
    sizes = [len(p) for p in pools]
    probs = _flat_probabilities(part, sizes)
    return DecisionColumns(
        event_id=ids,
        request_id=[record["request_id"]] * n,
        timestamp=[float(record["timestamp"])] * n,
        member_id=[record["member_id"]] * n,
        title_id=titles,
        page=[record.get("page")] * n,
        position=list(range(n)),
        context_json=[record["context_json"]] * n,
        pool_sizes=sizes,
        pool_ids=[a for p in pools for a in p],
        probabilities=probs,
        chosen_index=index,
        policy=[part["policy"]] * n,
        model_version=[int(part["model_version"])] * n,
        explored=explored,
        fallback=[False if shadow else bool(record.get("fallback", False))] * n,
    )


def outcomes_record(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of outcome items as logged (see the module docstring)."""
    return {"k": OUTCOMES_RECORD, "items": items}
