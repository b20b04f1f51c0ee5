"""The learner process: its main loop (``run_learner``) and its supervision (``LearnerSupervisor``).

``keyart serve`` starts the learner in a child process and restarts it whenever it exits unasked. The
learner holds ``learner.lock`` (a second one on the same state directory waits as a standby), touches
its heartbeat after every cycle (``keyart.service.health``), and never stops on a failed cycle.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import threading
import time
from collections.abc import Callable

from keyart.service.config import ServiceConfig
from keyart.service.health import beat, write_heartbeat
from keyart.service.learner import Learner

log = logging.getLogger("keyart.service.learner")
#: On SIGTERM the learner stores what is left in the segments for at most this long (the rest, still in
#: the segments, is stored by the next learner).
STOP_INGEST_SECONDS = 20.0


def run_learner(config_text: str, stop: threading.Event | None = None) -> None:
    """Run the learner until SIGTERM/SIGINT (or ``stop``), or until the parent process goes away.

    Takes an exclusive lock on ``learner.lock`` first: a second learner on the same state directory
    waits as a standby instead of fighting over the DuckDB files.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    with contextlib.suppress(OSError):
        os.nice(5)  # serving first (CFS weight ~1/3): the learner only needs to keep up on average
    config = ServiceConfig.from_json(config_text)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s learner %(levelname)s %(message)s")
    parent = os.getppid()
    config.root.mkdir(parents=True, exist_ok=True)
    with open(config.root / "learner.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop.wait(0.5):
                    return
        learner = Learner(config)
        heartbeat = write_heartbeat(config.root)
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                behind = False
                progress: dict[str, float] = {}
                try:
                    learner.step()
                    behind = learner.behind()
                    progress["learn_lag_seconds"] = round(learner.learn_lag(), 3)
                except Exception:  # bad records are set aside inside step; anything else is retried
                    log.exception("learner step failed; retrying next interval")
                cycle = time.monotonic() - t0
                learner.metrics.learner_busy.inc(cycle)
                progress["backlog_bytes"] = learner.reader.pending_bytes()
                progress["cycle_seconds"] = round(cycle, 3)
                beat(heartbeat, **progress)
                if os.getppid() != parent:
                    break
                # a full batch still waiting: the next cycle at once (each cycle's work is bounded)
                pause = 0.0 if behind else config.learn_interval_seconds - (time.monotonic() - t0)
                stop.wait(max(0.0, pause))
            deadline = time.monotonic() + STOP_INGEST_SECONDS  # store what is left, in bounded batches
            while learner.reader.pending_bytes() and time.monotonic() < deadline:
                if not any(learner.ingest().values()):
                    break
        finally:
            learner.close()


_ASKED_TO_STOP = (0, -signal.SIGTERM, -signal.SIGINT)  # exit codes of a learner that was told to stop


class LearnerSupervisor:
    """Runs ``run_learner`` in a child process and starts it again, after a backoff, whenever it exits
    unasked (a crash, SIGKILL; not SIGTERM or SIGINT): 1 s, doubling up to ``max_backoff``, back to 1 s
    once it has run for a minute. ``stop`` ends it (SIGTERM: it ingests what is left and exits)."""

    def __init__(
        self, config_text: str, max_backoff: float = 30.0, target: Callable[[str], None] | None = None
    ) -> None:
        self.config_text = config_text
        self.target = target or run_learner  # follow mode supervises its Parquet sink instead
        self.max_backoff = max_backoff
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ctx = multiprocessing.get_context("spawn")
        self.proc: multiprocessing.process.BaseProcess | None = None
        self._started = 0.0
        self._thread = threading.Thread(target=self._watch, name="keyart-learner-supervisor", daemon=True)

    def start(self) -> LearnerSupervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self.proc = self._ctx.Process(
                target=self.target, args=(self.config_text,), name="keyart-learner", daemon=False
            )
            self.proc.start()
            self._started = time.monotonic()

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(0.5):
            proc = self.proc
            if proc is None or proc.is_alive():
                if time.monotonic() - self._started > 60.0:
                    backoff = 1.0
                continue
            if proc.exitcode in _ASKED_TO_STOP:  # SIGTERM/SIGINT, handled or not yet: not a failure
                continue
            log.error("the learner exited (code %s); restarting it in %.0f s", proc.exitcode, backoff)
            if self._stop.wait(backoff):
                return
            backoff = min(2 * backoff, self.max_backoff)
            self.restarts += 1
            self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop supervising, then the learner (SIGTERM, SIGKILL after ``timeout``)."""
        with self._lock:
            self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        proc = self.proc
        if proc is not None:
            proc.terminate()
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


__all__ = ["LearnerSupervisor", "run_learner"]
