"""From a warehouse export to keyart's schemas: catalog checks (``keyart catalog validate``), catalog and
log imports with column mapping (``keyart catalog import``, ``keyart logs import``).

An import reads a table (Parquet, CSV, JSON Lines, JSON array: ``keyart.catalog_files.read_rows``),
renames columns by ``--map dst=src``, splits delimited text into lists by ``--split field=SEP``, and
validates each row with keyart's own checks (the catalog's constructors, the event tables'
validation). Rows that fail are dropped and reported (``ImportReport``: counts and the first rows with
their reasons); ``strict`` refuses any drop. The result is built whole in memory and written to a
temporary file that is renamed over the target, so a failed import writes nothing.

Decisions without ``context_json`` get the member's context as far as the export tells: member id,
timestamp, and the ``country``, ``language``, ``device`` columns when present (no viewing history).
Decision logs without propensities are accepted and marked: their rows carry the policy name
``UNLOGGED_POLICY`` and a uniform placeholder distribution; ``keyart evaluate`` then runs only the
estimators that do not use propensities (DM) and says so. See docs/data.md and docs/your-data.md.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from keyart.catalog import (
    Artwork,
    Catalog,
    Title,
    artwork_from_row,
    parse_text_cell,
    title_from_row,
)
from keyart.catalog_files import catalog_file, read_catalog_rows, read_rows
from keyart.context import MemberContext
from keyart.errors import KeyartError, ValidationError
from keyart.events import DECISION_SCHEMA, OUTCOME_SCHEMA, context_to_json, decisions_table, outcomes_table
from keyart.schemas import ARTWORK_FIELDS, TITLE_FIELDS, FieldDoc

#: The policy name that marks imported decisions whose propensities were not logged.
UNLOGGED_POLICY = "unlogged"
#: Dropped rows shown in a report.
SHOWN_ROWS = 5

_CONTEXT_COLUMNS = ("country", "language", "device")
_TITLE_ONLY = ("name", "genres", "cast", "runtime_minutes", "default_artwork_id")


@dataclass
class ImportReport:
    """What an import read, kept and dropped (with the first dropped rows and why), and notes."""

    source: str
    read: int = 0
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (row from 1, reason)
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.read - len(self.dropped)

    def drop(self, row: int, reason: str) -> None:
        self.dropped.append((row, " ".join(reason.split())))

    def first(self) -> str:
        """The first dropped row and why, for an error message (empty when none was dropped)."""
        return f" (row {self.dropped[0][0]}: {self.dropped[0][1]})" if self.dropped else ""

    def lines(self) -> list[str]:
        """The report as lines: the counts, then the first dropped rows, then the notes."""
        out = [f"{self.source}: read {self.read} rows, kept {self.kept}, dropped {len(self.dropped)}."]
        out += [f"  dropped row {row}: {why}" for row, why in self.dropped[:SHOWN_ROWS]]
        if len(self.dropped) > SHOWN_ROWS:
            out.append(f"  ... and {len(self.dropped) - SHOWN_ROWS} more dropped rows.")
        out += [f"  note: {n}" for n in self.notes]
        return out


Pairs = list[tuple[str, str]]


def parse_pairs(items: Sequence[str], option: str) -> Pairs:
    """``["dst=src", ...]`` as ``[(dst, src), ...]``; a malformed or repeated pair is refused. One field
    may be read from different columns in different files (``--map timestamp=ts --map timestamp=event_ts``
    for a decisions and an outcomes export)."""
    out: Pairs = []
    for item in items:
        dst, sep, src = item.partition("=")
        dst = dst.strip()
        if not sep or not dst or not src:
            raise ValidationError(f"{option} takes FIELD=VALUE. Got {item!r}.")
        if (dst, src) in out:
            raise ValidationError(f"{option} {item} is given twice.")
        out.append((dst, src))
    return out


def _check_fields(pairs: Pairs, allowed: Iterable[str], option: str = "--map") -> None:
    names = set(allowed)
    for dst, _ in pairs:
        if dst not in names:
            raise ValidationError(
                f"{option} {dst}=...: {dst!r} is not a keyart field ({', '.join(sorted(names))})."
            )


def _columns(rows: list[Any]) -> set[str]:
    return set().union(*(r.keys() for r in rows if isinstance(r, Mapping))) if rows else set()


def _check_sources(pairs: Pairs, tables: Sequence[tuple[str, list[Any]]]) -> None:
    """Refuse a ``--map`` whose source column no file has, and one field read from two columns of a file."""
    columns = {source: _columns(rows) for source, rows in tables}
    for dst, src in pairs:
        if not any(src in cols for cols in columns.values()):
            names = " or ".join(columns)
            raise ValidationError(f"--map {dst}={src}: {names} has no column {src!r}.")
    for source, cols in columns.items():
        used = [dst for dst, src in pairs if src in cols]
        twice = sorted({d for d in used if used.count(d) > 1})
        if twice:
            raise ValidationError(f"{source}: --map reads {twice[0]!r} from two of its columns.")


def remap(rows: list[Any], pairs: Pairs, splits: Pairs) -> list[Any]:
    """Rows with source columns renamed to keyart fields (``pairs`` of (dst, src) whose src the rows have)
    and ``splits``' text fields split at their separator (empty text: an empty list)."""
    cols = _columns(rows)
    inverse = {src: dst for dst, src in pairs if src in cols}
    shadowed = set(inverse.values()) - set(inverse)  # a field's own column, replaced by a mapped one
    out = []
    for r in rows:
        if not isinstance(r, Mapping):
            out.append(r)
            continue
        row = {inverse.get(k, k): v for k, v in r.items() if k not in shadowed}
        for name, sep in splits:
            value = row.get(name)
            if isinstance(value, str):
                row[name] = [p.strip() for p in value.split(sep) if p.strip()]
        out.append(row)
    return out


