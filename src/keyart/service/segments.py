"""Per-worker append-only event segments: how an acknowledged event survives a SIGKILL.

Each worker process appends one JSON line per page of decisions (or per outcome batch) to its own
segment file with a single ``os.write`` on an ``O_APPEND`` descriptor *before* the response is sent. Once
``write`` returns, the bytes are in the kernel's page cache and survive the death of the process; with
``fsync=True`` each write is also flushed to disk (survives power loss, costs a disk flush per request).
The learner is the only process that reads segments and the only writer of the DuckDB files: it ingests
complete lines (a torn last line is left until it is complete) idempotently, since event ids are primary
keys, and remembers its offsets in ``segments/offsets.json`` after each commit.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

OFFSETS_FILE = "offsets.json"
SUFFIX = ".seg"


class SegmentWriter:
    """One process's append-only segment file (thread-safe, one ``os.write`` per record)."""

    def __init__(self, directory: Path, fsync: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{time.time_ns()}-{uuid.uuid4().hex[:6]}{SUFFIX}"
        self.path = directory / name
        self.fsync = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self.bytes_written = 0

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line; returns only once the kernel holds it."""
        data = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            if self.fsync:
                os.fdatasync(self._fd)
            self.bytes_written += len(data)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class SegmentReader:
    """Reads new complete lines from every segment in a directory, tracking offsets per file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.offsets: dict[str, int] = {}
        path = directory / OFFSETS_FILE
        if path.exists():
            try:
                self.offsets = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, OSError, AttributeError):
                self.offsets = {}  # offsets are an optimisation: re-reading is idempotent

    def pending_bytes(self) -> int:
        """Bytes written to segments but not yet ingested."""
        total = 0
        for p in self.directory.glob(f"*{SUFFIX}"):
            try:
                total += max(0, p.stat().st_size - self.offsets.get(p.name, 0))
            except FileNotFoundError:
                continue
        return total

    def read(self, max_bytes: int = 64 << 20) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """New records (parsed) and the offsets to ``commit`` once they are stored."""
        records: list[dict[str, Any]] = []
        new_offsets = dict(self.offsets)
        budget = max_bytes
        for p in sorted(self.directory.glob(f"*{SUFFIX}")):
            start = self.offsets.get(p.name, 0)
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                continue
            if size <= start or budget <= 0:
                continue
            with open(p, "rb") as fh:
                fh.seek(start)
                data = fh.read(min(size - start, budget))
            end = data.rfind(b"\n")
            if end < 0:
                continue
            chunk = data[: end + 1]
            budget -= len(chunk)
            for line in _lines(chunk):
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a torn line after a crash of the writer; never acknowledged
            new_offsets[p.name] = start + len(chunk)
        return records, new_offsets

    def commit(self, offsets: dict[str, int]) -> None:
        """Remember offsets (atomically) after their records are stored."""
        self.offsets = offsets
        tmp = self.directory / f".{OFFSETS_FILE}.tmp"
        tmp.write_text(json.dumps(offsets))
        os.replace(tmp, self.directory / OFFSETS_FILE)


def _lines(chunk: bytes) -> Iterator[bytes]:
    for line in chunk.split(b"\n"):
        if line:
            yield line
