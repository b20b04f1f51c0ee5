"""``keyart insights`` end to end: the command on keyart logs, on a service's state directory and on logs
imported from a warehouse export (docs/your-data.md's own commands); its HTML, CSV and JSON; and the HTML
reviewed in a real headless browser (the demo report's checker, ``test_report_browser``)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

import test_report_browser as review
from keyart.catalog import Catalog
from keyart.insights.report import STEPS, compute_insights, write_insights
from keyart.policies import make_policy
from keyart.service.snapshots import publish
from keyart.train import train
from logs_helpers import write_logs
from test_your_data import ROOT, page_commands

KEYART = Path(sys.executable).with_name("keyart")
TIMEOUT_S = 600  # a loaded 2-core machine: generous
browser = review.browser  # the demo review's headless Chromium (module-scoped fixture)
TABLES = (
    "artworks",
    "shown_to",
    "segment_estimates",
    "over_time",
    "effects",
    "clickbait",
    "segment_takes",
    "segment_gaps",
    "suggestions",
    "pool_use",
)


def keyart(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KEYART), *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_logs(tmp_path_factory.mktemp("insights-cli"))


@pytest.fixture(scope="module")
def written(logs_dir: Path) -> Path:
    """``keyart insights`` run as a user runs it, on an events.duckdb with its catalog."""
    done = keyart(
        "insights",
        "events.duckdb",
        "--catalog",
        "catalog.json",
        "--out",
        "out",
        "--titles",
        "3",
        cwd=logs_dir,
    )
    assert done.returncode == 0, done.stderr
    assert "Wrote out/insights.html" in done.stdout
    return logs_dir / "out"


def test_the_command_writes_html_csv_and_json(written: Path) -> None:
    doc = json.loads((written / "insights.json").read_text())
    assert doc["decisions"] == 1200 and doc["titles"] == 6
    assert doc["headlines"][0].startswith("These findings come from 1,200 decisions on 6 titles")
    assert any("face style raises" in h for h in doc["headlines"])  # the truth of these logs
    for name in TABLES:
        assert name in doc["tables"]
        with (written / f"{name}.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == len(doc["tables"][name])
    assert len(doc["tables"]["suggestions"]) == 3
    html = (written / "insights.html").read_text()
    assert html.index("Headline findings") < html.index("<img")  # plain words first, then figures
    headers = re.findall(r"<th>(.*?)</th>", html)
    assert headers and not [h for h in headers if "_" in h]  # no snake_case headers
    assert "http://" not in html and "https://" not in html  # self-contained


def test_a_state_directory_is_read_with_the_services_model(logs_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    for name in ("catalog.json", "events.duckdb"):
        shutil.copy(logs_dir / name, state / name)
    cat = Catalog.load(state / "catalog.json")
    policy, _ = train([state], cat, make_policy("linucb", seed=3))
    publish(state / "snapshots", 1, policy, None, {"generation": 1})
    seen: dict[str, tuple[int, int]] = {}
    found = compute_insights(
        state, cat, top_titles=2, min_rows=50, progress=lambda s, d, t: seen.__setitem__(s, (d, t))
    )
    assert found.model == "the service's model (generation 1)"
    assert set(seen) == set(STEPS) and all(d == t for d, t in seen.values())  # every step reported done
    assert len(found.analyses) == 2 and found.decisions == 1200
    done = keyart(
        "insights", str(state), "--out", str(tmp_path / "out"), "--titles", "2", "--quiet", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "the service's model (generation 1)" in done.stdout


@pytest.mark.slow
def test_imported_warehouse_logs(tmp_path: Path) -> None:
    """The catalog and weeks 1-2 imported by docs/your-data.md's commands, then keyart insights."""
    shutil.copytree(ROOT / "docs" / "examples" / "warehouse", tmp_path / "docs" / "examples" / "warehouse")
    wanted = ("shop/catalog.json", "shop/weeks1-2.duckdb")
    for argv, _ in page_commands():
        if (
            argv[1:3] in (["catalog", "import"], ["logs", "import"])
            and argv[argv.index("--out") + 1] in wanted
        ):
            done = keyart(*argv[1:], cwd=tmp_path)
            assert done.returncode == 0, done.stderr
    done = keyart(
        "insights",
        "shop/weeks1-2.duckdb",
        "--catalog",
        "shop/catalog.json",
        "--out",
        "shop/insights",
        "--min-rows",
        "30",
        "--quiet",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "shop" / "insights" / "insights.json").read_text())
    assert doc["decisions"] > 2000 and doc["model"].startswith("a linear_ts model trained here")


def test_refusals_are_one_line_with_the_input_exit_code(logs_dir: Path) -> None:
    done = keyart("insights", "events.duckdb", "--out", "nowhere", cwd=logs_dir)
    assert done.returncode == 4 and "needs --catalog" in done.stderr
    assert not (logs_dir / "nowhere").exists()
    done = keyart("insights", "missing.duckdb", "--catalog", "catalog.json", cwd=logs_dir)
    assert done.returncode == 4 and "No keyart logs at missing.duckdb" in done.stderr


def test_the_report_renders_cleanly_in_a_real_browser(browser, written: Path) -> None:
    report = written / "insights.html"
    browser.get_log("browser")  # start from an empty console
    browser.get(report.as_uri())
    review._wait_for(browser, "return document.readyState === 'complete'")
    review._wait_for(browser, "return Array.from(document.images).every(i => i.complete)")
    assert browser.title.startswith("keyart insights")
    images = browser.execute_script("return Array.from(document.images).map(i => [i.alt, i.naturalWidth])")
    assert sorted(alt for alt, _ in images) == sorted(p.stem for p in written.glob("*.png"))
    assert len(images) >= 6 and all(width > 0 for _, width in images), images
    first = browser.execute_script("return document.querySelector('h2').textContent")
    assert first == "Headline findings"
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith('data:'))"
    )
    assert fetched == []
    layout = browser.execute_script(review.OVERFLOW)
    assert layout["bad"] == [] and layout["extra"] <= 0, layout
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe


def test_a_report_written_in_process_matches_the_commands(
    logs_dir: Path, written: Path, tmp_path: Path
) -> None:
    """The library and the command give the same tables (same seed, same model)."""
    cat = Catalog.load(logs_dir / "catalog.json")
    found = compute_insights(logs_dir / "events.duckdb", cat, top_titles=3)
    paths = write_insights(found, tmp_path)
    ours = json.loads(paths["json"].read_text())["tables"]
    theirs = json.loads((written / "insights.json").read_text())["tables"]
    assert ours["artworks"] == theirs["artworks"]
    assert [r["artwork_id"] for r in ours["pool_use"]] == [r["artwork_id"] for r in theirs["pool_use"]]


@pytest.mark.slow
def test_the_demo_links_the_insights_report_of_its_world(browser, quick_demo: tuple[Path, str]) -> None:
    """keyart demo's report links the insights report of its own world, which opens and renders."""
    out = quick_demo[0]
    html = (out / "report.html").read_text()
    assert '<a href="insights/insights.html">' in html
    browser.get((out / "report.html").as_uri())
    review._wait_for(browser, "return document.readyState === 'complete'")
    browser.find_element(By.LINK_TEXT, "Open the insights report of this world").click()
    review._wait_for(browser, "return document.title.startsWith('keyart insights')")
    review._wait_for(browser, "return Array.from(document.images).every(i => i.complete)")
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) >= 6 and min(widths) > 0
    doc = json.loads((out / "insights" / "insights.json").read_text())
    assert doc["decisions"] > 0 and doc["model"].startswith("a linear_ts model trained here")
