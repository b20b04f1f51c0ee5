"""The ASGI app: ``create_app(config)`` wires the routes, error bodies, hot routes and lifespan of a worker.

The parts live beside it: the shared runtime state (``keyart.service.state.ServiceState``, on
``app.state.service``, given to routes by a dependency), the routes (``keyart.service.routes``: decisions,
outcomes, catalog, model/health/metrics), and the HTTP plumbing (``keyart.service.httpio``).

Bodies are parsed by hand (``Model.model_validate_json`` on the raw bytes, pydantic-core) and answered
with orjson, so FastAPI contributes routing and the OpenAPI document but no per-request validation or
encoding work. The decision routes go further: ``ServiceApp`` answers ``POST /v1/decide`` and
``POST /v1/decide/title`` with plain ASGI handlers (``hot_routes``: no routing, middleware, ``Request``
or ``Response`` objects); the FastAPI routes of those paths stay, with the same code behind them, for
the OpenAPI document. ``app_from_env`` is the factory uvicorn workers call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from keyart.service.config import ServiceConfig
from keyart.service.engine import EventLogError
from keyart.service.httpio import json_response
from keyart.service.metrics import Metrics
from keyart.service.routes import ROUTERS
from keyart.service.routes.decisions import hot_handler
from keyart.service.schemas import RequestError
from keyart.service.state import ServiceState, state_of

DESCRIPTION = (
    "Per member and title, the artwork most likely to lead to a quality play. Decisions are logged "
    "with their propensities; outcomes flow back; a background learner publishes new model "
    "generations that every worker picks up without a restart. State-changing endpoints need the "
    "`X-API-Key` header."
)


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


def _openapi_components(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Build the OpenAPI document once, moving pydantic's ``$defs`` into ``components.schemas``."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        doc["components"]["securitySchemes"] = SECURITY_SCHEMES
        for path in doc.get("paths", {}).values():
            for op in path.values():
                if "401" in op.get("responses", {}):  # the operations that need the key
                    op["security"] = [{name: []} for name in SECURITY_SCHEMES]
                content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
                schema = content.get("schema", {})
                for name, sub in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
        text = orjson.dumps(doc).decode().replace('"#/$defs/', '"#/components/schemas/')
        app.openapi_schema = orjson.loads(text)
        return app.openapi_schema

    return build


# ---- error bodies ------------------------------------------------------------------------------------
async def _request_error(request: Request, exc: RequestError) -> Response:
    state_of(request.app).metrics.rejected.labels(str(exc.status)).inc()
    return json_response(exc.body(), exc.status)


async def _log_error(request: Request, exc: EventLogError) -> Response:
    endpoint = request.url.path.removeprefix("/v1/").replace("/", "_")
    return json_response(state_of(request.app).not_logged(exc, endpoint), 503)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    response = json_response({"error": code, "detail": detail}, exc.status_code)
    if exc.status_code == 405:  # every method the path has, not only the first route's (RFC 9110)
        response.headers["allow"] = ", ".join(_allowed(request.app, request.scope))
    return response


def _allowed(app: FastAPI, scope: Scope) -> list[str]:
    """The methods of every route whose path matches the request's (the service's routers' routes, read
    from the routers themselves: how an app wraps included routers differs between FastAPI versions)."""
    routes = [r for r in app.router.routes if isinstance(r, Route)]
    routes += [r for router in ROUTERS for r in router.routes]
    probe = {**scope, "method": "\x00"}  # a method no route has: a path match is PARTIAL
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.matches(probe)[0] is Match.PARTIAL:
            methods.update(route.methods or ())
    return sorted(methods)


#: Security schemes of the state-changing endpoints (the key is checked by ``ServiceState.require_key``).
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The same key as a bearer token."},
}


def create_app(config: ServiceConfig, metrics: Metrics | None = None) -> ServiceApp:
    """The decision service for one deployment (``config``); one ``Engine`` per process, made at startup."""
    state = ServiceState(config, metrics or Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start(app)
        try:
            yield
        finally:
            await state.stop()

    app = ServiceApp(
        title="keyart decision service",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from keyart.service.routes.docs: bundled assets, no CDN
        redoc_url=None,
    )
    app.state.service = state
    app.openapi = _openapi_components(app)  # type: ignore[method-assign]
    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(EventLogError, _log_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    for router in ROUTERS:
        app.include_router(router)
    app.hot_routes[("POST", "/v1/decide")] = hot_handler(state, one=False)
    app.hot_routes[("POST", "/v1/decide/title")] = hot_handler(state, one=True)
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn worker processes call (``keyart serve`` passes the config in the environment).

    Pins BLAS to one thread: a worker's matrices are small, and threads would only contend for the cores.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    return create_app(ServiceConfig.from_env())
