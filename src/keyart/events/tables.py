"""Whole-batch validation of events: records, mappings or Arrow tables in, a table of exactly the
decision or outcome schema out, or a ``ValidationError`` naming the column and rows (nothing partial).
Re-exported by ``keyart.events``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keyart.errors import ValidationError
from keyart.events.schema import (
    DECISION_SCHEMA,
    EVENT_TYPES,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    OUTCOME_SCHEMA,
    PROB_SUM_TOL,
)

if TYPE_CHECKING:
    from keyart.events.records import DecisionRecord, OutcomeRecord


def _rows_to_table(records: Iterable[Any], schema: pa.Schema) -> pa.Table:
    kind = schema.metadata[b"keyart.schema"].decode()
    rows = []
    for i, r in enumerate(records):
        if isinstance(r, Mapping):
            rows.append(r)
        elif is_dataclass(r) and not isinstance(r, type):
            rows.append(asdict(r))
        else:
            raise ValidationError(
                f"Record {i} of data is a {type(r).__name__}; expected a {kind} record or a mapping."
            )
    names = set(schema.names)
    for i, row in enumerate(rows):
        extra = set(row) - names
        if extra:
            raise ValidationError(f"Record {i} has unknown fields: {', '.join(sorted(map(str, extra)))}.")
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        _raise_bad_field(rows, schema, kind)
        raise ValidationError(f"Records do not fit the {kind} schema: {exc}") from None


_CONVERT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


def _raise_bad_field(rows: list[Mapping[str, Any]], schema: pa.Schema, kind: str) -> None:
    """Name the first field and record that does not convert to ``schema`` (only on the error path)."""
    for field in schema:
        values = [row.get(field.name) for row in rows]
        try:
            pa.array(values, type=field.type)
        except _CONVERT_ERRORS:
            for i, value in enumerate(values):
                try:
                    pa.array([value], type=field.type)
                except _CONVERT_ERRORS as exc:
                    raise ValidationError(
                        f"Field {field.name!r} of {kind} record {i} does not fit {field.type}: "
                        f"{value!r:.80} ({exc})."
                    ) from None


def _is_text(t: pa.DataType) -> bool:
    checks = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    return any(check(t) for check in checks)


def _convertible(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether a column of type ``src`` may be cast to ``dst``: numbers stay numbers (no parsing of text,
    no booleans as numbers), lists convert element-wise."""
    if pa.types.is_null(src):
        return True
    if pa.types.is_dictionary(src):
        return _convertible(src.value_type, dst)
    if pa.types.is_list(dst):
        is_list = pa.types.is_list(src) or pa.types.is_large_list(src) or pa.types.is_fixed_size_list(src)
        return not is_list or _convertible(src.value_type, dst.value_type)
    if pa.types.is_integer(dst) or pa.types.is_floating(dst):
        return pa.types.is_integer(src) or pa.types.is_floating(src) or pa.types.is_decimal(src)
    if pa.types.is_boolean(dst):
        return not _is_text(src)
    return True


