"""Convolution benchmarks: every case of `fastnn._cases.BENCH_CASES`, forward and
forward+backward, on fastnn, the NumPy reference and PyTorch (when installed).

Each (case, pass) is one pytest-benchmark group, ``<case>-fwd`` or
``<case>-fwdbwd``, so its table shows the contenders side by side. Every
contender's result is also checked against the reference's, so
``--benchmark-disable`` makes a quick correctness run (one call each). No
timing is ever asserted.
"""
import numpy as np
import pytest

from fastnn import _bench
from fastnn._cases import BENCH_CASES, TOLERANCES, ConvCase

# The reference first: its result is the expected one of the group's other tests.
IMPLS = ("reference", "fastnn", "torch")
# Forward+backward costs three forward GEMMs.
PASS_FLOPS = {"fwd": 1, "fwdbwd": 3}
# Above this many flops per call the reference (seconds per call) is timed once;
# below, three times. It is a yardstick for correctness and scale, not a contender.
REFERENCE_ONE_ROUND_FLOPS = 1e9


def _to_numpy(a):
    """A result as a NumPy array (torch tensors included, without importing torch)."""
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def _check(case: ConvCase, mode: str, got: tuple, want: tuple) -> None:
    names = ("output", "grad_input", "grad_weight", "grad_bias")
    assert len(got) == len(want)
    for name, g, w in zip(names, got, want):
        g = _to_numpy(g)
        assert g.shape == w.shape and g.dtype == w.dtype, (
            f"{case.name} {mode} {name}: {g.dtype}{g.shape}, expected {w.dtype}{w.shape}")
        tol = TOLERANCES[np.dtype(w.dtype)]
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(g, w, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                   err_msg=f"{case.name} {mode} {name}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", _bench.MODES)
@pytest.mark.parametrize("case", BENCH_CASES, ids=[c.name for c in BENCH_CASES])
def test_conv(benchmark, results, case: ConvCase, mode: str, impl: str):
    if impl == "torch" and not _bench.torch_available():
        pytest.skip("torch is not installed")
    call = _bench.conv_call(case, impl, mode, results.arrays(case))
    flops = PASS_FLOPS[mode] * case.flops()
    benchmark.group = f"{case.name}-{mode}"
    benchmark.extra_info["gflop"] = flops / 1e9
    if impl == "reference":
        rounds = 1 if flops > REFERENCE_ONE_ROUND_FLOPS else 3
        result = benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0)
        results.store(case, mode, result)
        return
    result = benchmark(call)
    _check(case, mode, tuple(result) if isinstance(result, tuple) else (result,),
           results.expected(case, mode))
