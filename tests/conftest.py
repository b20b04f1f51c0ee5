"""Test session set-up: one BLAS thread per process, and the quick demo run that the demo's tests share.

keyart's matrices are small (d ~ 165); a multi-threaded BLAS on a shared 2-core machine spends far more
time synchronizing than computing (a 165 x 165 Cholesky went from 2 ms to 100 ms), so the tests pin it,
as the benchmarks and the CLI do.
"""

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from threadpoolctl import threadpool_limits  # noqa: E402

_LIMITS = threadpool_limits(limits=1)

#: What the README runs (in its quick form, ``tests/test_readme_commands.py``), and the seed it defaults to.
QUICK_DEMO = ("demo", "--quick")
QUICK_DEMO_SEED = 0


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``keyart demo --quick`` run as the README runs it (the real console entry point, from a directory
    of its own, writing ``keyart-demo/`` there), once for the whole test run: under pytest-xdist the first
    worker to ask runs it while the others wait on a file lock. Its output directory and what it printed;
    tests read them and never write there."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "quick-demo"
    shared.mkdir(exist_ok=True)
    printed = shared / "stdout.txt"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not printed.exists():
            keyart = Path(sys.executable).with_name("keyart")
            proc = subprocess.run(
                [str(keyart), *QUICK_DEMO], cwd=shared, capture_output=True, text=True, timeout=1800
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            printed.write_text(proc.stdout)
    return shared / "keyart-demo", printed.read_text()