def _conform(data: pa.Table | Iterable[Any], schema: pa.Schema) -> pa.Table:
    """Records or a table -> a table of exactly ``schema`` (missing optional columns become nulls)."""
    kind = schema.metadata[b"keyart.schema"].decode()
    if not isinstance(data, pa.Table | pa.RecordBatch):
        if (
            data is None
            or isinstance(data, str | bytes | Mapping)
            or (is_dataclass(data) and not isinstance(data, type))
            or not isinstance(data, Iterable)
        ):
            single = isinstance(data, Mapping) or is_dataclass(data)
            one = " (wrap a single record in a list)" if single else ""
            raise ValidationError(
                f"data must be an Arrow table or a list of {kind} records; got a {type(data).__name__}{one}."
            )
        return _rows_to_table(data, schema)
    table = pa.table(data) if isinstance(data, pa.RecordBatch) else data
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if not _convertible(col.type, field.type):
                raise ValidationError(
                    f"Column {field.name!r} of the {kind} table has type {col.type}, expected {field.type}: "
                    "text, booleans and dates are not converted to numbers."
                )
            try:
                cols.append(col.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValidationError(
                    f"Column {field.name!r} of the {kind} table has type {col.type}, "
                    f"expected {field.type}: {exc}"
                ) from None
        elif field.nullable:
            cols.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValidationError(f"The {kind} table is missing the required column {field.name!r}.")
    extra = set(table.column_names) - set(schema.names) - {"date"}
    if extra:
        raise ValidationError(f"The {kind} table has unknown columns: {', '.join(sorted(extra))}.")
    return pa.Table.from_arrays(cols, schema=schema)


def _require_non_null(table: pa.Table, kind: str) -> None:
    for field in table.schema:
        if not field.nullable and table.column(field.name).null_count:
            raise ValidationError(
                f"Column {field.name!r} of the {kind} table has "
                f"{table.column(field.name).null_count} missing values."
            )


def _bad_rows(mask: np.ndarray) -> str:
    return ", ".join(str(int(i)) for i in np.flatnonzero(mask)[:5])


def _dedupe(table: pa.Table) -> pa.Table:
    """Keep the first row of each event id (a batch may repeat an event: it is stored once)."""
    ids = table.column("event_id").to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    if first.size == table.num_rows:
        return table
    return table.take(pa.array(np.sort(first)))


def _check_ids(table: pa.Table, names: Sequence[str], kind: str) -> None:
    for name in names:
        col = table.column(name)
        if col.null_count < table.num_rows:
            empty = pc.fill_null(pc.equal(col, ""), False).to_numpy(zero_copy_only=False)
            if empty.any():
                raise ValidationError(
                    f"Column {name!r} of the {kind} table has empty strings at rows {_bad_rows(empty)}."
                )


def _check_finite(table: pa.Table, name: str, kind: str) -> np.ndarray:
    vals = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        raise ValidationError(f"Column {name!r} of the {kind} table must be finite (rows {_bad_rows(bad)}).")
    return vals


def _check_timestamps(table: pa.Table, kind: str) -> None:
    """Epoch seconds in [MIN_TIMESTAMP, MAX_TIMESTAMP), naming the rows and the likely unit (run after the
    other checks: a batch with several problems reports the same one as before the range existed)."""
    ts = table.column("timestamp").to_numpy(zero_copy_only=False).astype(np.float64)
    bad = (ts < MIN_TIMESTAMP) | (ts >= MAX_TIMESTAMP)
    if bad.any():
        first = float(ts[np.flatnonzero(bad)[0]])
        hint = f"; got {first:g}"
        for unit, factor in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
            if MIN_TIMESTAMP * factor <= first < MAX_TIMESTAMP * factor:
                hint = f"; {first:g} looks like {unit}"
        raise ValidationError(
            f"Column 'timestamp' of the {kind} table must be epoch seconds (UTC) between 1990-01-01 and "
            f"2200-01-01 [{MIN_TIMESTAMP:.0f}, {MAX_TIMESTAMP:.0f}); it is not at rows {_bad_rows(bad)}"
            f"{hint}."
        )


def _check_pool_ids(table: pa.Table, pool_len: np.ndarray) -> None:
    """Every pool holds non-empty, non-null artwork ids, each at most once."""
    flat = pc.list_flatten(table.column("pool").combine_chunks())
    owner = np.repeat(np.arange(table.num_rows), pool_len)

    def rows_of(mask: np.ndarray) -> str:
        return _bad_rows(np.isin(np.arange(table.num_rows), owner[mask]))

    null = flat.is_null().to_numpy(zero_copy_only=False)
    if null.any():
        raise ValidationError(f"Column 'pool' has a null artwork id at rows {rows_of(null)}.")
    empty = pc.equal(flat, "").to_numpy(zero_copy_only=False)
    if empty.any():
        raise ValidationError(f"Column 'pool' has an empty artwork id at rows {rows_of(empty)}.")
    encoded = pc.dictionary_encode(flat)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(pool_len)])[:-1]
    repeated = np.zeros(table.num_rows, dtype=bool)
    first_row, first = table.num_rows, None  # the first row with a repeat, and the id it repeats
    for size in np.unique(pool_len[pool_len > 1]):  # pools of one size at a time: sort each row's ids
        rows = np.flatnonzero(pool_len == size)
        block = np.sort(codes[starts[rows][:, None] + np.arange(size)], axis=1)
        same = block[:, 1:] == block[:, :-1]
        rep = np.flatnonzero(same.any(axis=1))
        if rep.size:
            repeated[rows[rep]] = True
            if rows[rep[0]] < first_row:
                first_row = int(rows[rep[0]])
                first = encoded.dictionary[int(block[rep[0], 1:][same[rep[0]]][0])].as_py()
    if repeated.any():
        raise ValidationError(
            f"Column 'pool' repeats artwork id {first!r} at rows {_bad_rows(repeated)}: each artwork "
            "appears once in a pool."
        )


