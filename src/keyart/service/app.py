"""The ASGI app: routes, request parsing and limits, API keys, error bodies, hot reload, metrics.

Bodies are parsed by hand (``Model.model_validate_json`` on the raw bytes, pydantic-core) and answered
with orjson, so FastAPI contributes routing and the OpenAPI document but no per-request validation or
encoding work. The decision routes go further: ``ServiceApp`` answers ``POST /v1/decide`` and
``POST /v1/decide/title`` with plain ASGI handlers (no routing, middleware, ``Request`` or ``Response``
objects), their bodies are validated by ``keyart.service.parsing`` (orjson and hand checks; pydantic
only for the error bodies), and the page goes to the model thread and back without a
``concurrent.futures.Future``. The FastAPI routes of those paths stay, with the same code behind them,
for the OpenAPI document. ``create_app(config)`` builds an app; ``app_from_env`` is the factory uvicorn
workers call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyart.errors import KeyartError
from keyart.service import catalog_store
from keyart.service.config import ServiceConfig
from keyart.service.engine import Engine, EventLogError, Job, PageResult
from keyart.service.health import learner_status
from keyart.service.metrics import Metrics
from keyart.service.parsing import (
    PageRequest,
    check_clock,
    check_event_time,
    parse_page,
    parse_title,
)
from keyart.service.schemas import (
    EXAMPLE_ARTWORK,
    EXAMPLE_DECIDE,
    EXAMPLE_DECIDE_ONE,
    EXAMPLE_DECIDE_RESPONSE,
    EXAMPLE_DECISION,
    EXAMPLE_OUTCOMES,
    EXAMPLE_TITLE,
    ArtworkIn,
    DecideOneRequest,
    DecideRequest,
    DecideResponse,
    DecisionOut,
    OutcomesRequest,
    OutcomesResponse,
    RequestError,
    TitleIn,
    body_spec,
    error_responses,
    from_pydantic,
)

log = logging.getLogger("keyart.service")
M = TypeVar("M", bound=BaseModel)


_WORKER = {"x-keyart-worker": ""}


def _worker() -> dict[str, str]:
    if not _WORKER["x-keyart-worker"]:
        _WORKER["x-keyart-worker"] = str(os.getpid())
    return _WORKER


def json_response(body: Any, status: int = 200) -> Response:
    """An orjson response naming the worker process that answered (``X-Keyart-Worker``)."""
    return bytes_response(orjson.dumps(body), status)


def bytes_response(body: bytes, status: int = 200) -> Response:
    """A response of JSON bytes naming the worker process that answered (``X-Keyart-Worker``)."""
    return Response(body, status_code=status, media_type="application/json", headers=_worker())


async def send_json(send: Send, body: bytes, status: int = 200) -> None:
    """Answer a plain ASGI request with JSON bytes: the headers ``bytes_response`` would send."""
    headers = [
        (b"x-keyart-worker", _worker()["x-keyart-worker"].encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _check_declared(declared: str | None, limit: int) -> None:
    """Refuse a body whose Content-Length is not a number (400) or over ``limit`` (413)."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(
                400, "invalid_header", "Content-Length is not a number.", "content-length"
            ) from None
        if size > limit:
            raise RequestError(413, "body_too_large", f"The body has {size} bytes; the limit is {limit}.")


