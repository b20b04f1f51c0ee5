"""Titles, their artwork pools, and the catalog that holds both (with load/save and lifecycle).

A title's *pool* is its active artworks in the order they were added. Retired artworks and titles stay in
the catalog (logged decisions still refer to them) but are never offered again.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from keyart.errors import (
    DimensionError,
    DuplicateIdError,
    EmptyPoolError,
    UnknownIdError,
    ValidationError,
)

CATALOG_FORMAT_VERSION = 1


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
        if not isinstance(self.metadata, Mapping):
            raise ValidationError(f"metadata of {who} must be a mapping. Got {type(self.metadata).__name__}.")
        object.__setattr__(self, "metadata", _json_native(f"metadata of {who}", self.metadata))
        if self.default_artwork_id is not None:
            _check_id(f"default_artwork_id of {who}", self.default_artwork_id)
        _check_bool(f"active of {who}", self.active)


@dataclass(frozen=True)
class Artwork:
    """One candidate image of a title and what it shows: theme genres, featured cast, visual style, tags."""

    artwork_id: str
    title_id: str
    theme_genres: tuple[str, ...] = ()
    featured_cast: tuple[str, ...] = ()
    style: str = ""
    tags: tuple[str, ...] = ()
    embedding: tuple[float, ...] | None = None
    active: bool = True

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
        return {
            "format_version": CATALOG_FORMAT_VERSION,
            "titles": [_title_row(t) for t in self._titles.values()],
            "artworks": [_artwork_row(a) for a in self._artworks.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        if not isinstance(data, Mapping):
            raise ValidationError(f"A catalog must be a mapping. Got {type(data).__name__}.")
        if data.get("format_version") != CATALOG_FORMAT_VERSION:
            raise ValidationError(
                f"Catalog format_version must be {CATALOG_FORMAT_VERSION}. "
                f"Got {data.get('format_version')!r}."
            )
        try:
            titles = [_title_from_row(r) for r in data["titles"]]
            artworks = [_artwork_from_row(r) for r in data["artworks"]]
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValidationError(f"Malformed catalog: {exc!r}.") from exc
        return cls(titles, artworks)

    def save_json(self, path: str | Path) -> None:
        """Write the catalog as one JSON file; nothing is written when it cannot be serialised."""
        with _catalog_file("write", path):
            text = json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False)
        Path(path).write_text(text)

    @classmethod
    def load_json(cls, path: str | Path) -> Catalog:
        with _catalog_file("read", path):
            return cls.from_dict(json.loads(Path(path).read_text()))

    def save_parquet(self, directory: str | Path) -> None:
        """Write ``titles.parquet`` and ``artworks.parquet`` into ``directory`` (nothing when the catalog
        cannot be serialised)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self.to_dict()
        tables = {}
        with _catalog_file("write", directory, pa.ArrowException):
            for name in ("titles", "artworks"):
                rows = data[name]
                for r in rows:
                    r["metadata"] = json.dumps(r["metadata"], allow_nan=False) if name == "titles" else None
                table = pa.Table.from_pylist(rows, schema=_PARQUET_SCHEMAS[name]())
                meta = {"keyart_catalog_format": str(CATALOG_FORMAT_VERSION)}
                tables[name] = table.replace_schema_metadata(meta)
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            pq.write_table(table, d / f"{name}.parquet")

    @classmethod
    def load_parquet(cls, directory: str | Path) -> Catalog:
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = Path(directory)
        with _catalog_file("read", directory, pa.ArrowException):
            titles = pq.read_table(d / "titles.parquet").to_pylist()
            artworks = pq.read_table(d / "artworks.parquet").to_pylist()
            for r in titles:
                r["metadata"] = json.loads(r["metadata"] or "{}")
            for r in artworks:
                r.pop("metadata", None)
            return cls.from_dict(
                {"format_version": CATALOG_FORMAT_VERSION, "titles": titles, "artworks": artworks}
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalog) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Catalog({len(self._titles)} titles, {len(self._artworks)} artworks)"


@contextmanager
def _catalog_file(action: str, path: str | Path, *errors: type[Exception]) -> Iterator[None]:
    """Turn what goes wrong reading or writing a catalog file into a ``ValidationError`` naming ``path``
    (the cause chained); keyart's own errors keep their type and gain the path."""
    try:
        yield
    except ValidationError as exc:
        raise type(exc)(f"Catalog file {path}: {exc}") from exc
    except (OSError, ValueError, TypeError, KeyError, *errors) as exc:
        raise ValidationError(f"Cannot {action} catalog file {path}: {exc!r}.") from exc


def _title_row(t: Title) -> dict[str, Any]:
    row = asdict(t)
    row["genres"], row["cast"] = list(t.genres), list(t.cast)
    return row


def _artwork_row(a: Artwork) -> dict[str, Any]:
    row = asdict(a)
    for k in ("theme_genres", "featured_cast", "tags"):
        row[k] = list(row[k])
    row["embedding"] = None if a.embedding is None else list(a.embedding)
    return row


def _listed(value: Any) -> Any:
    """A file's list as a tuple (missing: empty); anything else as it is, for the constructor to judge: a
    string where a list belongs is refused there, never split into its characters."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else value


def _title_from_row(r: Mapping[str, Any]) -> Title:
    return Title(**{**r, "genres": _listed(r.get("genres")), "cast": _listed(r.get("cast"))})


def _artwork_from_row(r: Mapping[str, Any]) -> Artwork:
    return Artwork(
        **{
            **r,
            "theme_genres": _listed(r.get("theme_genres")),
            "featured_cast": _listed(r.get("featured_cast")),
            "tags": _listed(r.get("tags")),
            "embedding": None if r.get("embedding") is None else _listed(r["embedding"]),
        }
    )


def _titles_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("title_id", pa.string()),
            ("name", pa.string()),
            ("genres", pa.list_(pa.string())),
            ("cast", pa.list_(pa.string())),
            ("runtime_minutes", pa.float64()),
            ("metadata", pa.string()),
            ("default_artwork_id", pa.string()),
            ("active", pa.bool_()),
        ]
    )


def _artworks_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("artwork_id", pa.string()),
            ("title_id", pa.string()),
            ("theme_genres", pa.list_(pa.string())),
            ("featured_cast", pa.list_(pa.string())),
            ("style", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("embedding", pa.list_(pa.float64())),
            ("active", pa.bool_()),
            ("metadata", pa.string()),
        ]
    )


_PARQUET_SCHEMAS = {"titles": _titles_schema, "artworks": _artworks_schema}
