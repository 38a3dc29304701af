"""The bad-input table: every entry must raise TypeError/ValueError with a message that names
the argument (and the shapes, where shapes are the problem), on the C path and on the
NumPy reference alike (both use fastnn._validate)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import fastnn

from conftest import assert_bad_input, assert_same_message

f32, f64 = np.float32, np.float64


def z(*shape, dtype=f64):
    return np.zeros(shape, dtype=dtype)


X4, W4 = z(2, 4, 6, 6), z(6, 4, 3, 3)  # conv2d output (2, 6, 4, 4)
X3, W3 = z(2, 4, 10), z(6, 4, 3)  # conv1d output (2, 6, 8)
G4, G3 = z(2, 6, 4, 4), z(2, 6, 8)


def bad(id, func, args, error, match, **kwargs):
    return pytest.param(func, args, kwargs, error, match, id=id)


def s(shape):
    """A shape as it appears in a message, escaped for a regex."""
    return re.escape(str(tuple(shape)))


BAD_INPUTS = [
    # ranks
    bad("conv2d-x-3d", "conv2d", (X3, W4), ValueError, rf"input must be 4-d .*{s(X3.shape)}"),
    bad("conv2d-x-5d", "conv2d", (z(1, 2, 4, 6, 6), W4), ValueError, r"input must be 4-d"),
    bad("conv2d-weight-3d", "conv2d", (X4, W3), ValueError, rf"weight must be 4-d .*{s(W3.shape)}"),
    bad("conv1d-x-4d", "conv1d", (X4, W3), ValueError, rf"input must be 3-d .*{s(X4.shape)}"),
    bad("conv1d-weight-4d", "conv1d", (X3, W4), ValueError, rf"weight must be 3-d .*{s(W4.shape)}"),
    bad("conv2d-backward-x-3d", "conv2d_backward", (G4, X3, W4), ValueError, r"input must be 4-d"),
    # channels and groups
    bad("channel-mismatch", "conv2d", (X4, z(6, 3, 3, 3)), ValueError,
        rf"weight {s((6, 3, 3, 3))} expects 3 input channels.*input {s(X4.shape)} has 4"),
    bad("conv1d-channel-mismatch", "conv1d", (X3, z(6, 5, 3)), ValueError,
        r"weight \(6, 5, 3\) expects 5 input channels"),
    bad("groups-not-dividing-in", "conv2d", (X4, z(6, 1, 3, 3)), ValueError,
        r"groups=3 must divide in_channels=4", groups=3),
    bad("groups-not-dividing-out", "conv2d", (X4, z(5, 2, 3, 3)), ValueError,
        r"groups=2 must divide .*out_channels=5", groups=2),
    bad("groups-channel-mismatch", "conv2d", (X4, z(6, 4, 3, 3)), ValueError,
        r"expects 8 input channels with groups=2", groups=2),
    bad("groups-zero", "conv2d", (X4, W4), ValueError, r"groups must be >= 1", groups=0),
    bad("groups-float", "conv2d", (X4, W4), TypeError, r"groups must be an int", groups=1.5),
    # dtypes
    bad("dtype-mismatch-x-weight", "conv2d", (X4.astype(f32), W4), TypeError,
        r"dtype mismatch: input is float32, weight is float64"),
    bad("dtype-mismatch-bias", "conv2d", (X4, W4, z(6, dtype=f32)), TypeError,
        r"dtype mismatch: .*bias is float32"),
    bad("conv1d-dtype-mismatch", "conv1d", (X3, W3.astype(f32)), TypeError,
        r"dtype mismatch: input is float64, weight is float32"),
    bad("int-input", "conv2d", (X4.astype(np.int64), W4), TypeError,
        rf"input must be a float32 or float64 array, got dtype int64 with shape {s(X4.shape)}"),
    bad("int32-weight", "conv2d", (X4, W4.astype(np.int32)), TypeError,
        r"weight must be a float32 or float64 array, got dtype int32"),
    bad("complex-input", "conv2d", (X4.astype(np.complex128), W4), TypeError,
        r"input must be a float32 or float64 array, got dtype complex128"),
    bad("complex64-weight", "conv1d", (X3.astype(f32), W3.astype(np.complex64)), TypeError,
        r"weight must be a float32 or float64 array, got dtype complex64"),
    bad("bool-input", "conv2d", (X4.astype(bool), W4), TypeError,
        r"input must be a float32 or float64 array, got dtype bool"),
    bad("float16-input", "conv1d", (X3.astype(np.float16), W3), TypeError,
        r"input must be a float32 or float64 array, got dtype float16"),
    bad("int-bias", "conv2d", (X4, W4, np.zeros(6, np.int64)), TypeError,
        r"bias must be a float32 or float64 array"),
    # stride, dilation, padding
    bad("stride-zero", "conv2d", (X4, W4), ValueError, r"stride must be >= 1, got 0", stride=0),
    bad("stride-negative", "conv1d", (X3, W3), ValueError, r"stride must be >= 1, got -2",
        stride=-2),
    bad("stride-pair-zero", "conv2d", (X4, W4), ValueError, r"stride must be >= 1, got 0",
        stride=(1, 0)),
    bad("stride-float", "conv2d", (X4, W4), TypeError, r"stride must be an int", stride=1.0),
    bad("stride-three-ints", "conv2d", (X4, W4), ValueError, r"stride must be an int or 2 ints",
        stride=(1, 1, 1)),
    bad("conv1d-stride-pair", "conv1d", (X3, W3), ValueError, r"stride must be an int or 1 ints",
        stride=(1, 1)),
    bad("dilation-zero", "conv2d", (X4, W4), ValueError, r"dilation must be >= 1, got 0",
        dilation=0),
    bad("dilation-negative", "conv1d", (X3, W3), ValueError, r"dilation must be >= 1, got -1",
        dilation=-1),
    bad("padding-negative", "conv2d", (X4, W4), ValueError, r"padding must be >= 0, got -1",
        padding=-1),
    bad("padding-pair-negative", "conv2d", (X4, W4), ValueError, r"padding must be >= 0, got -2",
        padding=(1, -2)),
    bad("padding-bad-string", "conv2d", (X4, W4), ValueError,
        r"padding must be an int, a tuple, 'valid' or 'same', got 'full'", padding="full"),
    bad("padding-uppercase-same", "conv1d", (X3, W3), ValueError,
        r"padding must be an int, a tuple, 'valid' or 'same'", padding="SAME"),
    bad("padding-float", "conv2d", (X4, W4), TypeError, r"padding must be an int", padding=0.5),
    # sizes
    bad("kernel-larger-than-input", "conv2d", (z(1, 1, 3, 3), z(1, 1, 5, 5)), ValueError,
        r"kernel \(5, 5\) with dilation \(1, 1\) is larger than the padded input \(3, 3\)"),
    bad("kernel-larger-than-padded-input", "conv2d", (z(1, 1, 3, 3), z(1, 1, 6, 2)), ValueError,
        r"kernel \(6, 2\) .*larger than the padded input \(5, 5\)", padding=1),
    bad("dilated-kernel-larger", "conv1d", (z(1, 1, 6), z(1, 1, 3)), ValueError,
        r"kernel \(3,\) with dilation \(3,\) is larger than the padded input \(6,\)", dilation=3),
    bad("valid-kernel-larger", "conv1d", (z(1, 1, 2), z(1, 1, 3)), ValueError,
        r"kernel \(3,\).*larger than the padded input \(2,\)", padding="valid"),
    bad("empty-batch", "conv2d", (z(0, 4, 6, 6), W4), ValueError,
        r"input has an empty dimension: shape \(0, 4, 6, 6\)"),
    bad("empty-width", "conv1d", (z(2, 4, 0), W3), ValueError,
        r"input has an empty dimension: shape \(2, 4, 0\)"),
    bad("empty-out-channels", "conv2d", (X4, z(0, 4, 3, 3)), ValueError,
        r"weight has an empty dimension: shape \(0, 4, 3, 3\)"),
    bad("empty-kernel", "conv1d", (X3, z(6, 4, 0)), ValueError,
        r"weight has an empty dimension"),
    # bias
    bad("bias-wrong-length", "conv2d", (X4, W4, z(5)), ValueError,
        r"bias must have shape \(6,\), got \(5,\)"),
    bad("bias-2d", "conv1d", (X3, W3, z(6, 1)), ValueError,
        r"bias must have shape \(6,\), got \(6, 1\)"),
    # grad_output
    bad("grad-output-wrong-shape", "conv2d_backward", (z(2, 6, 4, 5), X4, W4), ValueError,
        r"grad_output must have shape \(2, 6, 4, 4\), got \(2, 6, 4, 5\)"),
    bad("grad-output-wrong-channels", "conv2d_backward", (z(2, 5, 4, 4), X4, W4), ValueError,
        r"grad_output must have shape \(2, 6, 4, 4\), got \(2, 5, 4, 4\)"),
    bad("grad-output-same-shape-options", "conv2d_backward", (G4, X4, W4), ValueError,
        r"grad_output must have shape \(2, 6, 6, 6\), got \(2, 6, 4, 4\)", padding="same"),
    bad("conv1d-grad-output-wrong-shape", "conv1d_backward", (z(2, 6, 9), X3, W3), ValueError,
        r"grad_output must have shape \(2, 6, 8\), got \(2, 6, 9\)"),
    bad("conv1d-grad-output-3d-for-2d", "conv1d_backward", (G4, X3, W3), ValueError,
        r"grad_output must have shape \(2, 6, 8\)"),
    bad("grad-output-dtype", "conv2d_backward", (G4.astype(f32), X4, W4), TypeError,
        r"dtype mismatch: grad_output is float32, input is float64, weight is float64"),
    bad("grad-output-int", "conv1d_backward", (G3.astype(np.int64), X3, W3), TypeError,
        r"grad_output must be a float32 or float64 array, got dtype int64"),
    bad("backward-groups", "conv2d_backward", (G4, X4, W4), ValueError,
        r"groups=3 must divide", groups=3),
    bad("backward-stride-zero", "conv1d_backward", (G3, X3, W3), ValueError,
        r"stride must be >= 1", stride=0),
    # im2col / col2im
    bad("im2col-same", "im2col", (X4, 3), ValueError,
        r"padding must be an int or a pair for im2col/col2im, got 'same'", padding="same"),
    bad("im2col-valid", "im2col", (X4, 3), ValueError, r"padding must be an int or a pair",
        padding="valid"),
    bad("im2col-3d", "im2col", (X3, 3), ValueError, r"input must be 4-d .*\(2, 4, 10\)"),
    bad("im2col-kernel-zero", "im2col", (X4, 0), ValueError, r"kernel_size must be >= 1"),
    bad("im2col-kernel-three-ints", "im2col", (X4, (1, 2, 3)), ValueError,
        r"kernel_size must be an int or 2 ints"),
    bad("im2col-kernel-too-large", "im2col", (X4, 7), ValueError,
        r"kernel \(7, 7\).*larger than the padded input \(6, 6\)"),
    bad("im2col-stride-zero", "im2col", (X4, 3), ValueError, r"stride must be >= 1", stride=0),
    bad("im2col-int", "im2col", (X4.astype(np.int32), 3), TypeError,
        r"input must be a float32 or float64 array, got dtype int32"),
    bad("col2im-2d-cols", "col2im", (z(36, 16), (6, 6), 3), ValueError,
        r"cols must be 3-d \(N, C\*kH\*kW, L\), got shape \(36, 16\)"),
    bad("col2im-rows-not-multiple", "col2im", (z(2, 10, 16), (6, 6), 3), ValueError,
        r"cols has 10 rows \(shape \(2, 10, 16\)\), not a multiple of kH\*kW = 9"),
    bad("col2im-wrong-L", "col2im", (z(2, 36, 17), (6, 6), 3), ValueError,
        r"cols has L = 17 blocks .*output_size \(6, 6\) gives 4x4 = 16"),
    bad("col2im-wrong-L-for-stride", "col2im", (z(2, 36, 16), (6, 6), 3), ValueError,
        r"cols has L = 16 blocks .*gives 2x2 = 4", stride=2),
    bad("col2im-output-size-zero", "col2im", (z(2, 36, 16), (0, 6), 3), ValueError,
        r"output_size must be >= 1"),
    bad("col2im-same", "col2im", (z(2, 36, 36), (6, 6), 3), ValueError,
        r"padding must be an int or a pair", padding="same"),
    bad("col2im-complex", "col2im", (z(2, 36, 16).astype(np.complex64), (6, 6), 3), TypeError,
        r"cols must be a float32 or float64 array, got dtype complex64"),
]


@pytest.mark.parametrize("impl", ["fastnn", "reference"])
@pytest.mark.parametrize("func,args,kwargs,error,match", BAD_INPUTS)
def test_bad_input_raises_with_a_clear_message(ref, impl, func, args, kwargs, error, match):
    assert_bad_input(fastnn if impl == "fastnn" else ref, func, args, kwargs, error, match)


@pytest.mark.parametrize("func,args,kwargs,error,match", BAD_INPUTS)
def test_reference_gives_the_same_message(ref, func, args, kwargs, error, match):
    assert_same_message(ref, func, args, kwargs, error)


def test_good_inputs_of_the_table_pass(ref):
    """The arrays the table starts from are valid, so each entry fails for its own reason."""
    for module in (fastnn, ref):
        assert module.conv2d(X4, W4).shape == G4.shape
        assert module.conv1d(X3, W3).shape == G3.shape
        assert [g.shape for g in module.conv2d_backward(G4, X4, W4)] == [X4.shape, W4.shape, (6,)]
        assert [g.shape for g in module.conv1d_backward(G3, X3, W3)] == [X3.shape, W3.shape, (6,)]
        assert module.im2col(X4, 3).shape == (2, 36, 16)
        assert module.col2im(z(2, 36, 16), (6, 6), 3).shape == X4.shape


@pytest.mark.parametrize("x_shape,w_shape,what", [
    ((1, 1, 46341, 46341), (1, 1, 1, 1), r"\(out_h\*out_w\) = 2147488281"),
    ((1, 1, 46341, 46341), (1, 1, 46341, 46341), r"\(H\*W\) = 2147488281"),
    ((1, 2**31, 1, 1), (1, 2**31, 1, 1), r"in_channels/groups\*kH\*kW = 2147483648"),
    ((1, 1, 1, 1), (2**31, 1, 1, 1), r"out_channels = 2147483648"),
], ids=["positions", "input-plane", "gemm-k", "out-channels"])
def test_sizes_beyond_32_bit_blas_are_rejected(x_shape, w_shape, what):
    """Checked on shapes alone (no array of that size is ever made)."""
    from fastnn._validate import conv_geometry

    with pytest.raises(ValueError, match=what + " exceeds the 32-bit BLAS limit"):
        conv_geometry(x_shape, w_shape, 1, 0, 1, 1, 2)
