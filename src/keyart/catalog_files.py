"""Catalog files: every form a catalog is written in, read through one path (``read_catalog_rows``; rows
become a ``Catalog`` in ``Catalog.load``, documents are written by ``save_document`` for ``Catalog.save``).

A catalog is either
- one JSON file: ``{"format_version": 1, "titles": [...], "artworks": [...]}`` (``Catalog.save_json``), or
  a keyart service's ``state/catalog.json`` (``{"rev": n, "catalog": {...}}``); or
- a directory holding a ``titles`` and an ``artworks`` table, each ``.parquet``, ``.csv``, ``.jsonl``
  (JSON Lines; ``.ndjson`` too) or ``.json`` (an array of row objects), from any writer: keyart, pyarrow,
  DuckDB, pandas, Spark. Columns are matched by name; missing optional ones take their defaults; columns
  the schema does not name are kept in ``metadata``. CSV cells are text: lists are JSON arrays
  (``["drama", "comedy"]``), booleans ``true``/``false``, an empty cell is null.

Rows are validated by ``keyart.catalog.catalog_from_rows`` (the constructors' checks, shared with the
HTTP API); a bad row is refused naming the file, the row (counted from 1, a CSV's header excluded) and the
field. Writing is all or nothing: content is built in memory, written to temporary files, then renamed.
See docs/data.md.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyart.errors import ValidationError
from keyart.schemas import ARTWORK_SCHEMA, CATALOG_SCHEMA_VERSION, TITLE_SCHEMA

#: Table file suffixes a catalog directory may hold, by the format's name.
TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
#: Formats ``save_document`` writes.
SAVE_FORMATS = ("json", "parquet", "csv", "jsonl")


@contextmanager
def catalog_file(action: str, path: str | Path) -> Iterator[None]:
    """Turn what goes wrong reading or writing a catalog file into a ``ValidationError`` naming ``path``
    (the cause chained); keyart's own errors keep their type and gain the path."""
    import pyarrow as pa

    try:
        yield
    except ValidationError as exc:
        raise type(exc)(f"Catalog file {path}: {exc}") from exc
    except OSError as exc:
        raise ValidationError(f"Cannot {action} catalog file {path}: {exc.strerror or exc}.") from exc
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise ValidationError(f"Cannot {action} catalog file {path}: {exc!r}.") from exc


def read_rows(path: Path) -> tuple[list[Any], bool]:
    """The rows of one table file (parquet, csv, jsonl, json array) and whether they are text (CSV)."""
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist(), False
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, strict=True))
        for i, row in enumerate(rows, 1):
            if None in row:
                raise ValidationError(f"row {i} has {len(row[None])} more cells than the header has columns.")
        return rows, True
    if fmt == "jsonl":
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValidationError(f"line {i} is not JSON: {exc}.") from None
        return rows, False
    if fmt == "json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValidationError("a table in JSON must be an array of row objects.")
        return rows, False
    raise ValidationError(f"unknown table format {path.suffix!r}; use one of {', '.join(TABLE_FORMATS)}.")


def _table_file(directory: Path, name: str) -> Path:
    found = [directory / f"{name}{s}" for s in TABLE_FORMATS if (directory / f"{name}{s}").is_file()]
    if not found:
        raise ValidationError(
            f"the directory holds no {name} table ({', '.join(name + s for s in TABLE_FORMATS)})."
        )
    if len(found) > 1:
        raise ValidationError(
            f"the directory holds several {name} tables: {', '.join(p.name for p in found)}."
        )
    return found[0]


@dataclass(frozen=True)
class CatalogRows:
    """A catalog file's rows before validation: each table's rows, whether they are text (CSV), and
    where they come from (file names for a directory, ``titles``/``artworks`` for one JSON file)."""

    titles: list[Any]
    artworks: list[Any]
    text: tuple[bool, bool]
    where: tuple[str, str]


