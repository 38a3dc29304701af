"""Pooling benchmarks: every case of `fastnn._cases.POOL_CASES`, forward and
forward+backward, on fastnn, the NumPy reference and PyTorch (when installed; its
spatial pyramid pooling is the concatenation of its adaptive pools).

Each (case, pass) is one pytest-benchmark group, ``<case>-fwd`` or ``<case>-fwdbwd``.
Every contender's result is checked against the reference's, so ``--benchmark-disable``
makes a quick correctness run. No timing is ever asserted; ``bench/report.py --pool``
gives the interleaved ratios and GB/s against a copy of the same size.
"""
import numpy as np
import pytest

from fastnn import _bench
from fastnn._cases import POOL_CASES, TOLERANCES, PoolCase

IMPLS = ("reference", "fastnn", "torch")  # the reference first: its result is the expected one
_arrays, _expected = {}, {}


def _inputs(case: PoolCase):
    if case.name not in _arrays:
        _arrays.clear()  # one case's arrays at a time
        _arrays[case.name] = (case.array(), _bench.pool_grad_output(case))
    return _arrays[case.name]


def _as_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, tuple) else (result,)


def _reference(case: PoolCase, mode: str) -> tuple:
    key = (case.name, mode)
    if key not in _expected:
        _expected.clear()
        _expected[key] = _as_tuple(_bench.pool_call(case, "reference", mode, _inputs(case))())
    return _expected[key]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", _bench.MODES)
@pytest.mark.parametrize("case", POOL_CASES, ids=[c.name for c in POOL_CASES])
def test_pool(benchmark, case: PoolCase, mode: str, impl: str):
    if impl == "torch" and not _bench.torch_available():
        pytest.skip("torch is not installed")
    call = _bench.pool_call(case, impl, mode, _inputs(case))
    benchmark.group = f"{case.name}-{mode}"
    benchmark.extra_info["gb"] = case.bytes(mode) / 1e9
    if impl == "reference":
        result = benchmark.pedantic(call, rounds=1, iterations=1, warmup_rounds=0)
        _expected.clear()
        _expected[(case.name, mode)] = _as_tuple(result)
        return
    got = _as_tuple(benchmark(call))
    want = _reference(case, mode)
    assert len(got) == len(want)
    for name, g, w in zip(("output", "grad_input"), got, want):
        g = g.detach().numpy() if hasattr(g, "detach") else np.asarray(g)
        assert g.shape == w.shape and g.dtype == w.dtype, f"{case.name} {mode} {name}"
        tol = TOLERANCES[np.dtype(w.dtype)]
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(g, w, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                   err_msg=f"{case.name} {mode} {name}")
