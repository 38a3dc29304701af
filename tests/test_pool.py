"""Pooling on the C path against the NumPy reference, in float32 and float64: a grid of
options, ties and NaN, edge shapes, gradients by finite differences, and the spatial pyramid."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn

from conftest import assert_close


def case(id, x_shape, **options):
    return pytest.param(x_shape, options, id=id)


# Max pooling: kernel, stride, padding (up to half the kernel), dilation, ceil_mode; the
# tiles around the 16-lane vectors of the C loops (widths 15-17, 33) and odd sizes.
MAX_CASES = [
    case("2d-k2", (2, 3, 8, 8), kernel_size=2),
    case("2d-k3-s2-p1", (2, 3, 11, 10), kernel_size=3, stride=2, padding=1),
    case("2d-k3-s1-p1", (2, 2, 9, 17), kernel_size=3, stride=1, padding=1),
    case("2d-k3-s2-ceil", (1, 3, 10, 15), kernel_size=3, stride=2, ceil_mode=True),
    case("2d-k3-s2-p1-ceil", (1, 3, 10, 16), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    case("2d-k(2,3)-s(1,2)-d(2,1)", (2, 2, 12, 33), kernel_size=(2, 3), stride=(1, 2),
         padding=(1, 1), dilation=(2, 1)),
    case("2d-k3-d2-p1", (1, 2, 13, 14), kernel_size=3, dilation=2, padding=1),
    case("2d-k(3,4)-d(1,3)-p(1,2)", (1, 2, 9, 20), kernel_size=(3, 4), stride=1,
         padding=(1, 2), dilation=(1, 3)),
    case("2d-k5-s3-p2-ceil", (2, 2, 17, 19), kernel_size=5, stride=3, padding=2, ceil_mode=True),
    case("2d-k4-s3-s>k-ceil", (1, 2, 11, 11), kernel_size=2, stride=3, ceil_mode=True),
    case("2d-kernel-is-input", (2, 3, 5, 7), kernel_size=(5, 7)),
    case("2d-1x1-input", (2, 3, 1, 1), kernel_size=1),
    case("2d-1x1-input-k2-p1", (1, 2, 1, 1), kernel_size=2, padding=1),
    case("2d-k1-s2", (1, 2, 7, 9), kernel_size=1, stride=2),
    case("2d-one-plane-many-rows", (1, 1, 70, 9), kernel_size=3, stride=1, padding=1),
    case("2d-wide-kernel", (1, 1, 3, 80), kernel_size=(1, 40), stride=(1, 7), padding=(0, 20)),
    case("1d-k3-s2-p1", (2, 3, 21), kernel_size=3, stride=2, padding=1),
    case("1d-k2", (2, 3, 16), kernel_size=2),
    case("1d-k4-d3-p2-ceil", (2, 2, 31), kernel_size=4, stride=3, padding=2, dilation=3,
         ceil_mode=True),
    case("1d-kernel-is-input", (1, 2, 9), kernel_size=9),
    case("1d-L1", (1, 2, 1), kernel_size=1),
]

AVG_CASES = [
    # 2x2 stride 2 without padding has its own loop in C (odd sizes: a row and a column
    # that no window covers get no gradient)
    case("2d-k2", (2, 3, 8, 8), kernel_size=2),
    case("2d-k2-odd", (2, 3, 7, 33), kernel_size=2),
    case("2d-k2-divisor", (1, 2, 6, 6), kernel_size=2, divisor_override=3),
    case("2d-k2-ceil-odd-nopad", (1, 2, 7, 9), kernel_size=2, ceil_mode=True,
         count_include_pad=False),
    case("2d-k3-s2-p1", (2, 3, 11, 10), kernel_size=3, stride=2, padding=1),
    case("2d-k3-s2-p1-nopad", (2, 3, 11, 10), kernel_size=3, stride=2, padding=1,
         count_include_pad=False),
    case("2d-k3-s2-p1-ceil", (1, 3, 10, 16), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    case("2d-k3-s2-p1-ceil-nopad", (1, 3, 10, 16), kernel_size=3, stride=2, padding=1,
         ceil_mode=True, count_include_pad=False),
    case("2d-k2-s2-ceil-odd", (1, 2, 5, 7), kernel_size=2, stride=2, ceil_mode=True),
    case("2d-k(2,3)-s(2,1)-p(1,1)", (2, 2, 9, 17), kernel_size=(2, 3), stride=(2, 1),
         padding=(1, 1)),
    case("2d-divisor", (2, 2, 8, 9), kernel_size=3, stride=2, padding=1, divisor_override=7),
    case("2d-divisor-ceil", (1, 2, 8, 9), kernel_size=3, stride=2, ceil_mode=True,
         divisor_override=2),
    case("2d-kernel-is-input", (2, 3, 5, 7), kernel_size=(5, 7)),
    case("2d-1x1-input", (2, 3, 1, 1), kernel_size=1),
    case("2d-1x1-input-k2-p1", (1, 2, 1, 1), kernel_size=2, padding=1, count_include_pad=False),
    case("2d-k5-s3-p2-ceil", (2, 2, 17, 19), kernel_size=5, stride=3, padding=2, ceil_mode=True),
    case("2d-one-plane-many-rows", (1, 1, 70, 9), kernel_size=3, stride=1, padding=1),
    case("1d-k3-s2-p1", (2, 3, 21), kernel_size=3, stride=2, padding=1),
    case("1d-k4-s3-p2-ceil-nopad", (2, 2, 31), kernel_size=4, stride=3, padding=2,
         ceil_mode=True, count_include_pad=False),
    case("1d-divisor", (2, 2, 12), kernel_size=3, divisor_override=4),
    case("1d-L1", (1, 2, 1), kernel_size=1),
]

ADAPTIVE_CASES = [
    case("2d-to-1", (2, 3, 7, 7), output_size=1),
    case("2d-divisible", (2, 3, 8, 12), output_size=(4, 3)),
    case("2d-not-divisible", (2, 3, 13, 10), output_size=(4, 3)),
    case("2d-larger-than-input", (1, 2, 3, 5), output_size=(7, 11)),
    case("2d-None-keeps-size", (1, 2, 6, 5), output_size=(None, 2)),
    case("2d-1x1-input", (2, 2, 1, 1), output_size=(3, 2)),
    case("2d-one-plane-many-rows", (1, 1, 90, 7), output_size=(40, 3)),
    case("1d-not-divisible", (2, 3, 13), output_size=5),
    case("1d-larger-than-input", (2, 2, 4), output_size=9),
    case("1d-to-1", (2, 2, 7), output_size=1),
    # 16 planes and more: adaptive max goes through tiles of 16 planes (and the rest alone)
    case("2d-tiles-34-planes", (2, 17, 9, 11), output_size=(4, 3)),
    case("2d-tiles-larger-than-input", (1, 16, 3, 4), output_size=(5, 7)),
    case("1d-tiles-21-planes", (3, 7, 20), output_size=6),
    # 16 planes, but planes above 4096 pixels: one at a time again
    case("2d-16-large-planes", (1, 16, 65, 70), output_size=(5, 6)),
]


def _data(rng, shape, dtype, kind="normal"):
    """Random data; 'ties' draws small integers so that windows hold equal maxima."""
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _mod(dims, name):
    return name if dims == 2 else name.replace("2d", "1d")


def _pair(module, dims, name):
    return getattr(module, _mod(dims, name))


@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("x_shape,options", MAX_CASES)
def test_max_pool_matches_reference(ref, rng, dtype, kind, x_shape, options):
    dims = len(x_shape) - 2
    x = _data(rng, x_shape, dtype, kind)
    y, idx = _pair(fastnn, dims, "max_pool2d")(x, return_indices=True, **options)
    y_ref, idx_ref = _pair(ref, dims, "max_pool2d")(x, return_indices=True, **options)
    assert_close(y, y_ref, dtype, what="output")
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_ref, err_msg="indices")
    # the maxima are the input values at the indices
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    np.testing.assert_array_equal(
        np.take_along_axis(planes, idx.reshape(idx.shape[0], idx.shape[1], -1), -1),
        y.reshape(y.shape[0], y.shape[1], -1))
    # without indices: the same values
    np.testing.assert_array_equal(_pair(fastnn, dims, "max_pool2d")(x, **options), y)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = _pair(fastnn, dims, "max_pool2d_backward")(g, idx, x.shape)
    assert_close(gx, _pair(ref, dims, "max_pool2d_backward")(g, idx_ref, x.shape), dtype,
                 what="grad_input")
    # every output's gradient lands somewhere: the total is conserved
    assert np.isclose(gx.sum(), g.sum(), rtol=1e-4)


@pytest.mark.parametrize("x_shape,options", AVG_CASES)
def test_avg_pool_matches_reference(ref, rng, dtype, x_shape, options):
    dims = len(x_shape) - 2
    x = _data(rng, x_shape, dtype)
    y = _pair(fastnn, dims, "avg_pool2d")(x, **options)
    assert_close(y, _pair(ref, dims, "avg_pool2d")(x, **options), dtype, what="output")
    g = rng.standard_normal(y.shape).astype(dtype)
    backward = _pair(fastnn, dims, "avg_pool2d_backward")
    assert_close(backward(g, x.shape, **options),
                 _pair(ref, dims, "avg_pool2d_backward")(g, x.shape, **options), dtype,
                 what="grad_input")


def test_avg_pool_of_ones_shows_the_divisors(dtype):
    """On ones, average pooling returns (pixels inside the input) / divisor: the divisor
    rule written out by hand for a 5x5 input, kernel 3, stride 2, padding 1, ceil_mode
    (output 3x3; the last window covers rows 3..5, of which row 5 is the bottom padding)."""
    x = np.ones((1, 1, 5, 5), dtype)
    include = fastnn.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    # window rows: [-1, 1] -> 2 inside of 3; [1, 3] -> 3 of 3; [3, 5] -> 2 of 3 (5 is padding)
    inside = np.array([2, 3, 2])
    assert_close(include[0, 0], np.outer(inside, inside) / 9.0, dtype)
    exclude = fastnn.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    assert_close(exclude, np.ones_like(exclude), dtype)
    # kernel 2, stride 2, no padding, ceil_mode on 5: the last window hangs over the edge
    # where there is no padding to count, so it divides by the one pixel it has
    hang = fastnn.avg_pool2d(x, 2, 2, ceil_mode=True)
    assert hang.shape == (1, 1, 3, 3)
    assert_close(hang, np.ones_like(hang), dtype)
    assert_close(fastnn.avg_pool2d(x, 2, divisor_override=1), np.full((1, 1, 2, 2), 4, dtype),
                 dtype)


@pytest.mark.parametrize("x_shape,options", ADAPTIVE_CASES)
def test_adaptive_pool_matches_reference(ref, rng, dtype, x_shape, options):
    dims = len(x_shape) - 2
    x = _data(rng, x_shape, dtype)
    out = options["output_size"]
    y = _pair(fastnn, dims, "adaptive_avg_pool2d")(x, out)
    assert_close(y, _pair(ref, dims, "adaptive_avg_pool2d")(x, out), dtype, what="avg")
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(_pair(fastnn, dims, "adaptive_avg_pool2d_backward")(g, x.shape),
                 _pair(ref, dims, "adaptive_avg_pool2d_backward")(g, x.shape), dtype,
                 what="avg backward")
    for kind in ("normal", "ties"):
        x = _data(rng, x_shape, dtype, kind)
        m, idx = _pair(fastnn, dims, "adaptive_max_pool2d")(x, out, return_indices=True)
        m_ref, idx_ref = _pair(ref, dims, "adaptive_max_pool2d")(x, out, return_indices=True)
        assert_close(m, m_ref, dtype, what="max")
        np.testing.assert_array_equal(idx, idx_ref)
        np.testing.assert_array_equal(_pair(fastnn, dims, "adaptive_max_pool2d")(x, out), m)
        assert_close(_pair(fastnn, dims, "adaptive_max_pool2d_backward")(g, idx, x.shape),
                     _pair(ref, dims, "adaptive_max_pool2d_backward")(g, idx_ref, x.shape),
                     dtype, what="max backward")


def test_adaptive_bins_by_hand(dtype):
    """Bins of 5 into 3: [0, 2), [1, 4), [3, 5) (floor(i*5/3) to ceil((i+1)*5/3))."""
    x = np.arange(5, dtype=dtype).reshape(1, 1, 5)
    assert_close(fastnn.adaptive_avg_pool1d(x, 3)[0, 0], np.array([0.5, 2.0, 3.5], dtype), dtype)
    m, idx = fastnn.adaptive_max_pool1d(x, 3, return_indices=True)
    np.testing.assert_array_equal(m[0, 0], np.array([1, 3, 4], dtype))
    np.testing.assert_array_equal(idx[0, 0], [1, 3, 4])
    # more outputs than inputs: bins of 2 into 3 are [0, 1), [0, 2), [1, 2)
    assert_close(fastnn.adaptive_avg_pool1d(x[:, :, :2], 3)[0, 0],
                 np.array([0.0, 0.5, 1.0], dtype), dtype)


def test_global_pools(ref, rng, dtype):
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    assert_close(fastnn.global_avg_pool2d(x), x.mean(axis=(2, 3)), dtype)
    np.testing.assert_array_equal(fastnn.global_max_pool2d(x), x.max(axis=(2, 3)))
    assert_close(ref.global_avg_pool2d(x), x.mean(axis=(2, 3)), dtype)
    np.testing.assert_array_equal(ref.global_max_pool2d(x), x.max(axis=(2, 3)))
    assert fastnn.global_avg_pool2d(x).shape == (3, 4)


# --------------------------------------------------------------------------- NaN, ties, infinities


def test_nan_propagates_to_the_max_as_pytorch(ref, dtype):
    x = np.array([[[[1, np.nan, 3, np.nan], [0, 5, 2, 1]]]], dtype)
    for module in (fastnn, ref):
        y, idx = module.max_pool2d(x, 2, return_indices=True)
        assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[0, 0, 0, 1])
        # the NaN's own position: the last NaN of the window
        np.testing.assert_array_equal(idx[0, 0, 0], [1, 3])
        y, idx = module.adaptive_max_pool2d(x, 1, return_indices=True)
        assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 3
        assert np.isnan(module.global_max_pool2d(x)[0, 0])
        assert np.isnan(module.avg_pool2d(x, 2)).all()
        assert np.isnan(module.spatial_pyramid_pool(x, (1,))).all()


def test_ties_keep_the_first_maximum_in_row_major_order(ref, dtype):
    x = np.array([[[[1, 2], [2, 1]]]], dtype)
    for module in (fastnn, ref):
        _, idx = module.max_pool2d(x, 2, return_indices=True)
        assert idx[0, 0, 0, 0] == 1  # (0, 1) comes before (1, 0)
        _, idx = module.adaptive_max_pool2d(x, 1, return_indices=True)
        assert idx[0, 0, 0, 0] == 1


def test_window_of_minus_infinity_reports_its_first_pixel(ref, dtype):
    x = np.full((1, 1, 2, 2), -np.inf, dtype)
    for module in (fastnn, ref):
        y, idx = module.max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
        assert np.all(y == -np.inf)
        np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])


def test_overlapping_windows_add_gradients_on_a_shared_maximum(ref, dtype):
    """A 3x3 window with stride 1 over a plane with one big value: every window
    containing it sends its gradient there."""
    x = np.zeros((1, 1, 4, 4), dtype)
    x[0, 0, 1, 2] = 9
    for module in (fastnn, ref):
        y, idx = module.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
        gx = module.max_pool2d_backward(np.ones_like(y), idx, x.shape)
        assert gx[0, 0, 1, 2] == 9  # the 3x3 neighbourhood of (1, 2) in the 4x4 output
        assert gx.sum() == y.size


# --------------------------------------------------------------------------- gradients


def _numeric_grad(f, x, g, eps=1e-6):
    """d sum(f(x) * g) / dx by central differences (float64)."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = np.sum(f(x) * g)
        flat[i] = saved - eps
        minus = np.sum(f(x) * g)
        flat[i] = saved
        out[i] = (plus - minus) / (2 * eps)
    return grad


