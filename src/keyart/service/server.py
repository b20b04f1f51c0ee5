"""Running uvicorn for ``keyart serve``: an honest exit status, lean worker processes, a start-up line.

- **Exit status.** uvicorn's ``run`` returns normally when one of several workers fails to start (it
  stops them all), so a failed service would exit 0. Its supervisor is run here instead, and a stop that
  no SIGINT/SIGTERM asked for is a failure (status 3, uvicorn's start-up failure status).
- **Lean workers.** uvicorn and the learner start their processes with ``multiprocessing``'s *spawn*,
  which re-runs the parent's main module in each child: for the ``keyart`` console script that is the
  whole command line (``keyart.cli``, every command's imports, ``keyart.evaluate_cli``), seconds per
  worker on a loaded machine before it even imports the app. While the server runs, ``__main__`` is
  presented to spawn as ``keyart.service.spawned`` (``lean_spawn``), so a child imports only what it serves.
- **No kill loop.** uvicorn kills a worker that does not answer its health check within
  ``timeout_worker_healthcheck`` (5 s by default) and starts another, which on a slow start does the
  same. The check is answered by a thread of the worker, so it fails only while the worker cannot run
  Python at all (the GIL held through a long ``dlopen`` of a big extension on a loaded machine); it is
  given ``HEALTHCHECK_SECONDS`` here. uvicorn keeps both ends of the check's pipe, so its check of a
  worker that dies just as it is checked would wait out that time; here the check also wakes on the
  worker's exit (``answered``), so a failed start ends ``keyart serve`` at once.
- **Start-up line.** Once ``/readyz`` answers (a worker answers only after its model is loaded and
  warm), one line names the URL, the workers, the policy, the model generation and the state directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import pickle
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

#: Seconds a worker may take to answer uvicorn's health check before it is killed (and replaced).
HEALTHCHECK_SECONDS = 30


@contextlib.contextmanager
def lean_spawn() -> Iterator[None]:
    """While inside, processes started with spawn run ``keyart.service.spawned`` (empty) as their main
    module instead of the parent's (the ``keyart`` console script imports every command)."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:  # run with -m: spawn imports by name
        yield
        return
    spec = importlib.util.find_spec("keyart.service.spawned")
    main.__spec__ = spec
    try:
        yield
    finally:
        main.__spec__ = None


def _options(host: str, port: int, workers: int, log_level: str) -> dict[str, Any]:
    import uvicorn

    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": log_level,
        "access_log": False,
        "http": _http(),
        "loop": _loop(),
        "timeout_graceful_shutdown": 10,
    }
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        options["timeout_worker_healthcheck"] = HEALTHCHECK_SECONDS
    return options


def answered(conn: Connection, sentinel: int, timeout: float) -> bool:
    """Whether the answer to a health check sent on ``conn`` arrives within ``timeout`` seconds: False as
    soon as the worker whose process ``sentinel`` this is has exited without answering."""
    try:
        ready = wait([conn, sentinel], timeout)
        if conn in ready and conn.poll(0):
            conn.recv()
            return True
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    return False


def run_server(
    app: str, host: str, port: int, workers: int, log_level: str, announce: Announcer | None = None
) -> int:
    """Serve ``app`` (an import string of a factory) with ``workers`` processes until stopped; returns
    the exit status: 0 when SIGINT/SIGTERM stopped it, 3 when it stopped on a failure."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess, Process

    config = uvicorn.Config(app, **_options(host, port, workers, log_level))
    sock = config.bind_socket()
    if announce is not None:
        announce.start(sock.getsockname()[1])
    try:
        if workers == 1:
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
            return 0 if server.started else STARTUP_FAILURE

        class Watched(Process):
            """A worker whose health check ends when the worker exits (``answered``)."""

            def ping(self, timeout: float = 5) -> bool:
                try:
                    self.parent_conn.send(b"ping")
                except OSError:
                    return False
                return answered(self.parent_conn, self.process.sentinel, timeout)

        class Workers(Multiprocess):
            """uvicorn's worker supervisor, remembering whether a signal asked it to stop, with its workers
            checked as ``Watched`` (uvicorn makes them; they are recast before each round of checks)."""

            asked_to_stop = False

            def keep_subprocess_alive(self) -> None:
                for process in self.processes:
                    if type(process) is Process:
                        process.__class__ = Watched
                super().keep_subprocess_alive()

            def handle_int(self) -> None:
                self.asked_to_stop = True
                super().handle_int()

            def handle_term(self) -> None:
                self.asked_to_stop = True
                super().handle_term()

        supervisor = Workers(config, sockets=[sock])
        try:
            supervisor.run()
        except KeyboardInterrupt:
            return 0
        return 0 if supervisor.asked_to_stop else STARTUP_FAILURE
    finally:
        if announce is not None:
            announce.stop()


class Announcer:
    """Prints the start-up line once the server answers ``/readyz`` (polled from a thread)."""

    def __init__(self, host: str, workers: int, policy: str, state_dir: str, catalog: str) -> None:
        self.host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.workers, self.policy, self.state_dir, self.catalog = workers, policy, state_dir, catalog
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self.line: str | None = None

    def start(self, port: int) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"http://{host}:{port}"
        threading.Thread(target=self._watch, args=(url,), name="keyart-announce", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, url: str) -> None:
        while not self._stop.wait(0.1):
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2.0) as r:
                    body = json.loads(r.read())
            except (OSError, ValueError):
                continue
            self.line = self.format(url, body, time.monotonic() - self.t0)
            print(self.line, file=sys.stderr, flush=True)
            return

    def format(self, url: str, ready: dict[str, Any], seconds: float) -> str:
        """The start-up line for the ``/readyz`` body ``ready``."""
        gen = ready.get("generation")
        model = (
            f"model generation {gen}"
            if ready.get("model_ok", gen is not None)
            else f"no good model generation (serving default artworks: {ready.get('model_error')})"
        )
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        return (
            f"keyart serve: ready on {url} ({workers}, policy {self.policy}, {model}, "
            f"{self.catalog}, state directory {self.state_dir}) after {seconds:.1f} s"
        )


def _http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


__all__ = ["HEALTHCHECK_SECONDS", "Announcer", "answered", "lean_spawn", "run_server"]
