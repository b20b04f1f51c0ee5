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
    # a keyart policy's runs under the code's fingerprint, the baselines' under theirs
    assert {r["agent"]: r["fingerprint"] for r in runs} == {
        a: bench_worlds.agent_fingerprint(
            a,
            {
                "requests": 1_000,
                "update_every": 200,
                "seed": 0,
                "overrides": dict(bench_worlds.QUICK_OVERRIDES),
            },
        )
        for a in agents
    }
    assert bench_worlds.main(args) == 0  # everything reused: nothing run, nothing appended
    again = capsys.readouterr().out
    assert f"{len(runs)} runs reused, 0 of other code or settings" in again
    assert "  world " not in again and len(results.read_text().splitlines()) == len(runs)
    table = first[first.index("share of oracle =") : first.index("wall time")]
    assert table == again[again.index("share of oracle =") : again.index("wall time")]
    # other settings or other code: another fingerprint, so those runs are not reused
    key = next(r["fingerprint"] for r in runs if r["agent"] == "Random")
    settings = {
        "requests": 1_000,
        "update_every": 200,
        "seed": 0,
        "overrides": dict(bench_worlds.QUICK_OVERRIDES),
    }
    assert bench_worlds.fingerprint(settings) == key
    assert bench_worlds.fingerprint({**settings, "requests": 999}) != key
    assert bench_worlds.baseline_fingerprint(settings) not in (
        key,
        bench_worlds.baseline_fingerprint({**settings, "requests": 999}),
    )
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
def test_a_baselines_run_calls_no_function_outside_its_fingerprints_sources():
    """The reference LinUCB's and VW's runs are reused across changes to keyart's learning
    (``baseline_fingerprint``): traced, such a run calls functions of ``BASELINE_SOURCES`` and of this
    script's parts that run it only, none of keyart's featurizer, layout, policies or priors."""
    root = BENCH.parent
    listed = {(root / f).resolve() for f in bench_worlds.BASELINE_SOURCES}
    codes: set[tuple[str, str]] = set()

    def profile(frame, event, arg):
        if event == "call":
            codes.add((frame.f_code.co_filename, frame.f_code.co_name))

    agents = [bench_worlds.REFERENCE] + ([bench_worlds.VW] if bench_worlds.vw_available() else [])
    bench_worlds._WORLD.clear()  # the world's generation is traced too
    sys.setprofile(profile)
    try:
        for agent in agents:
            bench_worlds.run_one(1, agent, 300, 100, 0, dict(bench_worlds.QUICK_OVERRIDES))
    finally:
        sys.setprofile(None)
        bench_worlds._WORLD.clear()
    called = {(Path(f).resolve(), n) for f, n in codes if n != "<module>" and f.endswith(".py")}
    ours = {(f, n) for f, n in called if root in f.parents and ".venv" not in f.parts}
    script = {name for f, name in ours if f == Path(bench_worlds.__file__).resolve()}
    outside = {(str(f.relative_to(root)), n) for f, n in ours if f not in listed} - {
        ("benchmarks/bench_worlds.py", n) for n in script
    }
    assert not outside, sorted(outside)
    vw_methods = {n for n, v in vars(bench_worlds.VWAgent).items() if callable(v)}
    assert script and script <= {"run_one", "_world", "<listcomp>"} | vw_methods, script
    assert any(f.name == "zoo.py" for f, _ in ours) and any(f.name == "runner.py" for f, _ in ours)
    for learning in ("features.py", "layout.py", "priors.py", "learning.py", "policies"):
        assert not any(learning in f for f in bench_worlds.BASELINE_SOURCES)


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


def test_the_ceiling_benchmark_fits_both_scales_and_refuses_held_out_worlds(capsys):
    import bench_ceiling

    with pytest.raises(SystemExit):
        bench_ceiling.main(["--worlds", "1000000"])
    assert "development seeds only" in capsys.readouterr().err
    row = bench_ceiling.ceiling(3, 60, 40, dict(bench_worlds.QUICK_OVERRIDES))
    assert 0.0 < row["random"] < 1.0 and row["d"] > 0
    for scale in ("linear", "logit", "history"):
        assert row["random"] < row[scale] <= 1.0 + 1e-12  # fitted on the truth: better than a coin