FD_CASES = [
    ("avg_pool2d", (1, 2, 5, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", (1, 2, 5, 6), dict(kernel_size=2, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", (1, 1, 5, 5), dict(kernel_size=3, stride=1, divisor_override=5)),
    ("avg_pool1d", (2, 1, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool2d", (1, 2, 5, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max_pool2d", (1, 1, 6, 7), dict(kernel_size=2, stride=1, dilation=2)),
    ("max_pool1d", (2, 1, 11), dict(kernel_size=3, stride=2, padding=1)),
    ("adaptive_avg_pool2d", (1, 2, 5, 7), dict(output_size=(3, 4))),
    ("adaptive_max_pool2d", (1, 2, 5, 7), dict(output_size=(3, 4))),
    ("adaptive_avg_pool1d", (2, 1, 7), dict(output_size=4)),
    ("adaptive_max_pool1d", (2, 1, 7), dict(output_size=9)),
]


def _backward_of(name, x, y, g, options, extra):
    if name.startswith("max") or name.startswith("adaptive_max"):
        return getattr(fastnn, name + "_backward")(g, extra, x.shape)
    if name.startswith("adaptive_avg"):
        return getattr(fastnn, name + "_backward")(g, x.shape)
    return getattr(fastnn, name + "_backward")(g, x.shape, **options)


@pytest.mark.parametrize("name,x_shape,options", FD_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(FD_CASES)])
def test_backward_matches_finite_differences(rng, name, x_shape, options):
    """float64; max pooling on distinct values (normal draws are 1e-3 apart or more,
    far beyond eps), so no tie switches inside the difference."""
    x = rng.standard_normal(x_shape)
    forward = getattr(fastnn, name)
    extra = None
    if "max" in name:
        y, extra = forward(x, return_indices=True, **options)
    else:
        y = forward(x, **options)
    g = rng.standard_normal(y.shape)
    analytic = _backward_of(name, x, y, g, options, extra)
    numeric = _numeric_grad(lambda a: forward(a, **options), x.copy(), g)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_backward_matches_finite_differences(rng, mode):
    x = rng.standard_normal((1, 2, 5, 3))
    g = rng.standard_normal((1, 2 * (1 + 4 + 9)))
    analytic = fastnn.spatial_pyramid_pool_backward(g, x, (1, 2, 3), mode)
    numeric = _numeric_grad(lambda a: fastnn.spatial_pyramid_pool(a, (1, 2, 3), mode), x.copy(), g)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- spatial pyramid


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("levels", [(1, 2, 4), (3,), (4, 1), (1, 2, 3, 6)])
@pytest.mark.parametrize("channels", [3, 17], ids=["alone", "tiles"])
def test_spp_is_the_concatenation_of_adaptive_pools(ref, rng, dtype, mode, levels, channels):
    """3 channels: planes one at a time; 2 x 17: two tiles of 16 planes and two alone."""
    x = rng.integers(-3, 4, (2, channels, 13, 9)).astype(dtype)  # ties
    x[1, 2, 4, 4] = np.nan
    pool = fastnn.adaptive_max_pool2d if mode == "max" else fastnn.adaptive_avg_pool2d
    expected = np.concatenate([pool(x, l).reshape(2, -1) for l in levels], axis=1)
    y = fastnn.spatial_pyramid_pool(x, levels, mode)
    assert y.shape == (2, channels * sum(l * l for l in levels))
    np.testing.assert_array_equal(y, expected)
    assert_close(y, ref.spatial_pyramid_pool(x, levels, mode), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(fastnn.spatial_pyramid_pool_backward(g, x, levels, mode),
                 ref.spatial_pyramid_pool_backward(g, x, levels, mode), dtype,
                 what="grad_input")


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (3, 2), (4, 4), (13, 13), (31, 17)])
def test_spp_gives_the_same_width_for_any_input_size(ref, rng, dtype, hw):
    x = rng.standard_normal((2, 5) + hw).astype(dtype)
    for mode in ("max", "avg"):
        y = fastnn.spatial_pyramid_pool(x, mode=mode)
        assert y.shape == (2, 5 * 21)
        assert_close(y, ref.spatial_pyramid_pool(x, mode=mode), dtype)
    if hw == (1, 1):
        # every bin of every level is the one pixel (channel-major within a level)
        expected = np.concatenate([np.repeat(x.reshape(2, 5), l * l, axis=1)
                                   for l in (1, 2, 4)], axis=1)
        for mode in ("max", "avg"):
            np.testing.assert_array_equal(fastnn.spatial_pyramid_pool(x, mode=mode), expected)


