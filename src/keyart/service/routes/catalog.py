"""The catalog routes: create, update, read and retire titles and artworks (``/v1/titles/{title_id}``,
``/v1/artworks/{artwork_id}``).

A change goes through ``keyart.service.catalog_store.mutate`` (an exclusive lock, re-read, apply,
validate the whole catalog, replace the file); the worker that made it serves the new revision at once,
and every other worker from its next page on (each page checks the file first: read-your-writes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from keyart.errors import KeyartError
from keyart.service import catalog_store
from keyart.service.httpio import json_response, parse, read_body
from keyart.service.schemas import (
    EXAMPLE_ARTWORK,
    EXAMPLE_TITLE,
    ArtworkIn,
    RequestError,
    TitleIn,
    body_spec,
    error_responses,
)
from keyart.service.state import Service, ServiceState


class Changed(BaseModel):
    """The answer to a catalog change: the item, whether it was created, the catalog's new revision."""

    title_id: str | None = None
    artwork_id: str | None = None
    created: bool
    catalog_rev: int


log = logging.getLogger("keyart.service")
router = APIRouter()


async def _mutate(state: ServiceState, change: Callable[[dict[str, Any]], Any]) -> tuple[int, Any]:
    """Apply ``change`` to the catalog file and serve the result here; (new revision, change's result)."""
    engine = state.engine_of()
    try:
        catalog, rev, result = await run_in_threadpool(
            catalog_store.mutate, state.config.catalog_path, change
        )
    except RequestError:
        raise
    except KeyartError as exc:
        raise RequestError(422, "invalid_catalog", str(exc)) from None
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(engine.executor, engine.set_catalog, catalog, rev)
    return rev, result


async def _retire(state: ServiceState, kind: str, item_id: str) -> Response:
    """Mark a title or artwork inactive in the catalog file (404 when unknown)."""
    key = f"{kind}_id"

    def change(data: dict[str, Any]) -> None:
        for r in data[f"{kind}s"]:
            if r[key] == item_id:
                r["active"] = False
                return
        raise RequestError(404, f"unknown_{kind}", f"Unknown {key} {item_id!r}.", key)

    rev, _ = await _mutate(state, change)
    return json_response({key: item_id, "retired": True, "catalog_rev": rev})


@router.put(
    "/v1/titles/{title_id}",
    tags=["catalog"],
    summary="Create or update a title",
    openapi_extra=body_spec(TitleIn, EXAMPLE_TITLE),
    responses={
        200: {"model": Changed, "description": "Updated."},
        201: {"model": Changed, "description": "Created."},
        **error_responses(400, 401, 403, 413, 422),
    },
)
async def put_title(title_id: str, request: Request, state: Service) -> Response:
    state.require_key(request)
    state.engine_of()
    body = parse(TitleIn, await read_body(request, state.config.limits.max_body_bytes))
    row = {"title_id": title_id, **body.model_dump(), "active": True}

    def change(data: dict[str, Any]) -> bool:
        for i, r in enumerate(data["titles"]):
            if r["title_id"] == title_id:
                data["titles"][i] = row
                return False
        data["titles"].append(row)
        return True

    rev, created = await _mutate(state, change)
    catalog = state.engine_of().view.catalog
    if title_id in catalog and not any(
        a.title_id == title_id and a.active for a in catalog.artworks.values()
    ):  # the natural order (a title, then its artworks): worth a line, not a warning
        log.info("title %r has no active artwork yet: pages naming it get 422 until one is added", title_id)
    return json_response(
        {"title_id": title_id, "created": created, "catalog_rev": rev}, 201 if created else 200
    )


@router.delete(
    "/v1/titles/{title_id}",
    tags=["catalog"],
    summary="Retire a title",
    responses=error_responses(401, 403, 404),
)
async def retire_title(title_id: str, request: Request, state: Service) -> Response:
    state.require_key(request)
    return await _retire(state, "title", title_id)


@router.get(
    "/v1/titles/{title_id}",
    tags=["catalog"],
    summary="A title and its active pool (404 once it is retired)",
    responses=error_responses(404),
)
async def get_title(title_id: str, state: Service) -> Response:
    engine = state.engine_of()
    if engine.catalog_changed():  # read-your-writes: a change acknowledged by any worker is seen here
        await asyncio.get_running_loop().run_in_executor(engine.executor, engine.refresh_catalog)
    catalog = engine.view.catalog
    if title_id not in catalog:
        raise RequestError(404, "unknown_title", f"Unknown title_id {title_id!r}.", "title_id")
    t = catalog.title(title_id)
    if not t.active:  # deleted: kept for the decisions logged about it, but no longer a resource
        raise RequestError(
            404,
            "retired_title",
            f"Title {title_id!r} was retired (DELETE); PUT it to restore it.",
            "title_id",
        )
    pool = [a.artwork_id for a in catalog.artworks.values() if a.title_id == title_id and a.active]
    return json_response(
        {
            "title_id": title_id,
            "name": t.name,
            "genres": t.genres,
            "active": t.active,
            "default_artwork_id": t.default_artwork_id,
            "pool": pool,
        }
    )


@router.put(
    "/v1/artworks/{artwork_id}",
    tags=["catalog"],
    summary="Create or update an artwork",
    openapi_extra=body_spec(ArtworkIn, EXAMPLE_ARTWORK),
    responses={
        200: {"model": Changed, "description": "Updated."},
        201: {"model": Changed, "description": "Created."},
        **error_responses(400, 401, 403, 413, 422),
    },
)
async def put_artwork(artwork_id: str, request: Request, state: Service) -> Response:
    state.require_key(request)
    state.engine_of()
    body = parse(ArtworkIn, await read_body(request, state.config.limits.max_body_bytes))
    row = {"artwork_id": artwork_id, **body.model_dump(), "active": True}
    limit = state.config.limits.max_artworks_per_pool

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

    rev, created = await _mutate(state, change)
    return json_response(
        {"artwork_id": artwork_id, "created": created, "catalog_rev": rev}, 201 if created else 200
    )


@router.delete(
    "/v1/artworks/{artwork_id}",
    tags=["catalog"],
    summary="Retire an artwork",
    responses=error_responses(401, 403, 404),
)
async def retire_artwork(artwork_id: str, request: Request, state: Service) -> Response:
    state.require_key(request)
    return await _retire(state, "artwork", artwork_id)
