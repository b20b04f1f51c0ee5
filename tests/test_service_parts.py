"""Parts of the service on their own: segments (torn lines, offsets), snapshot publishing, the logged
context format, the `keyart serve` command, and a smoke run of the load benchmark (no wrk needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keyart.cli import app as cli_app
from keyart.context import MemberContext, Play
from keyart.errors import SnapshotError
from keyart.events import context_from_json, context_to_json
from keyart.policies import make_policy
from keyart.service import snapshots
from keyart.service.config import Limits
from keyart.service.engine import ModelThread, context_json
from keyart.service.parsing import (
    PageRequest,
    check_history,
    check_page,
    parse_page,
    parse_title,
    parse_with_models,
)
from keyart.service.schemas import RequestError
from keyart.service.segments import SegmentReader, SegmentWriter, encode_probabilities, page_probabilities


def test_segments_skip_a_torn_last_line_until_it_is_complete(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, fsync=True)
    w.append({"k": "outcomes", "items": [1]})
    with open(w.path, "ab") as fh:
        fh.write(b'{"k": "outcomes", "it')  # a writer died mid-line
    reader = SegmentReader(tmp_path)
    records, offsets = reader.read()
    assert records == [{"k": "outcomes", "items": [1]}]
    reader.commit(offsets)
    assert reader.read()[0] == []
    with open(w.path, "ab") as fh:
        fh.write(b'ems": [2]}\n')
    assert reader.read()[0] == [{"k": "outcomes", "items": [2]}]
    assert SegmentReader(tmp_path).offsets == offsets  # remembered across restarts
    w.close()


def test_segments_rotate_and_fully_ingested_ones_are_deleted(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, max_bytes=120)
    sent = [{"k": "outcomes", "items": [i, "x" * 30]} for i in range(12)]
    for r in sent:
        w.append(r)
    files = sorted(tmp_path.glob("*.seg"))
    assert len(files) > 3  # rotated past 120 bytes
    assert all((tmp_path / (f.name + ".done")).exists() for f in files if f != w.path)  # sealed
    reader = SegmentReader(tmp_path)
    records, offsets = reader.read()
    assert records == sent  # every record once, in order across files
    assert reader.prune() == []  # nothing is deleted before its records are committed
    reader.commit(offsets)
    deleted = reader.prune()
    assert sorted(deleted) == sorted(f.name for f in files if f != w.path)
    assert sorted(tmp_path.glob("*.seg")) == [w.path]  # the open one stays
    assert set(reader.offsets) == {w.path.name}
    current = w.path
    w.append({"k": "outcomes", "items": ["late"]})
    w.close()  # sealed at shutdown
    records, offsets = reader.read()
    assert records == [{"k": "outcomes", "items": ["late"]}]
    reader.commit(offsets)
    assert set(reader.prune()) == {current.name, w.path.name}
    assert list(tmp_path.iterdir()) == [tmp_path / "offsets.json"]


def test_segments_of_a_dead_writer_are_deleted_once_ingested(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path; from keyart.service.segments import SegmentWriter;"
        "w = SegmentWriter(Path(sys.argv[1])); w.append({'k': 'outcomes', 'items': [1]});"
        "w.append({'k': 'outcomes', 'items': [2]}); os._exit(0)"  # dies without sealing
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    reader = SegmentReader(tmp_path)
    records, offsets = reader.read(max_bytes=30)  # only the first record fits
    reader.commit(offsets)
    assert reader.prune() == []  # not fully ingested yet
    records2, offsets = reader.read()
    assert records + records2 == [{"k": "outcomes", "items": [1]}, {"k": "outcomes", "items": [2]}]
    reader.commit(offsets)
    assert len(reader.prune()) == 1
    assert list(tmp_path.glob("*.seg")) == []


def test_publish_is_atomic_and_prunes_old_generations(tmp_path: Path) -> None:
    policy = make_policy("linucb", seed=3)
    for n in range(7):
        snapshots.publish(tmp_path, n, policy, None, {"n": n}, keep=3)
    gen = snapshots.load_latest(tmp_path)
    assert gen is not None and gen.number == 6 and gen.meta["n"] == 6 and gen.shadow is None
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-00000004", "gen-00000005", "gen-00000006"]
    assert not list(tmp_path.glob(".tmp-*"))
    (tmp_path / "LATEST").write_text("{not json")
    with pytest.raises(SnapshotError, match="corrupt"):
        snapshots.load_latest(tmp_path)
    assert snapshots.load_latest(tmp_path / "empty") is None


def test_metadata_only_generations_copy_the_model_and_survive_pruning(tmp_path: Path) -> None:
    policy = make_policy("linucb", seed=3)
    snapshots.publish(tmp_path, 0, policy, None, {"n": 0}, keep=2)
    first = snapshots.load_latest(tmp_path)
    assert first is not None and first.meta["model_id"]
    for n in range(1, 5):  # each continues the previous one; generation 0 is pruned on the way
        assert snapshots.publish_meta(tmp_path, n, n - 1, {"n": n}, keep=2) is not None
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-00000003", "gen-00000004"]
    again = snapshots.load_latest(tmp_path, reuse=first)
    assert again is not None and again.number == 4 and again.meta["n"] == 4
    assert again.primary is first.primary and again.meta["model_id"] == first.meta["model_id"]
    fresh = snapshots.load_latest(tmp_path)  # without the model at hand: loads the (copied) files
    assert fresh is not None and fresh.primary is not first.primary
    assert fresh.primary.get_params() == policy.get_params()
    assert snapshots.publish_meta(tmp_path, 5, 0, {}, keep=2) is None  # base pruned: publish in full
    assert snapshots.latest_pointer(tmp_path) == {"generation": 4, "dir": "gen-00000004"}
    snapshots.publish(tmp_path, 5, policy, None, {}, keep=2)
    newer = snapshots.load_latest(tmp_path, reuse=first)
    assert newer is not None and newer.primary is not first.primary  # a new model_id: loaded


def test_logged_context_is_what_the_event_module_reads() -> None:
    ctx = MemberContext(
        "m",
        played=(Play("t1", 1.5e9, 30.0), Play("t2")),
        country="US",
        device="tv",
        timestamp=1.7e9,
        interacted_titles=frozenset({"b", "a"}),
        recommender_scores={"t1": 0.5},
        extra={"x": 1.0},
    )
    assert json.loads(context_json(ctx)) == json.loads(context_to_json(ctx))
    assert context_from_json(context_json(ctx)) == ctx


def test_serve_is_a_keyart_command() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--workers", "--policy", "--shadow-policy", "--api-key", "--model-budget", "--fsync"):
        assert option in result.output


@pytest.mark.slow
def test_load_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        import bench_service
    finally:
        sys.path.pop(0)
    summary = bench_service.main(["--smoke"])
    (row,) = summary["rows"]
    assert row["non200"] == 0 and row["rps"] > 5 and 0 <= row["fallback_rate"] <= 1, row
    assert "title-decisions/s" in capsys.readouterr().out
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # the benchmark leaves the test process alone


@pytest.mark.slow
def test_load_benchmark_profiles_the_in_process_pages(capsys: pytest.CaptureFixture[str]) -> None:
    """``--inprocess --profile N``: the pages of the named policy under cProfile, the N functions of most
    own time (the page's own work: the catalog's import before them is not profiled)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        import bench_service
    finally:
        sys.path.pop(0)
    summary = bench_service.main(["--inprocess", "--profile", "6", "--policy", "linucb"])
    out = capsys.readouterr().out
    assert "policy linucb" in out and summary["inprocess_ms"] > summary["inprocess_own_ms"] > 0
    table = out.split("profile of the in-process pages: ")[1].splitlines()
    rows = table[3:9]
    assert len(rows) == 6 and all(len(r.split()) >= 5 for r in rows), table[:10]
    shares = [float(r.split()[-2]) for r in rows]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100
    assert not any("import_catalog" in r or "row_arguments" in r for r in rows)  # the set-up is left out


