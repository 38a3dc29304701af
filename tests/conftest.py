"""Shared harness of the convolution tests: tolerances, fixtures, C-path-vs-reference checks.

Every comparison of two computed results goes through `assert_close`, with the one tolerance
table below (DESIGN.md section 4: one table per dtype, one shared harness).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastnn

# The tolerance table (and why it is what it is) lives with the shared cases.
from fastnn._cases import TOLERANCES  # noqa: E402

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]


def assert_close(actual, expected, dtype=None, what="result", scale=None):
    """`actual` equals `expected` up to the dtype's tolerance; same shape and dtype.

    NaN must be NaN in both at the same positions. `scale` (default: max |expected|,
    NaN ignored) sets the absolute part of the tolerance.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dtype = np.dtype(dtype if dtype is not None else expected.dtype)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    tol = TOLERANCES[dtype]
    if scale is None:
        finite = np.abs(expected[np.isfinite(expected)])
        scale = finite.max() if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"],
                               atol=tol["atol"] * max(1.0, float(scale)), equal_nan=True,
                               err_msg=what)


@pytest.fixture(params=DTYPES, ids=DTYPE_IDS)
def dtype(request):
    """Both float dtypes the library supports."""
    return request.param


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: reproducible, different for every test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def ref():
    """The NumPy reference, `fastnn.reference`."""
    import fastnn.reference

    return fastnn.reference


@pytest.fixture
def restore_threads():
    """Put the thread count back after a test that changes it."""
    before = fastnn.get_num_threads()
    yield before
    fastnn.set_num_threads(before)


def conv_arrays(rng, x_shape, w_shape, dtype, bias=True):
    """Random (x, weight, bias) of a convolution, weights scaled by 1/sqrt(fan_in) so
    outputs are of order 1 (bias is None when not asked for)."""
    x = rng.standard_normal(x_shape).astype(dtype)
    fan_in = int(np.prod(w_shape[1:]))
    w = (rng.standard_normal(w_shape) / np.sqrt(fan_in)).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    return x, w, b


def conv_funcs(module, dims):
    """(forward, backward) of `module` (fastnn or fastnn.reference) for 1-d or 2-d."""
    if dims == 1:
        return module.conv1d, module.conv1d_backward
    return module.conv2d, module.conv2d_backward


def check_conv_against_reference(ref, rng, x, w, b, backward=True, **options):
    """Run forward (and backward with a random grad_output) on the C path and on the
    reference; assert they agree. Returns (y, (gx, gw, gb)) of the C path."""
    dims = x.ndim - 2
    fwd, bwd = conv_funcs(fastnn, dims)
    rfwd, rbwd = conv_funcs(ref, dims)
    y = fwd(x, w, b, **options)
    y_ref = rfwd(x, w, b, **options)
    assert_close(y, y_ref, x.dtype, what="forward")
    if not backward:
        return y, None
    g = rng.standard_normal(y.shape).astype(x.dtype)
    grads = bwd(g, x, w, **options)
    grads_ref = rbwd(g, x, w, **options)
    for name, got, want in zip(("grad_input", "grad_weight", "grad_bias"), grads, grads_ref):
        assert_close(got, want, x.dtype, what=name)
    assert grads[0].shape == x.shape and grads[1].shape == w.shape
    assert grads[2].shape == (w.shape[0],)
    return y, grads


def conv_output_size(size, k, stride=1, pad_before=0, pad_after=0, dilation=1):
    """PyTorch's output size, written out here independently of the library."""
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def same_padding(size, k, stride=1, dilation=1):
    """(before, after) of 'same' as API.md states it (PyTorch for stride 1, TensorFlow's rule
    for stride > 1: output ceil(size/stride), odd pixel after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def cpu_has(*flags):
    """Whether /proc/cpuinfo lists all these flags (False where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            have = set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return False
    return all(flag in have for flag in flags)


def assert_bad_input(module, func, args, kwargs, error, match):
    """module.func(*args, **kwargs) raises `error` with a message matching `match`."""
    with pytest.raises(error, match=match):
        getattr(module, func)(*args, **kwargs)


def assert_same_message(ref, func, args, kwargs, error):
    """The C path and the reference reject the same input with the same message."""
    with pytest.raises(error) as fast_error:
        getattr(fastnn, func)(*args, **kwargs)
    with pytest.raises(error) as ref_error:
        getattr(ref, func)(*args, **kwargs)
    assert str(fast_error.value) == str(ref_error.value)
