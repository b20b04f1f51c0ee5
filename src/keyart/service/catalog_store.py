"""The service's catalog: one JSON file with a revision number, changed under a file lock.

Every worker may receive catalog changes; each change takes an exclusive ``flock`` on ``catalog.lock``,
re-reads the file, applies the change, and replaces the file atomically with the revision bumped. Workers
and the learner notice the new revision by polling the file's mtime, and reload it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from keyart.catalog import CATALOG_FORMAT_VERSION, Catalog
from keyart.errors import ValidationError


def empty_document() -> dict[str, Any]:
    return {"rev": 0, "catalog": {"format_version": CATALOG_FORMAT_VERSION, "titles": [], "artworks": []}}


def read_document(path: Path) -> dict[str, Any]:
    """The raw catalog document (rev + catalog dict); an empty catalog when the file does not exist."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return empty_document()
    if not isinstance(doc, dict) or "catalog" not in doc:
        raise ValidationError(f"{path} is not a keyart service catalog file.")
    return doc


def load_catalog(path: Path) -> tuple[Catalog, int]:
    doc = read_document(path)
    return Catalog.from_dict(doc["catalog"]), int(doc.get("rev", 0))


def stamp(path: Path) -> tuple[int, int, int] | None:
    """A cheap change detector of the catalog file (mtime, inode, size; one ``stat``), None when missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(doc))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def mutate(path: Path, change: Callable[[dict[str, Any]], Any]) -> tuple[Catalog, int, Any]:
    """Apply ``change`` to the catalog dict under the lock; validate; write with the revision bumped.

    ``change`` edits the dict in place and may return a value (passed back). Nothing is written when it
    raises or when the result is not a valid catalog.
    """
    with _locked(path):
        doc = read_document(path)
        data = doc["catalog"]
        result = change(data)
        catalog = Catalog.from_dict(data)  # validates the whole result
        doc = {"rev": int(doc.get("rev", 0)) + 1, "catalog": data}
        _write(path, doc)
        return catalog, doc["rev"], result


def import_catalog(path: Path, catalog: Catalog) -> int:
    """Replace the service catalog by ``catalog`` (e.g. at first start); returns the new revision."""

    def change(data: dict[str, Any]) -> None:
        data.clear()
        data.update(catalog.to_dict())

    return mutate(path, change)[1]
