"""`keyart catalog validate`, `keyart catalog import`, `keyart logs import` (keyart.imports): mapping,
reports of dropped rows, nothing written on failure, round trips, logs without propensities."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keyart.catalog import Catalog
from keyart.cli import EXIT_CHECK_FAILED, EXIT_INPUT, app
from keyart.errors import ValidationError
from keyart.imports import UNLOGGED_POLICY, import_catalog, import_logs, parse_pairs
from keyart.store import EventStore

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

EXPORT = """show_id,show_name,genre_list,runtime,asset_id,themes,asset_url,designer
s1,Alpha,Drama|Comedy,90,s1-a,drama,https://img/s1-a.jpg,ann
s1,Alpha,Drama|Comedy,90,s1-b,comedy,https://img/s1-b.jpg,bo
s2,Beta,Action,abc,s2-a,action,https://img/s2-a.jpg,ann
s2,Beta,Action,100,s2-a,action,https://img/s2-a.jpg,ann
s3,Gamma,Horror,80,s3-a,horror,,cy
s3,Gamma,Horror,80,s3-a,horror,,cy
"""
MAPS = [
    "--map",
    "title_id=show_id",
    "--map",
    "name=show_name",
    "--map",
    "genres=genre_list",
    "--map",
    "runtime_minutes=runtime",
    "--map",
    "artwork_id=asset_id",
    "--map",
    "theme_genres=themes",
    "--map",
    "image=asset_url",
    "--split",
    "genres=|",
    "--split",
    "theme_genres=|",
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


# ---- catalog validate --------------------------------------------------------------------------------


def test_validate_passes_a_good_catalog():
    code, out, err = run("catalog", "validate", EXAMPLES / "catalog.json")
    assert (code, err) == (0, "") and out.strip().endswith(": ok")


def test_validate_lists_every_problem_one_line_each(tmp_path):
    doc = {
        "format_version": 1,
        "titles": [
            {"title_id": "t1", "genres": "drama"},
            {"title_id": "t2"},
            {"title_id": "t2"},
            {"title_id": "t3", "default_artwork_id": "a1"},
        ],
        "artworks": [
            {"artwork_id": "a1", "title_id": "t2", "embedding": [1.0, 2.0]},
            {"artwork_id": "a1", "title_id": "t2"},
            {"artwork_id": "a2", "title_id": "t9", "embedding": [1.0]},
            {"artwork_id": "a3", "title_id": "t3", "active": False},
        ],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    code, out, _ = run("catalog", "validate", path)
    assert code == EXIT_CHECK_FAILED
    lines = out.strip().splitlines()
    expected = [
        r"titles row 1: genres of title 't1' must be a list of strings, not a single string",
        r"titles row 3: duplicate title_id 't2'",
        r"artworks row 2: duplicate artwork_id 'a1'",
        r"artworks row 3: artwork 'a2' of unknown title 't9'",
        r"mixed embedding lengths: 1 of length 1 \(first 'a2'\), 1 of length 2 \(first 'a1'\)",
        r"title 't3' has an empty pool",
        r"title 't3': default_artwork_id 'a1' is not an artwork of the title",
    ]
    assert len(lines) == len(expected)
    for line, pattern in zip(lines, expected, strict=True):
        assert re.search(pattern, line), (line, pattern)


def test_validate_of_a_missing_file_is_an_input_error(tmp_path):
    code, _, err = run("catalog", "validate", tmp_path / "none.json")
    assert code == EXIT_INPUT and err.startswith("keyart: error: Cannot read catalog file")


# ---- catalog import ----------------------------------------------------------------------------------


def test_catalog_import_maps_splits_reports_and_keeps_unknown_columns(tmp_path):
    (tmp_path / "export.csv").write_text(EXPORT)
    code, out, err = run("catalog", "import", tmp_path / "export.csv", *MAPS, "--out", tmp_path / "c.json")
    assert code == 0, err
    assert "read 6 rows, kept 4, dropped 2" in err
    assert "dropped row 3: runtime_minutes must be a number. Got 'abc'." in err
    assert "dropped row 6: duplicate artwork_id 's3-a'" in err
    cat = Catalog.load(tmp_path / "c.json")
    assert cat.title("s1").genres == ("Drama", "Comedy") and cat.title("s1").runtime_minutes == 90.0
    assert cat.artwork("s1-a").image == "https://img/s1-a.jpg"
    assert cat.artwork("s1-a").metadata == {"designer": "ann"}
    assert cat.artwork("s3-a").image is None
    assert "Wrote" in out and "3 titles, 4 artworks" in out


def test_catalog_import_round_trip_export_then_import_gives_the_same_rows(tmp_path):
    (tmp_path / "export.csv").write_text(EXPORT)
    first, _ = import_catalog(
        tmp_path / "export.csv",
        mapping=parse_pairs([m for m in MAPS[1::2] if "|" not in m], "--map"),
        splits=[("genres", "|"), ("theme_genres", "|")],
    )
    first.save(tmp_path / "out", "csv")
    again, reports = import_catalog(
        tmp_path / "out" / "artworks.csv", titles_path=tmp_path / "out" / "titles.csv"
    )
    assert again == first and all(not r.dropped for r in reports)


def test_catalog_import_strict_and_failures_write_nothing(tmp_path):
    (tmp_path / "export.csv").write_text(EXPORT)
    out = tmp_path / "c.json"
    code, _, err = run("catalog", "import", tmp_path / "export.csv", *MAPS, "--strict", "--out", out)
    assert code == EXIT_INPUT and "--strict: 2 rows would be dropped; nothing was written" in err
    assert not out.exists()
    code, _, err = run("catalog", "import", tmp_path / "export.csv", "--map", "title_id=nope", "--out", out)
    assert code == EXIT_INPUT and "--map title_id=nope:" in err and "has no column 'nope'" in err
    code, _, err = run("catalog", "import", tmp_path / "export.csv", "--map", "colour=show_id", "--out", out)
    assert code == EXIT_INPUT and "'colour' is not a keyart field" in err
    code, _, err = run("catalog", "import", tmp_path / "export.csv", "--map", "title_id", "--out", out)
    assert code == EXIT_INPUT and "--map takes FIELD=VALUE" in err
    code, _, err = run("catalog", "import", tmp_path / "export.csv", "--out", out)  # no map: nothing fits
    assert code == EXIT_INPUT and "no artwork row could be imported" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]


def test_catalog_import_from_parquet_with_a_separate_titles_table(tmp_path):
    pq.write_table(
        pa.Table.from_pylist([{"sid": "s1", "genres": ["drama"]}, {"sid": "s2", "genres": ["action"]}]),
        tmp_path / "titles.parquet",
    )
    pq.write_table(
        pa.Table.from_pylist(
            [{"aid": "a1", "sid": "s1"}, {"aid": "a2", "sid": "s2"}, {"aid": "a3", "sid": "s9"}]
        ),
        tmp_path / "arts.parquet",
    )
    cat, reports = import_catalog(
        tmp_path / "arts.parquet",
        titles_path=tmp_path / "titles.parquet",
        mapping=[("title_id", "sid"), ("artwork_id", "aid")],
    )
    assert sorted(cat.artworks) == ["a1", "a2"] and cat.title("s2").genres == ("action",)
    assert reports[1].dropped == [(3, "artwork 'a3' of unknown title 's9'.")]


# ---- logs import -------------------------------------------------------------------------------------

DECISIONS = """imp_id,ts,account,show,asset,candidates,probs,country
i1,2024-03-01T20:00:00Z,m1,s1,s1-a,s1-a|s1-b,0.25|0.75,US
i2,2024-03-01T20:00:05Z,m2,s1,s1-b,s1-a|s1-b,0.5|0.5,FR
i3,yesterday,m3,s1,s1-b,s1-a|s1-b,0.5|0.5,FR
i4,2024-03-01T20:00:09Z,m4,s1,s1-c,s1-a|s1-b,0.5|0.5,FR
i5,2024-03-01T20:00:09Z,m5,s1,s1-b,s1-a|s1-b,0.9|0.5,FR
"""
OUTCOMES = """key,account,show,imp,kind,secs,ts
o1,m1,s1,i1,impression,,2024-03-01T20:00:01Z
o2,m1,s1,i1,play,1200,2024-03-01T20:05:00Z
o3,m2,s1,,click,3,2024-03-01T20:06:00Z
"""
LOG_MAPS = [
    *("--map", "event_id=imp_id", "--map", "timestamp=ts", "--map", "member_id=account"),
    *("--map", "title_id=show", "--map", "artwork_id=asset", "--map", "pool=candidates"),
    *("--map", "probabilities=probs", "--split", "pool=|", "--split", "probabilities=|"),
]


def test_logs_import_maps_reports_and_writes_a_store_evaluate_can_read(tmp_path):
    (tmp_path / "d.csv").write_text(DECISIONS)
    code, out, err = run(
        "logs", "import", "--decisions", tmp_path / "d.csv", *LOG_MAPS, "--out", tmp_path / "e.duckdb"
    )
    assert code == 0, err
    assert "read 5 rows, kept 2, dropped 3" in err
    assert "dropped row 3: timestamp must be epoch seconds or ISO 8601 text. Got 'yesterday'." in err
    assert "dropped row 4: artwork_id 's1-c' is not in the pool" in err
    assert "dropped row 5:" in err and "probabilities" in err.split("dropped row 5:")[1].splitlines()[0]
    with EventStore(tmp_path / "e.duckdb", read_only=True) as store:
        d = store.decisions()
    assert d.column("event_id").to_pylist() == ["i1", "i2"]
    assert d.column("timestamp").to_pylist() == [1709323200.0, 1709323205.0]
    assert d.column("propensity").to_pylist() == [0.25, 0.5]
    assert json.loads(d.column("context_json")[0].as_py())["country"] == "US"
    assert "Wrote" in out and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_logs_import_refuses_to_overwrite_and_writes_nothing_on_failure(tmp_path):
    (tmp_path / "d.csv").write_text(DECISIONS)
    (tmp_path / "e.duckdb").write_bytes(b"mine")
    code, _, err = run(
        "logs", "import", "--decisions", tmp_path / "d.csv", *LOG_MAPS, "--out", tmp_path / "e.duckdb"
    )
    assert code == EXIT_INPUT and "exists; choose a new path" in err
    assert (tmp_path / "e.duckdb").read_bytes() == b"mine"
    code, _, err = run("logs", "import", "--decisions", tmp_path / "d.csv", "--out", tmp_path / "f.duckdb")
    assert code == EXIT_INPUT and "no decisions row could be imported" in err
    code, _, err = run("logs", "import", "--out", tmp_path / "f.duckdb")
    assert code == EXIT_INPUT and "Nothing to import" in err
    assert not (tmp_path / "f.duckdb").exists()


def test_logs_without_propensities_are_accepted_and_marked(tmp_path):
    no_probs = re.sub(r",(0\.\d+\|0\.\d+)", "", DECISIONS.replace(",probs", ""))
    (tmp_path / "d.csv").write_text(no_probs)
    (tmp_path / "o.csv").write_text(OUTCOMES)
    maps = parse_pairs([m for m in LOG_MAPS[1::2] if "probs" not in m and "|" not in m], "--map")
    maps += [("decision_id", "imp"), ("event_type", "kind"), ("engaged_seconds", "secs"), ("event_id", "key")]
    # ("timestamp", "ts") from LOG_MAPS: the same column name in both files, one pair serves both
    d, o, reports = import_logs(tmp_path / "d.csv", tmp_path / "o.csv", maps, [("pool", "|")])
    assert d is not None and set(d.column("policy").to_pylist()) == {UNLOGGED_POLICY}
    assert d.column("probabilities").to_pylist()[0] == [0.5, 0.5]
    assert any("carry no propensity" in n for n in reports[0].notes)
    assert any("ignored: country" not in n for n in reports[0].notes)
    assert o is not None and o.column("event_id").to_pylist() == ["o1", "o2"]
    assert reports[1].dropped and "click" in reports[1].dropped[0][1]


def test_one_field_from_different_columns_of_two_files_but_not_of_one(tmp_path):
    (tmp_path / "d.csv").write_text(DECISIONS)
    (tmp_path / "o.csv").write_text(OUTCOMES.replace(",ts", ",event_ts"))
    maps = [*parse_pairs(LOG_MAPS[1::2][:-2], "--map"), ("timestamp", "event_ts"), ("event_type", "kind")]
    d, o, _ = import_logs(
        tmp_path / "d.csv", tmp_path / "o.csv", maps, [("pool", "|"), ("probabilities", "|")]
    )
    assert d is not None and o is not None and o.column("timestamp").to_pylist()[0] == 1709323201.0
    with pytest.raises(ValidationError, match=r"d\.csv: --map reads 'timestamp' from two of its columns"):
        import_logs(tmp_path / "d.csv", None, [("timestamp", "ts"), ("timestamp", "imp_id")], [])


def test_parse_pairs_refuses_malformed_and_repeated_pairs():
    assert parse_pairs(["a=b", "a=c", "sep=|"], "--split") == [("a", "b"), ("a", "c"), ("sep", "|")]
    with pytest.raises(ValidationError, match="--map a=b is given twice"):
        parse_pairs(["a=b", "a=b"], "--map")
    with pytest.raises(ValidationError, match="--map takes FIELD=VALUE"):
        parse_pairs(["=b"], "--map")


def _export_without_propensities(path: Path, n: int = 300) -> None:
    """A seeded export of n decisions on the docs' example catalog (no propensities) and their plays."""
    rng = np.random.default_rng(3)
    cat = Catalog.load(EXAMPLES / "catalog.json")
    titles = sorted(cat.titles)
    d_lines, o_lines = ["imp_id,ts,account,show,asset,candidates"], ["key,imp,account,show,kind,secs,ts"]
    for i in range(n):
        t = titles[i % len(titles)]
        pool = [a.artwork_id for a in cat.pool(t)]
        shown = pool[rng.integers(len(pool))]
        ts = 1.7e9 + 60 * i
        d_lines.append(f"i{i},{ts},m{i % 50},{t},{shown},{'|'.join(pool)}")
        o_lines.append(f"v{i},i{i},m{i % 50},{t},impression,,{ts + 1}")
        if rng.random() < 0.3:
            o_lines.append(f"p{i},i{i},m{i % 50},{t},play,{rng.integers(100, 3000)},{ts + 30}")
    (path / "d.csv").write_text("\n".join(d_lines) + "\n")
    (path / "o.csv").write_text("\n".join(o_lines) + "\n")


