"""The outcome route: ``POST /v1/outcomes`` (what members did after decisions, or direct rewards).

A batch is checked whole (limits, timestamps, each item naming its decision or its member and title),
then logged as one outcome batch record (``keyart.events.outcomes_record``) before it is acknowledged;
the learner ingests it (``keyart.service.ingest``). An outcome naming a ``decision_id`` this deployment
never issued (``keyart.service.ids``) is accepted and logged like any other, but counted
(``keyart_unmatched_outcomes_total``) and reported in the response (``unmatched``,
``unmatched_decision_ids``): a client with a bug or another deployment's ids finds out at once.
"""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import APIRouter, Request
from starlette.responses import Response

from keyart.events import outcomes_record
from keyart.service.engine import EventLogError
from keyart.service.httpio import json_response, parse, read_body
from keyart.service.parsing import check_event_time
from keyart.service.schemas import (
    EXAMPLE_OUTCOMES,
    OutcomesRequest,
    OutcomesResponse,
    RequestError,
    body_spec,
    error_responses,
)
from keyart.service.state import Service

log = logging.getLogger("keyart.service")
router = APIRouter()


@router.post(
    "/v1/outcomes",
    tags=["outcomes"],
    summary="Report what members did after decisions",
    openapi_extra=body_spec(OutcomesRequest, EXAMPLE_OUTCOMES),
    responses={200: {"model": OutcomesResponse}, **error_responses(400, 401, 403, 413, 422)},
)
async def outcomes(request: Request, state: Service) -> Response:
    t0 = time.perf_counter()
    config, metrics = state.config, state.metrics
    state.require_key(request)
    engine = state.engine_of()
    req = parse(OutcomesRequest, await read_body(request, config.limits.max_body_bytes))
    limit = config.limits.max_outcomes_per_request
    if len(req.outcomes) > limit:
        raise RequestError(
            422,
            "too_many_outcomes",
            f"outcomes has {len(req.outcomes)} entries; the limit is {limit}.",
            "outcomes",
        )
    now = time.time()
    max_rows = config.limits.max_titles_per_page
    items = []
    unmatched: list[str] = []
    for i, o in enumerate(req.outcomes):
        where = f"outcomes[{i}]"
        check_event_time(o.timestamp, config.limits, now, f"{where}.timestamp")
        if o.event_type is None and o.reward is None:
            raise RequestError(422, "invalid_field", f"{where}: give an event_type or a reward.", where)
        if o.decision_id is None and (o.member_id is None or o.title_id is None):
            raise RequestError(
                422,
                "invalid_field",
                f"{where}: name the decision_id, or both member_id and title_id.",
                where,
            )
        if o.decision_id is not None and not engine.keys.issued(o.decision_id, max_rows):
            unmatched.append(o.decision_id)
        items.append(
            {
                "event_id": o.event_id or uuid.uuid4().hex,
                "decision_id": o.decision_id,
                "member_id": o.member_id,
                "title_id": o.title_id,
                "event_type": o.event_type,
                "engaged_seconds": o.engaged_seconds,
                "reward": o.reward,
                "timestamp": now if o.timestamp is None else o.timestamp,
            }
        )
    try:
        engine.writer.append(outcomes_record(items))
    except OSError as exc:
        log.error("an outcome batch could not be logged (not acknowledged): %s", exc)
        raise EventLogError(f"the outcomes could not be logged: {exc}") from exc
    for kind, key in (("event", "event_type"), ("reward", "reward")):
        count = sum(1 for it in items if it[key] is not None)
        if count:
            metrics.outcomes.labels(kind).inc(count)
    if unmatched:
        metrics.unmatched_outcomes.inc(len(unmatched))
    metrics.latency.labels("outcomes").observe(time.perf_counter() - t0)
    return json_response(
        {
            "accepted": len(items),
            "event_ids": [it["event_id"] for it in items],
            "unmatched": len(unmatched),
            "unmatched_decision_ids": list(dict.fromkeys(unmatched)),
        }
    )
