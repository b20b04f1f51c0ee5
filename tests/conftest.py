"""Test session set-up: one BLAS thread per process; the quick demo run that the demo's tests share,
started in the background; under pytest-xdist, one worker for the tests that share an expensive fixture.

keyart's matrices are small (d ~ 165); a multi-threaded BLAS on a shared 2-core machine spends far more
time synchronizing than computing (a 165 x 165 Cholesky went from 2 ms to 100 ms), so the tests pin it,
as the benchmarks and the CLI do.
"""

import fcntl
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from threadpoolctl import threadpool_limits  # noqa: E402

_LIMITS = threadpool_limits(limits=1)

#: What the README runs (in its quick form, ``tests/test_readme_commands.py``), and the seed it defaults to.
QUICK_DEMO = ("demo", "--quick")
QUICK_DEMO_SEED = 0
#: The console entry point beside this Python, as the README runs it.
KEYART = Path(sys.executable).with_name("keyart")


#: The quick demo started in the background, in the process that started it (waited for at its end).
_DEMO_RUN: list[subprocess.Popen[bytes]] = []


def _shared_dir(config: pytest.Config) -> Path:
    """The run's temporary folder that all processes share: the xdist workers' folders are inside it."""
    base = config._tmp_path_factory.getbasetemp()  # the one behind the tmp_path_factory fixture
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _quick_demo_dir(config: pytest.Config) -> Path:
    """Where the shared quick demo runs."""
    shared = _shared_dir(config) / "quick-demo"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    """Once ``-k`` and ``-m`` have deselected: record which tests share an expensive fixture (for the
    scheduler below) and start the quick demo if the run reads it."""
    yield
    if os.environ.get("PYTEST_XDIST_WORKER"):
        groups = _groups_by_shared_fixtures(items)
        worker_file = _shared_dir(config) / f"xdist-groups-{os.environ['PYTEST_XDIST_WORKER']}.json"
        worker_file.write_text(json.dumps(groups))
    _start_quick_demo(config, items)


def _groups_by_shared_fixtures(items: list[pytest.Item]) -> dict[str, str]:
    """A group name for each test that shares a module- or session-scoped fixture of a test module (the
    Spark session, a statistical study's repetitions) with others, transitively, so that one worker builds
    it once instead of every worker that draws one of its tests. The readers of the quick demo stay out of
    the groups, which xdist hands out first: they run last (``_start_quick_demo``)."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    first = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)  # pytest's record of the fixtures a test uses
        keys = [
            f"{fd.func.__module__}.{fd.func.__qualname__}"  # one fixture imported into several modules
            for defs in (info.name2fixturedefs.values() if info else ())
            for fd in defs[-1:]
            if fd.scope in ("module", "session") and fd.baseid.endswith(".py")  # not conftest's, not pytest's
        ]
        if keys and "quick_demo" not in getattr(item, "fixturenames", ()):
            for key in keys[1:]:
                parent[root(key)] = root(keys[0])
            first[item.nodeid] = keys[0]
    return {nodeid: root(key) for nodeid, key in first.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (``pyproject.toml``) with the workers' groups of tests that share a fixture.
    xdist's own grouping by ``xdist_group`` marks renames node ids, which pytest 9.2 no longer lets it do
    (pytest-xdist issue 1386): the workers write their groups into the run's temporary folder instead,
    read here once every worker has collected. Tests in no group are scheduled one by one."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    folder = _shared_dir(config)

    class SharedFixtureScheduling(LoadGroupScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # first called once all workers have collected
                self.groups = {}
                for path in sorted(folder.glob("xdist-groups-*.json")):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return SharedFixtureScheduling(config, log)


def _start_quick_demo(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the quick demo in the background as soon as the run is known to need it, and move the tests
    that read it to the end, so that it runs beside other tests instead of holding a worker (and another
    worker waiting for it) idle. The first process to get here starts it, holding the lock that
    ``quick_demo`` takes; the child inherits it, so ``quick_demo`` waits until the demo has ended."""
    reads = [("quick_demo" in getattr(item, "fixturenames", ())) for item in items]
    if not any(reads) or config.option.collectonly:
        return
    # the same order in every worker: the others as collected, then the readers as collected
    items[:] = [i for i, r in zip(items, reads, strict=True) if not r] + [
        i for i, r in zip(items, reads, strict=True) if r
    ]
    shared = _quick_demo_dir(config)
    with open(shared / "start", "a") as start:  # one process starts it; the others go on at once
        fcntl.flock(start, fcntl.LOCK_EX)
        if (shared / "lock").exists():
            return
        with open(shared / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            command = f"{shlex.join([str(KEYART), *QUICK_DEMO])} > stdout.tmp 2> stderr.txt"
            _DEMO_RUN.append(
                subprocess.Popen(
                    ["sh", "-c", f"{command} && mv stdout.tmp stdout.txt"],
                    cwd=shared,
                    pass_fds=(lock.fileno(),),
                )
            )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Wait for the background demo: another worker may still be reading it."""
    for proc in _DEMO_RUN:
        proc.wait()


@pytest.fixture(scope="session")
def quick_demo(pytestconfig: pytest.Config) -> tuple[Path, str]:
    """``keyart demo --quick`` run as the README runs it (the real console entry point, from a directory
    of its own, writing ``keyart-demo/`` there), once for the whole test run: started in the background at
    collection (above) when the run needs it, run here otherwise; under pytest-xdist every worker waits on
    the same file lock. Its output directory and what it printed; tests read them and never write there."""
    shared = _quick_demo_dir(pytestconfig)
    printed = shared / "stdout.txt"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not printed.exists():
            failed = shared / "stderr.txt"
            assert not failed.exists(), f"the background demo failed: {failed.read_text()[-2000:]}"
            proc = subprocess.run(
                [str(KEYART), *QUICK_DEMO], cwd=shared, capture_output=True, text=True, timeout=1800
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            printed.write_text(proc.stdout)
    return shared / "keyart-demo", printed.read_text()