def decisions_table(data: pa.Table | Iterable[DecisionRecord | Mapping[str, Any]]) -> pa.Table:
    """Validate a whole batch of decisions into a ``DECISION_SCHEMA`` table (nothing partial on failure).

    Checks: required columns non-null, ids non-empty, timestamps epoch seconds in [1990, 2200), pool
    artwork ids non-empty and distinct, pool and probabilities of equal non-zero length,
    probabilities in [0, 1] summing to 1, ``chosen_index`` inside the pool, ``artwork_id`` equal to the
    chosen pool entry, ``propensity`` equal to its probability and in (0, 1]. Repeated event ids in the
    batch keep their first row.
    """
    kind = "decision"
    table = _conform(data, DECISION_SCHEMA)
    if table.num_rows == 0:
        return table
    _require_non_null(table, kind)
    _check_ids(table, ("event_id", "member_id", "title_id", "artwork_id", "policy"), kind)
    _check_finite(table, "timestamp", kind)
    pool_len = pc.list_value_length(table.column("pool")).to_numpy(zero_copy_only=False)
    prob_len = pc.list_value_length(table.column("probabilities")).to_numpy(zero_copy_only=False)
    bad = pool_len == 0
    if bad.any():
        raise ValidationError(f"Column 'pool' is empty at rows {_bad_rows(bad)}: a decision needs a pool.")
    bad = pool_len != prob_len
    if bad.any():
        raise ValidationError(
            f"Columns 'pool' and 'probabilities' differ in length at rows {_bad_rows(bad)}."
        )
    _check_pool_ids(table, pool_len)
    probs_col = table.column("probabilities").combine_chunks()
    flat = pc.list_flatten(probs_col).to_numpy(zero_copy_only=False).astype(np.float64)
    if not np.all(np.isfinite(flat)) or (flat < 0).any() or (flat > 1 + PROB_SUM_TOL).any():
        raise ValidationError("Column 'probabilities' must hold probabilities in [0, 1].")
    owner = np.repeat(np.arange(table.num_rows), prob_len)
    sums = np.bincount(owner, weights=flat, minlength=table.num_rows)
    bad = np.abs(sums - 1.0) > PROB_SUM_TOL
    if bad.any():
        raise ValidationError(
            f"Column 'probabilities' must sum to 1 per decision; it does not at rows {_bad_rows(bad)}."
        )
    idx = table.column("chosen_index").to_numpy(zero_copy_only=False).astype(np.int64)
    bad = (idx < 0) | (idx >= pool_len)
    if bad.any():
        raise ValidationError(f"Column 'chosen_index' points outside the pool at rows {_bad_rows(bad)}.")
    offsets = np.concatenate([[0], np.cumsum(prob_len)])[:-1]
    chosen_p = flat[offsets + idx]
    prop = _check_finite(table, "propensity", kind)
    bad = (prop <= 0) | (prop > 1)
    if bad.any():
        raise ValidationError(f"Column 'propensity' must be in (0, 1]; it is not at rows {_bad_rows(bad)}.")
    bad = np.abs(prop - chosen_p) > PROB_SUM_TOL
    if bad.any():
        raise ValidationError(
            f"Column 'propensity' differs from probabilities[chosen_index] at rows {_bad_rows(bad)}."
        )
    pool_flat = pc.list_flatten(table.column("pool").combine_chunks()).to_numpy(zero_copy_only=False)
    shown = table.column("artwork_id").to_numpy(zero_copy_only=False)
    bad = pool_flat[offsets + idx] != shown
    if bad.any():
        raise ValidationError(f"Column 'artwork_id' is not pool[chosen_index] at rows {_bad_rows(bad)}.")
    if (table.column("model_version").to_numpy(zero_copy_only=False) < 0).any():
        raise ValidationError("Column 'model_version' must be >= 0.")
    _check_timestamps(table, kind)
    return _dedupe(table)


def outcomes_table(data: pa.Table | Iterable[OutcomeRecord | Mapping[str, Any]]) -> pa.Table:
    """Validate a whole batch of outcomes into an ``OUTCOME_SCHEMA`` table.

    Checks: ids non-empty, ``event_type`` one of ``EVENT_TYPES``, ``engaged_seconds`` >= 0 when given,
    timestamps epoch seconds in [1990, 2200). Repeated event ids keep their first row.
    """
    kind = "outcome"
    table = _conform(data, OUTCOME_SCHEMA)
    if table.num_rows == 0:
        return table
    _require_non_null(table, kind)
    _check_ids(table, ("event_id", "member_id", "title_id", "decision_id"), kind)
    _check_finite(table, "timestamp", kind)
    types = table.column("event_type")
    bad = ~pc.is_in(types, value_set=pa.array(EVENT_TYPES)).to_numpy(zero_copy_only=False)
    if bad.any():
        first = types[int(np.flatnonzero(bad)[0])].as_py()
        raise ValidationError(
            f"Column 'event_type' has unknown type {first!r} at rows {_bad_rows(bad)}; "
            f"known: {', '.join(EVENT_TYPES)}."
        )
    sec = table.column("engaged_seconds").to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isnan(sec) & (~np.isfinite(sec) | (sec < 0))
    if bad.any():
        raise ValidationError(f"Column 'engaged_seconds' must be finite and >= 0 at rows {_bad_rows(bad)}.")
    _check_timestamps(table, kind)
    return _dedupe(table)
