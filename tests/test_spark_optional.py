"""Spark is an extra: nothing outside ``keyart.spark`` imports pyspark, and the core, the CLI and the
service import without it (the DuckDB path stays the embedded default)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "keyart"


def _imports(path: Path) -> set[str]:
    """The top-level package of every import statement in ``path`` (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_keyart_spark_imports_pyspark():
    files = [p for p in SRC.rglob("*.py") if "spark" not in p.relative_to(SRC).parts]
    assert len(files) > 50
    assert [str(p.relative_to(SRC)) for p in files if "pyspark" in _imports(p)] == []
    assert "pyspark" in _imports(SRC / "spark" / "train.py")  # the check reads what it should


def test_the_core_cli_and_service_load_without_pyspark():
    code = (
        "import sys, keyart, keyart.cli, keyart.train, keyart.rewards, keyart.store, keyart.evaluation, "
        "keyart.policies, keyart.service.app, keyart.insights.report\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(keyart.cli.app, ['policies']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyspark'))"
    )
    run = [sys.executable, "-c", code]
    out = subprocess.run(run, capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout
