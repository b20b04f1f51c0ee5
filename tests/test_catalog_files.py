"""Catalog files from any writer through one loading path (keyart.catalog_files, Catalog.load)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keyart.catalog import Artwork, Catalog, Title
from keyart.errors import DimensionError, DuplicateIdError, UnknownIdError, ValidationError
from keyart.service import catalog_store

TITLES = [
    {
        "title_id": "t1",
        "name": "One",
        "genres": ["drama", "comedy"],
        "cast": ["robin"],
        "runtime_minutes": 90.0,
    },
    {"title_id": "t2", "name": "Two", "genres": ["action"], "cast": [], "runtime_minutes": None},
]
ARTWORKS = [
    {
        "artwork_id": "a1",
        "title_id": "t1",
        "theme_genres": ["drama"],
        "featured_cast": ["robin"],
        "style": "dark",
    },
    {
        "artwork_id": "a2",
        "title_id": "t1",
        "theme_genres": ["comedy"],
        "featured_cast": [],
        "style": "bright",
    },
    {"artwork_id": "a3", "title_id": "t2", "theme_genres": ["action"], "featured_cast": [], "style": "dark"},
]


def expected() -> Catalog:
    return Catalog.from_dict({"format_version": 1, "titles": TITLES, "artworks": ARTWORKS})


def _duckdb_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE titles AS SELECT * FROM (VALUES "
        "('t1', 'One', ['drama', 'comedy'], ['robin'], 90.0), ('t2', 'Two', ['action'], [], NULL)) "
        't(title_id, name, genres, "cast", runtime_minutes)'
    )
    con.execute(
        "CREATE TABLE artworks AS SELECT * FROM (VALUES "
        "('a1', 't1', ['drama'], ['robin'], 'dark'), ('a2', 't1', ['comedy'], [], 'bright'), "
        "('a3', 't2', ['action'], [], 'dark')) t(artwork_id, title_id, theme_genres, featured_cast, style)"
    )


@pytest.mark.parametrize(("fmt", "suffix"), [("PARQUET", "parquet"), ("JSON", "jsonl")])
def test_tables_written_by_duckdb_load_like_keyart_s_own(tmp_path, fmt, suffix):
    """DuckDB writes 90.0 as DECIMAL in Parquet, and JSON Lines with FORMAT JSON."""
    con = duckdb.connect()
    _duckdb_tables(con)
    for name in ("titles", "artworks"):
        con.execute(f"COPY {name} TO '{tmp_path / name}.{suffix}' (FORMAT {fmt})")
    assert Catalog.load(tmp_path) == expected()


@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "csv"])
def test_tables_written_by_pandas_load_like_keyart_s_own(tmp_path, suffix):
    """pandas writes its own schema metadata into Parquet and NaN for a missing number; its CSV holds
    lists as the JSON arrays a CSV catalog takes (``json.dumps`` per cell, as a user would write them)."""
    import pandas as pd

    for name, rows in (("titles", TITLES), ("artworks", ARTWORKS)):
        frame = pd.DataFrame(rows)
        path = tmp_path / f"{name}.{suffix}"
        if suffix == "parquet":
            frame.to_parquet(path)
        elif suffix == "jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            for col in frame.columns:
                if frame[col].map(lambda v: isinstance(v, list)).any():
                    frame[col] = frame[col].map(json.dumps)
            frame.to_csv(path, index=False)
    assert Catalog.load(tmp_path) == expected()


def test_parquet_written_by_plain_pyarrow_with_reordered_columns_loads(tmp_path):
    titles = pa.Table.from_pylist([{k: r[k] for k in reversed(list(r))} for r in TITLES])
    pq.write_table(titles, tmp_path / "titles.parquet")  # no keyart metadata, no metadata column
    pq.write_table(pa.Table.from_pylist(ARTWORKS), tmp_path / "artworks.parquet")
    assert titles.schema.metadata is None
    assert Catalog.load(tmp_path) == expected()


@pytest.mark.parametrize("fmt", ["json", "parquet", "csv", "jsonl"])
def test_every_form_round_trips_exactly_with_images_metadata_and_embeddings(tmp_path, fmt):
    cat = Catalog(
        [Title("t", "T, with a comma", genres=("a",), metadata={"year": 1997, "tags": ["x", "y"]})],
        [
            Artwork("a", "t", embedding=(0.1, -2.5e-7), image="imgs/a.jpg", metadata={"by": "studio"}),
            Artwork("b", "t", tags=("q",), embedding=(1.0, 2.0), active=False),
        ],
    )
    path = tmp_path / ("c.json" if fmt == "json" else "c")
    cat.save(path, fmt)
    loaded = Catalog.load(path)
    assert loaded == cat
    assert loaded.artwork("a").embedding == (0.1, -2.5e-7) and loaded.artwork("a").image == "imgs/a.jpg"


@pytest.mark.parametrize("fmt", ["json", "parquet", "csv", "jsonl"])
def test_unknown_columns_are_kept_in_metadata_and_survive_a_round_trip(tmp_path, fmt):
    rows = [{**TITLES[0], "release_year": 1997, "metadata": {"a": 1}}, TITLES[1]]
    arts = [{**ARTWORKS[0], "image_url": "https://x/a1.jpg"}, *ARTWORKS[1:]]
    cat = Catalog.from_dict({"format_version": 1, "titles": rows, "artworks": arts})
    assert cat.title("t1").metadata == {"a": 1, "release_year": 1997}
    assert cat.artwork("a1").metadata == {"image_url": "https://x/a1.jpg"}
    path = tmp_path / ("c.json" if fmt == "json" else "c")
    cat.save(path, fmt)
    assert Catalog.load(path) == cat


def test_an_unknown_parquet_column_of_dates_is_kept_as_iso_text(tmp_path):
    import datetime as dt

    table = pa.Table.from_pylist([{**TITLES[0], "released": dt.date(1997, 12, 5)}])
    pq.write_table(table, tmp_path / "titles.parquet")
    pq.write_table(pa.Table.from_pylist(ARTWORKS[:2]), tmp_path / "artworks.parquet")
    assert Catalog.load(tmp_path).title("t1").metadata == {"released": "1997-12-05"}


def test_a_column_that_is_also_a_metadata_key_is_refused():
    row = {**TITLES[0], "year": 1, "metadata": {"year": 2}}
    with pytest.raises(ValidationError, match=r"titles row 1: Column 'year' is both"):
        Catalog.from_dict({"format_version": 1, "titles": [row], "artworks": []})


def _write(tmp_path: Path, fmt: str, titles: list[dict], artworks: list[dict]) -> Path:
    """Write rows as a writer outside keyart would: plain pyarrow Parquet, or JSON Lines."""
    d = tmp_path / fmt
    d.mkdir()
    for name, rows in (("titles", titles), ("artworks", artworks)):
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), d / f"{name}.parquet")
        else:
            (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
@pytest.mark.parametrize(("kind", "field"), [("titles", "genres"), ("artworks", "featured_cast")])
def test_a_string_where_a_list_belongs_is_refused_naming_file_row_and_field(tmp_path, fmt, kind, field):
    titles = [dict(r) for r in TITLES]
    artworks = [dict(r) for r in ARTWORKS]
    rows = titles if kind == "titles" else artworks
    for r in rows:
        r[field] = "robin"  # every row a string: Parquet then has a string column
    d = _write(tmp_path, fmt, titles, artworks)
    with pytest.raises(ValidationError, match=rf"{kind}\.{fmt} row 1: {field} of .* not a single string"):
        Catalog.load(d)


def test_a_string_where_a_list_belongs_in_csv_is_refused_naming_file_row_and_field(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "titles.csv").write_text('title_id,genres\nt1,"[""drama""]"\nt2,drama\n')
    (d / "artworks.csv").write_text("artwork_id,title_id\na1,t1\n")
    with pytest.raises(
        ValidationError, match=r"titles\.csv row 2: genres must be a list .*not a single string"
    ):
        Catalog.load(d)
    (d / "titles.csv").write_text('title_id,genres\nt1,"[""drama""]"\nt2,\n')
    cat = Catalog.load(d)
    assert cat.title("t1").genres == ("drama",) and cat.title("t2").genres == ()


@pytest.mark.parametrize(
    ("titles_csv", "artworks_csv", "exc", "match"),
    [
        (
            "title_id,runtime_minutes\nt1,long\n",
            "artwork_id,title_id\na,t1\n",
            ValidationError,
            "row 1: runtime",
        ),
        (
            "title_id,active\nt1,maybe\n",
            "artwork_id,title_id\na,t1\n",
            ValidationError,
            "active must be true",
        ),
        ("title_id\nt1\nt1\n", "artwork_id,title_id\na,t1\n", DuplicateIdError, "Duplicate title_id 't1'"),
        ("title_id\nt1\n", "artwork_id,title_id\na,t9\n", UnknownIdError, "unknown title_id 't9'"),
        (
            "title_id\nt1\n",
            'artwork_id,title_id,embedding\na,t1,[1]\nb,t1,"[1,2]"\n',
            DimensionError,
            "length",
        ),
        ("title_id,metadata\nt1,[1]\n", "artwork_id,title_id\na,t1\n", ValidationError, "JSON object"),
        ("title_id,name\n,x\n", "artwork_id,title_id\na,t1\n", ValidationError, "row 1: title_id must be"),
        ("title_id\nt1,x\n", "artwork_id,title_id\na,t1\n", ValidationError, "row 1 has 1 more cells"),
    ],
)
def test_bad_csv_catalogs_are_refused_with_their_place(tmp_path, titles_csv, artworks_csv, exc, match):
    d = tmp_path / "c"
    d.mkdir()
    (d / "titles.csv").write_text(titles_csv)
    (d / "artworks.csv").write_text(artworks_csv)
    with pytest.raises(exc, match=match) as info:
        Catalog.load(d)
    assert str(d) in str(info.value)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"titles.csv": "title_id\nt\n"}, "no artworks table"),
        ({"titles.csv": "title_id\nt\n", "titles.jsonl": "", "artworks.csv": "x\n"}, "several titles tables"),
        ({"titles.jsonl": "{not json\n", "artworks.jsonl": ""}, "line 1 is not JSON"),
        ({"titles.json": '{"a": 1}', "artworks.json": "[]"}, "array of row objects"),
        ({"titles.jsonl": "[1]\n", "artworks.jsonl": ""}, "row 1: A row must be an object"),
    ],
)
def test_malformed_catalog_directories_are_refused(tmp_path, files, match):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValidationError, match=match):
        Catalog.load(tmp_path)


def test_a_single_table_file_is_not_a_catalog(tmp_path):
    (tmp_path / "titles.parquet").write_bytes(b"")
    with pytest.raises(ValidationError, match="a catalog is a JSON file or a directory"):
        Catalog.load(tmp_path / "titles.parquet")


def test_the_service_s_own_catalog_file_loads(tmp_path):
    path = tmp_path / "state" / "catalog.json"
    catalog_store.import_catalog(path, expected())
    assert json.loads(path.read_text())["rev"] == 1
    assert Catalog.load(path) == expected() == Catalog.load_json(path)


def test_nothing_is_written_when_saving_fails_or_the_directory_holds_another_form(tmp_path):
    cat = expected()
    cat.save(tmp_path / "c", "csv")
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
    with pytest.raises(ValidationError, match=r"already holds titles\.csv"):
        cat.save(tmp_path / "c", "parquet")
    bad = Catalog([Title("t", metadata={"a": 1})])
    bad.title("t").metadata["a"] = object()
    with pytest.raises(ValidationError):
        bad.save(tmp_path / "c", "csv")
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before
    with pytest.raises(ValidationError, match="fmt must be one of"):
        cat.save(tmp_path / "d", "xlsx")
    assert not (tmp_path / "d").exists()
