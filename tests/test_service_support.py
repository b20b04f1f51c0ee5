"""Shared set-up of the service tests: a small catalog, configs, and a real `keyart serve` subprocess.

(The module name starts with ``test_service`` to stay inside the service's test files; it holds one
self-check of the helpers.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from keyart.catalog import Artwork, Catalog, Title
from keyart.service import catalog_store
from keyart.service.config import ServiceConfig
from keyart.service.learner import ensure_initial_generation

API_KEY = "test-key"
AUTH = {"x-api-key": API_KEY}
GENRES = ("drama", "comedy", "horror", "scifi")


def small_catalog(n_titles: int = 8, n_artworks: int = 4) -> Catalog:
    """Titles t0.. with artworks t<i>-a<j> whose themes cycle through GENRES."""
    titles = [
        Title(f"t{i}", name=f"Title {i}", genres=(GENRES[i % 4],), runtime_minutes=60.0)
        for i in range(n_titles)
    ]
    arts = [
        Artwork(f"t{i}-a{j}", f"t{i}", theme_genres=(GENRES[j % 4],), style=f"style{j % 3}")
        for i in range(n_titles)
        for j in range(n_artworks)
    ]
    return Catalog(titles, arts)


def make_config(state_dir: Path, **kwargs: Any) -> ServiceConfig:
    """A test configuration: generous model budget (the machine is shared), fast cadences."""
    defaults: dict[str, Any] = {
        "api_key": API_KEY,
        "model_budget_seconds": 5.0,
        "reload_interval_seconds": 0.05,
        "learn_interval_seconds": 0.2,
        "attribution_window_seconds": 60.0,
    }
    defaults.update(kwargs)
    return ServiceConfig(state_dir=str(state_dir), **defaults)


def prepare(config: ServiceConfig, catalog: Catalog | None = None, initial: bool = True) -> ServiceConfig:
    """Import the catalog and publish generation 0, as `keyart serve` does at start."""
    catalog_store.import_catalog(config.catalog_path, catalog or small_catalog())
    if initial:
        ensure_initial_generation(config)
    return config


def page_body(member: str = "m1", titles: list[str] | None = None, **ctx: Any) -> dict[str, Any]:
    context = {"device": "tv", "country": "US", **ctx}
    return {"member_id": member, "title_ids": titles or [f"t{i}" for i in range(8)], "context": context}


def segment_bytes(config: ServiceConfig) -> int:
    return sum(p.stat().st_size for p in config.segments_dir.glob("*.seg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`keyart serve` in its own process group on a free loopback port."""

    def __init__(
        self,
        state_dir: Path,
        workers: int = 1,
        extra: list[str] | None = None,
        catalog: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir, self.workers, self.port = state_dir, workers, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("keyart")
        cmd = [
            str(exe),
            "serve",
            "--state-dir",
            str(state_dir),
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--api-key",
            API_KEY,
            "--reload-interval",
            "0.1",
        ]
        if catalog is not None:
            cmd += ["--catalog", str(catalog)]
        self.cmd = cmd + (extra or [])
        self.env = None if env is None else {**os.environ, **env}
        self.log = open(state_dir.parent / f"serve-{self.port}.log", "wb")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        self.proc = subprocess.Popen(
            self.cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keyart serve exited: {self.read_log()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"keyart serve did not become ready: {self.read_log()}")

    def read_log(self, tail: int = 4000) -> str:
        self.log.flush()
        return (self.state_dir.parent / f"serve-{self.port}.log").read_text(errors="replace")[-tail:]

    def kill(self) -> None:
        """SIGKILL the whole process group (server, workers, learner)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop: SIGTERM to the group, then wait (SIGKILL if it hangs)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(self.proc.pid):
            time.sleep(0.05)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()


class LocalServer:
    """The app of ``config`` served by uvicorn on a free loopback port from a thread of this process: a
    real HTTP server whose engine (``self.engine``) the test can reach and patch."""

    def __init__(self, config: ServiceConfig) -> None:
        import uvicorn

        from keyart.service.app import create_app

        self.app = create_app(config)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    @property
    def engine(self) -> Any:
        return self.app.state.engine

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_small_catalog_shapes() -> None:
    cat = small_catalog(3, 5)
    assert len(cat) == 3 and len(cat.pool_ids("t2")) == 5