# ---- catalog ---------------------------------------------------------------------------------------


def _parsed(
    rows: list[Any], make: Callable[..., Any], text: bool, problem: Callable[[int, str], None]
) -> Iterator[tuple[int, Any]]:
    """(row number from 1, object) for each row ``make`` accepts; ``problem(row, why)`` for the others."""
    for i, r in enumerate(rows, 1):
        try:
            yield i, make(r, text=text)
        except ValidationError as exc:
            problem(i, str(exc))


def validate_catalog(path: str | Path) -> list[str]:
    """Every problem of a catalog file or directory, one line each (empty: it loads and every active title
    has a pool): bad rows, duplicate ids, artworks of unknown titles, empty pools, mixed embedding
    lengths, default artworks outside their title's pool."""
    rows = read_catalog_rows(path)
    problems: list[str] = []
    titles: dict[str, Title] = {}
    artworks: dict[str, Artwork] = {}

    def problem(where: str) -> Callable[[int, str], None]:
        return lambda i, why: problems.append(f"{where} row {i}: {why}")

    for i, t in _parsed(rows.titles, title_from_row, rows.text[0], problem(rows.where[0])):
        if t.title_id in titles:
            problems.append(f"{rows.where[0]} row {i}: duplicate title_id {t.title_id!r}.")
        titles.setdefault(t.title_id, t)
    lengths: dict[int, list[str]] = {}
    for i, a in _parsed(rows.artworks, artwork_from_row, rows.text[1], problem(rows.where[1])):
        if a.artwork_id in artworks:
            problems.append(f"{rows.where[1]} row {i}: duplicate artwork_id {a.artwork_id!r}.")
            continue
        if a.title_id not in titles:
            problems.append(
                f"{rows.where[1]} row {i}: artwork {a.artwork_id!r} of unknown title {a.title_id!r}."
            )
        artworks[a.artwork_id] = a
        if a.embedding is not None:
            lengths.setdefault(len(a.embedding), []).append(a.artwork_id)
    if len(lengths) > 1:
        parts = ", ".join(
            f"{len(ids)} of length {n} (first {ids[0]!r})" for n, ids in sorted(lengths.items())
        )
        problems.append(f"mixed embedding lengths: {parts}; a catalog's embeddings share one length.")
    pools = Counter(a.title_id for a in artworks.values() if a.active)
    for t in titles.values():
        if t.active and not pools[t.title_id]:
            problems.append(f"title {t.title_id!r} has an empty pool (no active artwork).")
        d = t.default_artwork_id
        if d is not None and (d not in artworks or artworks[d].title_id != t.title_id):
            problems.append(f"title {t.title_id!r}: default_artwork_id {d!r} is not an artwork of the title.")
    return problems


