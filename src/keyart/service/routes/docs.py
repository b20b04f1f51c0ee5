"""The interactive API documentation, served offline: ``GET /docs`` (Swagger UI) and ``GET /redoc``
(ReDoc), with their scripts and styles from ``/docs/assets/`` — files bundled in the ``fastapi-offline``
package (Swagger UI: Apache-2.0, ReDoc: MIT; see that package's licence), never from a CDN, so both pages
work on a machine without internet. Neither appears in the OpenAPI document."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import FileResponse, HTMLResponse

from keyart.errors import KeyartError
from keyart.service.schemas import RequestError

router = APIRouter(include_in_schema=False)
ASSETS_PATH = "/docs/assets"
#: The files the two pages load (name -> media type).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
TITLE = "keyart decision service"


@functools.cache
def assets_dir() -> Path:
    """Where the bundled files are (the ``static`` folder of the ``fastapi_offline`` package; found
    without importing it)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise KeyartError("the fastapi-offline package (Swagger UI and ReDoc files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _root(request: Request) -> str:
    """The prefix the app is served under (``root_path``), so the links work behind a proxy too."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # no call to the online validator
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}/openapi.json",
        title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )


@router.get(ASSETS_PATH + "/{name}")
async def asset(name: str) -> FileResponse:
    """One of ``ASSETS`` (404 for any other name: nothing else of the package's folder is served)."""
    media = ASSETS.get(name)
    if media is None:
        raise RequestError(404, "not_found", f"no documentation asset {name!r}", "name")
    return FileResponse(assets_dir() / name, media_type=media, headers={"cache-control": "max-age=86400"})
