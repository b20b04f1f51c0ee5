"""Decision requests from raw bytes: orjson and hand validation on the hot path, pydantic for the errors.

``parse_page`` / ``parse_title`` accept exactly what the pydantic models of ``keyart.service.schemas``
accept and yield the same values; they only differ in speed. The fast validator is deliberately narrow
(JSON numbers for numbers, strings for strings, no unknown keys): whatever it does not accept at once is
handed to pydantic, which either refuses it with the usual 4xx body (same code, message and field as
before) or accepts it (lax cases such as a number given as a string), so every answer, error or not, is
what the pydantic models alone would give.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError as PydanticValidationError

from keyart.context import MemberContext, Play
from keyart.events import MIN_TIMESTAMP
from keyart.service.config import Limits
from keyart.service.schemas import (
    FEATURE_BOUND,
    ContextIn,
    DecideOneRequest,
    DecideRequest,
    PlayIn,
    RequestError,
    from_pydantic,
)

# the fields the pydantic models accept: anything else is for pydantic to refuse
_PAGE_KEYS = frozenset(DecideRequest.model_fields)
_TITLE_KEYS = frozenset(DecideOneRequest.model_fields)
_CONTEXT_KEYS = frozenset(ContextIn.model_fields)
_PLAY_KEYS = frozenset(PlayIn.model_fields)
_NONE: list[Any] = []  # default of absent list fields (never mutated)
_NO_MAP: dict[str, Any] = {}  # default of absent map fields (never mutated)
_isfinite = math.isfinite


@dataclass(slots=True)
class PageRequest:
    """A validated page request. ``known``: the request carried a context (else the member is unknown and
    ``context`` holds only the member id and the server's clock)."""

    member_id: str
    title_ids: list[str]
    context: MemberContext
    known: bool
    page: str | None
    request_id: str | None


class _Defer(Exception):
    """The fast validator is not sure: let pydantic decide."""


def _id(v: Any, hi: int = 256) -> str:
    if type(v) is not str or not 0 < len(v) <= hi:
        raise _Defer
    return v


def _opt_str(v: Any, lo: int, hi: int) -> str | None:
    if v is None:
        return None
    if type(v) is not str or not lo <= len(v) <= hi:
        raise _Defer
    return v


def _number(v: Any) -> float:
    """A finite JSON number as a float (ints are converted, as pydantic's ``float`` fields do)."""
    t = type(v)
    if t is float:
        if not _isfinite(v):
            raise _Defer
        return v  # type: ignore[no-any-return]
    if t is int:
        return float(v)
    raise _Defer


def _short(v: Any) -> str:
    if type(v) is not str or len(v) > 64:
        raise _Defer
    return v  # type: ignore[no-any-return]


def _bounded(v: Any) -> float:
    """``_number`` within [-FEATURE_BOUND, FEATURE_BOUND] (pydantic refuses the rest, naming the field)."""
    x = _number(v)
    if not -FEATURE_BOUND <= x <= FEATURE_BOUND:
        raise _Defer
    return x


def _numbers(v: Any) -> dict[str, float]:
    if type(v) is not dict:
        raise _Defer
    return {k: _bounded(x) for k, x in v.items()}


def _play_maker() -> Callable[[str, float | None, float | None], Play]:
    """``Play(title_id, timestamp, engaged_seconds)`` for values already checked here, without repeating
    ``Play.__post_init__``'s checks (a third of a page's parsing); the plain constructor if ``Play``'s
    fields are not the three this module checks."""
    if tuple(f.name for f in dataclasses.fields(Play)) != ("title_id", "timestamp", "engaged_seconds"):
        return Play
    new, set_ = object.__new__, object.__setattr__

    def make(title_id: str, timestamp: float | None, engaged_seconds: float | None) -> Play:
        p = new(Play)
        set_(p, "title_id", title_id)
        set_(p, "timestamp", timestamp)
        set_(p, "engaged_seconds", engaged_seconds)
        return p

    return make


_play = _play_maker()


def _fast_context(member_id: str, c: Any, now: float) -> MemberContext:
    if type(c) is not dict or not c.keys() <= _CONTEXT_KEYS:
        raise _Defer
    played = c.get("played", _NONE)
    if type(played) is not list:
        raise _Defer
    plays = []
    play, isfinite, play_keys = _play, _isfinite, _PLAY_KEYS
    for p in played:  # inlined checks: histories are the bulk of a request
        if type(p) is not dict or not p.keys() <= play_keys:
            raise _Defer
        t = p.get("title_id")
        ts = p.get("timestamp")
        es = p.get("engaged_seconds")
        if type(t) is not str or not 0 < len(t) <= 256:
            raise _Defer
        if ts is not None:
            if type(ts) is int:
                ts = float(ts)
            elif type(ts) is not float or not isfinite(ts):
                raise _Defer
        if es is not None:
            if type(es) is int:
                es = float(es)
            elif type(es) is not float or not isfinite(es):
                raise _Defer
            if es < 0:
                raise _Defer
        plays.append(play(t, ts, es))
    interacted = c.get("interacted_titles", _NONE)
    if type(interacted) is not list:
        raise _Defer
    ts = c.get("timestamp")
    return MemberContext(
        member_id=member_id,
        played=tuple(plays),
        country=_short(c.get("country", "")),
        language=_short(c.get("language", "")),
        device=_short(c.get("device", "")),
        timestamp=now if ts is None else _number(ts),
        interacted_titles=frozenset(_id(t) for t in interacted),
        recommender_scores=_numbers(c.get("recommender_scores", _NO_MAP)),
        extra=_numbers(c.get("extra", _NO_MAP)),
    )


def _fast(body: bytes, keys: frozenset[str], one: bool, now: float) -> PageRequest:
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Defer from None
    if type(d) is not dict or not d.keys() <= keys:
        raise _Defer
    member_id = _id(d.get("member_id"))
    if one:
        title_ids = [_id(d.get("title_id"))]
    else:
        title_ids = d.get("title_ids")
        if type(title_ids) is not list or not title_ids:
            raise _Defer
        for t in title_ids:
            if type(t) is not str or not 0 < len(t) <= 256:
                raise _Defer
    c = d.get("context")
    ctx = MemberContext(member_id=member_id, timestamp=now) if c is None else _fast_context(member_id, c, now)
    return PageRequest(
        member_id,
        title_ids,
        ctx,
        c is not None,
        _opt_str(d.get("page"), 0, 128),
        _opt_str(d.get("request_id"), 1, 128),
    )


def make_context(member_id: str, ctx: ContextIn | None, now: float) -> MemberContext:
    """A ``MemberContext`` from a pydantic-validated context (``timestamp`` defaults to ``now``)."""
    if ctx is None:
        return MemberContext(member_id=member_id, timestamp=now)
    return MemberContext(
        member_id=member_id,
        played=tuple(Play(p.title_id, p.timestamp, p.engaged_seconds) for p in ctx.played),
        country=ctx.country,
        language=ctx.language,
        device=ctx.device,
        timestamp=now if ctx.timestamp is None else ctx.timestamp,
        interacted_titles=frozenset(ctx.interacted_titles),
        recommender_scores=ctx.recommender_scores,
        extra=ctx.extra,
    )


def parse_with_models(body: bytes, one: bool, now: float) -> PageRequest:
    """The reference parse: pydantic's models alone (``one``: a ``DecideOneRequest``); the fast path must
    always agree with it, and falls back on it whenever it is not sure."""
    try:
        if one:
            r1 = DecideOneRequest.model_validate_json(body)
            member_id, title_ids, c, page, rid = (
                r1.member_id,
                [r1.title_id],
                r1.context,
                r1.page,
                r1.request_id,
            )
        else:
            r = DecideRequest.model_validate_json(body)
            member_id, title_ids, c, page, rid = r.member_id, r.title_ids, r.context, r.page, r.request_id
    except PydanticValidationError as exc:
        raise from_pydantic(exc) from None
    return PageRequest(member_id, title_ids, make_context(member_id, c, now), c is not None, page, rid)


def _parse(body: bytes, keys: frozenset[str], one: bool, now: float) -> PageRequest:
    if not body:
        raise RequestError(400, "empty_body", "The request needs a JSON body.")
    try:
        return _fast(body, keys, one, now)
    except _Defer:
        return parse_with_models(body, one, now)


def check_page(req: PageRequest, limits: Limits) -> None:
    """The page's limits: number of titles, duplicates, length of the history (422 naming the field)."""
    title_ids = req.title_ids
    limit = limits.max_titles_per_page
    if len(title_ids) > limit:
        raise RequestError(
            422,
            "too_many_titles",
            f"title_ids has {len(title_ids)} titles; the limit is {limit}.",
            "title_ids",
        )
    if len(set(title_ids)) != len(title_ids):
        seen: set[str] = set()
        i = next(i for i, t in enumerate(title_ids) if t in seen or seen.add(t))  # type: ignore[func-returns-value]
        raise RequestError(
            422, "duplicate_title", f"title_ids[{i}]: {title_ids[i]!r} appears twice.", f"title_ids[{i}]"
        )
    check_history(req, limits)


def check_history(req: PageRequest, limits: Limits) -> None:
    """``context.played`` within ``limits.max_history`` (422 otherwise)."""
    n = len(req.context.played)
    if req.known and n > limits.max_history:
        raise RequestError(
            422,
            "too_much_history",
            f"context.played has {n} entries; the limit is {limits.max_history}.",
            "context.played",
        )


def check_event_time(ts: float | None, limits: Limits, now: float, field: str) -> None:
    """An event time (epoch seconds) from a client: not before 1990 (the event store's bound) and not
    later than the server's clock ``now`` plus ``limits.max_clock_skew_seconds`` (422 naming ``field``).
    Event time drives the learner's attribution windows: a client cannot move it into the future."""
    if ts is None:
        return
    if ts > now + limits.max_clock_skew_seconds:
        raise RequestError(
            422,
            "timestamp_in_future",
            f"{field} {ts!r} is later than the server's clock ({now:.0f}) by more than "
            f"max_clock_skew_seconds={limits.max_clock_skew_seconds}.",
            field,
        )
    if ts < MIN_TIMESTAMP:
        raise RequestError(
            422,
            "invalid_field",
            f"{field} {ts!r} is before 1990-01-01 ({MIN_TIMESTAMP:.0f}): send epoch seconds (UTC).",
            field,
        )


def check_clock(req: PageRequest, limits: Limits, now: float) -> None:
    """The page's ``context.timestamp`` within ``check_event_time``'s bounds (422 otherwise)."""
    if req.known:
        check_event_time(req.context.timestamp, limits, now, "context.timestamp")


def parse_page(body: bytes, limits: Limits, now: float) -> PageRequest:
    """A ``POST /v1/decide`` body, validated and within ``limits`` (``RequestError`` otherwise)."""
    req = _parse(body, _PAGE_KEYS, False, now)
    check_page(req, limits)
    return req


def parse_title(body: bytes, limits: Limits, now: float) -> PageRequest:
    """A ``POST /v1/decide/title`` body as a page of one title (``RequestError`` when invalid)."""
    req = _parse(body, _TITLE_KEYS, True, now)
    check_history(req, limits)
    return req