def import_catalog(
    path: str | Path,
    titles_path: str | Path | None = None,
    mapping: Pairs | None = None,
    splits: Pairs | None = None,
) -> tuple[Catalog, list[ImportReport]]:
    """A catalog from a warehouse export: ``path`` holds one row per artwork; its title's columns come
    either from the same rows (the first row of each title gives the title) or from ``titles_path`` (one
    row per title). Bad rows, duplicate ids, artworks of unknown titles and embeddings of another length
    are dropped and reported."""
    mapping, splits = list(mapping or []), list(splits or [])
    _check_fields(mapping, {f.name for f in (*TITLE_FIELDS, *ARTWORK_FIELDS)})
    lists = [f.name for f in (*TITLE_FIELDS, *ARTWORK_FIELDS) if pa.types.is_list(f.type)]
    _check_fields(splits, lists, "--split")
    files = [Path(path)] + ([] if titles_path is None else [Path(titles_path)])
    read = []
    for f in files:
        with catalog_file("read", f):
            read.append(read_rows(f))
    _check_sources(mapping, [(str(f), rows) for f, (rows, _) in zip(files, read, strict=True)])
    art_file, (art_rows, art_text) = files[0], read[0]
    art_rows = remap(art_rows, mapping, splits)
    art_report = ImportReport(str(art_file), len(art_rows))
    titles: dict[str, Title] = {}
    reports = [art_report]
    if titles_path is not None:
        t_file, (t_rows, t_text) = files[1], read[1]
        t_rows = remap(t_rows, mapping, splits)
        t_report = ImportReport(str(t_file), len(t_rows))
        reports.insert(0, t_report)
        for i, t in _parsed(t_rows, title_from_row, t_text, t_report.drop):
            if t.title_id in titles:
                t_report.drop(i, f"duplicate title_id {t.title_id!r} (the first row is kept).")
                continue
            titles[t.title_id] = t
    artworks: dict[str, Artwork] = {}
    length: int | None = None
    conflicts = 0
    for i, r in enumerate(art_rows, 1):
        try:
            if not isinstance(r, Mapping):
                raise ValidationError(f"A row must be an object of fields. Got {type(r).__name__}.")
            if titles_path is None:
                t = title_from_row(
                    {k: v for k, v in r.items() if k in (*_TITLE_ONLY, "title_id")}, text=art_text
                )
                r = {k: v for k, v in r.items() if k not in _TITLE_ONLY}
            a = artwork_from_row(r, text=art_text)
        except ValidationError as exc:
            art_report.drop(i, str(exc))
            continue
        if titles_path is None:
            seen = titles.setdefault(t.title_id, t)
            conflicts += seen != t
        if a.title_id not in titles:
            art_report.drop(i, f"artwork {a.artwork_id!r} of unknown title {a.title_id!r}.")
        elif a.artwork_id in artworks:
            art_report.drop(i, f"duplicate artwork_id {a.artwork_id!r} (the first row is kept).")
        elif a.embedding is not None and length is not None and len(a.embedding) != length:
            art_report.drop(i, f"embedding of length {len(a.embedding)}; the first artwork's has {length}.")
        else:
            artworks[a.artwork_id] = a
            length = length if a.embedding is None or length is not None else len(a.embedding)
    if conflicts:
        art_report.notes.append(
            f"{conflicts} rows disagree with the first row of their title on a title column; "
            "the first is kept."
        )
    empty = sorted(set(titles) - {a.title_id for a in artworks.values()})
    if empty:
        reports[0].notes.append(f"{len(empty)} titles have no artwork (first {empty[0]!r}).")
    if not artworks:
        raise ValidationError(
            f"{art_file}: no artwork row could be imported{art_report.first()}; nothing was written."
        )
    return Catalog(titles.values(), artworks.values()), reports


# ---- logs ------------------------------------------------------------------------------------------


