"""Versioned model generations, published atomically, and the ``LATEST`` pointer workers poll.

A generation is a directory ``snapshots/gen-<n>/`` with ``primary.npz`` (the serving policy),
optionally ``shadow.npz``, and ``meta.json`` (learner state: the time up to which rewards were learned,
per-artwork reward counts, the best unpersonalized artwork per title). It is written under a temporary
name, fsynced, renamed into place, and only then named by ``LATEST`` (itself replaced with ``os.replace``),
so a reader sees either the previous generation or the new one, never a partial one.

Each model written gets a fresh ``model_id`` in ``meta.json``. A generation that only moves the metadata
(``publish_meta``: ``learned_until`` advanced, nothing new learned) hard-links the model files of the
generation it continues and keeps its ``model_id``, so it costs no model write, and a reader already
holding that model keeps its policy objects instead of loading them again (``load_latest(reuse=...)``).
Every generation directory stays self-contained: pruning one never breaks another.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyart.errors import SnapshotError
from keyart.policies import Policy, load_policy

LATEST = "LATEST"


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
    full_meta = {**meta, "generation": number, "created": time.time()}
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
    """Publish generation ``number`` with the model of generation ``base`` (hard links to its files, its
    ``model_id``) and new metadata. None, and nothing published, when ``base`` is gone, has no
    ``model_id``, or its files cannot be linked: publish the model in full then."""
    src = directory / gen_name(base)
    try:
        model_id = json.loads((src / "meta.json").read_text())["model_id"]
        files = [src / f for f in ("primary.npz", "shadow.npz") if (src / f).exists()]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not any(f.name == "primary.npz" for f in files):
        return None

    def fill(tmp: Path) -> None:
        for f in files:
            os.link(f, tmp / f.name)

    try:
        return _publish_dir(directory, number, fill, {**meta, "model_id": model_id}, keep)
    except OSError:
        return None  # e.g. a file system without hard links, or base pruned meanwhile


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


def load_latest(directory: Path, reuse: Generation | None = None) -> Generation | None:
    """Load the generation ``LATEST`` names (None when none); raises ``SnapshotError`` when corrupt.

    When its ``model_id`` is that of ``reuse`` (a metadata-only generation continuing the model ``reuse``
    holds), the result shares ``reuse``'s policy objects: only ``meta.json`` is read.
    """
    ptr = latest_pointer(directory)
    if ptr is None:
        return None
    try:
        gen_dir = directory / str(ptr["dir"])
        meta = json.loads((gen_dir / "meta.json").read_text())
        number = int(ptr["generation"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise SnapshotError(f"Generation named by {directory / LATEST} is unreadable: {exc}.") from exc
    model_id = meta.get("model_id") if isinstance(meta, dict) else None
    if reuse is not None and model_id is not None and model_id == reuse.meta.get("model_id"):
        return Generation(number, reuse.primary, reuse.shadow, meta)
    primary = load_policy(gen_dir / "primary.npz")
    shadow_path = gen_dir / "shadow.npz"
    shadow = load_policy(shadow_path) if shadow_path.exists() else None
    return Generation(number, primary, shadow, meta)
