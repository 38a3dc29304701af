"""pytest-benchmark setup of the convolution benchmarks.

Run from the repository root (``bench/`` is not among pyproject's testpaths)::

    python -m pytest bench/ --benchmark-only                 # the timings
    python -m pytest bench/ --benchmark-only -k "3x3_64x56"  # a subset
    python -m pytest bench/ --benchmark-disable              # one call each, checked

pytest-benchmark times each contender on its own, one after the other; its
table shows them side by side per group, but on a shared machine the ratios of
``bench/report.py`` (contenders interleaved, disturbed samples dropped) are the
ones to trust.
"""
import os

# Before NumPy loads (see bench/report.py): NumPy's OpenBLAS workers then sleep
# ~0.4 ms after a call instead of spinning ~0.1 s on the next benchmark's core.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from typing import Dict, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402
from fastnn import _bench  # noqa: E402
from fastnn._cases import ConvCase  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--fastnn-threads", type=int, default=None, metavar="N",
                     help="threads of fastnn, PyTorch and NumPy's BLAS in the benchmarks "
                          "(default: all usable cores)")


@pytest.fixture(scope="session", autouse=True)
def bench_threads(request):
    """One thread count for every contender, so that the comparison is fair."""
    n = request.config.getoption("--fastnn-threads") or _bench.usable_cores()
    before = fastnn.get_num_threads()
    if _bench.torch_available():
        import torch  # noqa: F401  (so that set_threads reaches it)
    _bench.set_threads(n)
    yield n
    _bench.set_threads(before)


class _Results:
    """The arrays and the reference's result of the group being run, kept once.

    A group's tests run one after the other (reference first), so one slot is
    enough: it spares the memory of keeping every case's arrays and results.
    """

    def __init__(self) -> None:
        self._arrays: Dict[str, Tuple[np.ndarray, ...]] = {}
        self._expected: Dict[Tuple[str, str], tuple] = {}

    def arrays(self, case: ConvCase) -> Tuple[np.ndarray, ...]:
        """(x, weight, bias, grad_output) of the case."""
        if case.name not in self._arrays:
            self._arrays = {case.name: case.arrays() + (_bench.grad_output(case),)}
        return self._arrays[case.name]

    def store(self, case: ConvCase, mode: str, result) -> None:
        self._expected = {(case.name, mode): _as_tuple(result)}

    def expected(self, case: ConvCase, mode: str) -> tuple:
        """The reference's result, computed now (untimed) if its test did not run."""
        key = (case.name, mode)
        if key not in self._expected:
            self.store(case, mode, _bench.conv_call(case, "reference", mode, self.arrays(case))())
        return self._expected[key]


def _as_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, tuple) else (result,)


@pytest.fixture(scope="session")
def results() -> _Results:
    return _Results()