def _epoch(value: Any) -> Any:
    """A timestamp as epoch seconds: numbers as they are, ISO text and datetimes (UTC when naive)."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return _epoch(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise ValidationError(
                f"timestamp must be epoch seconds or ISO 8601 text. Got {value!r}."
            ) from None
    return value


def _typed(row: Mapping[str, Any], schema: pa.Schema, text: bool) -> dict[str, Any]:
    """A log row's known fields converted (CSV text parsed by type; timestamps to epoch seconds)."""
    out: dict[str, Any] = {}
    for f in schema:
        if f.name not in row:
            continue
        value = row[f.name]
        if text and value == "":
            continue  # an empty CSV cell: the field is missing
        if f.name == "timestamp":
            value = _epoch(value)
        elif isinstance(value, list) and pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type):
            try:  # a split text cell: numbers as text
                value = [float(v) if isinstance(v, str) else v for v in value]
            except ValueError:
                raise ValidationError(f"{f.name} must hold numbers. Got {value!r:.80}.") from None
        elif text and isinstance(value, str):
            t = pa.float64() if pa.types.is_integer(f.type) else f.type
            value = parse_text_cell(FieldDoc(f.name, t, False, "", ""), value)
            if pa.types.is_integer(f.type) and isinstance(value, float):
                if not value.is_integer():
                    raise ValidationError(f"{f.name} must be an integer. Got {row[f.name]!r}.")
                value = int(value)
        out[f.name] = value
    return out


def _decision_row(row: Mapping[str, Any], i: int, stem: str, text: bool) -> tuple[dict[str, Any], bool]:
    """One decision row in keyart's schema and whether its propensities were logged."""
    r = _typed(row, DECISION_SCHEMA, text)
    for name in ("member_id", "title_id", "artwork_id", "timestamp"):
        if r.get(name) in (None, ""):
            raise ValidationError(f"{name} is missing.")
    pool = r.get("pool")
    if pool is None:
        raise ValidationError("pool (the candidate artworks, a list) is missing.")
    if not isinstance(pool, list) or r["artwork_id"] not in pool:
        raise ValidationError(f"artwork_id {r['artwork_id']!r} is not in the pool {pool!r:.80}.")
    probs, p = r.get("probabilities"), r.get("propensity")
    logged = probs is not None or p is not None
    k = len(pool)
    chosen = pool.index(r["artwork_id"])
    if probs is None and p is not None:  # only the shown artwork's: the rest spread evenly
        if not (isinstance(p, int | float) and 0 < p <= 1) or (k == 1 and p != 1):
            raise ValidationError(f"propensity must be in (0, 1]. Got {p!r}.")
        rest = (1.0 - p) / (k - 1) if k > 1 else 0.0
        probs = [p if j == chosen else rest for j in range(k)]
    elif probs is None:
        probs = [1.0 / k] * k
    if not isinstance(probs, list) or len(probs) != k:
        raise ValidationError("probabilities must be a list as long as the pool.")
    if r.get("context_json") is None:  # the member as far as the export tells: no history
        ctx = {c: str(row[c]) for c in _CONTEXT_COLUMNS if row.get(c) not in (None, "")}
        r["context_json"] = context_to_json(MemberContext(r["member_id"], timestamp=r["timestamp"], **ctx))
    r.update(
        event_id=r.get("event_id") or f"{stem}-{i}",
        pool=pool,
        probabilities=probs,
        chosen_index=chosen,
        propensity=probs[chosen],
        policy=r.get("policy")
        if logged and r.get("policy")
        else (UNLOGGED_POLICY if not logged else "imported"),
        model_version=r.get("model_version") or 0,
        explored=bool(r.get("explored") or False),
    )
    return r, logged


def _outcome_row(row: Mapping[str, Any], i: int, stem: str, text: bool) -> dict[str, Any]:
    r = _typed(row, OUTCOME_SCHEMA, text)
    r["event_id"] = r.get("event_id") or f"{stem}-{i}"
    return r


def _valid_rows(
    rows: list[dict[str, Any]], numbers: list[int], validate: Any, report: ImportReport
) -> pa.Table | None:
    """The rows as one validated table; when the batch fails, each row is checked on its own and the bad
    ones dropped (the fast path costs one batch validation)."""
    if not rows:
        return None
    try:
        return validate(rows)
    except ValidationError:
        pass
    good = []
    for n, r in zip(numbers, rows, strict=True):
        try:
            validate([r])
        except ValidationError as exc:  # the table's message counts rows from 0 of a one-row table
            report.drop(n, re.sub(r" at rows? 0\b", "", str(exc)))
            continue
        good.append(r)
    return validate(good) if good else None


