"""im2col / col2im on the C path against the NumPy reference, and their own identities."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn

from conftest import assert_close


def case(id, x_shape, kernel_size, **options):
    return pytest.param(x_shape, kernel_size, options, id=id)


UNFOLD_CASES = [
    case("k1", (2, 3, 5, 6), 1),
    case("k3", (2, 3, 7, 8), 3),
    case("k3-p1", (2, 3, 7, 8), 3, padding=1),
    case("k(2,3)-p(1,0)", (2, 3, 7, 8), (2, 3), padding=(1, 0)),
    case("k3-s2", (2, 3, 9, 8), 3, stride=2),
    case("k3-s(1,2)-p1", (2, 3, 9, 8), 3, stride=(1, 2), padding=1),
    case("k3-s(3,1)", (2, 3, 10, 8), 3, stride=(3, 1)),
    case("k3-d2", (2, 3, 9, 10), 3, dilation=2),
    case("k3-d(1,2)-p(2,1)", (2, 3, 9, 10), 3, dilation=(1, 2), padding=(2, 1)),
    case("k3-d2-s2-p2", (2, 3, 11, 10), 3, dilation=2, stride=2, padding=2),
    case("k(5,3)-s(2,3)-p(2,1)", (1, 2, 13, 14), (5, 3), stride=(2, 3), padding=(2, 1)),
    case("k7-s2-p3", (1, 3, 16, 15), 7, stride=2, padding=3),
    case("k1-s2", (2, 3, 7, 8), 1, stride=2),
    case("k2-s3", (2, 3, 11, 10), 2, stride=3),
    case("input-1x1-k1", (2, 3, 1, 1), 1),
    case("input-1x1-k3-p1", (2, 3, 1, 1), 3, padding=1),
    case("kernel==padded-input", (2, 3, 5, 6), (7, 8), padding=1),
    case("pad>kernel", (1, 2, 3, 4), 2, padding=3),
    case("w15-s1", (2, 2, 3, 15), 3, padding=1),
    case("w16-s2", (2, 2, 3, 16), 3, stride=2, padding=1),
    case("w17-s2", (2, 2, 3, 17), (1, 3), stride=(1, 2), padding=(0, 1)),
    case("w33-d2", (2, 2, 3, 33), 3, dilation=2, padding=2),
    # stride-2 rows of 16, 17, 31, 32 and 33 outputs, around the 16-lane vectors of the
    # AVX-512 stride-2 col2im; odd widths end each row (and the array) on an output
    case("ow16-s2", (1, 2, 3, 31), 1, stride=2),
    case("ow17-s2", (1, 2, 3, 34), 1, stride=2),
    case("ow31-s2", (1, 2, 3, 61), 1, stride=2),
    case("ow32-s2-p1", (1, 2, 4, 64), 3, stride=2, padding=1),
    case("ow33-s2", (1, 2, 3, 66), (1, 2), stride=2),
    case("odd-97x101", (1, 2, 97, 101), 3, stride=(2, 3), padding=1),
    case("many-planes", (4, 17, 9, 8), 3, padding=1),
]


@pytest.mark.parametrize("x_shape,kernel_size,options", UNFOLD_CASES)
def test_im2col_matches_reference(ref, rng, dtype, x_shape, kernel_size, options):
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = fastnn.im2col(x, kernel_size, **options)
    want = ref.im2col(x, kernel_size, **options)
    # a gather: every value is copied or is a padding zero, so exactly equal
    assert cols.dtype == np.dtype(dtype) and cols.shape == want.shape
    np.testing.assert_array_equal(cols, want)


@pytest.mark.parametrize("x_shape,kernel_size,options", UNFOLD_CASES)
def test_col2im_matches_reference(ref, rng, dtype, x_shape, kernel_size, options):
    length = ref.im2col(np.zeros(x_shape), kernel_size, **options).shape[2]
    kh, kw = (kernel_size,) * 2 if isinstance(kernel_size, int) else kernel_size
    cols = rng.standard_normal((x_shape[0], x_shape[1] * kh * kw, length)).astype(dtype)
    got = fastnn.col2im(cols, x_shape[2:], kernel_size, **options)
    assert_close(got, ref.col2im(cols, x_shape[2:], kernel_size, **options), dtype)
    assert got.shape == x_shape


@pytest.mark.parametrize("impl", ["fastnn", "reference"])
@pytest.mark.parametrize("x_shape,kernel_size,options", UNFOLD_CASES)
def test_col2im_is_adjoint_of_im2col(ref, rng, impl, x_shape, kernel_size, options):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    module = fastnn if impl == "fastnn" else ref
    x = rng.standard_normal(x_shape)
    cols = module.im2col(x, kernel_size, **options)
    c = rng.standard_normal(cols.shape)
    left = np.vdot(cols, c)
    right = np.vdot(x, module.col2im(c, x_shape[2:], kernel_size, **options))
    assert abs(left - right) <= 1e-12 * max(1.0, np.abs(cols).sum() + np.abs(c).sum())


def test_im2col_layout_by_hand(dtype):
    """Row (c*kH + i)*kW + j holds tap (i, j) of channel c, columns in row-major output
    order, padding taps are 0 (torch.nn.functional.unfold's layout)."""
    x = np.arange(1, 2 * 3 * 3 + 1, dtype=dtype).reshape(1, 2, 3, 3)
    cols = fastnn.im2col(x, (2, 2), padding=(0, 1), stride=(1, 2))
    # output 2 rows x 2 columns; windows start at input columns -1 and 1
    want = np.array([[0, 2, 0, 5], [1, 3, 4, 6], [0, 5, 0, 8], [4, 6, 7, 9]], dtype=dtype)
    want = np.concatenate([want, want + 9 * (want > 0)])[None]
    np.testing.assert_array_equal(cols, want)


@pytest.mark.parametrize("x_shape,kernel", [((2, 3, 6, 8), (2, 2)), ((1, 4, 9, 6), (3, 2)),
                                            ((3, 2, 5, 5), (1, 1))],
                         ids=["2x2", "3x2", "1x1"])
def test_col2im_inverts_im2col_for_tiling_windows(rng, dtype, x_shape, kernel):
    """With stride == kernel and no padding every pixel is in exactly one window."""
    x = rng.standard_normal(x_shape).astype(dtype)
    back = fastnn.col2im(fastnn.im2col(x, kernel, stride=kernel), x_shape[2:], kernel,
                         stride=kernel)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("options", [dict(), dict(padding=1), dict(stride=2, padding=(1, 2)),
                                     dict(dilation=(2, 1), padding=2)],
                         ids=["plain", "p1", "s2-p(1,2)", "d(2,1)-p2"])
def test_col2im_of_ones_counts_windows(dtype, options):
    """col2im(ones)[h, w] = (windows covering row h) * (windows covering column w)."""
    h, w, k = 7, 9, 3
    length = fastnn.im2col(np.zeros((1, 1, h, w), dtype), k, **options).shape[2]
    counts = fastnn.col2im(np.ones((1, k * k, length), dtype), (h, w), k, **options)[0, 0]

    def per_axis(size, axis):
        s = np.atleast_1d(options.get("stride", 1))
        p = np.atleast_1d(options.get("padding", 0))
        d = np.atleast_1d(options.get("dilation", 1))
        s, p, d = (v[axis] if v.size > 1 else v[0] for v in (s, p, d))
        out = (size + 2 * p - d * (k - 1) - 1) // s + 1
        n = np.zeros(size)
        for o in range(out):
            for t in range(k):
                pos = o * s - p + t * d
                if 0 <= pos < size:
                    n[pos] += 1
        return n

    np.testing.assert_array_equal(counts, np.outer(per_axis(h, 0), per_axis(w, 1)))


def test_im2col_col2im_non_contiguous_and_unmodified(rng, dtype):
    x = rng.standard_normal((2, 3, 9, 7)).astype(dtype).transpose(0, 1, 3, 2)  # (2, 3, 7, 9)
    x_saved = x.copy()
    cols = fastnn.im2col(x, 3, padding=1, stride=2)
    np.testing.assert_array_equal(cols, fastnn.im2col(np.ascontiguousarray(x), 3, padding=1,
                                                      stride=2))
    np.testing.assert_array_equal(x, x_saved)
    c = rng.standard_normal((cols.shape[0], cols.shape[2], cols.shape[1])).astype(dtype)
    c = c.transpose(0, 2, 1)
    c_saved = c.copy()
    back = fastnn.col2im(c, (7, 9), 3, padding=1, stride=2)
    np.testing.assert_array_equal(back, fastnn.col2im(np.ascontiguousarray(c), (7, 9), 3,
                                                      padding=1, stride=2))
    np.testing.assert_array_equal(c, c_saved)


def test_im2col_nan_stays_in_its_windows(rng, dtype):
    x = rng.standard_normal((1, 2, 6, 6)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    cols = fastnn.im2col(x, 3, padding=1)
    # the pixel appears once per tap whose window covers it: 9 windows for an interior pixel
    assert np.isnan(cols).sum() == 9
    assert not np.isnan(cols[0, :9]).any()
