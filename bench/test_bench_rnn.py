"""Recurrence benchmarks: every case of `fastnn._cases.RNN_CASES`, inference (forward in
eval mode) and training (forward + backward), on `fastnn.nn`, the same modules on the NumPy
reference backend and ``torch.nn`` (when installed), all holding the same weights.

Each (case, pass) is one pytest-benchmark group, ``<case>-fwd`` or ``<case>-fwdbwd``; the
cases with ``varlen`` also have ``<case>-len-fwd`` / ``-len-fwdbwd``, the same batch with
random lengths in [T/2, T] (torch: packed). Every contender's result (output and final
states; or output, input gradient and every parameter gradient) is checked against the
reference's under `fastnn._bench.RNN_TOLERANCE`, so ``--benchmark-disable`` makes a
correctness run. No timing is ever asserted; ``bench/report.py --rnn`` gives the
interleaved ratios, the targets and the lengths-vs-padded cost.
"""
import pytest

from fastnn import _bench
from fastnn._cases import RNN_CASES, RNNCase

IMPLS = ("reference", "fastnn", "torch")  # the reference first: its result is the expected one
VARIANTS = ("padded", "lengths")
_arrays, _expected = {}, {}


def _inputs(case: RNNCase):
    if case.name not in _arrays:
        _arrays.clear()  # one case's arrays at a time
        _arrays[case.name] = _bench.rnn_arrays(case)
    return _arrays[case.name]


def _as_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, tuple) else (result,)


def _reference(case: RNNCase, mode: str, varlen: bool) -> tuple:
    key = (case.name, mode, varlen)
    if key not in _expected:
        _expected.clear()
        call = _bench.rnn_call(case, "reference", mode, _inputs(case), varlen)
        _expected[key] = _as_tuple(call())
    return _expected[key]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", _bench.MODES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", RNN_CASES, ids=[c.name for c in RNN_CASES])
def test_rnn(benchmark, case: RNNCase, variant: str, mode: str, impl: str):
    if impl == "torch" and not _bench.torch_available():
        pytest.skip("torch is not installed")
    varlen = variant == "lengths"
    if varlen and not case.varlen:
        pytest.skip("no lengths variant for this case (batch of one)")
    arrays = _inputs(case)
    call = _bench.rnn_call(case, impl, mode, arrays, varlen)
    benchmark.group = f"{case.name}{'-len' if varlen else ''}-{mode}"
    benchmark.extra_info["gflop"] = (3 if mode == "fwdbwd" else 1) * case.flops() / 1e9
    if impl == "reference":
        # pure NumPy, step by step: one round, as a yardstick of correctness and scale
        result = benchmark.pedantic(call, rounds=1, iterations=1, warmup_rounds=0)
        _expected.clear()
        _expected[(case.name, mode, varlen)] = _as_tuple(result)
        return
    got = _as_tuple(benchmark(call))
    want = _reference(case, mode, varlen)
    names = _bench.rnn_result_names(case, mode, arrays[2])
    assert len(got) == len(want) == len(names)
    errors = {name: _bench.rnn_max_error(g, w) for name, g, w in zip(names, got, want)}
    bad = {name: e for name, e in errors.items() if not e <= 1.0}
    assert not bad, (f"{case.name} {variant} {mode} {impl}: error / tolerance "
                     f"{_bench.RNN_TOLERANCE} above 1 for {bad}")
