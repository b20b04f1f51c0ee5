"""Per-worker append-only event segments: how an acknowledged event survives a SIGKILL.

Each worker process appends one JSON line per page of decisions (or per outcome batch) to its own
segment file with a single ``os.write`` on an ``O_APPEND`` descriptor *before* the response is sent. Once
``write`` returns, the bytes are in the kernel's page cache and survive the death of the process; with
``fsync=True`` each write is also flushed to disk (survives power loss, costs a disk flush per request).
The learner is the only process that reads segments and the only writer of the DuckDB files: it ingests
complete lines (a torn last line is left until it is complete) idempotently, since event ids are primary
keys, and remembers its offsets in ``segments/offsets.json`` after each commit.

What a line holds is defined in ``keyart.events``: a page of decisions is a *page record*
(``keyart.events.page_record``, expanded into decision rows by ``keyart.events.page_rows``; its
probability vectors are ``probabilities_b64``, see ``encode_probabilities``), an outcome batch an
outcome batch record (``keyart.events.outcomes_record``); ``keyart.service.ingest`` reads them. This
module only moves lines: it never looks inside a record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from keyart.events import encode_probabilities, page_probabilities

OFFSETS_FILE = "offsets.json"
SUFFIX = ".seg"
SEALED = ".done"  # beside a segment: its writer will never append to it again


class SegmentWriter:
    """One process's append-only segment files (thread-safe, one ``os.write`` per record).

    Past ``max_bytes`` the writer seals its file (an empty ``<name>.done`` marker beside it, written after
    the last record) and continues in a new one, so the learner can delete what it has fully ingested.

    A write that fails (full disk, I/O error) raises ``OSError``: the record is not acknowledged. Part of
    it may be in the file, so the writer abandons that file (sealed; its torn tail has no newline and is
    never read as a record) and the next record begins a new file: a failure never damages a later
    record.
    """

    def __init__(self, directory: Path, fsync: bool = False, max_bytes: int = 64 << 20) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.fsync = fsync
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.bytes_written = 0  # over all of this writer's files
        self._fd = -1
        self._token, self._seq = uuid.uuid4().hex[:8], 0
        self._open()

    def _open(self) -> None:
        self._seq += 1  # the writer's files are <pid>-<ns>-<token>-<seq>: it appends only to the newest
        name = f"{os.getpid()}-{time.time_ns()}-{self._token}-{self._seq}{SUFFIX}"
        path = self.directory / name
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.path = path
        self._file_bytes = 0

    def _seal(self) -> None:
        fd, self._fd = self._fd, -1
        try:
            os.close(fd)
        finally:  # best effort after a failure: a newer file of this process also marks this one final
            with contextlib.suppress(OSError):
                (self.directory / (self.path.name + SEALED)).touch()

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line; returns only once the kernel holds it (``OSError`` if not)."""
        data = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            try:
                if self._fd < 0 or self._file_bytes >= self.max_bytes:
                    if self._fd >= 0:
                        self._seal()
                    self._open()
                n = os.write(self._fd, data)
                self._file_bytes += n
                if n < len(data):  # a short write (signal, full disk): write the rest
                    view = memoryview(data)[n:]
                    while view:
                        k = os.write(self._fd, view)
                        if k <= 0:
                            raise OSError(errno.EIO, "the segment file accepts no more bytes")
                        self._file_bytes += k
                        view = view[k:]
                if self.fsync:
                    os.fdatasync(self._fd)
            except OSError:
                if self._fd >= 0:
                    with contextlib.suppress(OSError):
                        self._seal()  # abandon the file: its tail may be a torn part of this record
                raise
            self.bytes_written += len(data)

    def check(self) -> str | None:
        """Why records cannot be logged now (a probe write in the directory fails), or None."""
        probe = self.directory / f".probe-{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if os.write(fd, b"\n") != 1:
                    raise OSError(errno.ENOSPC, "short write")
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            return f"the events directory is not writable: {type(exc).__name__}: {exc}"
        return None  # (after a failed write, the next record begins a new file)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                self._seal()


def _final(paths: list[Path]) -> set[str]:
    """The names among ``paths`` (one directory's segments) that will never grow: sealed by their writer,
    superseded by a newer segment of the same process (a writer appends only to its newest file), or
    written by a process that no longer exists."""
    newest: dict[str, tuple[int, str]] = {}
    for p in paths:
        writer, seq = _writer_and_seq(p.name)
        newest[writer] = max(newest.get(writer, (seq, p.name)), (seq, p.name))
    return {
        p.name
        for p in paths
        if newest[_writer_and_seq(p.name)[0]][1] != p.name
        or (p.parent / (p.name + SEALED)).exists()
        or not _writer_alive(p.name)
    }


def _writer_and_seq(name: str) -> tuple[str, int]:
    """(writer, sequence number) of a segment named ``<pid>-<ns>-<writer token>-<seq>.seg``; names of
    another form are each their own writer."""
    parts = name[: -len(SUFFIX)].split("-")
    if len(parts) == 4 and parts[3].isdigit():
        return f"{parts[0]}-{parts[2]}", int(parts[3])
    return name, 0


def _writer_alive(name: str) -> bool:
    """Whether the process that wrote segment ``name`` (``<pid>-...``) may still append to it."""
    try:
        os.kill(int(name.split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OSError):
        return True
    return True


class SegmentReader:
    """Reads new complete lines from every segment in a directory, tracking offsets per file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.offsets: dict[str, int] = {}
        self.skipped = 0  # complete lines that were not JSON (see take_skipped)
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
        paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        final = _final(paths)  # decided before the sizes are read: these files no longer grow
        for p in paths:
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
            whole = p.name in final and start + len(data) == size
            if end < 0 and not whole:
                continue
            chunk = data[: end + 1]
            budget -= len(chunk)
            for line in _lines(chunk):
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    self.skipped += 1  # not a record (a line damaged before writers abandoned torn files)
            # a final file's tail without a newline is a torn, never acknowledged write: skip it
            new_offsets[p.name] = size if whole else start + len(chunk)
        return records, new_offsets

    def take_skipped(self) -> int:
        """Lines skipped as not JSON since the last call."""
        n, self.skipped = self.skipped, 0
        return n

    def commit(self, offsets: dict[str, int]) -> None:
        """Remember offsets (atomically) after their records are stored."""
        self.offsets = offsets
        tmp = self.directory / f".{OFFSETS_FILE}.tmp"
        tmp.write_text(json.dumps(offsets))
        os.replace(tmp, self.directory / OFFSETS_FILE)

    def prune(self) -> list[str]:
        """Delete segments that are fully ingested (committed offset = size) and will not grow: sealed by
        their writer, superseded by a newer one of the same process, or written by a process that no
        longer exists. Returns the names deleted."""
        gone = []
        paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        final = _final(paths)
        for p in paths:
            marker = self.directory / (p.name + SEALED)
            try:
                done = self.offsets.get(p.name, 0) >= p.stat().st_size
            except FileNotFoundError:
                continue
            if done and p.name in final:
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


__all__ = [
    "SegmentReader",
    "SegmentWriter",
    "encode_probabilities",  # re-exported: the page record's format lives in keyart.events
    "page_probabilities",
]
