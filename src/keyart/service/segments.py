"""Per-worker append-only event segments: how an acknowledged event survives a SIGKILL.

Each worker process appends one JSON line per page of decisions (or per outcome batch) to its own
segment file with a single ``os.write`` on an ``O_APPEND`` descriptor *before* the response is sent. Once
``write`` returns, the bytes are in the kernel's page cache and survive the death of the process; with
``fsync=True`` each write is also flushed to disk (survives power loss, costs a disk flush per request).
The learner is the only process that reads segments and the only writer of the DuckDB files: it ingests
complete lines (a torn last line is left until it is complete) idempotently, since event ids are primary
keys, and remembers its offsets in ``segments/offsets.json`` after each commit.

A page's probability vectors are logged as ``probabilities_b64``: the policy's (n, K) float64 array,
little-endian, base64 (``encode_probabilities``): exact, and a few times cheaper to write than ~500 JSON
numbers per page. ``page_probabilities`` reads it back, or the ``probabilities`` lists of older lines.
"""

from __future__ import annotations

import binascii
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

OFFSETS_FILE = "offsets.json"
SUFFIX = ".seg"
SEALED = ".done"  # beside a segment: its writer will never append to it again


class SegmentWriter:
    """One process's append-only segment files (thread-safe, one ``os.write`` per record).

    Past ``max_bytes`` the writer seals its file (an empty ``<name>.done`` marker beside it, written after
    the last record) and continues in a new one, so the learner can delete what it has fully ingested.
    """

    def __init__(self, directory: Path, fsync: bool = False, max_bytes: int = 64 << 20) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.fsync = fsync
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.bytes_written = 0  # over all of this writer's files
        self._open()

    def _open(self) -> None:
        name = f"{os.getpid()}-{time.time_ns()}-{uuid.uuid4().hex[:6]}{SUFFIX}"
        self.path = self.directory / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._file_bytes = 0

    def _seal(self) -> None:
        os.close(self._fd)
        self._fd = -1
        (self.directory / (self.path.name + SEALED)).touch()

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line; returns only once the kernel holds it."""
        data = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            if self._file_bytes >= self.max_bytes:
                self._seal()
                self._open()
            n = os.write(self._fd, data)
            if n < len(data):  # a short write (signal, full disk): write the rest
                view = memoryview(data)[n:]
                while view:
                    view = view[os.write(self._fd, view) :]
            if self.fsync:
                os.fdatasync(self._fd)
            self.bytes_written += len(data)
            self._file_bytes += len(data)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                self._seal()


def _writer_alive(name: str) -> bool:
    """Whether the process that wrote segment ``name`` (``<pid>-...``) may still append to it."""
    try:
        os.kill(int(name.split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OSError):
        return True
    return True


def encode_probabilities(probs: np.ndarray) -> str:
    """An (n, K) probability array as logged: float64 little-endian bytes, row-major, base64."""
    data = np.ascontiguousarray(probs, dtype="<f8").tobytes()
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def page_probabilities(part: dict[str, Any], sizes: Sequence[int]) -> list[list[float]]:
    """Each row's probabilities over its pool (``sizes[i]`` of them) from a logged page or its shadow."""
    if "probabilities" in part:  # lines written before probabilities_b64
        return list(part["probabilities"])
    a = np.frombuffer(binascii.a2b_base64(part["probabilities_b64"]), dtype="<f8").reshape(len(sizes), -1)
    return [a[i, :k].tolist() for i, k in enumerate(sizes)]


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

    def prune(self) -> list[str]:
        """Delete segments that are fully ingested (committed offset = size) and will not grow: sealed by
        their writer, or written by a process that no longer exists. Returns the names deleted."""
        gone = []
        for p in sorted(self.directory.glob(f"*{SUFFIX}")):
            marker = self.directory / (p.name + SEALED)
            try:
                done = self.offsets.get(p.name, 0) >= p.stat().st_size
            except FileNotFoundError:
                continue
            if done and (marker.exists() or not _writer_alive(p.name)):
                p.unlink(missing_ok=True)
                marker.unlink(missing_ok=True)
                gone.append(p.name)
        if gone:
            self.commit({k: v for k, v in self.offsets.items() if k not in gone})
        return gone


def _lines(chunk: bytes) -> Iterator[bytes]:
    for line in chunk.split(b"\n"):
        if line:
            yield line
