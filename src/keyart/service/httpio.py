"""HTTP plumbing shared by the routes: bodies read under a size limit (FastAPI requests and plain ASGI),
parsed into the pydantic models of ``keyart.service.schemas``, and JSON answers (orjson) that name the
worker process that answered (``X-Keyart-Worker``)."""

from __future__ import annotations

import os
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from keyart.service.schemas import RequestError, from_pydantic

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
    """The body as ``model``: 400 when it is empty or not JSON, 422 naming the first invalid field."""
    if not body:
        raise RequestError(400, "empty_body", "The request needs a JSON body.")
    try:
        return model.model_validate_json(body)
    except PydanticValidationError as exc:
        raise from_pydantic(exc) from None