# ---- request parsing: the fast path agrees with the pydantic models ----------------------------------

PARSE_CASES: list[Any] = [
    {"member_id": "m", "title_ids": ["t0", "t1"]},
    {"member_id": "m", "title_ids": ["t0"], "context": None, "page": None, "request_id": None},
    {"member_id": "m", "title_ids": ["t0"], "page": "", "request_id": "r" * 128},
    {
        "member_id": "m",
        "title_ids": ["t0"],
        "page": "home",
        "context": {
            "played": [
                {"title_id": "t1", "timestamp": 1_700_000_000, "engaged_seconds": 0},
                {"title_id": "t2", "timestamp": 1.5e9},
                {"title_id": "t3", "engaged_seconds": -0.0},
                {"title_id": "t4", "timestamp": None, "engaged_seconds": None},
            ],
            "country": "US",
            "language": "x" * 64,
            "device": "tv",
            "timestamp": 1_700_050_000,
            "interacted_titles": ["t1", "t1", "t9"],
            "recommender_scores": {"t0": 1, "t1": 0.25},
            "extra": {"a": -3.5},
        },
    },
    {"member_id": "m", "title_ids": ["t0"], "context": {}},
    # refused, or accepted only by pydantic's lax rules: the fast path must hand these over
    {"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": "12"}},
    {"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": True}},
    {
        "member_id": "m",
        "title_ids": ["t0"],
        "context": {"played": [{"title_id": "t1", "engaged_seconds": "3"}]},
    },
    {"member_id": "m", "title_ids": ["t0"], "context": {"played": [{"title_id": "t1", "colour": 1}]}},
    {"member_id": "m", "title_ids": ["t0"], "context": {"played": None}},
    {"member_id": "m", "title_ids": ["t0"], "context": {"country": None}},
    {"member_id": "m", "title_ids": ["t0"], "context": {"language": "x" * 65}},
    {"member_id": "m", "title_ids": ["t0"], "context": {"extra": {"a": "1.5"}}},
    {"member_id": "m", "title_ids": ["t0"], "context": {"extra": []}},
    {"member_id": "m", "title_ids": ["t0"], "context": {"interacted_titles": [""]}},
    {"member_id": "m", "title_ids": ["t0"], "context": []},
    {"member_id": "m" * 257, "title_ids": ["t0"]},
    {"member_id": "m", "title_ids": ["t" * 257]},
    {"member_id": "m", "title_ids": ["t0"], "page": "p" * 129},
    {"member_id": "m", "title_ids": ["t0"], "request_id": ""},
    {"member_id": "m", "title_ids": ["t0"], "title_id": "t0"},
    {"member_id": "m", "title_ids": []},
    ["not", "an", "object"],
    "text",
]
RAW_CASES = [
    b'{"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": NaN}}',
    b'{"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": 1e999}}',
    b'{"member_id": "m", "title_ids": ["t0"], "context": {"timestamp": 123456789012345678901234567890}}',
    b'{"member_id": 3, "member_id": "m", "title_ids": ["t0"]}',
    b'{"member_id": "m", "member_id": 3, "title_ids": ["t0"]}',
    b'{"member_id": "\\ud800", "title_ids": ["t0"]}',
    b'{"member_id": "m\\u00e9\\u2603", "title_ids": ["t0"]}',
    b"{",
    b"",
    b"null",
]


