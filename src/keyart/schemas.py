"""keyart's published data schemas: the catalog (titles, artworks) and the event logs (decisions, outcomes;
an impression is an outcome of type ``impression``), each versioned, as Arrow schemas and as JSON Schemas.

Every field is declared once here (``FieldDoc``: name, Arrow type, required, unit, meaning); the Arrow
schemas, the JSON Schemas printed by ``keyart schema`` and the tables of ``docs/data.md`` all come from
these declarations (a test checks the page against them). The event fields mirror
``keyart.events.DECISION_SCHEMA`` / ``OUTCOME_SCHEMA``, the schemas the event store writes (a test
checks they agree).

Catalog schema history (bump ``CATALOG_SCHEMA_VERSION`` and document every change here):
- 1: first version; artworks gained ``image`` and ``metadata`` (optional, so older files still load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from keyart.errors import ValidationError
from keyart.events.schema import DECISION_SCHEMA, EVENT_TYPES, OUTCOME_SCHEMA, SCHEMA_VERSION

CATALOG_SCHEMA_VERSION = 1
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class FieldDoc:
    """One field of a published schema: its Arrow type, whether a row must have it, unit and meaning."""

    name: str
    type: pa.DataType
    required: bool
    unit: str
    meaning: str
    json_type: dict[str, Any] | None = None  # when the JSON form differs from the Arrow one (metadata)


_STR = pa.string()
_STRS = pa.list_(pa.string())
_META = {"type": "object", "description": "free JSON data; columns the schema does not name land here"}

_METADATA = FieldDoc(
    "metadata",
    _STR,
    False,
    "JSON",
    "Free data: a JSON object (JSON text in Parquet and CSV). Unknown columns are kept here.",
    _META,
)

TITLE_FIELDS: tuple[FieldDoc, ...] = (
    FieldDoc("title_id", _STR, True, "id", "Unique id of the title (what members play)."),
    FieldDoc("name", _STR, False, "text", "Display name; default empty."),
    FieldDoc("genres", _STRS, False, "ids", "The title's genres, a list (never one string)."),
    FieldDoc("cast", _STRS, False, "ids", "The title's cast members, a list (never one string)."),
    FieldDoc("runtime_minutes", pa.float64(), False, "minutes", "Running time; > 0, or null when unknown."),
    _METADATA,
    FieldDoc("default_artwork_id", _STR, False, "id", "Fallback artwork; default: the first of the pool."),
    FieldDoc("active", pa.bool_(), False, "bool", "False when retired (kept for old logs); default true."),
)

ARTWORK_FIELDS: tuple[FieldDoc, ...] = (
    FieldDoc("artwork_id", _STR, True, "id", "Unique id of the artwork (over the whole catalog)."),
    FieldDoc("title_id", _STR, True, "id", "The title whose pool holds this artwork."),
    FieldDoc("theme_genres", _STRS, False, "ids", "Genres the image conveys, a list."),
    FieldDoc("featured_cast", _STRS, False, "ids", "Cast members shown in the image, a list."),
    FieldDoc("style", _STR, False, "label", "Visual style (one label, e.g. dark, bright); default empty."),
    FieldDoc("tags", _STRS, False, "ids", "Free tags, a list."),
    FieldDoc(
        "embedding",
        pa.list_(pa.float64()),
        False,
        "vector",
        "Optional image embedding; finite numbers, one length for the whole catalog.",
    ),
    FieldDoc("active", pa.bool_(), False, "bool", "False when retired (kept for old logs); default true."),
    FieldDoc("image", _STR, False, "path or URL", "Where the image is (a path or a URL); optional."),
    _METADATA,
)

_EVENT_DOCS: dict[str, tuple[str, str]] = {
    # decisions
    "event_id": ("id", "Unique event id; a decision's is the decision id (the idempotency key)."),
    "request_id": ("id", "The page request the decision belongs to."),
    "timestamp": ("epoch seconds UTC", "When the event happened."),
    "member_id": ("id", "The member."),
    "title_id": ("id", "The title."),
    "page": ("label", "Page or row name where the title was shown."),
    "position": ("slot, 0-based", "Slot of the title on that page."),
    "context_json": ("JSON", "The member context as JSON (keyart.events.context_to_json)."),
    "features": ("vector", "Optional flattened features of the shown artwork."),
    "pool": ("ids", "Candidate artwork ids in pool order."),
    "probabilities": ("probabilities", "Probability of each pool artwork (aligned with pool; sums to 1)."),
    "chosen_index": ("index", "Index of the shown artwork in pool."),
    "artwork_id": ("id", "The shown artwork (= pool[chosen_index])."),
    "propensity": ("probability", "Probability of the shown artwork (= probabilities[chosen_index])."),
    "policy": ("name", "The policy that chose."),
    "model_version": ("count", "Model generation that chose."),
    "explored": ("bool", "True when the shown artwork was not the policy's best guess."),
    "fallback": ("bool", "True when a default artwork was shown because something failed."),
    # outcomes
    "decision_id": ("id", "The decision this outcome follows; null when the client did not know it."),
    "event_type": ("label", "One of impression, play, stop, pause, progress, complete."),
    "engaged_seconds": ("seconds", "Seconds watched so far (play, stop, progress, complete)."),
}


def _event_fields(schema: pa.Schema) -> tuple[FieldDoc, ...]:
    """The documented fields of one of keyart's event schemas (kept in step with it by construction)."""
    out = []
    for f in schema:
        unit, meaning = _EVENT_DOCS[f.name]
        if f.name == "event_id" and schema is OUTCOME_SCHEMA:
            meaning = "Unique outcome id (the idempotency key)."
        json_type = {"type": "string", "enum": list(EVENT_TYPES)} if f.name == "event_type" else None
        out.append(FieldDoc(f.name, f.type, not f.nullable, unit, meaning, json_type))
    return tuple(out)