# --------------------------------------------------------------------------- arrays


def test_non_contiguous_inputs_and_inputs_unchanged(rng, dtype):
    base = rng.standard_normal((3, 4, 12, 10)).astype(dtype)
    x = base.transpose(1, 0, 2, 3)[:, :, ::2, 1:]  # (4, 3, 6, 9), strided
    assert not x.flags.c_contiguous
    before = x.copy()
    xc = np.ascontiguousarray(x)
    calls = [
        lambda a: fastnn.max_pool2d(a, 3, 2, 1, return_indices=True),
        lambda a: fastnn.avg_pool2d(a, 2, ceil_mode=True),
        lambda a: fastnn.adaptive_avg_pool2d(a, (4, 5)),
        lambda a: fastnn.adaptive_max_pool2d(a, 2, return_indices=True),
        lambda a: fastnn.spatial_pyramid_pool(a),
        lambda a: fastnn.spatial_pyramid_pool_backward(np.ones((4, 3 * 21), dtype), a),
        lambda a: fastnn.max_pool1d(a[:, :, 0], 2),
    ]
    for call in calls:
        got, want = call(x), call(xc)
        for a, b in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, before)
    # backward arguments, strided too
    y, idx = fastnn.max_pool2d(xc, 2, return_indices=True)
    g = rng.standard_normal(y.shape[:2] + (y.shape[2] * 2, y.shape[3])).astype(dtype)[:, :, ::2]
    g_before, idx_before = g.copy(), idx.copy()
    np.testing.assert_array_equal(fastnn.max_pool2d_backward(g, idx, xc.shape),
                                  fastnn.max_pool2d_backward(np.ascontiguousarray(g), idx,
                                                             xc.shape))
    np.testing.assert_array_equal(fastnn.avg_pool2d_backward(g, xc.shape, 2),
                                  fastnn.avg_pool2d_backward(np.ascontiguousarray(g), xc.shape,
                                                             2))
    np.testing.assert_array_equal(g, g_before)
    np.testing.assert_array_equal(idx, idx_before)


def test_result_dtype_and_big_endian_input(dtype):
    x = np.arange(2 * 3 * 4 * 4, dtype=dtype).reshape(2, 3, 4, 4)
    swapped = x.astype(x.dtype.newbyteorder(">"))
    for f in (lambda a: fastnn.max_pool2d(a, 2), lambda a: fastnn.avg_pool2d(a, 2),
              lambda a: fastnn.adaptive_avg_pool2d(a, 3), fastnn.spatial_pyramid_pool):
        assert f(x).dtype == dtype
        np.testing.assert_array_equal(f(swapped), f(x))