def _outcome(fn: Any, body: bytes) -> Any:
    """What a parse gives: the request (with its logged context, which tells 1 from 1.0) or the error."""
    try:
        req = fn(body)
    except RequestError as exc:
        return ("error", exc.status, exc.body())
    return ("ok", req, context_json(req.context))


def _agree(body: bytes, one: bool = False) -> None:
    limits = Limits()
    fast = parse_title if one else parse_page
    check = check_history if one else check_page

    def reference(b: bytes) -> PageRequest:
        req = parse_with_models(b, one, 5.0)
        check(req, limits)
        return req

    assert _outcome(lambda b: fast(b, limits, 5.0), body) == _outcome(reference, body), body


def _agree_both(case: Any) -> None:
    """The page form of ``case``, and its one-title form (first of ``title_ids`` as ``title_id``)."""
    _agree(json.dumps(case, allow_nan=True).encode())
    if isinstance(case, dict) and "title_ids" in case:
        one = dict(case)
        ids = one.pop("title_ids")
        one["title_id"] = ids[0] if isinstance(ids, list) and ids else ids
        _agree(json.dumps(one, allow_nan=True).encode(), one=True)


@pytest.mark.parametrize("case", PARSE_CASES)
def test_fast_parsing_agrees_with_the_models(case: Any) -> None:
    _agree_both(case)


@pytest.mark.parametrize("body", [b for b in RAW_CASES if b])  # b"": 400 before any parser, see the app
def test_fast_parsing_agrees_with_the_models_on_raw_json(body: bytes) -> None:
    _agree(body)
    _agree(body.replace(b'"title_ids": ["t0"]', b'"title_id": "t0"'), one=True)


