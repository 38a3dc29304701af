"""fastnn._concurrent.side_by_side: two calls at once, the threads shared between them
(the directions of a bidirectional recurrence)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fastnn
from fastnn._concurrent import side_by_side


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_results_in_order_and_threads_shared(restore_threads, n):
    fastnn.set_num_threads(n)
    seen = {}

    def call(name):
        seen[name] = (fastnn.get_num_threads(), threading.current_thread())
        return name

    assert side_by_side(lambda: call("first"), lambda: call("second")) == ("first", "second")
    assert fastnn.get_num_threads() == n
    if n == 1:
        assert seen["first"][0] == seen["second"][0] == 1
        assert seen["second"][1] is threading.current_thread()
    else:
        assert (seen["first"][0], seen["second"][0]) == (n // 2, n - n // 2)
        assert seen["second"][1] is not threading.current_thread()


@pytest.mark.parametrize("failing", ["first", "second", "both"])
def test_errors_propagate_after_both_finish(restore_threads, failing):
    fastnn.set_num_threads(2)
    done = []

    def call(name):
        done.append(name)
        if failing in (name, "both"):
            raise RuntimeError(name)
        return name

    with pytest.raises(RuntimeError, match="first" if failing == "both" else failing):
        side_by_side(lambda: call("first"), lambda: call("second"))
    assert sorted(done) == ["first", "second"]
    assert fastnn.get_num_threads() == 2


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_bidirectional_layers_bit_identical_across_thread_counts(restore_threads, mode):
    """Both directions side by side on 2 or 3 threads, in turn on 1: the same bits."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 5, 7)).astype(np.float32)
    g = rng.standard_normal((9, 5, 2 * 11)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        fastnn.set_num_threads(n)
        layer = getattr(fastnn.nn, mode)(7, 11, num_layers=2, bidirectional=True,
                                         rng=np.random.default_rng(1))
        y = layer.forward(x)[0]
        dx = layer.backward(g)
        grads = [p.grad.copy() for p in layer.parameters()]
        results.append((y, dx, grads))
    for y, dx, grads in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])
        for got, want in zip(grads, results[0][2]):
            np.testing.assert_array_equal(got, want)
