"""The event schemas: their versions and limits, the Arrow schemas of decision and outcome rows, and the
JSON of a decision's ``context_json`` column. Re-exported by ``keyart.events`` (see its schema history)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pyarrow as pa

from keyart.context import MemberContext, Play
from keyart.errors import ValidationError

SCHEMA_VERSION = 1
#: Tolerance on "the logged probabilities sum to 1".
PROB_SUM_TOL = 1e-6
#: The outcome event types keyart understands (anything else is a typo until added here).
EVENT_TYPES: tuple[str, ...] = ("impression", "play", "stop", "pause", "progress", "complete")
#: Plausible event timestamps, epoch seconds UTC: [1990-01-01, 2200-01-01). Anything outside is almost
#: surely another unit (milliseconds, microseconds) and would corrupt date partitions and time windows.
MIN_TIMESTAMP = 631_152_000.0
MAX_TIMESTAMP = 7_258_118_400.0


def _meta(kind: str) -> dict[bytes, bytes]:
    return {b"keyart.schema": kind.encode(), b"keyart.schema_version": str(SCHEMA_VERSION).encode()}


#: One row per decision. ``event_id`` is the decision id (the idempotency key).
DECISION_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string()),
        pa.field("timestamp", pa.float64(), nullable=False),  # epoch seconds, UTC
        pa.field("member_id", pa.string(), nullable=False),
        pa.field("title_id", pa.string(), nullable=False),
        pa.field("page", pa.string()),  # page/row name where the title was shown
        pa.field("position", pa.int32()),  # slot on that page, 0-based
        pa.field("context_json", pa.string()),  # MemberContext as JSON (context_to_json)
        pa.field("features", pa.list_(pa.float64())),  # optional flattened features of the shown artwork
        pa.field("pool", pa.list_(pa.string()), nullable=False),  # artwork ids in pool order
        pa.field("probabilities", pa.list_(pa.float64()), nullable=False),  # aligned with pool, sums to 1
        pa.field("chosen_index", pa.int32(), nullable=False),
        pa.field("artwork_id", pa.string(), nullable=False),  # == pool[chosen_index]
        pa.field("propensity", pa.float64(), nullable=False),  # == probabilities[chosen_index]
        pa.field("policy", pa.string(), nullable=False),
        pa.field("model_version", pa.int64(), nullable=False),
        pa.field("explored", pa.bool_(), nullable=False),
        pa.field("fallback", pa.bool_()),
    ],
    metadata=_meta("decision"),
)

#: One row per member action after a decision.
OUTCOME_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("decision_id", pa.string()),  # null when the client did not know it
        pa.field("member_id", pa.string(), nullable=False),
        pa.field("title_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("engaged_seconds", pa.float64()),
        pa.field("timestamp", pa.float64(), nullable=False),
    ],
    metadata=_meta("outcome"),
)


def schema_version(schema: pa.Schema) -> tuple[str, int]:
    """(kind, version) declared in a keyart schema's metadata."""
    meta = schema.metadata or {}
    try:
        return meta[b"keyart.schema"].decode(), int(meta[b"keyart.schema_version"])
    except (KeyError, ValueError):
        raise ValidationError("The table carries no keyart schema metadata.") from None


# ---- member context as JSON ------------------------------------------------------------------------


def context_to_dict(context: MemberContext) -> dict[str, Any]:
    """A ``MemberContext`` as plain JSON-ready values (built field by field: ``asdict`` is slow)."""
    return {
        "v": 1,
        "member_id": context.member_id,
        "played": [
            {"title_id": p.title_id, "timestamp": p.timestamp, "engaged_seconds": p.engaged_seconds}
            for p in context.played
        ],
        "country": context.country,
        "language": context.language,
        "device": context.device,
        "timestamp": context.timestamp,
        "interacted_titles": sorted(context.interacted_titles),
        "recommender_scores": dict(context.recommender_scores),
        "extra": dict(context.extra),
    }


def context_to_json(context: MemberContext) -> str:
    """Serialize a ``MemberContext`` (sorted keys: the same context always gives the same text)."""
    return json.dumps(context_to_dict(context), sort_keys=True, separators=(",", ":"))


def context_to_json_fast(context: MemberContext) -> str:
    """The context as ``context_to_json`` writes it (same keys and values, sorted keys), serialized with
    orjson for the decide path (the text may differ in escapes and number spelling, never in meaning)."""
    return orjson.dumps(context_to_dict(context), option=orjson.OPT_SORT_KEYS).decode()


def context_from_json(text: str) -> MemberContext:
    """Rebuild the ``MemberContext`` written by ``context_to_json`` (or ``context_to_json_fast``)."""
    try:
        d = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"context_json is not valid JSON: {exc}") from None
    if not isinstance(d, dict) or "member_id" not in d:
        raise ValidationError("context_json must be an object with a member_id.")
    return MemberContext(
        member_id=d["member_id"],
        played=tuple(Play(**p) for p in d.get("played", ())),
        country=d.get("country", ""),
        language=d.get("language", ""),
        device=d.get("device", ""),
        timestamp=d.get("timestamp", 0.0),
        interacted_titles=frozenset(d.get("interacted_titles", ())),
        recommender_scores=d.get("recommender_scores", {}),
        extra=d.get("extra", {}),
    )
