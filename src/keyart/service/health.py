"""The learner's heartbeat: how worker processes tell whether the learner is running.

The learner holding ``learner.lock`` writes ``learner.json`` (its pid) when it starts and touches it after
every cycle; a worker reads the pid and the file's age (``learner_status``), which ``/readyz`` and
``/v1/model`` report. The learner is not needed to serve (decisions are logged and answered without it),
so its state is reported, never a reason to refuse traffic.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

HEARTBEAT = "learner.json"
#: Segment bytes not yet ingested after a cycle past which the learner is reported as behind.
BEHIND_BYTES = 8 << 20
#: Event-time seconds of closed decisions not yet learned after a cycle past which it is behind.
BEHIND_SECONDS = 60.0


def write_heartbeat(root: Path, **progress: float) -> Path:
    """Record this process as the running learner, with its ``progress`` after the last cycle
    (``backlog_bytes``: segment bytes not yet ingested; ``learn_lag_seconds``: event time of decisions
    whose window closed but that are not learned yet; ``cycle_seconds``: the cycle's duration),
    atomically; returns the heartbeat file."""
    path = root / HEARTBEAT
    try:
        started = float(json.loads(path.read_text())["started"]) if progress else time.time()
    except (OSError, ValueError, KeyError, TypeError):
        started = time.time()
    tmp = root / f".{HEARTBEAT}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"pid": os.getpid(), "started": started, **progress}))
    os.replace(tmp, path)
    return path


def beat(path: Path, **progress: float) -> None:
    """One cycle done: rewrite the heartbeat with the cycle's ``progress`` (its modification time is the
    beat), or only touch it when there is nothing to report."""
    if progress:
        write_heartbeat(path.parent, **progress)
        return
    try:
        os.utime(path)
    except FileNotFoundError:
        write_heartbeat(path.parent)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a killed learner whose parent died too may never be
    reaped, and ``kill(pid, 0)`` still succeeds on it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(pid, 0)
    return state not in ("Z", "X")


def learner_status(root: Path, learn_interval: float) -> dict[str, Any]:
    """``{"running", "pid", "heartbeat_age_seconds", "backlog_bytes", "learn_lag_seconds",
    "cycle_seconds", "behind", "ok"}``: ``ok`` when the learner's process exists and it finished a cycle
    within ``max(30 s, 10 learn intervals)``; ``behind`` when, after its last cycle, more than
    ``BEHIND_BYTES`` of events were still waiting to be ingested, or decisions of more than
    ``BEHIND_SECONDS`` of event time were closed but not learned (it does not keep up with what is
    served)."""
    path = root / HEARTBEAT
    try:
        beat_ = json.loads(path.read_text())
        pid = int(beat_["pid"])
        age = max(0.0, time.time() - path.stat().st_mtime)
    except (OSError, ValueError, KeyError, TypeError):
        return {
            "running": False,
            "pid": None,
            "heartbeat_age_seconds": None,
            "backlog_bytes": None,
            "learn_lag_seconds": None,
            "cycle_seconds": None,
            "behind": False,
            "ok": False,
        }
    running = _running(pid)
    backlog, lag = beat_.get("backlog_bytes"), beat_.get("learn_lag_seconds")
    return {
        "running": running,
        "pid": pid,
        "heartbeat_age_seconds": round(age, 3),
        "backlog_bytes": backlog,
        "learn_lag_seconds": lag,
        "cycle_seconds": beat_.get("cycle_seconds"),
        "behind": (isinstance(backlog, int | float) and backlog > BEHIND_BYTES)
        or (isinstance(lag, int | float) and lag > BEHIND_SECONDS),
        "ok": running and age <= max(30.0, 10 * learn_interval),
    }
