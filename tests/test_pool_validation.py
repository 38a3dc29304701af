"""The bad-input table of pooling: every entry must raise TypeError/ValueError with a message
that names the argument (and the shapes, where shapes are the problem), on the C path and on
the NumPy reference alike, with the same message (both use fastnn._validate)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import fastnn

from conftest import assert_bad_input, assert_same_message

f32, f64 = np.float32, np.float64


def z(*shape, dtype=f64):
    return np.zeros(shape, dtype=dtype)


X4, X3 = z(2, 3, 8, 8), z(2, 3, 10)
G4 = z(2, 3, 4, 4)  # max_pool2d(X4, 2)
G3 = z(2, 3, 5)  # max_pool1d(X3, 2)
I4, I3 = np.zeros(G4.shape, np.int64), np.zeros(G3.shape, np.int64)


def bad(id, func, args, error, match, **kwargs):
    return pytest.param(func, args, kwargs, error, match, id=id)


def s(shape):
    return re.escape(str(tuple(shape)))


BAD_INPUTS = [
    # ranks (batched inputs only, as fastnn's convolutions)
    bad("max2d-3d-input", "max_pool2d", (X3, 2), ValueError, rf"input must be 4-d .*{s(X3.shape)}"),
    bad("max2d-5d-input", "max_pool2d", (z(1, 2, 3, 4, 4), 2), ValueError, r"input must be 4-d"),
    bad("max1d-4d-input", "max_pool1d", (X4, 2), ValueError,
        rf"input must be 3-d \(N, C, L\), got shape {s(X4.shape)}"),
    bad("avg2d-2d-input", "avg_pool2d", (z(8, 8), 2), ValueError, r"input must be 4-d"),
    bad("adaptive-avg-3d", "adaptive_avg_pool2d", (X3, 2), ValueError, r"input must be 4-d"),
    bad("adaptive-max1d-4d", "adaptive_max_pool1d", (X4, 2), ValueError, r"input must be 3-d"),
    bad("global-avg-3d", "global_avg_pool2d", (X3,), ValueError, r"input must be 4-d"),
    bad("global-max-3d", "global_max_pool2d", (X3,), ValueError, r"input must be 4-d"),
    bad("spp-3d", "spatial_pyramid_pool", (X3,), ValueError, r"input must be 4-d"),
    bad("empty-input", "max_pool2d", (z(0, 3, 8, 8), 2), ValueError,
        r"input has an empty dimension: shape \(0, 3, 8, 8\)"),
    bad("empty-length", "avg_pool1d", (z(2, 3, 0), 1), ValueError, r"input has an empty dimension"),
    bad("spp-empty", "spatial_pyramid_pool", (z(2, 3, 0, 4),), ValueError,
        r"input has an empty dimension"),
    # dtypes
    bad("int-input", "max_pool2d", (X4.astype(np.int64), 2), TypeError,
        rf"input must be a float32 or float64 array, got dtype int64 with shape {s(X4.shape)}"),
    bad("bool-input", "avg_pool2d", (X4.astype(bool), 2), TypeError,
        r"input must be a float32 or float64 array, got dtype bool"),
    bad("complex-input", "adaptive_avg_pool2d", (X4.astype(np.complex64), 2), TypeError,
        r"input must be a float32 or float64 array, got dtype complex64"),
    bad("float16-input", "spatial_pyramid_pool", (X4.astype(np.float16),), TypeError,
        r"input must be a float32 or float64 array, got dtype float16"),
    # kernel, stride, padding, dilation, flags
    bad("kernel-zero", "max_pool2d", (X4, 0), ValueError, r"kernel_size must be >= 1, got 0"),
    bad("kernel-three-ints", "max_pool2d", (X4, (2, 2, 2)), ValueError,
        r"kernel_size must be an int or 2 ints"),
    bad("kernel-pair-for-1d", "max_pool1d", (X3, (2, 2)), ValueError,
        r"kernel_size must be an int or 1 ints"),
    bad("kernel-float", "avg_pool2d", (X4, 2.0), TypeError, r"kernel_size must be an int"),
    bad("stride-zero", "max_pool2d", (X4, 2), ValueError, r"stride must be >= 1, got 0", stride=0),
    bad("stride-negative", "avg_pool1d", (X3, 2), ValueError, r"stride must be >= 1, got -1",
        stride=-1),
    bad("padding-negative", "max_pool2d", (X4, 3), ValueError, r"padding must be >= 0, got -1",
        padding=-1),
    bad("padding-over-half-kernel", "max_pool2d", (X4, 3), ValueError,
        r"padding \(2, 2\) must be at most half of kernel_size \(3, 3\)", padding=2),
    bad("padding-over-half-dilated", "max_pool2d", (X4, 2), ValueError,
        r"padding \(0, 2\) must be at most half of kernel_size \(2, 2\)", padding=(0, 2),
        dilation=3),
    bad("avg-padding-over-half", "avg_pool1d", (X3, 2), ValueError,
        r"padding \(2,\) must be at most half of kernel_size \(2,\)", padding=2),
    bad("padding-string", "max_pool2d", (X4, 3), TypeError, r"padding must be an int",
        padding="same"),
    bad("dilation-zero", "max_pool1d", (X3, 2), ValueError, r"dilation must be >= 1, got 0",
        dilation=0),
    bad("ceil-mode-int", "max_pool2d", (X4, 2), TypeError, r"ceil_mode must be a bool, got 1",
        ceil_mode=1),
    bad("count-include-pad-str", "avg_pool2d", (X4, 2), TypeError,
        r"count_include_pad must be a bool", count_include_pad="yes"),
    bad("divisor-zero", "avg_pool2d", (X4, 2), ValueError, r"divisor_override must be >= 1, got 0",
        divisor_override=0),
    bad("divisor-float", "avg_pool2d", (X4, 2), TypeError, r"divisor_override must be an int",
        divisor_override=2.5),
    # output sizes
    bad("kernel-larger-than-input", "max_pool2d", (z(1, 1, 3, 3), 4), ValueError,
        r"kernel_size \(4, 4\) with dilation \(1, 1\) is larger than the padded input \(3, 3\) "
        r"\(input \(1, 1, 3, 3\)\): output size \(0, 0\)"),
    bad("dilated-kernel-larger", "max_pool1d", (z(1, 1, 6), 3), ValueError,
        r"kernel_size \(3,\) with dilation \(3,\) is larger than the padded input \(6,\)",
        dilation=3),
    bad("avg-kernel-larger", "avg_pool2d", (z(1, 1, 2, 9), 3), ValueError,
        r"larger than the padded input \(2, 9\)"),
    bad("adaptive-size-zero", "adaptive_avg_pool2d", (X4, 0), ValueError,
        r"output_size must be >= 1, got 0"),
    bad("adaptive-size-pair-zero", "adaptive_max_pool2d", (X4, (2, 0)), ValueError,
        r"output_size must be >= 1, got 0"),
    bad("adaptive-size-three", "adaptive_avg_pool2d", (X4, (1, 2, 3)), ValueError,
        r"output_size must be an int or 2 ints"),
    bad("adaptive-size-float", "adaptive_avg_pool1d", (X3, 2.0), TypeError,
        r"output_size must be an int"),
    # spatial pyramid
    bad("spp-bad-mode", "spatial_pyramid_pool", (X4,), ValueError,
        r"mode must be 'max' or 'avg', got 'sum'", mode="sum"),
    bad("spp-levels-empty", "spatial_pyramid_pool", (X4,), ValueError,
        r"levels must be a non-empty sequence of ints >= 1, got \(\)", levels=()),
    bad("spp-levels-int", "spatial_pyramid_pool", (X4,), ValueError,
        r"levels must be a non-empty sequence", levels=4),
    bad("spp-level-zero", "spatial_pyramid_pool", (X4,), ValueError, r"levels must be >= 1, got 0",
        levels=(1, 0)),
    bad("spp-level-float", "spatial_pyramid_pool", (X4,), TypeError, r"levels must be an int",
        levels=(1, 2.0)),
    bad("spp-backward-grad-shape", "spatial_pyramid_pool_backward", (z(2, 3 * 20), X4),
        ValueError, r"grad_output must have shape \(2, 63\), got \(2, 60\)"),
    bad("spp-backward-bad-mode", "spatial_pyramid_pool_backward", (z(2, 63), X4), ValueError,
        r"mode must be 'max' or 'avg'", mode="min"),
    bad("spp-backward-dtype", "spatial_pyramid_pool_backward", (z(2, 63, dtype=f32), X4),
        TypeError, r"dtype mismatch: grad_output is float32, input is float64"),
    # max backward: indices and shapes
    bad("indices-int32", "max_pool2d_backward", (G4, I4.astype(np.int32), X4.shape), TypeError,
        rf"indices must be an int64 array \(as the forward returns them\), got dtype int32 "
        rf"with shape {s(G4.shape)}"),
    bad("indices-float", "max_pool1d_backward", (G3, I3.astype(f64), X3.shape), TypeError,
        r"indices must be an int64 array"),
    bad("indices-shape", "max_pool2d_backward", (G4, I4[:, :, :3], X4.shape), ValueError,
        r"indices must have shape \(2, 3, 4, 4\), got \(2, 3, 3, 4\)"),
    bad("indices-out-of-range", "max_pool2d_backward", (G4, I4 + 64, X4.shape), ValueError,
        r"indices: a value lies outside \[0, 64\), the positions of an input plane of \(8, 8\)"),
    bad("indices-negative", "max_pool1d_backward", (G3, I3 - 1, X3.shape), ValueError,
        r"indices: a value lies outside \[0, 10\), the positions of an input plane of \(10,\)"),
    bad("adaptive-indices-out-of-range", "adaptive_max_pool2d_backward",
        (G4, I4 + 1000, X4.shape), ValueError, r"indices: a value lies outside \[0, 64\)"),
    bad("max-grad-rank", "max_pool2d_backward", (G3, I3, X4.shape), ValueError,
        r"grad_output must be 4-d \(N, C, H, W\), got shape \(2, 3, 5\)"),
    bad("max-grad-channels", "max_pool2d_backward", (z(2, 4, 4, 4), I4, X4.shape), ValueError,
        r"grad_output \(2, 4, 4, 4\) does not fit input_shape \(2, 3, 8, 8\)"),
    bad("max-input-shape-rank", "max_pool2d_backward", (G4, I4, (2, 3, 8)), ValueError,
        r"input_shape must be 4 ints \(N, C, H, W\), got \(2, 3, 8\)"),
    bad("max-input-shape-zero", "max_pool1d_backward", (G3, I3, (2, 3, 0)), ValueError,
        r"input_shape must be >= 1, got 0"),
    bad("max-grad-int", "max_pool2d_backward", (I4, I4, X4.shape), TypeError,
        r"grad_output must be a float32 or float64 array, got dtype int64"),
    # avg backward: grad_output must be the forward's output shape
    bad("avg-grad-shape", "avg_pool2d_backward", (G4, X4.shape, 3), ValueError,
        r"grad_output must have shape \(2, 3, 2, 2\), got \(2, 3, 4, 4\)"),
    # L = 10, kernel 3, stride 2: 4 outputs, 5 only with ceil_mode
    bad("avg-grad-shape-without-ceil", "avg_pool1d_backward", (G3, X3.shape, 3, 2), ValueError,
        r"grad_output must have shape \(2, 3, 4\), got \(2, 3, 5\)"),
    bad("avg-backward-input-shape", "avg_pool2d_backward", (G4, (2, 3, 8), 2), ValueError,
        r"input_shape must be 4 ints"),
    bad("avg-backward-kernel-too-big", "avg_pool2d_backward", (G4, (2, 3, 2, 2), 3), ValueError,
        r"larger than the padded input \(2, 2\) \(input_shape \(2, 3, 2, 2\)\)"),
    bad("avg-backward-divisor-zero", "avg_pool2d_backward", (G4, X4.shape, 2), ValueError,
        r"divisor_override must be >= 1", divisor_override=0),
    bad("adaptive-avg-grad-batch", "adaptive_avg_pool2d_backward", (z(3, 3, 2, 2), X4.shape),
        ValueError, r"grad_output \(3, 3, 2, 2\) does not fit input_shape \(2, 3, 8, 8\)"),
    bad("adaptive-avg-grad-rank", "adaptive_avg_pool1d_backward", (G4, X3.shape), ValueError,
        r"grad_output must be 3-d \(N, C, L\)"),
    bad("adaptive-avg-grad-empty", "adaptive_avg_pool2d_backward", (z(2, 3, 0, 2), X4.shape),
        ValueError, r"does not fit input_shape"),
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
        assert module.max_pool2d(X4, 2).shape == G4.shape
        assert module.max_pool1d(X3, 2).shape == G3.shape
        assert module.max_pool2d_backward(G4, I4, X4.shape).shape == X4.shape
        assert module.max_pool1d_backward(G3, I3, X3.shape).shape == X3.shape
        assert module.adaptive_max_pool2d_backward(G4, I4, X4.shape).shape == X4.shape
        assert module.avg_pool2d_backward(z(2, 3, 2, 2), X4.shape, 3).shape == X4.shape
        assert module.adaptive_avg_pool2d_backward(z(2, 3, 2, 2), X4.shape).shape == X4.shape
        assert module.spatial_pyramid_pool(X4).shape == (2, 63)
        assert module.spatial_pyramid_pool_backward(z(2, 63), X4).shape == X4.shape
        assert module.avg_pool1d_backward(G3, X3.shape, 3, 2, ceil_mode=True).shape == X3.shape
        assert module.max_pool2d(X4, 3, stride=1, padding=1).shape == (2, 3, 8, 8)
        # padding up to half the kernel, whatever the dilation
        assert module.max_pool2d(X4, 2, 1, padding=(0, 1), dilation=3).shape == (2, 3, 5, 7)