DECISION_FIELDS = _event_fields(DECISION_SCHEMA)
OUTCOME_FIELDS = _event_fields(OUTCOME_SCHEMA)


def _arrow(fields: tuple[FieldDoc, ...], kind: str) -> pa.Schema:
    meta = {b"keyart.schema": kind.encode(), b"keyart.schema_version": str(CATALOG_SCHEMA_VERSION).encode()}
    return pa.schema([pa.field(f.name, f.type, nullable=not f.required) for f in fields], metadata=meta)


#: The Arrow schemas of a catalog's two tables (``titles.parquet``, ``artworks.parquet``).
TITLE_SCHEMA = _arrow(TITLE_FIELDS, "title")
ARTWORK_SCHEMA = _arrow(ARTWORK_FIELDS, "artwork")

#: The published schemas by the name ``keyart schema`` takes.
SCHEMA_NAMES = ("catalog", "decisions", "outcomes")


def _json_type(t: pa.DataType) -> dict[str, Any]:
    if pa.types.is_string(t):
        return {"type": "string"}
    if pa.types.is_floating(t):
        return {"type": "number"}
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    if pa.types.is_list(t):
        return {"type": "array", "items": _json_type(t.value_type)}
    raise ValidationError(f"No JSON Schema type for Arrow type {t}.")  # pragma: no cover - schema bug


def _object(fields: tuple[FieldDoc, ...], title: str, extra: bool) -> dict[str, Any]:
    props = {}
    for f in fields:
        spec = dict(f.json_type or _json_type(f.type))
        if not f.required:
            spec = {"anyOf": [spec, {"type": "null"}]}
        props[f.name] = {**spec, "description": f"{f.meaning} Unit: {f.unit}."}
    return {
        "title": title,
        "type": "object",
        "properties": props,
        "required": [f.name for f in fields if f.required],
        "additionalProperties": extra,
    }


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of ``catalog`` (a catalog JSON file), ``decisions`` or ``outcomes`` (one JSON Lines
    row of an event log)."""
    if name == "catalog":
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"https://keyart.dev/schemas/catalog-v{CATALOG_SCHEMA_VERSION}.json",
            "title": "keyart catalog",
            "description": "Titles and their artwork pools. Unknown row fields are kept in metadata.",
            "type": "object",
            "properties": {
                "format_version": {"const": CATALOG_SCHEMA_VERSION},
                "titles": {"type": "array", "items": _object(TITLE_FIELDS, "title", True)},
                "artworks": {"type": "array", "items": _object(ARTWORK_FIELDS, "artwork", True)},
            },
            "required": ["format_version", "titles", "artworks"],
            "additionalProperties": False,
        }
    if name in ("decisions", "outcomes"):
        fields = DECISION_FIELDS if name == "decisions" else OUTCOME_FIELDS
        row = _object(fields, name[:-1], False)
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"https://keyart.dev/schemas/{name}-v{SCHEMA_VERSION}.json",
            **row,
            "title": f"keyart {name[:-1]} (one row of the {name} log)",
        }
    raise ValidationError(f"schema must be one of {', '.join(SCHEMA_NAMES)}. Got {name!r}.")


def fields_of(name: str) -> dict[str, tuple[FieldDoc, ...]]:
    """The documented fields of a published schema, by table: {"titles": ..., "artworks": ...} for the
    catalog, {name: ...} for an event log."""
    if name == "catalog":
        return {"titles": TITLE_FIELDS, "artworks": ARTWORK_FIELDS}
    if name == "decisions":
        return {"decisions": DECISION_FIELDS}
    if name == "outcomes":
        return {"outcomes": OUTCOME_FIELDS}
    raise ValidationError(f"schema must be one of {', '.join(SCHEMA_NAMES)}. Got {name!r}.")


def markdown_table(fields: tuple[FieldDoc, ...]) -> str:
    """The Markdown table of ``fields`` that docs/data.md shows (a test keeps the page equal to it)."""
    lines = ["| field | type | required | unit | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        req = "yes" if f.required else "no"
        kind = str(f.type).replace("item: ", "")
        lines.append(f"| `{f.name}` | `{kind}` | {req} | {f.unit} | {f.meaning} |")
    return "\n".join(lines)


__all__ = [
    "ARTWORK_FIELDS",
    "ARTWORK_SCHEMA",
    "CATALOG_SCHEMA_VERSION",
    "DECISION_FIELDS",
    "DECISION_SCHEMA",
    "OUTCOME_FIELDS",
    "OUTCOME_SCHEMA",
    "SCHEMA_NAMES",
    "TITLE_FIELDS",
    "TITLE_SCHEMA",
    "FieldDoc",
    "fields_of",
    "json_schema",
    "markdown_table",
]
