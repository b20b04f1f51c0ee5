"""What a worker's routes share: ``ServiceState`` (config, metrics, the engine made at startup), kept on
``app.state.service`` and handed to each route by the ``Service`` dependency.

The state is made with the app; the engine is made when the app starts (``start``: one ``Engine`` per
process, its first load on the model thread, then a poller that checks for a new catalog or generation
every ``reload_interval_seconds``) and closed when it stops. Until then ``engine_of`` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from keyart.service.config import ServiceConfig
from keyart.service.engine import Engine, EventLogError
from keyart.service.metrics import Metrics
from keyart.service.schemas import RequestError

log = logging.getLogger("keyart.service")


@dataclass
class ServiceState:
    """One worker's shared runtime state: its deployment's ``config``, its ``metrics``, and its ``engine``
    (None until the app has started)."""

    config: ServiceConfig
    metrics: Metrics
    engine: Engine | None = None
    _poller: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def engine_of(self) -> Engine:
        """The engine; 503 ``not_ready`` while the app is starting."""
        engine = self.engine
        if engine is None:
            raise RequestError(503, "not_ready", "The service is starting.")
        return engine

    def require_key(self, request: Request) -> None:
        """Refuse a state-changing request without the configured API key (``X-API-Key`` or a bearer
        token): 401 when none is sent, 403 when it is wrong or no key is configured."""
        api_key = self.config.api_key
        if not api_key:
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
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise RequestError(403, "forbidden", "The API key is not valid.", "x-api-key")

    def not_logged(self, exc: EventLogError, endpoint: str) -> dict[str, Any]:
        """The 503 body of a request whose events could not be logged (counted per ``endpoint``)."""
        self.metrics.child(self.metrics.log_failures, endpoint).inc()
        return {
            "error": "not_logged",
            "detail": f"Not acknowledged: {exc}. Nothing was recorded for this request; retry later.",
        }

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self, app: FastAPI) -> None:
        """Make the engine, load the catalog and the newest generation, start polling for changes."""
        engine = Engine(self.config, self.metrics)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(engine.executor, functools.partial(engine.refresh, True))
        self.engine = engine  # ready only now: the catalog and the newest good model loaded and warm
        gc.freeze()  # start-up objects (catalog, caches, modules) leave the GC's scans: fewer long pauses
        self._poller = asyncio.create_task(self._poll(engine))
        app.state.engine = engine

    async def stop(self) -> None:
        """Stop polling and close the engine (its model thread and segment file)."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    async def _poll(self, engine: Engine) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.reload_interval_seconds)
            try:
                await loop.run_in_executor(engine.executor, engine.refresh)
            except Exception:
                log.exception("reload failed")


def state_of(app: Any) -> ServiceState:
    """The ``ServiceState`` of an app made by ``keyart.service.app.create_app``."""
    state: ServiceState = app.state.service
    return state


async def service_state(request: Request) -> ServiceState:
    """The dependency behind ``Service`` (async: FastAPI runs it inline, not in a thread)."""
    return state_of(request.app)


#: A route parameter receiving the worker's ``ServiceState``.
Service = Annotated[ServiceState, Depends(service_state)]
