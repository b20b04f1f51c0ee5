"""No outage from a damaged model (issue 13): a model generation is loaded only after its files match the
checksums recorded when it was published; a truncated, emptied, overwritten or missing ``primary.npz``, or
a deleted or garbage ``LATEST``, makes workers and the learner serve the newest good generation, on start
and on reload; without any good generation the workers answer with default artworks and say so; and
``keyart serve`` never exits 0 on a failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyart.errors import SnapshotError
from keyart.policies import DEFAULT_POLICY, make_policy
from keyart.service import snapshots
from keyart.service.config import ServiceConfig
from keyart.service.learner import Learner
from keyart.service.server import Announcer, answered
from test_service_support import AUTH, LocalServer, ServiceProcess, make_config, page_body, prepare

T0 = 1_700_000_000.0


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _empty(path: Path) -> None:
    os.truncate(path, 0)


def _garbage(path: Path) -> None:  # same size, other bytes: only the checksum tells
    path.write_bytes(bytes(255 - b for b in path.read_bytes()))


def _missing(path: Path) -> None:
    path.unlink()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "empty": _empty,
    "overwritten": _garbage,
    "missing": _missing,
}


def _generations(config: ServiceConfig) -> None:
    """Generation 0 (from ``prepare``), 1 and 2 with their own models, 3 a metadata-only generation on
    top of 2 (its model files are 2's); ``rewards_learned`` tells them apart."""
    directory = config.snapshots_dir
    for n in (1, 2):
        policy = make_policy(config.policy, **config.policy_kwargs())
        snapshots.publish(directory, n, policy, None, {"learned_until": T0 + n, "rewards_learned": n})
    assert snapshots.publish_meta(directory, 3, 2, {"learned_until": T0 + 3, "rewards_learned": 3})


def _primary(config: ServiceConfig, n: int) -> Path:
    return config.snapshots_dir / snapshots.gen_name(n) / "primary.npz"


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    config = prepare(make_config(tmp_path / "state", reload_interval_seconds=3600.0))
    _generations(config)
    return config


# ---- snapshots ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_generation_is_skipped_for_the_newest_good_one(config: ServiceConfig, damage: str) -> None:
    directory = config.snapshots_dir
    DAMAGES[damage](_primary(config, 3))
    with pytest.raises(SnapshotError, match="gen-00000003"):  # not BadZipFile, EOFError, ...
        snapshots.load_latest(directory)
    found = snapshots.load_newest_good(directory)
    # generation 3 continued 2's model: a copy, so 2's own file is intact
    assert found.generation is not None and found.generation.number == 2 and not found.is_latest
    assert found.generation.meta["rewards_learned"] == 2
    assert len(found.skipped) == 1 and "gen-00000003" in found.skipped[0]
    # the damaged file is never copied on into a newer metadata-only generation
    assert snapshots.publish_meta(directory, 4, 3, {}) is None
    assert snapshots.latest_pointer(directory) == {"generation": 3, "dir": "gen-00000003"}


def test_a_metadata_only_generation_holds_its_own_verified_copy(config: ServiceConfig) -> None:
    three, two = _primary(config, 3), _primary(config, 2)
    assert three.stat().st_ino != two.stat().st_ino and three.read_bytes() == two.read_bytes()
    _truncate(two)  # damage to the generation it continued leaves it whole
    found = snapshots.load_newest_good(config.snapshots_dir)
    assert found.generation is not None and found.generation.number == 3 and found.skipped == []


@pytest.mark.parametrize("pointer", ["deleted", "garbage", "dangling"])
def test_without_a_usable_latest_the_newest_good_generation_is_found(
    config: ServiceConfig, pointer: str
) -> None:
    latest = config.snapshots_dir / snapshots.LATEST
    if pointer == "deleted":
        latest.unlink()
    elif pointer == "garbage":
        latest.write_bytes(b"\x00\xffnot json")
    else:
        latest.write_text('{"generation": 9, "dir": "gen-00000009"}')
    _empty(_primary(config, 3))
    found = snapshots.load_newest_good(config.snapshots_dir)
    assert found.generation is not None and found.generation.number == 2
    assert len(found.skipped) == 2  # LATEST itself, then generation 3 (or the dangling 9)


# ---- the learner -------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "deleted LATEST"])
def test_the_learner_resumes_from_the_newest_good_generation(config: ServiceConfig, damage: str) -> None:
    if damage == "truncated":
        _truncate(_primary(config, 3))  # 3 is damaged: 2 is the newest good one
        resumed = 2
    else:
        (config.snapshots_dir / snapshots.LATEST).unlink()  # before: an untrained model, version 0
        resumed = 3
    learner = Learner(config)
    try:
        assert learner.rewards_learned == resumed and learner.learned_until == T0 + resumed
        # it publishes at once, past every generation present, so LATEST names a good one again
        gen = snapshots.load_latest(config.snapshots_dir)
        assert gen is not None and gen.number == 4 and gen.meta["rewards_learned"] == resumed
        assert (
            learner.metrics.registry.get_sample_value("keyart_snapshot_skipped_total", {"process": "learner"})
            == 1.0
        )  # the damaged generation 3, or the missing LATEST
    finally:
        learner.close()


# ---- workers: on start and on reload -----------------------------------------------------------------


def _decisions(c: httpx.Client) -> dict[str, Any]:
    r = c.post("/v1/decide", json=page_body("m1"))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_worker_starts_on_the_newest_good_generation_and_never_reloads_a_damaged_one(
    config: ServiceConfig,
) -> None:
    _garbage(_primary(config, 3))
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        out = _decisions(c)
        assert out["generation"] == 2 and not any(d["fallback"] for d in out["decisions"])
        info = c.get("/v1/model").json()
        assert info["generation"] == 2 and info["model_ok"] and "gen-00000003" in info["model_error"]

        # on reload: a newer generation whose model is damaged is skipped; the worker keeps what it has
        policy = make_policy(config.policy, **config.policy_kwargs())
        snapshots.publish(config.snapshots_dir, 4, policy, None, {"rewards_learned": 4})
        _truncate(_primary(config, 4))
        held = srv.engine.generation.primary
        info = c.post("/v1/model/reload", headers=AUTH).json()
        # generation 3 continues the model this worker holds (verified when 2 was loaded): its damaged
        # copy is never read, and 3's metadata is served with the policies already in memory
        assert info["generation"] == 3 and "gen-00000004" in info["model_error"]
        assert srv.engine.generation.primary is held
        (config.snapshots_dir / snapshots.LATEST).unlink()
        assert c.post("/v1/model/reload", headers=AUTH).json()["generation"] == 3
        out = _decisions(c)
        assert out["generation"] == 3 and not any(d["fallback"] for d in out["decisions"])

        # the next good generation is served, and the complaint is gone
        snapshots.publish(config.snapshots_dir, 5, policy, None, {"rewards_learned": 5})
        info = c.post("/v1/model/reload", headers=AUTH).json()
        assert info["generation"] == 5 and info["model_error"] is None
        assert _decisions(c)["generation"] == 5
        assert (
            srv.app.state.service.metrics.registry.get_sample_value(
                "keyart_snapshot_skipped_total", {"process": "worker"}
            )
            >= 3
        )


def test_without_any_good_generation_workers_answer_defaults_and_say_so(config: ServiceConfig) -> None:
    for n in range(4):
        _empty(_primary(config, n))
    with LocalServer(config) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        out = _decisions(c)
        assert {d["fallback_reason"] for d in out["decisions"]} == {"no_model"}
        ready = c.get("/readyz")
        body = ready.json()
        assert ready.status_code == 200 and body["ready"]  # it serves: a page always renders
        assert not body["model_ok"] and body["serving"] == "defaults"
        assert "default artworks" in body["warning"]
        info = c.get("/v1/model").json()
        assert info["generation"] is None and not info["model_ok"] and "gen-00000003" in info["model_error"]
        metrics = c.get("/metrics").text
        assert "keyart_model_ok 0.0" in metrics and 'keyart_fallbacks_total{reason="no_model"} 8.0' in metrics


# ---- `keyart serve` ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_with_a_truncated_latest_model_starts_on_the_newest_good_one(tmp_path: Path) -> None:
    """The issue's reproduction: truncate LATEST's primary.npz, start two workers."""
    config = prepare(make_config(tmp_path / "state"))
    _generations(config)
    os.truncate(_primary(config, 3), 1000 if _primary(config, 3).stat().st_size > 1000 else 100)
    with ServiceProcess(config.root, workers=2, extra=["--no-learner"]) as srv:
        seen: set[str] = set()
        with httpx.Client(base_url=srv.base, timeout=30) as c:
            out = _decisions(c)
            assert out["generation"] == 2 and not any(d["fallback"] for d in out["decisions"])
            body = c.get("/readyz").json()
            assert body["model_ok"] and body["generation"] == 2 and "gen-00000003" in body["model_error"]
        for _ in range(40):  # a fresh connection each time: either worker may answer
            with httpx.Client(base_url=srv.base, timeout=30) as c:
                r = c.get("/v1/model")
                assert r.status_code == 200 and r.json()["generation"] == 2
                seen.add(r.headers["x-keyart-worker"])
            if len(seen) == 2:
                break
        assert srv.proc is not None and srv.proc.poll() is None
        assert "model generation 2," in _start_up_line(srv)


def _start_up_line(srv: ServiceProcess) -> str:
    """The start-up line (printed once /readyz answers, so wait for it: the log is another process's)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [line for line in srv.read_log(10**9).splitlines() if "keyart serve: ready on" in line]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no start-up line: {srv.read_log()}")


@pytest.mark.slow
def test_serve_starts_lean_workers_and_names_what_it_serves(tmp_path: Path) -> None:
    """Workers import what they serve, not every keyart command (the console script is not re-run in
    them); the start-up line names the URL, workers, policy, generation and state directory; an empty
    catalog is said out loud."""
    state = tmp_path / "state"
    env = {"PYTHONPROFILEIMPORTTIME": "1"}
    with ServiceProcess(state, workers=2, env=env) as srv:
        line = _start_up_line(srv)
        assert f"ready on {srv.base} (2 workers, policy {DEFAULT_POLICY}, model generation 0, " in line
        assert f"catalog rev 0 with 0 titles, state directory {state.resolve()})" in line
        deadline = time.monotonic() + 120  # ready once one worker is up: wait for the other's imports
        while time.monotonic() < deadline:
            log = srv.read_log(10**9)
            if len(re.findall(r"\|\s+keyart\.service\.routes$", log, re.M)) == 2:  # each worker's app
                break
            time.sleep(0.2)
        assert "has no active title" in log
        # imported by the `keyart` process itself only: once, not once more per worker and learner
        assert len(re.findall(r"\|\s+keyart\.evaluate_cli$", log, re.M)) == 1


@pytest.mark.slow
def test_serve_exits_non_zero_when_its_workers_cannot_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    prepare(make_config(state))
    (state / "segments").write_text("a file where the workers' segment directory belongs")
    exe = Path(sys.executable).with_name("keyart")
    cmd = [str(exe), "serve", "--state-dir", str(state), "--workers", "2", "--no-learner", "--port", "0"]
    cmd += ["--api-key", "k"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # before: exit status 0
    assert done.returncode == 3, done.stderr[-2000:]
    assert "stopped on a failure (exit status 3)" in done.stderr


def test_a_health_check_ends_when_the_worker_exits_unanswered() -> None:
    """uvicorn keeps both ends of the check's pipe, so only the worker's exit (its sentinel) can end the
    wait for an answer that will never come; an answer, or the timeout, ends it otherwise."""
    parent, child = Pipe()
    exited, alive = os.pipe()  # the read end stands for a process sentinel: readable once it exits
    try:
        parent.send(b"ping")
        answer = threading.Thread(target=lambda: (child.recv(), child.send(True)))
        answer.start()
        assert answered(parent, exited, timeout=300)
        answer.join()
        assert not answered(parent, exited, timeout=0.01)  # no answer: the timeout ends it
        parent.send(b"ping")
        os.close(alive)
        alive = -1
        t0 = time.monotonic()
        assert not answered(parent, exited, timeout=300)
        assert time.monotonic() - t0 < 150  # the exit ended it, not the timeout
    finally:
        os.close(exited)
        if alive >= 0:
            os.close(alive)


def test_serve_refuses_an_unreadable_catalog_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "catalog.json").write_text('{"rev": 1, "catalog": {"titles": 5}}')
    exe = Path(sys.executable).with_name("keyart")
    cmd = [str(exe), "serve", "--state-dir", str(state), "--workers", "2", "--no-learner", "--port", "0"]
    done = subprocess.run([*cmd, "--api-key", "k"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "cannot read the catalog" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_the_start_up_line_says_when_no_model_is_served() -> None:
    announce = Announcer("0.0.0.0", 1, "linear_ts", "/srv/state", "catalog rev 3 with 2 titles")
    line = announce.format(
        "http://127.0.0.1:8000", {"generation": None, "model_ok": False, "model_error": "gen-7 damaged"}, 2.04
    )
    assert line == (
        "keyart serve: ready on http://127.0.0.1:8000 (1 worker, policy linear_ts, no good model generation "
        "(serving default artworks: gen-7 damaged), catalog rev 3 with 2 titles, state directory "
        "/srv/state) after 2.0 s"
    )