def check_document(data: object) -> None:
    """Refuse what is not a catalog document ``{"format_version": 1, "titles": [...], "artworks": [...]}``."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"A catalog must be a mapping. Got {type(data).__name__}.")
    if data.get("format_version") != CATALOG_SCHEMA_VERSION:
        raise ValidationError(
            f"Catalog format_version must be {CATALOG_SCHEMA_VERSION}. Got {data.get('format_version')!r}."
        )
    for key in ("titles", "artworks"):
        if not isinstance(data.get(key), list):
            raise ValidationError(f"A catalog needs a list of {key}. Got {type(data.get(key)).__name__}.")


def read_catalog_rows(path: str | Path) -> CatalogRows:
    """The rows of a catalog JSON file or directory of tables (see the module docstring), unvalidated."""
    p = Path(path)
    if p.is_dir():
        with catalog_file("read", p):
            files = (_table_file(p, "titles"), _table_file(p, "artworks"))
        tables = []
        for f in files:
            with catalog_file("read", f):
                tables.append(read_rows(f))
        (titles, t_text), (artworks, a_text) = tables
        return CatalogRows(titles, artworks, (t_text, a_text), (files[0].name, files[1].name))
    with catalog_file("read", p):
        if not p.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(p))
        if p.suffix.lower() != ".json":
            raise ValidationError(
                "a catalog is a JSON file or a directory holding a titles and an artworks table "
                f"({', '.join(TABLE_FORMATS)})."
            )
        doc = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "catalog" in doc and "format_version" not in doc:
            doc = doc["catalog"]  # a keyart service's state/catalog.json
        check_document(doc)
        return CatalogRows(doc["titles"], doc["artworks"], (False, False), ("titles", "artworks"))


# ---- writing -----------------------------------------------------------------------------------------


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, allow_nan=False)
    return str(value) if not isinstance(value, float) else repr(value)


def _table_bytes(rows: list[dict[str, Any]], fmt: str, schema: Any) -> bytes:
    """One table of rows (``to_dict``'s) in ``fmt``, as bytes: built whole before anything is written."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(schema.names)
        for r in rows:
            writer.writerow([_csv_cell(r.get(n)) for n in schema.names])
        return buf.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [{**r, "metadata": json.dumps(r.get("metadata", {}), allow_nan=False)} for r in rows]
    table = pa.Table.from_pylist(flat, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_document(data: Mapping[str, Any], path: str | Path, fmt: str | None = None) -> None:
    """Write a catalog document (``Catalog.to_dict``) as one JSON file (``fmt`` json, or ``path`` ending in
    .json) or as a directory of ``titles`` and ``artworks`` tables (parquet, csv, jsonl). Nothing is
    written when it cannot be serialised; each file is replaced atomically."""
    p = Path(path)
    fmt = fmt or ("json" if p.suffix.lower() == ".json" else "parquet")
    if fmt not in SAVE_FORMATS:
        raise ValidationError(f"fmt must be one of {', '.join(SAVE_FORMATS)}. Got {fmt!r}.")
    with catalog_file("write", p):
        if fmt == "json":
            files = {p: json.dumps(data, indent=1, sort_keys=True, allow_nan=False).encode()}
            p.parent.mkdir(parents=True, exist_ok=True)
        else:
            suffix = "." + fmt
            files = {
                p / f"titles{suffix}": _table_bytes(data["titles"], fmt, TITLE_SCHEMA),
                p / f"artworks{suffix}": _table_bytes(data["artworks"], fmt, ARTWORK_SCHEMA),
            }
            p.mkdir(parents=True, exist_ok=True)
            for name in ("titles", "artworks"):
                others = [
                    p / f"{name}{s}" for s in TABLE_FORMATS if s != suffix and (p / f"{name}{s}").exists()
                ]
                if others:
                    raise ValidationError(f"the directory already holds {others[0].name}; remove it first.")
        for f, content in files.items():
            _replace(f, content)


__all__ = [
    "SAVE_FORMATS",
    "TABLE_FORMATS",
    "CatalogRows",
    "catalog_file",
    "check_document",
    "read_catalog_rows",
    "read_rows",
    "save_document",
]
