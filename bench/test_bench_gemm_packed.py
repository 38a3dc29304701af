"""Per-step GEMM of a recurrence: every case of `fastnn._cases.GEMM_STEP_CASES`, a sequence
of STEPS products c = a @ W.T with the same weight W, on fastnn's packed-panel kernel (W
packed once, then STEPS calls; the `_kernels.gemm_packed` hook) and on NumPy's matmul
(OpenBLAS, which repacks W on every call), both on one thread: the kernel is meant to run
single-threaded on a column range inside an OpenMP region that owns the threads.

Each case is one pytest-benchmark group; the time is per sequence (divide by STEPS for a
step, packing included once). Each result is checked against a float64 product, so
``--benchmark-disable`` makes a quick correctness run. No timing is ever asserted.
"""
import numpy as np
import pytest

from fastnn import _bench, _kernels
from fastnn._cases import GEMM_STEP_CASES, TOLERANCES, GemmStepCase

STEPS = 16
IMPLS = ("numpy", "fastnn")


@pytest.fixture(scope="module", autouse=True)
def one_thread(bench_threads):
    """One thread for NumPy's BLAS too (the hook never starts threads)."""
    _bench.set_threads(1)
    yield
    _bench.set_threads(bench_threads)


def _arrays(case: GemmStepCase, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((case.m, case.k)).astype(dtype)
    w = (rng.standard_normal((case.n, case.k)) / np.sqrt(case.k)).astype(dtype)
    return a, w, np.empty((case.m, case.n), dtype)


def _call(impl, a, w, c):
    if impl == "fastnn":
        return lambda: _kernels.gemm_packed(a, w, True, 0, w.shape[0], False, c, steps=STEPS)

    def numpy_steps():
        for _ in range(STEPS):
            np.matmul(a, w.T, out=c)
    return numpy_steps


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", GEMM_STEP_CASES, ids=[c.name for c in GEMM_STEP_CASES])
def test_gemm_step(benchmark, case: GemmStepCase, impl: str, dtype):
    a, w, c = _arrays(case, dtype)
    benchmark.group = f"{case.name}-{np.dtype(dtype).name}"
    benchmark.extra_info["gflop"] = STEPS * case.flops() / 1e9
    benchmark(_call(impl, a, w, c))
    want = a.astype(np.float64) @ w.T.astype(np.float64)
    tol = TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(c, want, rtol=tol["rtol"],
                               atol=tol["atol"] * max(1.0, float(np.abs(want).max())),
                               err_msg=f"{case.name} {impl}")
