"""Versioned model generations, published atomically, and the ``LATEST`` pointer workers poll.

A generation is a directory ``snapshots/gen-<n>/`` with ``primary.npz`` (the serving policy),
optionally ``shadow.npz``, and ``meta.json`` (learner state: the time up to which rewards were learned,
per-artwork reward counts, the best unpersonalized artwork per title). It is written under a temporary
name, fsynced, renamed into place, and only then named by ``LATEST`` (itself replaced with ``os.replace``),
so a reader sees either the previous generation or the new one, never a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
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


def publish(
    directory: Path, number: int, primary: Policy, shadow: Policy | None, meta: dict[str, Any], keep: int = 5
) -> Path:
    """Write generation ``number`` atomically and point ``LATEST`` at it; prune old generations."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"gen-{number:08d}"
    tmp = directory / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    primary.save(tmp / "primary.npz")
    if shadow is not None:
        shadow.save(tmp / "shadow.npz")
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


def _prune(directory: Path, current: int, keep: int) -> None:
    gens = sorted(p for p in directory.glob("gen-*") if p.is_dir())
    for p in gens[: max(0, len(gens) - keep)]:
        if p.name != f"gen-{current:08d}":
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


def load_latest(directory: Path) -> Generation | None:
    """Load the generation ``LATEST`` names (None when none); raises ``SnapshotError`` when corrupt."""
    ptr = latest_pointer(directory)
    if ptr is None:
        return None
    try:
        gen_dir = directory / str(ptr["dir"])
        meta = json.loads((gen_dir / "meta.json").read_text())
        number = int(ptr["generation"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise SnapshotError(f"Generation named by {directory / LATEST} is unreadable: {exc}.") from exc
    primary = load_policy(gen_dir / "primary.npz")
    shadow_path = gen_dir / "shadow.npz"
    shadow = load_policy(shadow_path) if shadow_path.exists() else None
    return Generation(number, primary, shadow, meta)