_good_id = st.text(min_size=1, max_size=5)
_ids = st.one_of(
    _good_id, _good_id, _good_id, st.just(""), st.text(min_size=255, max_size=258), st.integers()
)
_good_num = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70))
_nums = st.one_of(
    _good_num, _good_num, _good_num, st.floats(), st.booleans(), st.just("1.5"), st.none(), st.just([])
)
_play = st.fixed_dictionaries(
    {"title_id": _ids},
    optional={"timestamp": _nums, "engaged_seconds": _nums, "bad": st.integers()},
)
_text = st.one_of(st.text(max_size=3), st.text(max_size=3), st.text(min_size=63, max_size=66), st.integers())
_context = st.fixed_dictionaries(
    {},
    optional={
        "played": st.one_of(st.lists(_play, max_size=3), st.lists(_play, max_size=3), st.none()),
        "country": _text,
        "language": _text,
        "device": _text,
        "timestamp": st.one_of(_nums, st.none()),
        "interacted_titles": st.lists(_ids, max_size=2),
        "recommender_scores": st.dictionaries(st.text(max_size=2), _nums, max_size=2),
        "extra": st.one_of(st.dictionaries(st.text(max_size=2), _nums, max_size=2), st.lists(_nums)),
        "nope": st.integers(),
    },
)
_request = st.one_of(
    st.fixed_dictionaries(
        {"member_id": _ids, "title_ids": st.lists(_ids, min_size=1, max_size=3)},
        optional={
            "context": st.one_of(_context, _context, _context, st.none(), st.integers()),
            "page": st.one_of(
                st.none(), st.text(max_size=3), st.text(min_size=127, max_size=130), st.integers()
            ),
            "request_id": st.one_of(st.none(), st.text(max_size=3), st.integers()),
            "extra_key": st.integers(),
        },
    ),
    st.fixed_dictionaries({}, optional={"member_id": _ids, "title_ids": st.one_of(st.lists(_ids), _ids)}),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_request)
def test_fast_parsing_agrees_with_the_models_on_generated_bodies(case: dict[str, Any]) -> None:
    _agree_both(case)


# ---- the model thread ---------------------------------------------------------------------------------


def test_model_thread_runs_calls_in_order_and_cancels_pending_ones_on_shutdown() -> None:
    model = ModelThread()
    seen: list[Any] = []
    model.post(lambda x: x * 2, (21,), lambda r, e: seen.append((r, e)))
    model.post(lambda: 1 / 0, (), lambda r, e: seen.append((r, type(e))))
    assert model.submit(lambda: "last").result(10) == "last"
    assert seen == [(42, None), (None, ZeroDivisionError)]

    started, gate = threading.Event(), threading.Event()
    first = model.submit(lambda: started.set() or gate.wait(10))
    assert started.wait(10)
    model.post(seen.append, ("never",), lambda r, e: None)
    later = model.submit(seen.append, "never")
    model.shutdown(wait=False, cancel_futures=True)
    assert later.cancelled()
    gate.set()
    assert first.result(10) is True
    model._thread.join(10)
    assert not model._thread.is_alive() and "never" not in seen
    with pytest.raises(RuntimeError):
        model.submit(int)


def test_logged_probabilities_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=3)
    probs[1, 3:] = 0.0  # a pool of 3 padded to K = 5
    sizes = [5, 3, 5]
    line = orjson.loads(orjson.dumps({"probabilities_b64": encode_probabilities(probs.astype(np.float32))}))
    assert page_probabilities(line, sizes)[1] == probs.astype(np.float32)[1, :3].tolist()
    line = orjson.loads(orjson.dumps({"probabilities_b64": encode_probabilities(probs)}))
    rows = page_probabilities(line, sizes)
    assert rows == [probs[i, :k].tolist() for i, k in enumerate(sizes)]  # bit for bit
    old = {"probabilities": [[0.5, 0.5], [1, 0]]}  # lines written before probabilities_b64
    assert page_probabilities(old, [2, 2]) == [[0.5, 0.5], [1, 0]]


# ---- structure: errors and layering -------------------------------------------------------------------


