"""Two independent kernel calls at once, the threads shared between them.

The two directions of a bidirectional recurrence are independent sequences. Run
one after the other, each uses every thread, and the threads of one sequence
meet at every step (split by hidden units) or each stream all of W_hh for a
share of the rows (split by batch rows). Run side by side, half the threads
each, every sequence keeps its whole step to itself: a 2-layer bidirectional
LSTM (T=50, N=32, I=128, H=256) on 2 threads, inference 1.12x faster (training
the same: its all-steps GEMMs already shared the threads well). Each call's
results do not depend on its thread count, so neither do the results here.
"""
from __future__ import annotations

import threading
from typing import Callable, Tuple, TypeVar

from fastnn import _kernels

A = TypeVar("A")
B = TypeVar("B")


def side_by_side(first: Callable[[], A], second: Callable[[], B]) -> Tuple[A, B]:
    """``(first(), second())``, run at the same time when there are threads to share.

    With n >= 2 threads (`fastnn.get_num_threads`), `second` runs in a new Python
    thread whose kernels use n - n // 2 threads, while this thread's use n // 2
    (the kernels release the GIL); with one thread, one after the other. A fresh
    thread per call, not a pool: it costs tens of microseconds against the
    milliseconds of a sequence, and nothing outlives the call (a pool's threads
    would not survive a fork).

    Parameters
    ----------
    first, second : callable
        Independent calls, with no arguments.

    Returns
    -------
    tuple
        Their results. If either raises, the exception propagates (the first
        call's when both do), after both have finished.
    """
    n = _kernels.get_num_threads()
    if n < 2:
        return first(), second()
    out = {}

    def run_second():
        _kernels.set_own_threads(n - n // 2)
        try:
            out["value"] = second()
        except BaseException as error:  # re-raised in the calling thread
            out["error"] = error

    worker = threading.Thread(target=run_second, name="fastnn-side-by-side")
    worker.start()
    _kernels.set_own_threads(n // 2)
    try:
        result = first()
    finally:
        _kernels.set_own_threads(n)
        worker.join()
    if "error" in out:
        raise out["error"]
    return result, out["value"]