def _too_large(limit: int) -> RequestError:
    return RequestError(413, "body_too_large", f"The body exceeds the limit of {limit} bytes.")


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """``read_body`` for a plain ASGI request (``ClientDisconnect`` when the client went away)."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = value.decode("latin-1")
            break
    _check_declared(declared, limit)
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


class ServiceApp(FastAPI):
    """A FastAPI app whose ``hot_routes`` ((method, path) -> plain ASGI handler) skip the framework.

    The FastAPI routes of the same paths remain (OpenAPI document, and requests under a ``root_path``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hot_routes: dict[tuple[str, str], ASGIApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            handler = self.hot_routes.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    _check_declared(request.headers.get("content-length"), limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model: type[M], body: bytes) -> M:
    if not body:
        raise RequestError(400, "empty_body", "The request needs a JSON body.")
    try:
        return model.model_validate_json(body)
    except PydanticValidationError as exc:
        raise from_pydantic(exc) from None


def _openapi_components(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Build the OpenAPI document once, moving pydantic's ``$defs`` into ``components.schemas``."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for path in doc.get("paths", {}).values():
            for op in path.values():
                content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
                schema = content.get("schema", {})
                for name, sub in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
        text = orjson.dumps(doc).decode().replace('"#/$defs/', '"#/components/schemas/')
        app.openapi_schema = orjson.loads(text)
        return app.openapi_schema

    return build


def create_app(config: ServiceConfig, metrics: Metrics | None = None) -> ServiceApp:
    """The decision service for one deployment (``config``); one ``Engine`` per process, made at startup."""
    metrics = metrics or Metrics()
    state: dict[str, Engine] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(config, metrics)
        state["engine"] = engine
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(engine.executor, functools.partial(engine.refresh, True))
        gc.freeze()  # start-up objects (catalog, caches, modules) leave the GC's scans: fewer long pauses
        poller = asyncio.create_task(_poll(engine))
        app.state.engine = engine
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            engine.close()
            state.pop("engine", None)

    async def _poll(engine: Engine) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(config.reload_interval_seconds)
            try:
                await loop.run_in_executor(engine.executor, engine.refresh)
            except Exception:
                log.exception("reload failed")

    app = ServiceApp(
        title="keyart decision service",
        version="1",
        description=(
            "Per member and title, the artwork most likely to lead to a quality play. Decisions are logged "
            "with their propensities; outcomes flow back; a background learner publishes new model "
            "generations that every worker picks up without a restart. State-changing endpoints need the "
            "`X-API-Key` header."
        ),
        lifespan=lifespan,
    )
    app.openapi = _openapi_components(app)  # type: ignore[method-assign]

    def engine_of() -> Engine:
        engine = state.get("engine")
        if engine is None:
            raise RequestError(503, "not_ready", "The service is starting.")
        return engine

    def require_key(request: Request) -> None:
        if not config.api_key:
            raise RequestError(
                403, "forbidden", "No API key is configured; state-changing endpoints are off."
            )
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:]
        if not given:
            raise RequestError(
                401, "unauthorized", "This endpoint changes state: send the X-API-Key header.", "x-api-key"
            )
        if not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise RequestError(403, "forbidden", "The API key is not valid.", "x-api-key")

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> Response:
        metrics.rejected.labels(str(exc.status)).inc()
        return json_response(exc.body(), exc.status)

    def _not_logged(exc: EventLogError, endpoint: str) -> dict[str, Any]:
        metrics.child(metrics.log_failures, endpoint).inc()
        return {
            "error": "not_logged",
            "detail": f"Not acknowledged: {exc}. Nothing was recorded for this request; retry later.",
        }

    @app.exception_handler(EventLogError)
    async def _log_error(request: Request, exc: EventLogError) -> Response:
        endpoint = request.url.path.removeprefix("/v1/").replace("/", "_")
        return json_response(_not_logged(exc, endpoint), 503)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return json_response({"error": code, "detail": detail}, exc.status_code)

    async def run_decide(engine: Engine, req: PageRequest) -> PageResult:
        """The page's decision within the time budget; defaults (flagged) when the model is too slow.

        The page goes to the model thread with a ``Job``; the job wakes this request when it is done, or
        the budget's timer does first. A job not yet being logged is then given up (it will never be
        logged) and the defaults are answered; one already being logged is waited for. When the pages
        already queued would take the whole budget, the page is not queued: defaults at once
        (``overload``). ``EventLogError`` when the page cannot be logged (answered 503).
        """
        budget = config.model_budget_seconds
        if engine.posted != engine.finished and engine.backlog_seconds() >= budget:
            return _decided(engine.decide(req, reason="overload"))  # it would only time out in the queue
        loop = asyncio.get_running_loop()
        job = Job(loop)
        waiter = job.waiter = loop.create_future()
        timer = loop.call_later(budget, job.wake)
        engine.posted += 1
        engine.executor.post(engine.decide_posted, (req, job), job.finish)
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

    latency = {
        False: metrics.child(metrics.latency, "decide"),
        True: metrics.child(metrics.latency, "decide_title"),
    }

    async def answer(engine: Engine, body: bytes, one: bool, t0: float) -> bytes:
        """A decision request's response body (``one``: ``/v1/decide/title``); ``RequestError`` if refused."""
        now = time.time()
        req = parse_title(body, config.limits, now) if one else parse_page(body, config.limits, now)
        check_clock(req, config.limits, now)
        result = await run_decide(engine, req)
        latency[one].observe(time.perf_counter() - t0)
        return result.title_json() if one else result.page_json()

    def hot(one: bool) -> ASGIApp:
        """The plain ASGI handler of a decision route (same answers as its FastAPI route below)."""

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            t0 = time.perf_counter()
            try:
                engine = engine_of()
                body = await receive_body(scope, receive, config.limits.max_body_bytes)
                out, status = await answer(engine, body, one, t0), 200
            except RequestError as exc:
                metrics.child(metrics.rejected, str(exc.status)).inc()
                out, status = orjson.dumps(exc.body()), exc.status
            except EventLogError as exc:
                out, status = orjson.dumps(_not_logged(exc, "decide_title" if one else "decide")), 503
            except ClientDisconnect:
                return  # nobody to answer; nothing was decided or logged
            await send_json(send, out, status)

        return handle

    app.hot_routes[("POST", "/v1/decide")] = hot(False)
    app.hot_routes[("POST", "/v1/decide/title")] = hot(True)

    # ---- decisions ----------------------------------------------------------------------------------
    @app.post(
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
    async def decide(request: Request) -> Response:
        t0 = time.perf_counter()
        engine = engine_of()
        body = await read_body(request, config.limits.max_body_bytes)
        return bytes_response(await answer(engine, body, False, t0))

    @app.post(
        "/v1/decide/title",
        tags=["decisions"],
        summary="Choose the artwork for one title",
        openapi_extra=body_spec(DecideOneRequest, EXAMPLE_DECIDE_ONE),
        responses={
            200: {"model": DecisionOut, "content": {"application/json": {"example": EXAMPLE_DECISION}}},
            **error_responses(400, 413, 422),
        },
    )
    async def decide_one(request: Request) -> Response:
        t0 = time.perf_counter()
        engine = engine_of()
        body = await read_body(request, config.limits.max_body_bytes)
        return bytes_response(await answer(engine, body, True, t0))

    # ---- outcomes -------------------------------------------------------------------------------------
    @app.post(
        "/v1/outcomes",
        tags=["outcomes"],
        summary="Report what members did after decisions",
        openapi_extra=body_spec(OutcomesRequest, EXAMPLE_OUTCOMES),
        responses={200: {"model": OutcomesResponse}, **error_responses(400, 401, 403, 413, 422)},
    )
    async def outcomes(request: Request) -> Response:
        t0 = time.perf_counter()
        require_key(request)
        engine = engine_of()
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
        items = []
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
            items.append(
                {
                    "event_id": o.event_id or _new_id(),
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
            engine.writer.append({"k": "outcomes", "items": items})
        except OSError as exc:
            log.error("an outcome batch could not be logged (not acknowledged): %s", exc)
            raise EventLogError(f"the outcomes could not be logged: {exc}") from exc
        for kind, key in (("event", "event_type"), ("reward", "reward")):
            count = sum(1 for it in items if it[key] is not None)
            if count:
                metrics.outcomes.labels(kind).inc(count)
        metrics.latency.labels("outcomes").observe(time.perf_counter() - t0)
        return json_response({"accepted": len(items), "event_ids": [it["event_id"] for it in items]})

    # ---- catalog -------------------------------------------------------------------------------------
    async def _mutate(engine: Engine, change: Callable[[dict[str, Any]], Any]) -> tuple[int, Any]:
        try:
            catalog, rev, result = await run_in_threadpool(catalog_store.mutate, config.catalog_path, change)
        except RequestError:
            raise
        except KeyartError as exc:
            raise RequestError(422, "invalid_catalog", str(exc)) from None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(engine.executor, engine.set_catalog, catalog, rev)
        return rev, result

    @app.put(
        "/v1/titles/{title_id}",
        tags=["catalog"],
        summary="Create or update a title",
        openapi_extra=body_spec(TitleIn, EXAMPLE_TITLE),
        responses=error_responses(400, 401, 403, 413, 422),
    )
    async def put_title(title_id: str, request: Request) -> Response:
        require_key(request)
        engine = engine_of()
        body = parse(TitleIn, await read_body(request, config.limits.max_body_bytes))
        row = {"title_id": title_id, **body.model_dump(), "active": True}

        def change(data: dict[str, Any]) -> bool:
            for i, r in enumerate(data["titles"]):
                if r["title_id"] == title_id:
                    data["titles"][i] = row
                    return False
            data["titles"].append(row)
            return True

        rev, created = await _mutate(engine, change)
        return json_response(
            {"title_id": title_id, "created": created, "catalog_rev": rev}, 201 if created else 200
        )

    @app.delete(
        "/v1/titles/{title_id}",
        tags=["catalog"],
        summary="Retire a title",
        responses=error_responses(401, 403, 404),
    )
    async def retire_title(title_id: str, request: Request) -> Response:
        require_key(request)
        return await _retire("title", title_id)

    @app.get(
        "/v1/titles/{title_id}",
        tags=["catalog"],
        summary="A title and its active pool",
        responses=error_responses(404),
    )
    async def get_title(title_id: str) -> Response:
        catalog = engine_of().view.catalog
        if title_id not in catalog:
            raise RequestError(404, "unknown_title", f"Unknown title_id {title_id!r}.", "title_id")
        t = catalog.title(title_id)
        pool = [a.artwork_id for a in catalog.artworks.values() if a.title_id == title_id and a.active]
        return json_response(
            {
                "title_id": title_id,
                "name": t.name,
                "genres": t.genres,
                "active": t.active,
                "default_artwork_id": t.default_artwork_id,
                "pool": pool if t.active else [],
            }
        )

    @app.put(
        "/v1/artworks/{artwork_id}",
        tags=["catalog"],
        summary="Create or update an artwork",
        openapi_extra=body_spec(ArtworkIn, EXAMPLE_ARTWORK),
        responses=error_responses(400, 401, 403, 413, 422),
    )
    async def put_artwork(artwork_id: str, request: Request) -> Response:
        require_key(request)
        engine = engine_of()
        body = parse(ArtworkIn, await read_body(request, config.limits.max_body_bytes))
        row = {"artwork_id": artwork_id, **body.model_dump(), "active": True}
        limit = config.limits.max_artworks_per_pool

        def change(data: dict[str, Any]) -> bool:
            if not any(r["title_id"] == body.title_id for r in data["titles"]):
                raise RequestError(
                    422, "unknown_title", f"title_id: unknown title {body.title_id!r}.", "title_id"
                )
            found = next((i for i, r in enumerate(data["artworks"]) if r["artwork_id"] == artwork_id), None)
            if found is not None and data["artworks"][found]["title_id"] != body.title_id:
                owner = data["artworks"][found]["title_id"]
                raise RequestError(
                    422,
                    "invalid_field",
                    f"title_id: artwork {artwork_id!r} belongs to {owner!r}; it cannot move.",
                    "title_id",
                )
            if found is None or not data["artworks"][found].get("active", True):  # becomes active
                active = sum(
                    1 for r in data["artworks"] if r["title_id"] == body.title_id and r.get("active", True)
                )
                if active >= limit:
                    raise RequestError(
                        422,
                        "pool_full",
                        f"title {body.title_id!r} already has {active} active "
                        f"artworks (max_artworks_per_pool={limit}).",
                        "title_id",
                    )
            if found is not None:
                data["artworks"][found] = row
                return False
            data["artworks"].append(row)
            return True

        rev, created = await _mutate(engine, change)
        return json_response(
            {"artwork_id": artwork_id, "created": created, "catalog_rev": rev}, 201 if created else 200
        )

    @app.delete(
        "/v1/artworks/{artwork_id}",
        tags=["catalog"],
        summary="Retire an artwork",
        responses=error_responses(401, 403, 404),
    )
    async def retire_artwork(artwork_id: str, request: Request) -> Response:
        require_key(request)
        return await _retire("artwork", artwork_id)

    async def _retire(kind: str, item_id: str) -> Response:
        """Mark a title or artwork inactive in the catalog file (404 when unknown)."""
        key = f"{kind}_id"

        def change(data: dict[str, Any]) -> None:
            for r in data[f"{kind}s"]:
                if r[key] == item_id:
                    r["active"] = False
                    return
            raise RequestError(404, f"unknown_{kind}", f"Unknown {key} {item_id!r}.", key)

        rev, _ = await _mutate(engine_of(), change)
        return json_response({key: item_id, "retired": True, "catalog_rev": rev})

    # ---- model, health, metrics ------------------------------------------------------------------------
    def model_info(engine: Engine) -> dict[str, Any]:
        gen = engine.generation
        out: dict[str, Any] = {
            "configured_policy": config.policy,
            "configured_shadow": config.shadow_policy,
            "catalog_rev": engine.view.rev,
            "model_error": engine.model_error,
            "generation": None,
            "learner": learner_status(config.root, config.learn_interval_seconds),
        }
        if gen is not None:
            out.update(
                {
                    "generation": gen.number,
                    "policy": gen.primary.name,
                    "model_version": gen.primary.version_,
                    "params": gen.primary.get_params(),
                    "loaded_at": engine.loaded_at,
                    "published_at": gen.meta.get("created"),
                    "learned_until": gen.meta.get("learned_until"),
                    "rewards_learned": gen.meta.get("rewards_learned", 0),
                    "shadow": None
                    if gen.shadow is None
                    else {
                        "policy": gen.shadow.name,
                        "model_version": gen.shadow.version_,
                        "params": gen.shadow.get_params(),
                    },
                }
            )
        return out

    @app.get("/v1/model", tags=["model"], summary="The policy and model generation this worker serves")
    async def get_model() -> Response:
        return json_response(model_info(engine_of()))

    @app.post(
        "/v1/model/reload",
        tags=["model"],
        summary="Check for a new generation now",
        responses=error_responses(401, 403),
    )
    async def reload_model(request: Request) -> Response:
        require_key(request)
        engine = engine_of()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(engine.executor, functools.partial(engine.refresh, True))
        return json_response(model_info(engine))

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["health"], summary="Readiness: catalog loaded and events writable")
    async def readyz() -> Response:
        """Ready when the engine is up and a record can be written to the events directory (503 with the
        reason otherwise). Also reports the model and the learner (which serving does not need)."""
        engine = state.get("engine")
        if engine is None:
            return json_response({"ready": False, "detail": "starting"}, 503)
        problem = engine.writer.check()
        gen = engine.generation
        body: dict[str, Any] = {
            "ready": problem is None,
            "generation": None if gen is None else gen.number,
            "catalog_rev": engine.view.rev,
            "model_error": engine.model_error,
            "learner": learner_status(config.root, config.learn_interval_seconds),
        }
        if problem is not None:
            body["detail"] = problem
        return json_response(body, 200 if problem is None else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (all worker processes)")
    async def get_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _decided(result: PageResult | None) -> PageResult:
    assert result is not None  # only a job given up yields None, and its request answers defaults
    return result


def _new_id() -> str:
    import uuid

    return uuid.uuid4().hex


def app_from_env() -> FastAPI:
    """The factory uvicorn worker processes call (``keyart serve`` passes the config in the environment).

    Pins BLAS to one thread: a worker's matrices are small, and threads would only contend for the cores.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    return create_app(ServiceConfig.from_env())
