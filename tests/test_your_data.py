"""docs/your-data.md runs: every command of the page, exactly as written, from a copy of the repository's
example export (the serve commands on a free port, each stopped once it is ready and serving what the
page says)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from keyart.catalog import Catalog
from test_service_support import free_port

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your-data.md"
KEYART = Path(sys.executable).with_name("keyart")


def page_commands() -> list[tuple[list[str], int]]:
    """Every `keyart` command of the page's sh blocks (continuation lines joined) and its expected exit
    code (0, or N when the line ends with '# exits N')."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", PAGE.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if not line.strip():
                continue
            expected = re.search(r"#\s*exits (\d+)\s*$", line)
            argv = shlex.split(line, comments=True)
            assert argv[0] == "keyart", line
            out.append((argv, int(expected.group(1)) if expected else 0))
    return out


def serve(argv: list[str], cwd: Path) -> dict:
    """Run a `keyart serve` command of the page on a free port until it is ready; its /v1/model answer."""
    args = list(argv)
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    log = open(cwd / f"serve-{port}.log", "wb")
    proc = subprocess.Popen(
        [str(KEYART), *args[1:]], cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (cwd / f"serve-{port}.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                    return httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=10.0).json()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"keyart serve did not become ready: {(cwd / f'serve-{port}.log').read_text()}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.mark.slow
def test_every_command_of_the_page_runs_as_written(tmp_path):
    shutil.copytree(ROOT / "docs" / "examples" / "warehouse", tmp_path / "docs" / "examples" / "warehouse")
    commands = page_commands()
    assert len(commands) >= 12
    models = []
    for argv, expected in commands:
        if argv[1] == "serve":
            models.append(serve(argv, tmp_path))
            continue
        done = subprocess.run(
            [str(KEYART), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == expected, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        if argv[1:3] == ["logs", "import"]:  # the dirty rows the page says are dropped, and why
            assert "dropped row 8: timestamp is missing." in done.stderr
            assert "unknown type 'trailer_click'" in done.stderr
    shop = tmp_path / "shop"
    assert Catalog.load(shop / "catalog.json") == Catalog.load(shop / "catalog-from-parquet.json")
    assert Catalog.load(shop / "catalog.json").artwork("SH0001-K1").metadata == {"designer": "studio-b"}
    assert (shop / "evaluation" / "evaluation.md").exists()
    shadow, promoted = models
    assert shadow["policy"] == "uniform" and shadow["shadow"]["policy"] == "linucb"
    assert promoted["policy"] == "linucb" and promoted["shadow"] is None and promoted["generation"] == 1


def test_the_page_states_what_its_commands_report(tmp_path):
    """The counts the page quotes are what the import reports (read 2400 and 1200 rows)."""
    text = PAGE.read_text()
    assert "read 2400 rows" in text and "read 1200 rows" in text
    lines = {
        name: (ROOT / "docs" / "examples" / "warehouse" / f"{name}.csv").read_text().count("\n") - 1
        for name in ("impressions", "impressions-week3")
    }
    assert lines == {"impressions": 2400, "impressions-week3": 1200}


def test_the_shipped_export_is_what_its_script_writes(tmp_path):
    script = ROOT / "docs" / "examples" / "warehouse" / "make_export.py"
    shutil.copy(script, tmp_path / script.name)
    subprocess.run([sys.executable, str(tmp_path / script.name)], check=True, timeout=300)
    for csv in sorted((ROOT / "docs" / "examples" / "warehouse").glob("*.csv")):
        assert (tmp_path / csv.name).read_bytes() == csv.read_bytes(), csv.name
