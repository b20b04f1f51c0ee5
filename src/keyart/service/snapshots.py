"""Versioned model generations, published atomically, and the ``LATEST`` pointer workers poll.

A generation is a directory ``snapshots/gen-<n>/`` with ``primary.npz`` (the serving policy),
optionally ``shadow.npz``, and ``meta.json`` (learner state: the time up to which rewards were learned,
per-artwork reward counts, the best unpersonalized artwork per title). It is written under a temporary
name, fsynced, renamed into place, and only then named by ``LATEST`` (itself replaced with ``os.replace``),
so a reader sees either the previous generation or the new one, never a partial one.

Each model written gets a fresh ``model_id`` in ``meta.json``, and the SHA-256 and size of every model
file (``files``). A model is loaded only after its file matches them, so a truncated, emptied or
overwritten file is never half-read: the generation is skipped and ``load_newest_good`` serves the newest
generation that verifies (``LATEST``'s first, then older ones; also when ``LATEST`` is missing or
garbage). A generation that only moves the metadata (``publish_meta``: ``learned_until`` advanced,
nothing new learned) copies the model files of the generation it continues (a kernel-side copy, verified
against the recorded checksums; never a hard link, so one damaged file cannot damage every generation
that shares it) and keeps its ``model_id``, so no model is serialized, and a reader already holding that
model keeps its policy objects instead of loading them again (``reuse=...``). Every generation directory
stays self-contained: pruning or damaging one never breaks another.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyart.errors import SnapshotError
from keyart.policies import Policy, load_policy

LATEST = "LATEST"
#: The model files a generation may hold (``primary.npz`` always).
MODEL_FILES = ("primary.npz", "shadow.npz")


@dataclass
class Generation:
    """A loaded model generation: the policies and the learner's metadata."""

    number: int
    primary: Policy
    shadow: Policy | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, str]:
        """Best unpersonalized artwork per title, learned from rewards (may be empty)."""
        return self.meta.get("defaults", {})


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def gen_name(number: int) -> str:
    return f"gen-{number:08d}"


