"""Swagger UI (``/docs``) and ReDoc (``/redoc``) work offline (issue 13): the pages load only this
server's URLs, and the bundled scripts, styles and icon are served from it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from keyart.service.config import ServiceConfig
from keyart.service.routes.docs import ASSETS, ASSETS_PATH, assets_dir
from test_service_support import LocalServer, make_config, prepare


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    return prepare(make_config(tmp_path / "state"))


def _urls(html: str) -> list[str]:
    """Every URL a page loads or links: src, href, spec-url attributes and Swagger UI's ``url:``."""
    attrs = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']*)["']""", html)
    return attrs + re.findall(r"""\burl:\s*["']([^"']*)["']""", html)


@pytest.mark.parametrize(
    ("page", "needs"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_the_docs_pages_load_only_bundled_local_assets(
    config: ServiceConfig, page: str, needs: set[str]
) -> None:
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        r = c.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = _urls(r.text)
        assert "/openapi.json" in urls
        assert "://" not in r.text and "//fonts." not in r.text  # no CDN, no web fonts, no absolute URL
        assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assets = {u.removeprefix(ASSETS_PATH + "/") for u in urls if u.startswith(ASSETS_PATH + "/")}
        assert assets == needs
        for name in assets:
            a = c.get(f"{ASSETS_PATH}/{name}")
            assert a.status_code == 200, name
            assert a.headers["content-type"].startswith(ASSETS[name]), (name, a.headers)
            assert a.content == (assets_dir() / name).read_bytes() and len(a.content) > 500
        if page == "/docs":
            assert b"SwaggerUIBundle" in c.get(f"{ASSETS_PATH}/swagger-ui-bundle.js").content
            assert "validatorUrl" in r.text  # no badge fetched from the online validator
        else:
            assert b"Redoc" in c.get(f"{ASSETS_PATH}/redoc.standalone.js").content
        assert c.get("/openapi.json").status_code == 200


def test_only_the_named_assets_are_served_and_the_pages_stay_out_of_openapi(config: ServiceConfig) -> None:
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        for name in ("index.html", "..%2Fcore.py", "LICENSE", "swagger-ui.css.map"):
            r = c.get(f"{ASSETS_PATH}/{name}")
            assert r.status_code == 404 and r.json()["error"] == "not_found", name
        paths = c.get("/openapi.json").json()["paths"]
        assert not any(p.startswith(("/docs", "/redoc")) for p in paths)
