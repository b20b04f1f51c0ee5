"""Test session set-up: one BLAS thread per process.

keyart's matrices are small (d ~ 165); a multi-threaded BLAS on a shared 2-core machine spends far more
time synchronizing than computing (a 165 x 165 Cholesky went from 2 ms to 100 ms), so the tests pin it,
as the benchmarks and the CLI do.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from threadpoolctl import threadpool_limits  # noqa: E402

_LIMITS = threadpool_limits(limits=1)
