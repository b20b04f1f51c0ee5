"""OpenAPI conformance of the decision service: schemathesis ``--checks all`` against a real server.

Starts ``keyart serve`` (one worker, the benchmark catalog of ``bench_service.py``, API key ``bench``) on
loopback and runs ``schemathesis run --checks all`` on its ``/openapi.json`` with ``--max-examples`` test
cases per operation and phase (examples, coverage, fuzzing, stateful), sending the key on every request.
Prints schemathesis' own summary, then two numbers: server errors (the ``not_a_server_error`` check:
any 5xx) and conformance failures (every other check: status codes, content types, headers, response
schemas, negative data rejected, positive data accepted, ``Allow`` on 405, auth, use after free, ...).

One configuration is given to schemathesis (``CONFIG``), and it is the API's documented contract: the
bodies of ``POST /v1/decide``, ``POST /v1/decide/title``, ``POST /v1/outcomes`` and ``PUT
/v1/artworks/{artwork_id}`` name titles of the live catalog or carry event timestamps, and neither the
catalog nor the server's clock fits in a static schema, so a schema-valid body naming an unknown title
(422 ``unknown_title``) or a timestamp past the server's clock plus ``--max-clock-skew`` or before
1990 (422 ``invalid_field``) is refused (docs/service.md); for those four operations the "positive data
is accepted" check also takes 422. Every other check, and that one for every other operation, runs as
schemathesis defines it.

    python benchmarks/bench_schemathesis.py [--max-examples 200] [--seed 1]

Needs the ``bench`` extra (``pip install -e '.[bench]'``: schemathesis). Exits 1 when either number is
not 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_service import free_port, start, stop, write_catalog

CONFIG = """\
# these bodies name catalog titles (an unknown one is a documented 422, unknown_title) or carry event
# timestamps (one past the server's clock + --max-clock-skew, or before 1990, is a documented 422)
[[operations]]
include-path = ["/v1/decide", "/v1/decide/title", "/v1/outcomes", "/v1/artworks/{artwork_id}"]
checks.positive_data_acceptance.expected-statuses = ["2XX", 401, 403, 404, 409, 422]
"""
SERVER_ERROR_CHECK = "not_a_server_error"


def failures(ndjson: Path) -> list[dict[str, Any]]:
    """The unique failed checks of a run (check name, operation, code, title), from schemathesis' NDJSON
    event stream (each check result of a scenario: ``{"name", "status", "failure_info"}``)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("status") == "failure" and "name" in node and "failure_info" in node:
                failure = (node.get("failure_info") or {}).get("failure") or {}
                key = (node["name"], str(failure.get("operation")), str(failure.get("title")))
                found.setdefault(
                    key,
                    {
                        "check": node["name"],
                        "operation": failure.get("operation"),
                        "code": failure.get("code"),
                        "title": failure.get("title"),
                    },
                )
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for line in ndjson.read_text().splitlines():
        if line.strip():
            walk(json.loads(line))
    return list(found.values())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-examples", type=int, default=200, help="test cases per operation and phase")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        raise SystemExit("schemathesis is not installed: pip install -e '.[bench]'")
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"# keyart OpenAPI conformance: {version}, python {platform.python_version()}, {platform.platform()}"
    )
    print(f"# load average (1 min) before the run: {os.getloadavg()[0]:.2f}")
    root = Path(tempfile.mkdtemp(prefix="keyart-schemathesis-"))
    try:
        write_catalog(root / "catalog.json")
        (root / "schemathesis.toml").write_text(CONFIG)
        ndjson = root / "events.ndjson"
        port = free_port()
        proc = start("keyart", 1, root, port)
        cmd = [
            str(exe),
            "--config-file",
            str(root / "schemathesis.toml"),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(args.max_examples),
            "--seed",
            str(args.seed),
            "--header",
            "X-API-Key: bench",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(ndjson),
        ]
        t0 = time.monotonic()
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
        finally:
            stop(proc)
        seconds = time.monotonic() - t0
        # the failures (with a curl line to reproduce each) and the summary
        mark = "FAILURES" if "FAILURES" in run.stdout else "SUMMARY"
        summary = run.stdout[run.stdout.find(mark) - 40 :] if mark in run.stdout else run.stdout
        print(summary.rstrip())
        if run.stderr.strip():
            print(run.stderr.rstrip()[-2000:])
        found = failures(ndjson) if ndjson.exists() else []
    finally:
        shutil.rmtree(root, ignore_errors=True)
    server_errors = [f for f in found if f["check"] == SERVER_ERROR_CHECK]
    conformance = [f for f in found if f["check"] != SERVER_ERROR_CHECK]
    for f in found:
        print(f"  {f['code']} {f['check']}: {f['operation']}: {f['title']}")
    ok = run.returncode == 0 and not found
    print(f"schemathesis exit status: {run.returncode} ({seconds:.0f} s)")
    print(f"server errors: {len(server_errors)}")
    print(f"conformance failures: {len(conformance)}")
    print("command:\n  " + " ".join(cmd).replace(str(root), "$TMP").replace(str(port), "$PORT"))
    print(f"# load average (1 min) after the run: {os.getloadavg()[0]:.2f}")
    return {
        "ok": ok,
        "exit_status": run.returncode,
        "server_errors": len(server_errors),
        "conformance_failures": len(conformance),
    }


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
