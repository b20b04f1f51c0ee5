"""docs/vision.md runs and stays true: its python blocks execute, its feature table is ``FEATURES`` row for
row, its version is ``FEATURE_VERSION``; benchmarks/bench_vision.py runs."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from keyart.vision import FEATURE_VERSION, FEATURES

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "vision.md").read_text()
BLOCKS = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", PAGE, flags=re.S)]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_python_blocks_run(code):
    exec(compile(code, "docs/vision.md", "exec"), {})


def test_the_page_has_a_python_block_and_the_version():
    assert BLOCKS and f"## The features (version {FEATURE_VERSION})" in PAGE


def test_the_feature_table_is_the_code_s():
    rows = re.findall(
        r"^\| (\d+) \| `(\w+)` \| (\w+) \| (.+) \| ([-\d.]+) \| ([-\d.]+) \|$", PAGE, flags=re.M
    )
    assert len(rows) == len(FEATURES)
    for (i, name, group, meaning, centre, scale), f in zip(rows, FEATURES, strict=True):
        assert (int(i), name, group, meaning) == (FEATURES.index(f), f.name, f.group, f.meaning)
        assert float(centre) == pytest.approx(f.centre, rel=1e-3) and float(scale) == pytest.approx(f.scale)


@pytest.mark.slow
def test_the_benchmark_prints_milliseconds_per_image(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_vision

    assert bench_vision.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("$ python benchmarks/bench_vision.py --quick\n")
    rows = dict(re.findall(r"^(all|1920 x 1080 JPEG)\s+\d+\s+([\d.]+)\s*$", out, flags=re.M))
    assert set(rows) == {"all", "1920 x 1080 JPEG"} and all(float(v) > 0 for v in rows.values())