def import_logs(
    decisions_path: str | Path | None = None,
    outcomes_path: str | Path | None = None,
    mapping: Pairs | None = None,
    splits: Pairs | None = None,
) -> tuple[pa.Table | None, pa.Table | None, list[ImportReport]]:
    """Decision and outcome tables in keyart's schemas from exports. Decisions need member_id, title_id,
    artwork_id, timestamp and pool; probabilities (aligned with the pool) or the shown artwork's
    propensity are optional: without either the rows are marked ``UNLOGGED_POLICY``. Timestamps may be
    epoch seconds, ISO 8601 text or Parquet timestamps (UTC when naive)."""
    if decisions_path is None and outcomes_path is None:
        raise ValidationError("Nothing to import: give a decisions file, an outcomes file, or both.")
    mapping, splits = list(mapping or []), list(splits or [])
    _check_fields(mapping, set(DECISION_SCHEMA.names) | set(OUTCOME_SCHEMA.names) | set(_CONTEXT_COLUMNS))
    _check_fields(splits, ["pool", "probabilities", "features"], "--split")
    inputs = [
        (Path(p), kind) for p, kind in ((decisions_path, "decisions"), (outcomes_path, "outcomes")) if p
    ]
    read = {}
    for p, kind in inputs:
        try:
            read[kind] = read_rows(p)
        except (OSError, ValueError, pa.ArrowException) as exc:
            if isinstance(exc, KeyartError):
                raise type(exc)(f"{p}: {exc}") from exc
            raise ValidationError(
                f"Cannot read {kind} file {p}: {getattr(exc, 'strerror', None) or exc}."
            ) from exc
    _check_sources(mapping, [(str(p), read[kind][0]) for p, kind in inputs])
    reports: list[ImportReport] = []
    tables: dict[str, pa.Table] = {}
    for p, kind in inputs:
        rows, text = read[kind]
        rows = remap(rows, mapping, splits)
        report = ImportReport(str(p), len(rows))
        reports.append(report)
        converted, numbers, unlogged = [], [], 0
        for i, r in enumerate(rows, 1):
            try:
                if not isinstance(r, Mapping):
                    raise ValidationError(f"A row must be an object of fields. Got {type(r).__name__}.")
                if kind == "decisions":
                    row, logged = _decision_row(r, i, p.stem, text)
                    unlogged += not logged
                else:
                    row = _outcome_row(r, i, p.stem, text)
            except ValidationError as exc:
                report.drop(i, str(exc))
                continue
            converted.append(row)
            numbers.append(i)
        if unlogged:
            report.notes.append(
                f"{unlogged} decisions carry no propensity: marked policy {UNLOGGED_POLICY!r}; "
                "keyart evaluate runs only the estimators that do not need propensities (dm) on them."
            )
        table = _valid_rows(
            converted, numbers, decisions_table if kind == "decisions" else outcomes_table, report
        )
        if table is None:
            raise ValidationError(
                f"{p}: no {kind} row could be imported{report.first()}; nothing was written."
            )
        tables[kind] = table
        schema = DECISION_SCHEMA if kind == "decisions" else OUTCOME_SCHEMA
        ignored = sorted(_columns(rows) - set(schema.names) - set(_CONTEXT_COLUMNS))
        if ignored:
            report.notes.append(f"columns not in the {kind} schema, ignored: {', '.join(ignored)}.")
    return tables.get("decisions"), tables.get("outcomes"), reports


def write_store(path: str | Path, decisions: pa.Table | None, outcomes: pa.Table | None) -> None:
    """Write a new keyart event store at ``path`` (refused when it exists): built in a temporary file
    beside it, then renamed, so a failure leaves nothing."""
    from keyart.store import EventStore

    target = Path(path)
    if target.exists():
        raise ValidationError(f"{target} exists; choose a new path (an import never overwrites a store).")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with EventStore(tmp) as store:
            if decisions is not None:
                store.append_decisions(decisions)
            if outcomes is not None:
                store.append_outcomes(outcomes)
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)


__all__ = [
    "UNLOGGED_POLICY",
    "ImportReport",
    "import_catalog",
    "import_logs",
    "parse_pairs",
    "remap",
    "validate_catalog",
    "write_store",
]
