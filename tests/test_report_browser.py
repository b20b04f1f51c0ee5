"""The demo report, reviewed in a real headless browser: Debian's Chromium through its ChromeDriver, driven
by selenium. The report of a quick demo run must render with no severe console message, every image
decoded (naturalWidth > 0), its four figures present, nothing fetched from elsewhere, and no text running
out of its box or the page.

The browser is a system package (``apt-get install chromium chromium-driver``), which ``.ci/run`` installs
when it is missing. Under CI (``CI`` set) a missing browser fails this test, so CI never passes without the
review; on a developer's machine without it the test is skipped with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

#: Generous deadlines: a loaded 2-core machine.
DEADLINE_S = 120.0
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # no network here: no update checks, no lookups
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1280,900",
)


def _browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p)
    message = f"{missing} not found: apt-get install chromium chromium-driver (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def report(quick_demo: tuple[Path, str]) -> Path:
    """The HTML report of a quick demo run (conftest's, run once)."""
    return quick_demo[0] / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    chromium, driver = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(DEADLINE_S)
    try:
        yield chrome
    finally:
        chrome.quit()


def _wait_for(browser: webdriver.Chrome, script: str) -> None:
    """Poll ``script`` until it returns true, or fail at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not browser.execute_script(script):
        assert time.monotonic() < deadline, f"still false after {DEADLINE_S:.0f} s: {script}"
        time.sleep(0.1)


#: Elements whose text overflows their own box, and how far the page is wider than the window.
OVERFLOW = """
const bad = [];
for (const el of document.querySelectorAll('h1, h2, h3, p, li, td, th, figcaption, .note')) {
  if (el.scrollWidth > el.clientWidth + 1) bad.push(el.tagName + ': ' + el.textContent.slice(0, 60));
}
const right = document.body.getBoundingClientRect().right;
for (const el of document.querySelectorAll('img, table')) {
  if (el.getBoundingClientRect().right > right + 1)
    bad.push(el.tagName + ' past the body: ' + (el.alt || el.textContent.slice(0, 60)));
}
return {bad: bad, extra: document.documentElement.scrollWidth - window.innerWidth};
"""


def test_the_demo_report_renders_cleanly_in_a_real_browser(browser: webdriver.Chrome, report: Path) -> None:
    browser.get_log("browser")  # start from an empty console
    browser.get(report.as_uri())
    _wait_for(browser, "return document.readyState === 'complete'")
    _wait_for(browser, "return Array.from(document.images).every(i => i.complete)")
    assert browser.title.startswith("keyart demo")
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.closest('figure') !== null])"
    )
    pngs = sorted(p.stem for p in report.parent.glob("*.png"))
    assert len(pngs) == 5 and sorted(alt for alt, _, _ in images) == pngs
    assert all(width > 0 for _, width, _ in images), images  # every image decoded
    assert all(in_figure for _, _, in_figure in images), images
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith('data:'))"
    )
    assert fetched == []  # self-contained: nothing loaded from elsewhere
    layout = browser.execute_script(OVERFLOW)
    assert layout["bad"] == [] and layout["extra"] <= 0, layout
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe


def test_the_console_check_sees_an_error(browser: webdriver.Chrome, report: Path) -> None:
    """The review above would see a broken page: a script error and a broken image reach the log."""
    browser.get(report.as_uri())
    browser.get_log("browser")
    browser.execute_script(
        "const img = document.createElement('img'); img.src = 'data:image/png;base64,AAAA';"
        "document.body.appendChild(img); setTimeout(() => { throw new Error('probe'); }, 0);"
    )
    deadline = time.monotonic() + DEADLINE_S
    seen: list[dict] = []
    while not any("probe" in e["message"] for e in seen):
        assert time.monotonic() < deadline, seen
        seen += browser.get_log("browser")
        time.sleep(0.1)
    assert all(e["level"] == "SEVERE" for e in seen if "probe" in e["message"])
    _wait_for(browser, "return Array.from(document.images).every(i => i.complete)")
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert widths[-1] == 0 and min(widths[:-1]) > 0  # the broken image is told apart, as the review needs
