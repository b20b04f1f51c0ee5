"""Request and response shapes of the HTTP API (pydantic models, used for parsing and for OpenAPI),
the examples shown in the OpenAPI document (tested against the app), and the 4xx error type."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from keyart.errors import ValidationError

Id = Annotated[str, Field(min_length=1, max_length=256)]
#: Numbers are JSON numbers: ``strict`` refuses ``true``/``false`` and numeric strings (pydantic's lax
#: ``float`` would take them, which the OpenAPI document, ``type: number``, does not allow).
Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]
#: The largest magnitude of a member's free numeric features (``context.extra``, ``recommender_scores``):
#: larger values would overflow the learner's statistics (they are squared and summed).
FEATURE_BOUND = 1e6
Bounded = Annotated[float, Field(ge=-FEATURE_BOUND, le=FEATURE_BOUND, allow_inf_nan=False, strict=True)]
#: The most labels in one list of a title or artwork sent over HTTP (genres, cast, theme genres, featured
#: cast, tags): the featurizer works through each on every page that shows the title.
MAX_LABELS = 256
#: The longest artwork embedding accepted over HTTP (common image embeddings have 512-1,536 values).
MAX_EMBEDDING = 4096
Labels = Annotated[list[Id], Field(max_length=MAX_LABELS)]


class RequestError(ValidationError):
    """A request the service refuses: HTTP ``status``, a short ``error`` code, the offending ``field``."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.field = status, error, detail, field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        return out


def from_pydantic(exc: PydanticValidationError) -> RequestError:
    """The first problem pydantic found, as a 422 naming the field (``title_ids[3]``, ``context.device``)."""
    err = exc.errors(include_url=False)[0]
    loc = ""
    for part in err.get("loc", ()):
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    if err.get("type") == "json_invalid":
        return RequestError(400, "invalid_json", f"The body is not valid JSON: {err.get('msg')}.")
    if not loc:
        return RequestError(422, "invalid_request", f"The body must be a JSON object: {err.get('msg')}.")
    return RequestError(422, "invalid_field", f"{loc}: {err.get('msg')}.", loc)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PlayIn(_Strict):
    """One entry of the member's play history."""

    title_id: Id
    timestamp: Finite | None = None
    engaged_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)] | None = None


class ContextIn(_Strict):
    """What the client knows about the member now. ``timestamp`` defaults to the server's clock and may
    not be later than it by more than ``Limits.max_clock_skew_seconds``; ``recommender_scores`` and
    ``extra`` values lie in [-1e6, 1e6] (``FEATURE_BOUND``)."""

    played: list[PlayIn] = []
    country: Annotated[str, Field(max_length=64)] = ""
    language: Annotated[str, Field(max_length=64)] = ""
    device: Annotated[str, Field(max_length=64)] = ""
    timestamp: Finite | None = None
    interacted_titles: list[Id] = []
    recommender_scores: dict[str, Bounded] = {}
    extra: dict[str, Bounded] = {}


class DecideRequest(_Strict):
    """A page: one member, several titles. Without ``context`` the member is unknown (see fallbacks)."""

    member_id: Id
    title_ids: Annotated[list[Id], Field(min_length=1)]
    context: ContextIn | None = None
    page: Annotated[str, Field(max_length=128)] | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class DecideOneRequest(_Strict):
    """One title for one member."""

    member_id: Id
    title_id: Id
    context: ContextIn | None = None
    page: Annotated[str, Field(max_length=128)] | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class DecisionOut(BaseModel):
    """The artwork chosen for one title, and how."""

    title_id: str
    decision_id: str
    artwork_id: str
    propensity: float
    policy: str
    model_version: int
    explored: bool
    fallback: bool
    fallback_reason: str | None = None


class DecideResponse(BaseModel):
    request_id: str
    member_id: str
    generation: int
    decisions: list[DecisionOut]


def _given(*names: str) -> dict[str, Any]:
    """JSON schema: the properties ``names`` are present and not null (an explicit null counts as not
    given, as the route reads it)."""
    return {"required": list(names), "properties": {n: {"not": {"type": "null"}} for n in names}}


