"""Follow mode (``keyart serve --follow DIR``): serving workers with no local learner.

A following worker serves the generations a training job (``keyart spark train --publish DIR``) publishes
into a shared directory, with the atomic ``LATEST`` protocol and the verified loader of
``keyart.service.snapshots`` (``Engine.refresh`` polls it as it polls its own ``snapshots/``). Its events
still go to its local segments first (an acknowledged event survives a crash), and the node's Parquet sink
(``keyart.service.parquet_sink``, run where the learner would run) moves them to the shared events
directory that the Spark job reads.

When the shared directory cannot be reached (missing, unreadable, not a directory) or its newest
generation is damaged, the worker keeps serving the generation it holds and says so: ``model_error`` (in
``/readyz`` and ``/v1/model``), ``/readyz``'s ``follow`` block, and the gauge
``keyart_follow_model_problem{reason}`` (1 for the current reason, 0 for the others) in ``/metrics``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyart.service import snapshots

if TYPE_CHECKING:
    from keyart.policies import Policy
    from keyart.service.config import ServiceConfig

#: Why a following worker does not serve the newest shared generation (the gauge's ``reason`` label).
REASONS = ("missing", "unreadable", "damaged", "none_published")
#: The sink's status file in the node's state directory (``keyart.service.parquet_sink``).
SINK_STATUS = "sink.json"


def shared_dir_problem(directory: Path) -> tuple[str, str] | None:
    """(reason, text) when the shared model directory cannot be read now (missing, not a directory,
    unreadable), None when it can. One ``stat`` and one listing: cheap at the reload cadence."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return "missing", f"the shared model directory {directory} is missing"
    except OSError as exc:
        return "unreadable", f"the shared model directory {directory} cannot be read: {exc}"
    if not stat.S_ISDIR(st.st_mode):
        return "unreadable", f"the shared model directory {directory} is not a directory"
    try:
        os.listdir(directory)
        snapshots.pointer_stamp(directory)
    except OSError as exc:
        return "unreadable", f"the shared model directory {directory} cannot be read: {exc}"
    return None


def publish_next(directory: Path, primary: Policy, meta: dict[str, Any], keep: int = 5) -> int:
    """Publish ``primary`` into a shared directory as its next generation (one past both ``LATEST``'s and
    every generation directory present), with the atomic protocol of ``keyart.service.snapshots``; returns
    its number. One training job publishes into a directory (two at once could pick the same number)."""
    numbers = [number for number, _ in snapshots.generation_dirs(directory)] if directory.is_dir() else []
    try:
        pointer = snapshots.latest_pointer(directory)
        numbers.append(-1 if pointer is None else int(pointer["generation"]))
    except (snapshots.SnapshotError, KeyError, TypeError, ValueError):
        pass  # a damaged pointer: the next generation replaces it
    number = max(numbers, default=-1) + 1
    snapshots.publish(directory, number, primary, None, meta, keep)
    return number


def follow_info(config: ServiceConfig, problem: str | None) -> dict[str, Any] | None:
    """``/readyz``'s ``follow`` block (None when not following): the shared directory, the generation
    its ``LATEST`` names, the engine's follow ``problem``, and the node's sink status (last flush, files,
    pending bytes)."""
    if config.follow_dir is None:
        return None
    try:
        pointer = snapshots.latest_pointer(config.snapshots_dir)
        latest = None if pointer is None else int(pointer["generation"])
    except (OSError, ValueError, KeyError, TypeError, snapshots.SnapshotError):
        latest = None
    try:
        sink = json.loads((config.root / SINK_STATUS).read_text())
    except (OSError, ValueError):
        sink = None
    return {
        "shared_model_dir": str(config.snapshots_dir),
        "events_dir": config.events_out,
        "latest_generation": latest,
        "problem": problem,
        "sink": sink,
    }


__all__ = [
    "REASONS",
    "SINK_STATUS",
    "follow_info",
    "publish_next",
    "shared_dir_problem",
]