def _publish_dir(
    directory: Path, number: int, fill: Callable[[Path], None], meta: dict[str, Any], keep: int
) -> Path:
    """Write generation ``number`` (``fill`` puts the model files into the temporary directory) atomically,
    point ``LATEST`` at it, prune old generations."""
    directory.mkdir(parents=True, exist_ok=True)
    name = gen_name(number)
    tmp = directory / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    fill(tmp)
    files = {f: file_record(tmp / f) for f in MODEL_FILES if (tmp / f).exists()}
    full_meta = {**meta, "generation": number, "created": time.time(), "files": files}
    (tmp / "meta.json").write_text(json.dumps(full_meta))
    for p in tmp.iterdir():
        _fsync_path(p)
    _fsync_path(tmp)
    final = directory / name
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_path(directory)
    ptr_tmp = directory / f".{LATEST}.tmp-{os.getpid()}"
    with open(ptr_tmp, "w") as fh:
        fh.write(json.dumps({"generation": number, "dir": name}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(ptr_tmp, directory / LATEST)
    _fsync_path(directory)
    _prune(directory, number, keep)
    return final


def publish(
    directory: Path, number: int, primary: Policy, shadow: Policy | None, meta: dict[str, Any], keep: int = 5
) -> Path:
    """Write generation ``number`` (a new model, with a fresh ``model_id``) atomically and point ``LATEST``
    at it; prune old generations."""

    def fill(tmp: Path) -> None:
        primary.save(tmp / "primary.npz")
        if shadow is not None:
            shadow.save(tmp / "shadow.npz")

    return _publish_dir(directory, number, fill, {**meta, "model_id": uuid.uuid4().hex}, keep)


def publish_meta(directory: Path, number: int, base: int, meta: dict[str, Any], keep: int = 5) -> Path | None:
    """Publish generation ``number`` with the model of generation ``base`` (copies of its files, checked
    against its recorded checksums; its ``model_id``) and new metadata. None, and nothing published, when
    ``base`` is gone, has no ``model_id`` or checksums, or its files do not verify: publish the model in
    full then."""
    src = directory / gen_name(base)
    try:
        base_meta = json.loads((src / "meta.json").read_text())
        model_id = base_meta["model_id"]
        recorded = base_meta["files"]
        if not isinstance(recorded, dict) or "primary.npz" not in recorded:
            return None
        if not set(recorded) <= set(MODEL_FILES):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None

    def fill(tmp: Path) -> None:
        for name in recorded:
            shutil.copyfile(src / name, tmp / name)
        verify_files(tmp, recorded)  # what was copied is what was published: never propagate damage

    try:
        return _publish_dir(directory, number, fill, {**meta, "model_id": model_id}, keep)
    except (OSError, SnapshotError):
        _remove_tmp(directory, number)
        return None  # base pruned meanwhile, or its files damaged


def _remove_tmp(directory: Path, number: int) -> None:
    shutil.rmtree(directory / f".tmp-{gen_name(number)}-{os.getpid()}", ignore_errors=True)


def _prune(directory: Path, current: int, keep: int) -> None:
    gens = sorted(p for p in directory.glob("gen-*") if p.is_dir())
    for p in gens[: max(0, len(gens) - keep)]:
        if p.name != gen_name(current):
            shutil.rmtree(p, ignore_errors=True)


def latest_pointer(directory: Path) -> dict[str, Any] | None:
    """The ``LATEST`` pointer, or None when nothing was published yet."""
    try:
        return json.loads((directory / LATEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"The LATEST pointer in {directory} is corrupt: {exc}.") from exc


def pointer_stamp(directory: Path) -> tuple[int, int] | None:
    """A cheap change detector for ``LATEST`` (mtime and inode), None when missing."""
    try:
        st = os.stat(directory / LATEST)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino)


def file_record(path: Path) -> dict[str, Any]:
    """``{"sha256", "bytes"}`` of a file (what ``meta.json`` records for each model file)."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        size = os.fstat(fh.fileno()).st_size
    return {"sha256": digest, "bytes": size}


def verify_files(gen_dir: Path, recorded: Any) -> None:
    """Check each model file of ``gen_dir`` against its recorded size and SHA-256 (``SnapshotError``
    naming the file and what is wrong: missing, truncated or grown, other content)."""
    if not isinstance(recorded, dict) or "primary.npz" not in recorded:
        raise SnapshotError(f"{gen_dir / 'meta.json'} records no checksum of primary.npz.")
    if not set(recorded) <= set(MODEL_FILES):
        raise SnapshotError(f"{gen_dir / 'meta.json'} records files other than {', '.join(MODEL_FILES)}.")
    for name, want in recorded.items():
        path = gen_dir / str(name)
        try:
            got = file_record(path)
        except FileNotFoundError:
            raise SnapshotError(f"{path} is missing.") from None
        except OSError as exc:
            raise SnapshotError(f"{path} cannot be read: {exc}.") from exc
        try:
            size, digest = int(want["bytes"]), str(want["sha256"])
        except (KeyError, TypeError, ValueError):
            raise SnapshotError(f"{gen_dir / 'meta.json'} has a malformed record of {name}.") from None
        if got["bytes"] != size:
            raise SnapshotError(f"{path} has {got['bytes']} bytes where {size} were published (damaged).")
        if got["sha256"] != digest:
            raise SnapshotError(f"{path} does not match its published SHA-256 (damaged).")


def _read_policy(path: Path) -> Policy:
    """``load_policy``, with any failure of a damaged file (``BadZipFile``, ``EOFError``, ...) as a
    ``SnapshotError``."""
    try:
        return load_policy(path)
    except SnapshotError:
        raise
    except Exception as exc:  # numpy/zipfile raise many types on a damaged archive
        raise SnapshotError(f"Cannot read policy snapshot {path}: {type(exc).__name__}: {exc}.") from exc


def load_generation(gen_dir: Path, reuse: Generation | None = None) -> Generation:
    """Load one generation directory after verifying its model files (``SnapshotError`` when anything is
    missing, damaged or unreadable).

    When its ``model_id`` is that of ``reuse`` (a metadata-only generation continuing the model ``reuse``
    holds, already verified when it was loaded), the result shares ``reuse``'s policy objects: only
    ``meta.json`` is read. A generation published before checksums were recorded (no ``files`` in its
    metadata) is loaded as it is, any failure of reading it still a ``SnapshotError``.
    """
    try:
        meta = json.loads((gen_dir / "meta.json").read_text())
        number = int(meta["generation"])
    except FileNotFoundError:
        raise SnapshotError(f"{gen_dir / 'meta.json'} is missing.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{gen_dir / 'meta.json'} is unreadable: {exc}.") from exc
    model_id = meta.get("model_id")
    if reuse is not None and model_id is not None and model_id == reuse.meta.get("model_id"):
        return Generation(number, reuse.primary, reuse.shadow, meta)
    if "files" in meta:
        verify_files(gen_dir, meta["files"])
    primary = _read_policy(gen_dir / "primary.npz")
    shadow_path = gen_dir / "shadow.npz"
    shadow = _read_policy(shadow_path) if shadow_path.exists() else None
    return Generation(number, primary, shadow, meta)


def load_latest(directory: Path, reuse: Generation | None = None) -> Generation | None:
    """Load the generation ``LATEST`` names (None when none), verified; ``SnapshotError`` when the
    pointer or the generation is damaged (``load_newest_good`` skips to an older one instead)."""
    ptr = latest_pointer(directory)
    if ptr is None:
        return None
    try:
        gen_dir = directory / str(ptr["dir"])
    except (KeyError, TypeError) as exc:
        raise SnapshotError(f"The LATEST pointer in {directory} is corrupt: {exc}.") from exc
    return load_generation(gen_dir, reuse)


@dataclass
class Loaded:
    """What ``load_newest_good`` found: the newest generation that verified (None when none did) and
    why each newer candidate was skipped (``LATEST`` itself included)."""

    generation: Generation | None
    skipped: list[str] = field(default_factory=list)
    latest: int | None = None  # the generation LATEST names, when the pointer is readable

    @property
    def is_latest(self) -> bool:
        """The generation loaded is the one ``LATEST`` names."""
        return self.generation is not None and self.generation.number == self.latest


def generation_dirs(directory: Path) -> list[tuple[int, Path]]:
    """The generation directories present, newest first (readable or not)."""
    out = []
    for p in directory.glob("gen-*"):
        try:
            out.append((int(p.name[4:]), p))
        except ValueError:
            continue
    return sorted(out, reverse=True)


def _candidates(directory: Path, skipped: list[str]) -> tuple[int | None, Iterator[Path]]:
    """``LATEST``'s generation, then the older ones newest first (all of them, newest first, when the
    pointer is missing or garbage: it is then noted in ``skipped``)."""
    try:
        ptr = latest_pointer(directory)
        latest = None if ptr is None else int(ptr["generation"])
        first = None if ptr is None else directory / str(ptr["dir"])
    except (SnapshotError, KeyError, TypeError, ValueError) as exc:
        skipped.append(str(exc) if isinstance(exc, SnapshotError) else f"LATEST is corrupt: {exc!r}")
        latest, first = None, None
    gens = generation_dirs(directory)
    if first is None and gens and latest is None and not skipped:
        skipped.append(f"{directory / LATEST} is missing")

    def walk() -> Iterator[Path]:
        if first is not None:
            yield first
        for number, path in gens:
            if path != first and (latest is None or number < latest):
                yield path

    return latest, walk()


def load_newest_good(directory: Path, reuse: Generation | None = None) -> Loaded:
    """The newest generation whose files verify: the one ``LATEST`` names, else the newest older one
    (every one, newest first, when ``LATEST`` is missing or garbage). Never raises for damaged files;
    ``Loaded.skipped`` says what was passed over and why."""
    skipped: list[str] = []
    latest, candidates = _candidates(directory, skipped)
    for gen_dir in candidates:
        try:
            return Loaded(load_generation(gen_dir, reuse), skipped, latest)
        except SnapshotError as exc:
            skipped.append(f"{gen_dir.name} is unreadable or damaged: {exc}")
    return Loaded(None, skipped, latest)