class OutcomeIn(_Strict):
    """What the member did after a decision: an event (``play`` with ``engaged_seconds``, ...) or a direct
    ``reward`` in [0, 1]. Name the decision by ``decision_id``, or give ``member_id`` and ``title_id``
    (attributed to the latest decision for them inside the attribution window)."""

    # the two rules the route checks, stated in the schema too (OpenAPI)
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {"anyOf": [_given("event_type"), _given("reward")]},
                {"anyOf": [_given("decision_id"), _given("member_id", "title_id")]},
            ]
        }
    )

    decision_id: Id | None = None
    member_id: Id | None = None
    title_id: Id | None = None
    event_type: Literal["impression", "play", "stop", "pause", "progress", "complete"] | None = None
    engaged_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)] | None = None
    reward: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)] | None = None
    timestamp: Finite | None = None
    event_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class OutcomesRequest(_Strict):
    outcomes: Annotated[list[OutcomeIn], Field(min_length=1)]


class OutcomesResponse(BaseModel):
    """``accepted``: outcomes logged (all of them); ``unmatched``: how many of them name a
    ``decision_id`` this deployment never issued (accepted and stored all the same, but they will not
    join a decision), and those ids (each once)."""

    accepted: int
    event_ids: list[str]
    unmatched: int = 0
    unmatched_decision_ids: list[str] = []


class TitleIn(_Strict):
    """A title to create or update (``PUT /v1/titles/{title_id}``); ``genres`` and ``cast`` hold at most
    ``MAX_LABELS`` (256) entries each."""

    name: Annotated[str, Field(max_length=512)] = ""
    genres: Labels = []
    cast: Labels = []
    runtime_minutes: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)] | None = None
    metadata: dict[str, Any] = {}
    default_artwork_id: Id | None = None


class ArtworkIn(_Strict):
    """An artwork to create or update (``PUT /v1/artworks/{artwork_id}``); ``theme_genres``,
    ``featured_cast`` and ``tags`` hold at most ``MAX_LABELS`` (256) entries each, ``embedding`` at most
    ``MAX_EMBEDDING`` (4,096) values."""

    title_id: Id
    theme_genres: Labels = []
    featured_cast: Labels = []
    style: Annotated[str, Field(max_length=128)] = ""
    tags: Labels = []
    embedding: Annotated[list[Finite], Field(max_length=MAX_EMBEDDING)] | None = None
    image: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    metadata: dict[str, Any] = {}


class ErrorBody(BaseModel):
    error: str
    detail: str
    field: str | None = None


# ---- examples (shown in /openapi.json and /docs; tests send each one to the app) --------------------

EXAMPLE_TITLE = {
    "name": "Stranger Things",
    "genres": ["scifi", "horror"],
    "cast": ["winona"],
    "runtime_minutes": 50,
}
EXAMPLE_ARTWORKS = {
    "st-1": {
        "title_id": "st",
        "theme_genres": ["horror"],
        "featured_cast": [],
        "style": "dark",
        "image": "https://images.example.com/st-1.jpg",
    },
    "st-2": {"title_id": "st", "theme_genres": ["scifi"], "featured_cast": ["winona"], "style": "bright"},
}
EXAMPLE_ARTWORK = EXAMPLE_ARTWORKS["st-1"]
EXAMPLE_DECIDE = {
    "member_id": "m-42",
    "title_ids": ["st"],
    "page": "home",
    "context": {
        "played": [{"title_id": "st", "timestamp": 1_700_000_000, "engaged_seconds": 1800}],
        "country": "US",
        "language": "en",
        "device": "tv",
        "timestamp": 1_700_050_000,
    },
}
EXAMPLE_DECIDE_ONE = {"member_id": "m-42", "title_id": "st", "context": {"device": "mobile"}}
EXAMPLE_OUTCOMES = {
    "outcomes": [
        {"member_id": "m-42", "title_id": "st", "event_type": "play", "engaged_seconds": 1500},
        {"decision_id": "0123456789abcdef01234567", "reward": 1.0},
    ]
}
EXAMPLE_DECISION = {
    "title_id": "st",
    "decision_id": "5f1c0a9e8b7d6c5b4a392817",
    "artwork_id": "st-2",
    "propensity": 0.87,
    "policy": "linear_ts",
    "model_version": 12,
    "explored": False,
    "fallback": False,
    "fallback_reason": None,
}
EXAMPLE_DECIDE_RESPONSE = {
    "request_id": "9d2f...",
    "member_id": "m-42",
    "generation": 12,
    "decisions": [EXAMPLE_DECISION],
}


def body_spec(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body (parsed by hand, so FastAPI does not validate)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    ref = {"$ref": f"#/$defs/{model.__name__}", "$defs": {**defs, model.__name__: schema}}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref, "example": example}},
        }
    }


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody, "description": "Refused; the body names the problem."} for c in codes}
