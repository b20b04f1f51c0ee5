"""benchmarks/bench_worlds.py: a long held-out report can be made over several sittings (``--results``)."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_worlds  # noqa: E402


@pytest.mark.slow
def test_results_file_reuses_runs_of_the_same_code_and_settings_only(tmp_path, capsys):
    results = tmp_path / "runs.jsonl"
    args = ["--quick", "--dev", "--worlds", "1", "--policies", "Random", "--results", str(results)]
    assert bench_worlds.main(args) == 0
    first = capsys.readouterr().out
    runs = [json.loads(line) for line in results.read_text().splitlines()]
    agents = {r["agent"] for r in runs}
    assert {"Random", bench_worlds.REFERENCE} <= agents and len(runs) == len(agents)
    assert len({r["fingerprint"] for r in runs}) == 1
    assert bench_worlds.main(args) == 0  # everything reused: nothing run, nothing appended
    again = capsys.readouterr().out
    assert f"{len(runs)} runs reused, 0 of other code or settings" in again
    assert "  world " not in again and len(results.read_text().splitlines()) == len(runs)
    table = first[first.index("share of oracle =") : first.index("wall time")]
    assert table == again[again.index("share of oracle =") : again.index("wall time")]
    # other settings or other code: another fingerprint, so those runs are not reused
    key = runs[0]["fingerprint"]
    settings = {
        "requests": 1_000,
        "update_every": 200,
        "seed": 0,
        "overrides": dict(bench_worlds.QUICK_OVERRIDES),
    }
    assert bench_worlds.fingerprint(settings) == key
    assert bench_worlds.fingerprint({**settings, "requests": 999}) != key
    assert bench_worlds.load_results(results, "0" * 16) == ({}, len(runs))


@pytest.mark.slow
def test_the_fingerprint_reads_every_file_a_run_executes_and_not_the_service():
    """``source_files`` finds the files by reading imports; a run in a fresh process must execute none
    outside them (else a change there would leave stale results reusable)."""
    import subprocess

    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import bench_worlds as b\n"
        "o = dict(b.QUICK_OVERRIDES)\n"
        "for agent in ('LinUCB', 'Logistic TS', b.REFERENCE):\n"
        "    b.run_one(1, agent, 300, 100, 0, o, {'crosses': 'all', 'exact_vocabularies': True})\n"
        "print(json.dumps(sorted({m.__file__ for n, m in list(sys.modules.items())\n"
        "    if (n.startswith('keyart') or n in ('bench_worlds', 'reference_linucb',\n"
        "                                        'bench_vw_closed_loop'))\n"
        "    and getattr(m, '__file__', None)})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True, text=True, check=True)
    executed = {Path(f).resolve() for f in json.loads(out.stdout.splitlines()[-1])}
    listed = set(bench_worlds.source_files())
    assert executed and executed <= listed, sorted(map(str, executed - listed))
    assert not any("service" in p.parts or p.name in ("cli.py", "demo.py", "reports.py") for p in listed)


@pytest.mark.slow
def test_tune_defaults_keeps_and_reuses_runs(tmp_path, capsys):
    import tune_defaults

    results = tmp_path / "tune.jsonl"
    args = ["--worlds", "1", "--requests", "300", "--variants", "eb,reference", "--results", str(results)]
    assert tune_defaults.main(args) == 0
    first = capsys.readouterr().out
    runs = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["agent"] for r in runs) == ["eb", "reference"]
    assert len({r["fingerprint"] for r in runs}) == 2  # one per variant
    assert tune_defaults.main(args) == 0
    again = capsys.readouterr().out
    assert "2 runs reused" in again and len(results.read_text().splitlines()) == 2
    assert first[first.index("share of oracle") :] == again[again.index("share of oracle") :]
