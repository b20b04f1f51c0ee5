"""Titles, their artwork pools, and the catalog that holds both (with load/save and lifecycle).

A title's *pool* is its active artworks in the order they were added. Retired artworks and titles stay in
the catalog (logged decisions still refer to them) but are never offered again.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from keyart.catalog_files import catalog_file, check_document, read_catalog_rows, save_document
from keyart.errors import (
    DimensionError,
    DuplicateIdError,
    EmptyPoolError,
    UnknownIdError,
    ValidationError,
)
from keyart.schemas import ARTWORK_FIELDS, CATALOG_SCHEMA_VERSION, TITLE_FIELDS, FieldDoc

CATALOG_FORMAT_VERSION = CATALOG_SCHEMA_VERSION


def _check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{kind} must be a non-empty string. Got {value!r}.")
    return value


def _str_tuple(kind: str, values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ValidationError(f"{kind} must be a list of strings, not a single string. Got {values!r}.")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise ValidationError(f"{kind} must hold non-empty strings. Got {v!r}.")
    return out


def _is_number(value: object) -> bool:
    return type(value) in (float, int) or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def _check_bool(kind: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{kind} must be a bool. Got {value!r}.")
    return value


def _json_native(kind: str, value: object) -> Any:
    """``value`` as JSON-native data (str keys; str, int, float, bool, None, lists and dicts; tuples become
    lists), so that it survives a JSON or Parquet round trip exactly."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ValidationError(f"{kind} must be finite. Got {value!r}.")
        return float(value)
    if isinstance(value, list | tuple):
        return [_json_native(f"{kind}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(f"{kind} keys must be strings. Got {k!r}.")
            out[k] = _json_native(f"{kind}[{k!r}]", v)
        return out
    raise ValidationError(
        f"{kind} must be JSON data (str, int, float, bool, None, list, dict). Got {type(value).__name__}."
    )


def _metadata(who: str, value: object) -> Any:
    if not isinstance(value, Mapping):
        raise ValidationError(f"metadata of {who} must be a mapping. Got {type(value).__name__}.")
    return _json_native(f"metadata of {who}", value)


@dataclass(frozen=True)
class Title:
    """A title of the catalog: what members play. ``default_artwork_id`` is the catalog's fallback image.

    ``metadata`` is free JSON data with string keys; tuples in it are stored as lists.
    """

    title_id: str
    name: str = ""
    genres: tuple[str, ...] = ()
    cast: tuple[str, ...] = ()
    runtime_minutes: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    default_artwork_id: str | None = None
    active: bool = True

    def __post_init__(self) -> None:
        _check_id("title_id", self.title_id)
        who = f"title {self.title_id!r}"
        if not isinstance(self.name, str):
            raise ValidationError(f"name of {who} must be a string. Got {self.name!r}.")
        object.__setattr__(self, "genres", _str_tuple(f"genres of {who}", self.genres))
        object.__setattr__(self, "cast", _str_tuple(f"cast of {who}", self.cast))
        runtime = self.runtime_minutes
        if runtime is not None:
            if not (_is_number(runtime) and math.isfinite(runtime) and runtime > 0):
                raise ValidationError(
                    f"runtime_minutes of {who} must be a positive finite number or None. Got {runtime!r}."
                )
            object.__setattr__(self, "runtime_minutes", float(runtime))
        object.__setattr__(self, "metadata", _metadata(who, self.metadata))
        if self.default_artwork_id is not None:
            _check_id(f"default_artwork_id of {who}", self.default_artwork_id)
        _check_bool(f"active of {who}", self.active)


@dataclass(frozen=True)
class Artwork:
    """One candidate image of a title and what it shows: theme genres, featured cast, visual style, tags;
    ``image`` is where the picture is (a path or URL), ``metadata`` free JSON data as for ``Title``."""

    artwork_id: str
    title_id: str
    theme_genres: tuple[str, ...] = ()
    featured_cast: tuple[str, ...] = ()
    style: str = ""
    tags: tuple[str, ...] = ()
    embedding: tuple[float, ...] | None = None
    active: bool = True
    image: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id("artwork_id", self.artwork_id)
        _check_id(f"title_id of artwork {self.artwork_id!r}", self.title_id)
        who = f"artwork {self.artwork_id!r}"
        object.__setattr__(self, "theme_genres", _str_tuple(f"theme_genres of {who}", self.theme_genres))
        object.__setattr__(self, "featured_cast", _str_tuple(f"featured_cast of {who}", self.featured_cast))
        object.__setattr__(self, "tags", _str_tuple(f"tags of {who}", self.tags))
        if not isinstance(self.style, str):
            raise ValidationError(f"style of {who} must be a string. Got {self.style!r}.")
        if self.embedding is not None:
            object.__setattr__(self, "embedding", _embedding(who, self.embedding))
        _check_bool(f"active of {who}", self.active)
        if self.image is not None and (not isinstance(self.image, str) or not self.image):
            raise ValidationError(
                f"image of {who} must be a non-empty path or URL, or None. Got {self.image!r}."
            )
        object.__setattr__(self, "metadata", _metadata(who, self.metadata))


def _embedding(who: str, values: object) -> tuple[float, ...]:
    kind = f"embedding of {who}"
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(f"{kind} must be a sequence of numbers or None. Got {values!r}.")
    emb = tuple(values)
    if not emb:
        raise ValidationError(f"{kind} must not be empty (use None for no embedding).")
    for v in emb:
        if not _is_number(v):
            raise ValidationError(f"{kind} must hold numbers. Got {v!r}.")
    if not all(math.isfinite(v) for v in emb):
        raise ValidationError(f"{kind} contains NaN or inf.")
    return tuple(float(v) for v in emb)


class Catalog:
    """All titles and artworks, with pools in insertion order and add/retire lifecycle operations.

    Every mutation validates first and changes nothing when it fails. All artwork embeddings of a catalog
    have one length.
    """

    def __init__(self, titles: Iterable[Title] = (), artworks: Iterable[Artwork] = ()) -> None:
        self._titles: dict[str, Title] = {}
        self._artworks: dict[str, Artwork] = {}
        self._by_title: dict[str, list[str]] = {}
        self._pool_cache: dict[str, tuple[str, ...]] = {}
        self._pool_cache_version = -1
        self._embedding_length: tuple[str, int] | None = None  # (first artwork with one, its length)
        self.version = 0
        self.add_titles(titles)
        self.add_artworks(artworks)

    # ---- reading -------------------------------------------------------------------------------
    @property
    def titles(self) -> Mapping[str, Title]:
        return self._titles

    @property
    def artworks(self) -> Mapping[str, Artwork]:
        return self._artworks

    def title(self, title_id: str) -> Title:
        try:
            return self._titles[title_id]
        except KeyError:
            raise UnknownIdError(f"Unknown title_id {title_id!r}.") from None

    def artwork(self, artwork_id: str) -> Artwork:
        try:
            return self._artworks[artwork_id]
        except KeyError:
            raise UnknownIdError(f"Unknown artwork_id {artwork_id!r}.") from None

    def pool(self, title_id: str) -> tuple[Artwork, ...]:
        """The active artworks of an active title; raises EmptyPoolError when there are none."""
        title = self.title(title_id)
        if not title.active:
            raise EmptyPoolError(f"Title {title_id!r} is retired: it has no pool.")
        pool = tuple(a for a in (self._artworks[i] for i in self._by_title[title_id]) if a.active)
        if not pool:
            raise EmptyPoolError(f"Title {title_id!r} has no active artwork.")
        return pool

    def pool_ids(self, title_id: str) -> tuple[str, ...]:
        """The ids of ``pool(title_id)``, cached until the catalog changes (the serving hot path)."""
        if self._pool_cache_version != self.version:
            self._pool_cache = {}
            self._pool_cache_version = self.version
        hit = self._pool_cache.get(title_id)
        if hit is None:
            hit = tuple(a.artwork_id for a in self.pool(title_id))
            self._pool_cache[title_id] = hit
        return hit

    def default_artwork(self, title_id: str) -> Artwork:
        """The title's declared default artwork when active, else the first of its pool."""
        pool = self.pool(title_id)
        wanted = self._titles[title_id].default_artwork_id
        return next((a for a in pool if a.artwork_id == wanted), pool[0])

    def active_title_ids(self) -> list[str]:
        return [t.title_id for t in self._titles.values() if t.active]

    def __len__(self) -> int:
        return len(self._titles)

    def __contains__(self, title_id: object) -> bool:
        return title_id in self._titles

    # ---- lifecycle -----------------------------------------------------------------------------
    def add_titles(self, titles: Iterable[Title]) -> None:
        new = list(titles)
        seen: set[str] = set()
        for t in new:
            if not isinstance(t, Title):
                raise ValidationError(f"titles must be Title objects. Got {type(t).__name__}.")
            if t.title_id in self._titles or t.title_id in seen:
                raise DuplicateIdError(f"Duplicate title_id {t.title_id!r}.")
            seen.add(t.title_id)
        for t in new:
            self._titles[t.title_id] = t
            self._by_title[t.title_id] = []
        self.version += bool(new)

    def add_title(self, title: Title) -> None:
        self.add_titles([title])

    def add_artworks(self, artworks: Iterable[Artwork]) -> None:
        new = list(artworks)
        seen: set[str] = set()
        embedding_length = self._embedding_length
        for a in new:
            if not isinstance(a, Artwork):
                raise ValidationError(f"artworks must be Artwork objects. Got {type(a).__name__}.")
            if a.artwork_id in self._artworks or a.artwork_id in seen:
                raise DuplicateIdError(f"Duplicate artwork_id {a.artwork_id!r}.")
            if a.title_id not in self._titles:
                raise UnknownIdError(f"Artwork {a.artwork_id!r} belongs to unknown title_id {a.title_id!r}.")
            if a.embedding is not None:
                embedding_length = embedding_length or (a.artwork_id, len(a.embedding))
                if len(a.embedding) != embedding_length[1]:
                    raise DimensionError(
                        f"Artwork {a.artwork_id!r} has an embedding of length {len(a.embedding)}, but "
                        f"artwork {embedding_length[0]!r} has one of length {embedding_length[1]}: "
                        "a catalog's embeddings share one length."
                    )
            seen.add(a.artwork_id)
        for a in new:
            self._artworks[a.artwork_id] = a
            self._by_title[a.title_id].append(a.artwork_id)
        self._embedding_length = embedding_length
        self.version += bool(new)

    def add_artwork(self, artwork: Artwork) -> None:
        self.add_artworks([artwork])

    def retire_artwork(self, artwork_id: str) -> None:
        self._artworks[artwork_id] = replace(self.artwork(artwork_id), active=False)
        self.version += 1

    def retire_title(self, title_id: str) -> None:
        self._titles[title_id] = replace(self.title(title_id), active=False)
        self.version += 1

    # ---- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The catalog as JSON data: ``{"format_version", "titles": [rows], "artworks": [rows]}``."""
        return {
            "format_version": CATALOG_FORMAT_VERSION,
            "titles": [_title_row(t) for t in self._titles.values()],
            "artworks": [_artwork_row(a) for a in self._artworks.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        """A catalog from ``to_dict``'s form (rows validated by ``title_from_row``/``artwork_from_row``)."""
        check_document(data)
        return catalog_from_rows(data["titles"], data["artworks"])

    def save(self, path: str | Path, fmt: str | None = None) -> None:
        """Write the catalog: one JSON file (``*.json``), or a directory of ``titles`` and ``artworks``
        tables in ``fmt`` parquet (default), csv or jsonl. Nothing is written when it cannot be
        serialised; files are replaced atomically (``keyart.catalog_files``)."""
        save_document(self.to_dict(), path, fmt)

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Read a catalog file or directory in any form ``save`` writes, from any writer (keyart, pyarrow,
        DuckDB, pandas, Spark), and a keyart service's ``catalog.json`` (``keyart.catalog_files``)."""
        rows = read_catalog_rows(path)
        with catalog_file("read", path):
            return catalog_from_rows(rows.titles, rows.artworks, text=rows.text, where=rows.where)

    def save_json(self, path: str | Path) -> None:
        """Write the catalog as one JSON file; nothing is written when it cannot be serialised."""
        self.save(path, "json")

    @classmethod
    def load_json(cls, path: str | Path) -> Catalog:
        """Read a catalog JSON file (keyart's, or a service's ``catalog.json``)."""
        return cls.load(path)

    def save_parquet(self, directory: str | Path) -> None:
        """Write ``titles.parquet`` and ``artworks.parquet`` into ``directory`` (nothing when the catalog
        cannot be serialised)."""
        self.save(directory, "parquet")

    @classmethod
    def load_parquet(cls, directory: str | Path) -> Catalog:
        """Read a catalog directory (``titles.parquet`` and ``artworks.parquet``, or another table form)."""
        return cls.load(directory)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalog) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Catalog({len(self._titles)} titles, {len(self._artworks)} artworks)"


def _title_row(t: Title) -> dict[str, Any]:
    row = asdict(t)
    row["genres"], row["cast"] = list(t.genres), list(t.cast)
    return row


def _artwork_row(a: Artwork) -> dict[str, Any]:
    """An artwork as JSON data; ``image`` and ``metadata`` (added in schema 1's artworks) only when set,
    so a catalog without them serialises exactly as before they existed."""
    row = asdict(a)
    for k in ("theme_genres", "featured_cast", "tags"):
        row[k] = list(row[k])
    row["embedding"] = None if a.embedding is None else list(a.embedding)
    if a.image is None:
        del row["image"]
    if not a.metadata:
        del row["metadata"]
    return row


def catalog_from_rows(
    titles: Iterable[Any],
    artworks: Iterable[Any],
    *,
    text: tuple[bool, bool] = (False, False),
    where: tuple[str, str] = ("titles", "artworks"),
) -> Catalog:
    """A catalog from rows of titles and artworks: the one path by which files, ``from_dict`` and the
    service's HTTP API build catalogs. A bad row is refused naming ``where`` (a table or file), its row
    number (from 1) and the field; ``text``: whether the titles' and the artworks' values are all text
    (CSV), parsed per the schema."""
    t = [_located(where[0], i, title_from_row, r, text[0]) for i, r in enumerate(titles, 1)]
    a = [_located(where[1], i, artwork_from_row, r, text[1]) for i, r in enumerate(artworks, 1)]
    return Catalog(t, a)


def _located(where: str, i: int, make: Any, row: Any, text: bool) -> Any:
    try:
        return make(row, text=text)
    except ValidationError as exc:
        raise type(exc)(f"{where} row {i}: {exc}") from exc


def title_from_row(row: Mapping[str, Any], *, text: bool = False) -> Title:
    """A ``Title`` from one row of a file or request (see ``row_arguments``)."""
    return Title(**row_arguments(row, TITLE_FIELDS, text))


def artwork_from_row(row: Mapping[str, Any], *, text: bool = False) -> Artwork:
    """An ``Artwork`` from one row of a file or request (see ``row_arguments``)."""
    return Artwork(**row_arguments(row, ARTWORK_FIELDS, text))


def row_arguments(row: Mapping[str, Any], fields: tuple[FieldDoc, ...], text: bool) -> dict[str, Any]:
    """The constructor arguments of one row: missing or null optional fields take their defaults; lists
    become tuples (a string where a list belongs is left for the constructor to refuse, never split into
    its characters); ``metadata`` may be JSON text; columns the schema does not name are kept in
    ``metadata``. ``text``: every value is text (CSV), parsed per the field's type."""
    if not isinstance(row, Mapping):
        raise ValidationError(f"A row must be an object of fields. Got {type(row).__name__}.")
    by_name = {f.name: f for f in fields}
    args: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in row.items():
        f = by_name.get(key)
        if f is None:
            if not isinstance(key, str):
                raise ValidationError(f"Field names must be strings. Got {key!r}.")
            extra[key] = _plain(value)
            continue
        if text:
            value = parse_text_cell(f, value)
        if value is None and not f.required:
            continue
        if isinstance(value, decimal.Decimal):  # DuckDB writes 90.0 as DECIMAL
            value = float(value)
        if _is_list(f):
            value = _listed(value)
            if isinstance(value, tuple):
                value = tuple(float(v) if isinstance(v, decimal.Decimal) else v for v in value)
        elif f.name == "metadata" and isinstance(value, str):
            value = _json_object(value)
        args[key] = value
    missing = [f.name for f in fields if f.required and f.name not in args]
    if missing:
        raise ValidationError(f"{missing[0]} is missing.")
    if extra:
        meta = args.get("metadata", {})
        if not isinstance(meta, Mapping):
            raise ValidationError(f"metadata must be an object. Got {meta!r:.80}.")
        clash = sorted(set(extra) & set(meta))
        if clash:
            raise ValidationError(
                f"Column {clash[0]!r} is both a column and a metadata key; rename one of them."
            )
        args["metadata"] = {**meta, **extra}
    return args


def _is_list(f: FieldDoc) -> bool:
    """Whether the schema field holds a list."""
    import pyarrow as pa

    return pa.types.is_list(f.type)


def _listed(value: Any) -> Any:
    """A list as a tuple; anything else as it is, for the constructor to judge."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _json_object(value: str) -> Any:
    if not value.strip():
        return {}
    try:
        out = json.loads(value)
    except json.JSONDecodeError:
        raise ValidationError(f"metadata must be a JSON object. Got {value!r:.80}.") from None
    if not isinstance(out, dict):
        raise ValidationError(f"metadata must be a JSON object. Got {value!r:.80}.")
    return out


def _plain(value: Any) -> Any:
    """A value of a column the schema does not name, as JSON data (dates as ISO text, decimals as
    floats); anything else is left for the metadata check."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def parse_text_cell(f: FieldDoc, value: Any) -> Any:
    """A CSV cell as the field's type: empty is null, numbers and booleans parsed, lists as JSON arrays."""
    import pyarrow as pa

    if not isinstance(value, str):
        return value
    if value == "":
        return None
    t = f.type
    if pa.types.is_floating(t):
        try:
            return float(value)
        except ValueError:
            raise ValidationError(f"{f.name} must be a number. Got {value!r}.") from None
    if pa.types.is_boolean(t):
        low = value.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValidationError(f"{f.name} must be true or false. Got {value!r}.")
    if pa.types.is_list(t):
        try:
            out = json.loads(value)
        except json.JSONDecodeError:
            out = None
        if not isinstance(out, list):
            example = "[0.5, -1.0]" if pa.types.is_floating(t.value_type) else '["drama", "comedy"]'
            raise ValidationError(
                f"{f.name} must be a list (in CSV, a JSON array such as {example}), "
                f"not a single string. Got {value!r:.80}."
            )
        return out
    return value