def test_evaluate_on_logs_without_propensities_runs_only_dm_and_says_so(tmp_path):
    from keyart.policies import make_policy

    _export_without_propensities(tmp_path)
    maps = ["event_id=imp_id", "timestamp=ts", "member_id=account", "title_id=show", "artwork_id=asset"]
    maps += ["pool=candidates", "event_type=kind", "engaged_seconds=secs", "decision_id=imp"]
    args = [a for m in maps for a in ("--map", m)] + ["--split", "pool=|"]
    code, _, err = run(
        "logs", "import", "--decisions", tmp_path / "d.csv", "--outcomes", tmp_path / "o.csv", *args,
        "--out", tmp_path / "e.duckdb",
    )  # fmt: skip
    assert code == 0, err
    assert "300 decisions carry no propensity" in err and "ignored: key" in err
    make_policy("uniform", seed=0).save(tmp_path / "u.npz")
    base = ["evaluate", tmp_path / "e.duckdb", "--fmt", "keyart", "--catalog", EXAMPLES / "catalog.json"]
    base += ["--candidate", tmp_path / "u.npz", "--quiet", "--refits", "20"]  # DM's refit bootstrap: few
    code, _, err = run(*base, "--out", tmp_path / "o1")
    assert code == 0, err
    md = (tmp_path / "o1" / "evaluation.md").read_text()
    assert re.search(r"(\d+) of the \1 decisions were imported without propensities", md)
    assert "only dm is valid; not run: replay, ips" in md
    rows = (tmp_path / "o1" / "evaluation.csv").read_text().splitlines()
    assert len(rows) == 2 and ',"dm",' in rows[1]
    code, _, err = run(*base, "--out", tmp_path / "o2", "--estimator", "ips")
    assert code == EXIT_INPUT and "only dm is valid on them (asked: ips)" in err


