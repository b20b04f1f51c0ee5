"""A worker's model thread, and the page job that hands a decision between a request and that thread.

All model work of a worker runs on one dedicated thread (``ModelThread``): the featurizer's caches and the
policies' memos are not shared between threads, and snapshot loading is serialized with decisions. A
request posts its page with a ``Job`` and waits for it at most its time budget; the job decides whether a
page whose request gave up may still be logged (see ``keyart.service.engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import Empty, SimpleQueue
from typing import Any

log = logging.getLogger("keyart.service")


class Job:
    """One page's decision, shared between the request (which may give up) and the model thread.

    ``lock``, ``cancelled`` and ``committed`` decide whether an abandoned page may still be logged; the
    other fields carry the outcome back to the event loop (``finish`` runs on the model thread,
    everything else on the loop's thread).
    """

    __slots__ = ("cancelled", "committed", "done", "error", "lock", "loop", "result", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lock = threading.Lock()
        self.cancelled = False
        self.committed = False
        self.done = False
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None
        self.result: Any = None  # what the job computed (the engine's PageResult)
        self.error: BaseException | None = None

    def finish(self, result: Any, error: BaseException | None) -> None:
        """Model thread: keep the outcome and wake the loop (a closed loop means nobody waits anymore)."""
        self.result, self.error = result, error
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._delivered)

    def _delivered(self) -> None:
        self.done = True
        self.wake()

    def wake(self) -> None:
        """Loop thread: let the request look at the job (on completion, or when its budget ran out)."""
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class ModelThread(Executor):
    """The worker's single model thread: runs calls one at a time, in submission order.

    ``submit`` is the ``concurrent.futures`` interface (``loop.run_in_executor`` for reloads); ``post``
    is the hot path: no ``Future``, the call's outcome goes to a callback on the model thread.
    """

    def __init__(self, name: str = "keyart-model") -> None:
        self._queue: SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Any] | None] = SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def post(self, fn: Callable[..., Any], args: tuple[Any, ...], done: Callable[[Any, Any], None]) -> None:
        """Run ``fn(*args)`` on the model thread, then ``done(result, None)`` or ``done(None, error)``."""
        if self._closed:
            raise RuntimeError("the model thread is shut down")
        self._queue.put((fn, args, done))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        f: Future[Any] = Future()
        self._queue.put((functools.partial(fn, *args, **kwargs), (), f))
        return f

    def _run(self) -> None:
        get = self._queue.get
        while (item := get()) is not None:
            fn, args, done = item
            if type(done) is Future:
                if not done.set_running_or_notify_cancel():
                    continue
                try:
                    done.set_result(fn(*args))
                except BaseException as exc:
                    done.set_exception(exc)
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                result, error = None, exc
            else:
                error = None
            try:
                done(result, error)
            except Exception:
                log.exception("model thread callback failed")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if cancel_futures:  # pending futures are cancelled; posted pages are dropped (their timers answer)
            while True:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is not None and type(item[2]) is Future:
                    item[2].cancel()
        self._queue.put(None)
        if wait:
            self._thread.join()


__all__ = ["Job", "ModelThread"]