def test_service_errors_are_keyart_errors() -> None:
    from keyart.errors import KeyartError, StoreError
    from keyart.service.engine import EventLogError
    from keyart.store import StoreLockedError

    assert issubclass(EventLogError, KeyartError) and issubclass(EventLogError, RuntimeError)
    assert issubclass(RequestError, KeyartError) and issubclass(StoreLockedError, StoreError)


CORE = ("catalog", "context", "features", "policies", "learning", "exploration", "hashing", "params")
CORE += ("errors", "batch", "feedback")
OUTER = ("keyart.service", "keyart.store", "keyart.simulation", "keyart.reports")


def _keyart_imports(path: Path, known: set[str], runtime_only: bool) -> set[str]:
    """The keyart modules ``path`` imports: all of them, or (``runtime_only``) those imported when the
    module is imported (its top level, outside ``if TYPE_CHECKING:`` blocks)."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = [n for n in tree.body if not isinstance(n, ast.If)] if runtime_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out & known


def test_the_core_imports_nothing_of_the_outer_layers_and_no_imports_loop() -> None:
    import graphlib

    import keyart

    root = Path(keyart.__file__).parent
    files = {}
    for p in root.rglob("*.py"):
        parts = p.relative_to(root.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    known = set(files)
    for name, path in files.items():
        if name.split(".")[1:2] and name.split(".")[1] in CORE:
            outer = sorted(m for m in _keyart_imports(path, known, False) if m.startswith(OUTER))
            assert not outer, f"{name} (core) imports {outer}"
    graph = {name: _keyart_imports(path, known, True) - {name} for name, path in files.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the loop


# ---- the exploration key --------------------------------------------------------------------------------


def test_each_deployment_draws_and_keeps_its_own_secret_exploration_key(tmp_path: Path) -> None:
    from keyart.service.config import KEY_FILE, ServiceConfig, exploration_key
    from keyart.service.learner import ensure_initial_generation

    keys = []
    for name in ("a", "b"):
        config = ServiceConfig(state_dir=str(tmp_path / name))
        assert config.seed is None
        ensure_initial_generation(config)
        gen = snapshots.load_latest(config.snapshots_dir)
        assert gen is not None
        key = gen.primary.get_params()["seed"]
        assert key != 0 and key == exploration_key(config.root)  # kept: the same key after a restart
        assert config.policy_kwargs()["seed"] == key
        assert (config.root / KEY_FILE).stat().st_mode & 0o077 == 0  # readable by its owner only
        keys.append(key)
    assert keys[0] != keys[1]  # never one key shared by every deployment
    explicit = ServiceConfig(state_dir=str(tmp_path / "c"), seed=7)  # an explicit key still works
    assert explicit.policy_kwargs()["seed"] == 7 and not (tmp_path / "c" / KEY_FILE).exists()
    assert ServiceConfig(state_dir=str(tmp_path / "d"), seed=0).policy_kwargs()["seed"] == 0


def test_processes_creating_the_key_at_once_agree(tmp_path: Path) -> None:
    from keyart.service.config import exploration_key

    results: list[int] = []
    barrier = threading.Barrier(4)

    def draw() -> None:
        barrier.wait()
        results.append(exploration_key(tmp_path / "state"))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["exploration.key"]  # no temporary left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("garbage\n", "does not hold an exploration key"),
        (f"{2**128}\n", r"must be an int in \[0, 2\*\*128\)"),
    ],
)
def test_a_damaged_key_file_is_an_error_not_a_new_key(tmp_path: Path, content: str, message: str) -> None:
    from keyart.errors import ValidationError
    from keyart.service.config import KEY_FILE, ServiceConfig

    (tmp_path / KEY_FILE).write_text(content)
    with pytest.raises(ValidationError, match=message):
        ServiceConfig(state_dir=str(tmp_path)).policy_kwargs()
    assert (tmp_path / KEY_FILE).read_text() == content
    with pytest.raises(ValidationError, match=r"ServiceConfig.seed must be an int in \[0, 2\*\*128\)"):
        ServiceConfig(state_dir=str(tmp_path), seed=-1)


def test_serve_draws_the_key_by_default() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0 and "exploration.key" in " ".join(result.output.split())


def test_serve_refuses_a_damaged_key_file_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "exploration.key").write_text("garbage")
    result = CliRunner().invoke(cli_app, ["serve", "--state-dir", str(tmp_path), "--no-learner"])
    assert result.exit_code == 2 and "does not hold an exploration key" in result.output