def test_logs_with_only_the_shown_artwork_s_propensity_spread_the_rest_evenly(tmp_path):
    (tmp_path / "d.csv").write_text(
        "imp_id,ts,account,show,asset,candidates,p\n"
        "i1,1700000000,m1,s1,s1-b,s1-a|s1-b|s1-c,0.5\n"
        "i2,1700000001,m2,s1,s1-a,s1-a,1\n"
        "i3,1700000002,m3,s1,s1-a,s1-a|s1-b,0\n"
    )
    maps = [("event_id", "imp_id"), ("timestamp", "ts"), ("member_id", "account"), ("title_id", "show")]
    maps += [("artwork_id", "asset"), ("pool", "candidates"), ("propensity", "p")]
    d, _, (report,) = import_logs(tmp_path / "d.csv", None, maps, [("pool", "|")])
    assert d is not None and d.column("probabilities").to_pylist() == [[0.25, 0.5, 0.25], [1.0]]
    assert d.column("policy").to_pylist() == ["imported", "imported"]
    assert report.dropped == [(3, "propensity must be in (0, 1]. Got 0.0.")]


def test_logs_round_trip_import_export_import_gives_the_same_rows(tmp_path):
    """CSV export -> store -> Parquet files of keyart's own schema -> store: the same rows."""
    (tmp_path / "d.csv").write_text(DECISIONS)
    (tmp_path / "o.csv").write_text(OUTCOMES)
    out_maps = ["--map", "decision_id=imp", "--map", "event_type=kind", "--map", "engaged_seconds=secs"]
    out_maps += ["--map", "event_id=key"]
    code, _, err = run(
        "logs", "import", "--decisions", tmp_path / "d.csv", "--outcomes", tmp_path / "o.csv",
        *LOG_MAPS, *out_maps, "--out", tmp_path / "a.duckdb",
    )  # fmt: skip
    assert code == 0, err
    with EventStore(tmp_path / "a.duckdb", read_only=True) as store:
        first = {"decisions": store.decisions(), "outcomes": store.outcomes()}
    for kind, table in first.items():
        pq.write_table(table, tmp_path / f"{kind}.parquet")
    code, _, err = run(
        "logs", "import", "--decisions", tmp_path / "decisions.parquet",
        "--outcomes", tmp_path / "outcomes.parquet", "--out", tmp_path / "b.duckdb",
    )  # fmt: skip
    assert code == 0, err
    assert "dropped 0" in err and "ignored" not in err
    with EventStore(tmp_path / "b.duckdb", read_only=True) as store:
        again = {"decisions": store.decisions(), "outcomes": store.outcomes()}
    for kind in first:
        assert again[kind].num_rows > 0
        assert again[kind].to_pylist() == first[kind].to_pylist(), kind
