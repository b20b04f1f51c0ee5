"""The published schemas (keyart.schemas, `keyart schema`, docs/data.md) and their example files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keyart.catalog import Artwork, Catalog, Title
from keyart.cli import app
from keyart.events import decisions_table, outcomes_table
from keyart.examples import tiny_catalog
from keyart.schemas import (
    ARTWORK_SCHEMA,
    SCHEMA_NAMES,
    TITLE_SCHEMA,
    fields_of,
    json_schema,
    markdown_table,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def conforms(value: Any, schema: dict[str, Any]) -> list[str]:
    """The problems of ``value`` against the JSON Schema subset keyart publishes (type, enum, const,
    anyOf, properties, required, additionalProperties, items): a small checker, as jsonschema is not a
    dependency."""
    kinds = {
        "string": str,
        "number": (int, float),
        "integer": int,
        "boolean": bool,
        "array": list,
        "object": dict,
        "null": type(None),
    }
    if "anyOf" in schema:
        return (
            [] if any(not conforms(value, s) for s in schema["anyOf"]) else [f"{value!r:.40} fits no option"]
        )
    problems = []
    if "const" in schema and value != schema["const"]:
        problems.append(f"{value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{value!r} not in {schema['enum']}")
    if "type" in schema:
        t = kinds[schema["type"]]
        bad_bool = isinstance(value, bool) and schema["type"] in ("number", "integer")
        if not isinstance(value, t) or bad_bool:
            return [*problems, f"{value!r:.40} is not {schema['type']}"]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        problems += [f"missing {k}" for k in schema.get("required", ()) if k not in value]
        for k, v in value.items():
            if k in props:
                problems += [f"{k}: {p}" for p in conforms(v, props[k])]
            elif schema.get("additionalProperties", True) is False:
                problems.append(f"unknown field {k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            problems += [f"[{i}]: {p}" for p in conforms(v, schema["items"])]
    return problems


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_data_page_shows_every_field_of_every_schema_as_declared():
    page = (ROOT / "docs" / "data.md").read_text()
    for name in SCHEMA_NAMES:
        for table, fields in fields_of(name).items():
            assert markdown_table(fields) in page, f"docs/data.md's {table} table is out of date"


def test_the_catalog_schema_names_every_field_of_titles_and_artworks():
    assert {f.name for f in dataclasses.fields(Artwork)} == set(ARTWORK_SCHEMA.names)
    assert {f.name for f in dataclasses.fields(Title)} == set(TITLE_SCHEMA.names)


def test_saved_parquet_tables_have_the_published_arrow_schemas(tmp_path):
    tiny_catalog().save(tmp_path / "c", "parquet")
    for name, schema in (("titles", TITLE_SCHEMA), ("artworks", ARTWORK_SCHEMA)):
        written = pq.read_schema(tmp_path / "c" / f"{name}.parquet")
        assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in schema]


def test_example_files_conform_to_the_published_json_schemas():
    catalog = json.loads((EXAMPLES / "catalog.json").read_text())
    assert conforms(catalog, json_schema("catalog")) == []
    for name in ("decisions", "outcomes"):
        rows = _jsonl(EXAMPLES / f"{name}.jsonl")
        assert rows
        for row in rows:
            assert conforms(row, json_schema(name)) == []


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("catalog", lambda d: d["titles"][0].update(genres="drama"), "genres"),
        ("catalog", lambda d: d.pop("artworks"), "missing artworks"),
        ("decisions", lambda d: d.update(propensity="high"), "propensity"),
        ("outcomes", lambda d: d.update(event_type="click"), "event_type"),
        ("outcomes", lambda d: d.update(extra=1), "unknown field extra"),
    ],
)
def test_the_json_schemas_refuse_what_keyart_refuses(name, change, problem):
    data = (
        json.loads((EXAMPLES / "catalog.json").read_text())
        if name == "catalog"
        else _jsonl(EXAMPLES / f"{name}.jsonl")[0]
    )
    change(data)
    assert any(problem in p for p in conforms(data, json_schema(name)))


def test_example_files_load_as_keyart_data():
    from_json = Catalog.load(EXAMPLES / "catalog.json")
    assert Catalog.load(EXAMPLES / "catalog-csv") == from_json
    assert from_json.artwork("gw-romance").image == "https://images.example.com/gw-romance.jpg"
    assert decisions_table(_jsonl(EXAMPLES / "decisions.jsonl")).num_rows == 2
    assert outcomes_table(_jsonl(EXAMPLES / "outcomes.jsonl")).num_rows == 3


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_command_prints_the_json_schema(name):
    result = CliRunner().invoke(app, ["schema", name])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json_schema(name)
