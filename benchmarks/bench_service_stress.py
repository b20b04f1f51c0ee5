"""The service's tests under background CPU load: do they hold on a loaded machine?

Starts ``--busy`` processes that only spin (each wants a whole core, as ``stress --cpu`` does), runs the
service's test files (``tests/test_service_*.py``) once with pytest meanwhile, stops the spinners, and
prints per test file how many tests passed and failed and how long the file took, the slowest tests,
the load average, and the total.

    python benchmarks/bench_service_stress.py [--busy 4] [--files tests/test_service_app.py ...]

Exits with pytest's status (0: every test passed under the load).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True:\n    pass\n"


def spinners(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes that keep one core busy each until killed."""
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]


def per_file(junit: Path) -> dict[str, dict[str, Any]]:
    """Per test file: passed, failed (errors included), skipped, seconds, and its failed tests."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0, "failures": []}
    )
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("classname", "").rsplit(".", 1)[-1] or "?"
        row = out[f"{name}.py" if not name.endswith(".py") else name]
        row["seconds"] += float(case.get("time", 0.0))
        if case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
            row["failures"].append(case.get("name"))
        elif case.find("skipped") is not None:
            row["skipped"] += 1
        else:
            row["passed"] += 1
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=4, help="spinning processes (each wants one core)")
    ap.add_argument("--files", nargs="*", default=None, help="test files (default: tests/test_service_*.py)")
    args = ap.parse_args(argv)
    files = args.files or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_service_*.py"))
    print(f"# the service tests under load: {len(files)} files, {args.busy} spinning processes")
    print(f"# python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"# load average (1 min) before the run: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="keyart-stress-") as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        cmd += ["--durations=5", *files]
        busy = spinners(args.busy)
        loads = []
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert proc.stdout is not None
            last = 0.0
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if time.monotonic() - last > 10:  # sample the load while the tests run
                    loads.append(os.getloadavg()[0])
                    last = time.monotonic()
            status = proc.wait()
        finally:
            for p in busy:
                p.kill()
            for p in busy:
                p.wait()
        seconds = time.monotonic() - t0
        rows = per_file(junit) if junit.exists() else {}
    tail = "".join(lines).rstrip().splitlines()
    durations = [ln for ln in tail if re.match(r"\s*[0-9.]+s (call|setup|teardown)\s", ln)]  # --durations
    print()
    print(f"{'test file':<40}{'passed':>8}{'failed':>8}{'skipped':>9}{'seconds':>9}")
    for name, r in sorted(rows.items()):
        print(f"{name:<40}{r['passed']:>8}{r['failed']:>8}{r['skipped']:>9}{r['seconds']:>9.1f}")
        for f in r["failures"]:
            print(f"    FAILED {f}")
    passed = sum(r["passed"] for r in rows.values())
    failed = sum(r["failed"] for r in rows.values())
    print()
    if durations:
        print("slowest:\n  " + "\n  ".join(d.strip() for d in durations[:5]))
    if loads:
        print(f"load average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f}")
    print(f"pytest exit status {status}; {seconds:.0f} s with {args.busy} spinning processes")
    print(f"{passed} passed, {failed} failed")
    print(
        "command:\n  " + " ".join(cmd).replace(str(junit), "$TMP/junit.xml").replace(sys.executable, "python")
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
