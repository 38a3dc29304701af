"""Threads and build configuration.

fastnn's parallel work is OpenMP's. A call uses the calling thread's OpenMP
thread count (``OMP_NUM_THREADS``, or threadpoolctl's "openmp" limit set in that
thread), capped by `set_num_threads`, which holds for every thread of the process. The bundled OpenBLAS is pinned to one thread at import, because it
is only ever called from inside fastnn's OpenMP regions.
"""
from __future__ import annotations

import sys

from fastnn import _kernels
from fastnn._validate import as_int


def set_num_threads(n: int) -> None:
    """Use `n` OpenMP threads in fastnn's kernels: exactly `n` in calls from this
    thread, and at most `n` in calls from any other thread (OpenMP's own count is
    per thread: a thread started later begins from ``OMP_NUM_THREADS``).

    Results do not depend on the thread count: every reduction uses a fixed
    partition of the work.
    """
    _kernels.set_num_threads(as_int(n, "n", 1))


def get_num_threads() -> int:
    """The number of OpenMP threads fastnn's next kernel call will use."""
    return _kernels.get_num_threads()


def config() -> dict:
    """Version, compiler, SIMD path, per-core caches (which size the kernels' blocks), BLAS
    and thread count, as a dict."""
    import numpy as np

    from fastnn import __version__

    simd, compiler, blas, l1, l2, blas_core = _kernels.config()
    return {"fastnn": __version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "compiler": compiler, "simd": simd,
            "caches": f"L1d {l1 // 1024} KB, L2 {l2 // 1024} KB per core",
            "blas": f"scipy-openblas32 ({blas.strip()}), {blas_core} kernels, 1 thread",
            "threads": get_num_threads()}


def show_config() -> None:
    """Print the version, compiler, SIMD path in use, BLAS and thread count."""
    for key, value in config().items():
        print(f"{key:>9}: {value}")
