"""The decision routes: ``POST /v1/decide`` (a page) and ``POST /v1/decide/title`` (one title).

Each is served twice with the same code behind it: by a plain ASGI handler (``hot_handler``, installed
in ``ServiceApp.hot_routes``: no routing, middleware, ``Request`` or ``Response`` objects; bodies are
validated by ``keyart.service.parsing``, with pydantic only for the error bodies) and by its FastAPI route
(``router``), which documents it in OpenAPI and answers requests under a ``root_path``. The page goes to
the model thread and back without a ``concurrent.futures.Future`` (``run_decide``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyart.service.engine import Engine, EventLogError, PageResult
from keyart.service.httpio import bytes_response, read_body, receive_body, send_json
from keyart.service.modelthread import Job
from keyart.service.parsing import PageRequest, check_clock, parse_page, parse_title
from keyart.service.schemas import (
    EXAMPLE_DECIDE,
    EXAMPLE_DECIDE_ONE,
    EXAMPLE_DECIDE_RESPONSE,
    EXAMPLE_DECISION,
    DecideOneRequest,
    DecideRequest,
    DecideResponse,
    DecisionOut,
    RequestError,
    body_spec,
    error_responses,
)
from keyart.service.state import Service, ServiceState

log = logging.getLogger("keyart.service")
router = APIRouter()


async def run_decide(state: ServiceState, engine: Engine, req: PageRequest) -> PageResult:
    """The page's decision within the time budget; defaults (flagged) when the model is too slow.

    The page goes to the model thread with a ``Job``; the job wakes this request when it is done, or
    the budget's timer does first. A job not yet being logged is then given up (it will never be
    logged) and the defaults are answered; one already being logged is waited for. When the model
    thread is saturated and the pages already queued would take the whole budget, the page is not
    queued: defaults at once (``overload``, ``Engine.overloaded``). ``EventLogError`` when the page
    cannot be logged (answered 503).
    """
    budget = state.config.model_budget_seconds
    if engine.overloaded(budget):
        return _decided(engine.decide(req, reason="overload"))  # it would only time out in the queue
    loop = asyncio.get_running_loop()
    job = Job(loop)
    waiter = job.waiter = loop.create_future()
    timer = loop.call_later(budget, job.wake)
    engine.post(req, job)
    try:
        await waiter
    finally:
        timer.cancel()
    if not job.done:  # the budget ran out first
        with job.lock:
            if not job.committed:
                job.cancelled = True
        if job.cancelled:
            return _decided(engine.decide(req, reason="timeout"))
        job.waiter = loop.create_future()  # being logged: the answer is on its way (see Job.finish)
        await job.waiter
    if job.error is not None:
        if isinstance(job.error, RequestError | EventLogError):
            raise job.error
        log.error("decision failed; answering defaults", exc_info=job.error)
        return _decided(engine.decide(req, reason="model_error"))
    return _decided(job.result)


async def answer(
    state: ServiceState, engine: Engine, body: bytes, one: bool, t0: float, latency: Any
) -> bytes:
    """A decision request's response body (``one``: ``/v1/decide/title``); ``RequestError`` if refused.
    ``latency``: the histogram child that observes the request's time since ``t0``."""
    limits = state.config.limits
    now = time.time()
    req = parse_title(body, limits, now) if one else parse_page(body, limits, now)
    check_clock(req, limits, now)
    result = await run_decide(state, engine, req)
    latency.observe(time.perf_counter() - t0)
    return result.title_json() if one else result.page_json()


def hot_handler(state: ServiceState, one: bool) -> ASGIApp:
    """The plain ASGI handler of a decision route (same answers as its FastAPI route below)."""
    metrics = state.metrics
    latency = metrics.child(metrics.latency, "decide_title" if one else "decide")
    limit = state.config.limits.max_body_bytes

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        try:
            engine = state.engine_of()
            body = await receive_body(scope, receive, limit)
            out, status = await answer(state, engine, body, one, t0, latency), 200
        except RequestError as exc:
            metrics.child(metrics.rejected, str(exc.status)).inc()
            out, status = orjson.dumps(exc.body()), exc.status
        except EventLogError as exc:
            out, status = orjson.dumps(state.not_logged(exc, "decide_title" if one else "decide")), 503
        except ClientDisconnect:
            return  # nobody to answer; nothing was decided or logged
        await send_json(send, out, status)

    return handle


async def _answer_request(state: ServiceState, request: Request, one: bool) -> Response:
    t0 = time.perf_counter()
    engine = state.engine_of()
    body = await read_body(request, state.config.limits.max_body_bytes)
    latency = state.metrics.child(state.metrics.latency, "decide_title" if one else "decide")
    return bytes_response(await answer(state, engine, body, one, t0, latency))


@router.post(
    "/v1/decide",
    tags=["decisions"],
    summary="Choose one artwork per title for a page",
    openapi_extra=body_spec(DecideRequest, EXAMPLE_DECIDE),
    responses={
        200: {
            "model": DecideResponse,
            "content": {"application/json": {"example": EXAMPLE_DECIDE_RESPONSE}},
        },
        **error_responses(400, 413, 422),
    },
)
async def decide(request: Request, state: Service) -> Response:
    return await _answer_request(state, request, False)


@router.post(
    "/v1/decide/title",
    tags=["decisions"],
    summary="Choose the artwork for one title",
    openapi_extra=body_spec(DecideOneRequest, EXAMPLE_DECIDE_ONE),
    responses={
        200: {"model": DecisionOut, "content": {"application/json": {"example": EXAMPLE_DECISION}}},
        **error_responses(400, 413, 422),
    },
)
async def decide_one(request: Request, state: Service) -> Response:
    return await _answer_request(state, request, True)


def _decided(result: PageResult | None) -> PageResult:
    assert result is not None  # only a job given up yields None, and its request answers defaults
    return result
