"""Large outputs from the block cache (fastnn._memory.empty, csrc/runtime.c): ordinary
writable NumPy arrays, memory reused once freed, never shared while in use, and never a
block much larger than asked for."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fastnn
from fastnn import _kernels
from fastnn._memory import _CACHED_BYTES, empty

MB = 1 << 20


@pytest.mark.parametrize("shape,dtype", [((4, 3, 1024, 128), np.float32), ((3 * MB,), np.float64),
                                         ((7, 1 << 15), np.int64), (5, np.float32)])
def test_an_ordinary_array(shape, dtype):
    a = empty(shape, dtype)
    assert a.shape == ((shape,) if isinstance(shape, int) else shape) and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    assert a.nbytes < _CACHED_BYTES or a.ctypes.data % 64 == 0
    a[...] = 3
    assert (a == 3).all() and a.sum() == 3 * a.size


def test_freed_memory_is_reused_and_live_memory_is_not():
    _kernels.release_cached_blocks()  # what other tests left there would fit too
    shape = (2 * _CACHED_BYTES // 4 + 5,)
    a = empty(shape, np.float32)
    where = a.ctypes.data
    b = empty(shape, np.float32)
    assert b.ctypes.data != where  # a is still alive
    del a
    c = empty(shape, np.float32)
    assert c.ctypes.data == where  # a's block, from the cache
    views = [c[1:], c.reshape(1, -1)]
    del c
    d = empty(shape, np.float32)
    assert d.ctypes.data != where  # c's views hold its block
    del views
    assert empty(shape, np.float32).ctypes.data == where
    del b, d


def test_a_small_request_does_not_take_a_large_block():
    _kernels.release_cached_blocks()
    big = empty((64 * MB,), np.uint8)
    where = big.ctypes.data
    del big
    small = empty((8 * MB,), np.uint8)  # both on huge pages, as NumPy does from 4 MB
    assert small.ctypes.data != where


def test_small_arrays_are_numpys():
    a = empty((16,), np.float32)
    assert a.flags.owndata


def test_block_rejects_bad_sizes():
    with pytest.raises(ValueError, match="nbytes"):
        _kernels.Block(0)
    with pytest.raises(MemoryError):
        _kernels.Block(1 << 62)


def test_outputs_stay_correct_across_reuse(rng):
    """Convolutions whose outputs come from blocks of earlier, freed outputs."""
    x = rng.standard_normal((2, 8, 128, 128)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    first = fastnn.conv2d(x, w, padding=1).copy()
    for _ in range(3):
        y = fastnn.conv2d(x, w, padding=1)
        assert y.nbytes >= _CACHED_BYTES
        np.testing.assert_array_equal(y, first)
        y[...] = np.nan  # what the next call's block holds before the kernel writes it


def test_concurrent_allocations_never_share_a_block(rng):
    """Outputs taken and freed by Python threads while kernels in others (without the
    GIL) take and free their workspaces from the same cache."""
    errors = []
    x = rng.standard_normal((1, 16, 96, 96)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    want = fastnn.conv2d(x, w, padding=1)

    def worker(seed):
        for i in range(40):
            a = empty((MB // 4 + 64 * (seed + i % 3),), np.float32)
            a[...] = seed
            y = fastnn.conv2d(x, w, padding=1)
            if not (a == seed).all() or not np.array_equal(y, want):
                errors.append(seed)
            del a, y

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_forked_child_allocates_while_parent_threads_do():
    """fork() waits for the cache's lock (pthread_atfork), so a child forked while
    other threads take and release blocks finds the cache usable."""
    import os
    import time

    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            a = empty((MB // 2 + 64,), np.float32)
            a[0] = 1
            del a

    threads = [threading.Thread(target=churn) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            pid = os.fork()
            if pid == 0:  # the child: allocate, compute, leave at once
                ok = 1
                try:
                    b = empty((3 * MB,), np.float32)
                    b[...] = 2
                    ok = 0 if b.sum() == 6 * MB else 1
                finally:
                    os._exit(ok)
            deadline = time.monotonic() + 30
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                assert time.monotonic() < deadline, "forked child hung"
                time.sleep(0.01)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
