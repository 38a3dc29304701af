"""conv1d/conv2d and their backward on the C path against the NumPy reference.

Sizes are chosen around the C path's own boundaries (csrc/conv.c): the 1x1 stride-1 GEMM fast
path, cache-sized blocks of output positions (several per call for BLOCK_CASES), blocks of
several small images, output-channel chunks when there are too few blocks (batch 1), column
blocks for long 1-d inputs and for 2-d outputs of a single row, the two-phase col2im of the
input gradient, and widths/channels around the SIMD widths of the row primitives (8 and 16
lanes).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import _kernels

from conftest import (DTYPES, assert_close, check_conv_against_reference, conv_arrays,
                      conv_funcs, conv_output_size, same_padding)


def case(id, x_shape, w_shape, **options):
    return pytest.param(x_shape, w_shape, options, id=id)


BIAS = [pytest.param(True, id="bias"), pytest.param(False, id="nobias")]

CONV2D_CASES = [
    # stride, padding
    case("3x3", (2, 3, 8, 9), (4, 3, 3, 3)),
    case("3x3-p1", (2, 3, 8, 9), (4, 3, 3, 3), padding=1),
    case("3x3-s2", (2, 3, 9, 8), (4, 3, 3, 3), stride=2),
    case("3x3-s3-p1", (2, 3, 10, 11), (4, 3, 3, 3), stride=3, padding=1),
    case("3x3-s(1,2)", (2, 3, 8, 9), (4, 3, 3, 3), stride=(1, 2)),
    case("3x3-s(3,1)-p(2,0)", (2, 3, 10, 7), (4, 3, 3, 3), stride=(3, 1), padding=(2, 0)),
    case("3x3-p(1,2)", (2, 3, 6, 7), (4, 3, 3, 3), padding=(1, 2)),
    case("3x3-plist", (1, 3, 6, 7), (4, 3, 3, 3), padding=[2, 1], stride=[2, 1]),
    case("3x3-valid", (2, 3, 8, 9), (4, 3, 3, 3), padding="valid"),
    case("3x3-valid-s2", (2, 3, 8, 9), (4, 3, 3, 3), padding="valid", stride=2),
    # 'same': PyTorch's for stride 1, TensorFlow's rule for stride > 1
    case("3x3-same", (2, 3, 8, 9), (4, 3, 3, 3), padding="same"),
    case("2x4-same-odd-total", (2, 3, 7, 8), (4, 3, 2, 4), padding="same"),
    case("3x3-same-s2-even-H", (2, 3, 8, 8), (4, 3, 3, 3), padding="same", stride=2),
    case("3x3-same-s2-odd-H", (2, 3, 7, 9), (4, 3, 3, 3), padding="same", stride=2),
    case("3x3-same-s3", (2, 3, 10, 11), (4, 3, 3, 3), padding="same", stride=3),
    case("3x3-same-s(2,3)", (1, 3, 9, 10), (4, 3, 3, 3), padding="same", stride=(2, 3)),
    case("4x4-same-s2", (2, 3, 9, 10), (4, 3, 4, 4), padding="same", stride=2),
    case("1x1-same-s3-no-pad", (2, 3, 7, 8), (4, 3, 1, 1), padding="same", stride=3),
    case("3x3-same-d2", (2, 3, 8, 9), (4, 3, 3, 3), padding="same", dilation=2),
    case("3x3-same-d2-s2", (2, 3, 9, 8), (4, 3, 3, 3), padding="same", dilation=2, stride=2),
    case("5x5-same-k>input", (1, 2, 3, 2), (3, 2, 5, 5), padding="same"),
    # dilation
    case("3x3-d2", (2, 3, 9, 10), (4, 3, 3, 3), dilation=2),
    case("3x3-d(2,1)-p1", (2, 3, 9, 10), (4, 3, 3, 3), dilation=(2, 1), padding=1),
    case("3x3-d2-s2-p2", (2, 3, 11, 10), (4, 3, 3, 3), dilation=2, stride=2, padding=2),
    # groups
    case("3x3-g2", (2, 4, 7, 8), (6, 2, 3, 3), groups=2),
    case("3x3-g2-s2-p1", (2, 4, 7, 8), (6, 2, 3, 3), groups=2, stride=2, padding=1),
    case("5x3-g3", (2, 6, 8, 7), (9, 2, 5, 3), groups=3, padding=(2, 1)),
    case("depthwise-3x3-p1", (2, 4, 7, 8), (4, 1, 3, 3), groups=4, padding=1),
    case("depthwise-x2-3x3", (2, 4, 7, 8), (8, 1, 3, 3), groups=4, padding=1),
    case("depthwise-x3-same-s2", (2, 3, 8, 9), (9, 1, 3, 3), groups=3, padding="same", stride=2),
    # kernels
    case("1x1", (2, 5, 6, 7), (4, 5, 1, 1)),
    case("1x1-b1", (1, 5, 6, 7), (4, 5, 1, 1)),
    case("1x1-g2", (2, 6, 5, 7), (4, 3, 1, 1), groups=2),
    case("1x1-s2", (2, 5, 7, 8), (4, 5, 1, 1), stride=2),
    case("1x1-s(1,2)", (2, 5, 7, 8), (4, 5, 1, 1), stride=(1, 2)),
    case("1x1-p1", (2, 5, 6, 7), (4, 5, 1, 1), padding=1),
    case("1x1-d3", (2, 5, 6, 7), (4, 5, 1, 1), dilation=3),
    case("5x3", (2, 3, 9, 8), (4, 3, 5, 3)),
    case("5x3-p(2,1)", (2, 3, 9, 8), (4, 3, 5, 3), padding=(2, 1)),
    case("5x3-s2", (2, 3, 11, 10), (4, 3, 5, 3), stride=2),
    case("7x7", (2, 3, 9, 10), (4, 3, 7, 7)),
    case("7x7-s2-p3", (2, 3, 16, 15), (8, 3, 7, 7), stride=2, padding=3),
    case("7x7-same", (1, 3, 11, 12), (5, 3, 7, 7), padding="same"),
    # edge shapes
    case("input-1x1-k1", (2, 3, 1, 1), (4, 3, 1, 1)),
    case("input-1x1-k3-p1", (2, 3, 1, 1), (4, 3, 3, 3), padding=1),
    case("input-1x1-same-s2", (1, 3, 1, 1), (4, 3, 3, 3), padding="same", stride=2),
    case("batch1-c1", (1, 1, 6, 5), (1, 1, 3, 3), padding=1),
    case("kernel==input", (2, 3, 5, 6), (4, 3, 5, 6)),
    case("kernel==padded-input", (2, 3, 5, 6), (4, 3, 7, 8), padding=1),
    case("dilated-kernel==input", (2, 3, 5, 5), (4, 3, 3, 3), dilation=2),
    case("stride>kernel", (2, 3, 11, 10), (4, 3, 2, 2), stride=3),
    case("stride>input", (2, 3, 4, 4), (4, 3, 1, 1), stride=5),
    case("pad>kernel", (2, 2, 3, 4), (3, 2, 3, 3), padding=4),
    case("pad>kernel-s2", (2, 2, 3, 4), (3, 2, 2, 2), padding=3, stride=2),
    case("tall", (1, 2, 33, 3), (3, 2, 3, 3), padding=1),
    case("wide", (1, 2, 3, 41), (3, 2, 3, 3), padding=(0, 1)),
    case("odd-97x101", (1, 2, 97, 101), (3, 2, 3, 5), stride=(2, 3), padding=1),
]


@pytest.mark.parametrize("with_bias", BIAS)
@pytest.mark.parametrize("x_shape,w_shape,options", CONV2D_CASES)
def test_conv2d_matches_reference(ref, rng, dtype, x_shape, w_shape, options, with_bias):
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype, with_bias)
    check_conv_against_reference(ref, rng, x, w, b, **options)


CONV1D_CASES = [
    case("k3", (2, 3, 20), (4, 3, 3)),
    case("k3-p1", (2, 3, 20), (4, 3, 3), padding=1),
    case("k3-ptuple", (2, 3, 20), (4, 3, 3), padding=(2,), stride=(2,)),
    case("k3-s2", (2, 3, 21), (4, 3, 3), stride=2),
    case("k3-s3-p1", (2, 3, 22), (4, 3, 3), stride=3, padding=1),
    case("k3-valid", (2, 3, 20), (4, 3, 3), padding="valid"),
    case("k3-same", (2, 3, 20), (4, 3, 3), padding="same"),
    case("k4-same-odd-total", (2, 3, 20), (4, 3, 4), padding="same"),
    case("k3-same-s2-L97", (2, 3, 97), (4, 3, 3), padding="same", stride=2),
    case("k4-same-s3-L101", (2, 3, 101), (4, 3, 4), padding="same", stride=3),
    case("k3-same-d2-s2", (2, 3, 20), (4, 3, 3), padding="same", dilation=2, stride=2),
    case("k3-d2", (2, 3, 20), (4, 3, 3), dilation=2),
    case("k3-d3-p3", (2, 3, 20), (4, 3, 3), dilation=3, padding=3),
    case("k3-g2", (2, 4, 20), (6, 2, 3), groups=2, padding=1),
    case("depthwise-x2", (2, 4, 20), (8, 1, 3), groups=4, padding=1),
    case("k1", (2, 5, 20), (4, 5, 1)),
    case("k1-s2", (2, 5, 21), (4, 5, 1), stride=2),
    case("k1-p1", (2, 5, 20), (4, 5, 1), padding=1),
    case("k5-s2-L97", (2, 3, 97), (4, 3, 5), stride=2, padding=2),
    case("k7-d2-L101", (2, 3, 101), (5, 3, 7), dilation=2),
    case("L1-k1", (2, 3, 1), (4, 3, 1)),
    case("L1-k3-p1", (2, 3, 1), (4, 3, 3), padding=1),
    case("kernel==padded-input", (2, 3, 6), (4, 3, 8), padding=1),
    case("stride>kernel", (2, 3, 23), (4, 3, 2), stride=5),
    case("pad>kernel", (2, 3, 4), (4, 3, 3), padding=5),
    case("batch1", (1, 3, 30), (4, 3, 3), padding=1),
]


@pytest.mark.parametrize("with_bias", BIAS)
@pytest.mark.parametrize("x_shape,w_shape,options", CONV1D_CASES)
def test_conv1d_matches_reference(ref, rng, dtype, x_shape, w_shape, options, with_bias):
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype, with_bias)
    check_conv_against_reference(ref, rng, x, w, b, **options)


# Shapes large enough that the C path cuts the work into several blocks of output positions
# (cache-sized slices of the column matrix, whole output rows, or single positions when there
# is one output row), with chunks of output/input channels when there are few blocks (batch
# 1), and with many small images per call (blocks of several images, a last block with
# fewer, or blocks cut at arbitrary rows, depending on the version of csrc/conv.c). The
# two-phase col2im of the input gradient relies on the block boundaries; dilation and stride
# change how far a block reaches. The shapes are chosen with margin, not tuned to the current
# constants of csrc/conv.c.
BLOCK_CASES = [
    case("2d-b2-64x40x40", (2, 64, 40, 40), (64, 64, 3, 3), padding=1),
    case("2d-b1-chunks", (1, 16, 12, 12), (50, 16, 3, 3), padding=1),
    case("2d-b1-32x48x48", (1, 32, 48, 48), (40, 32, 3, 3), padding=1),
    case("2d-d2-s2-5x5", (2, 24, 50, 50), (32, 24, 5, 5), stride=2, dilation=2, padding=3),
    case("2d-g4", (2, 32, 36, 36), (32, 8, 3, 3), groups=4, padding=1),
    case("2d-depthwise-x2-same-s2", (1, 16, 96, 96), (32, 1, 3, 3), groups=16, padding="same",
         stride=2),
    # the direct path of depthwise groups (channel multiplier <= 4) and the GEMM one (> 4)
    case("2d-depthwise-x4-s3-d2", (2, 6, 41, 37), (24, 1, 3, 3), groups=6, stride=3,
         dilation=2, padding=2),
    case("2d-depthwise-x5-s3-d2", (2, 6, 41, 37), (30, 1, 3, 3), groups=6, stride=3,
         dilation=2, padding=2),
    case("2d-depthwise-b1-blocks", (1, 8, 120, 64), (8, 1, 5, 5), groups=8, padding=2),
    case("1d-depthwise-s3", (3, 5, 400), (10, 1, 7), groups=5, stride=3, padding=3),
    # stride 1 with one input channel per group: the taps kernel (taps_forward_block)
    case("taps-1to32-28x28", (4, 1, 28, 28), (32, 1, 3, 3), padding=1),
    case("taps-mg7-narrow", (2, 1, 9, 5), (7, 1, 3, 3), padding=1),
    case("taps-depthwise-d2-wide", (3, 6, 9, 20), (6, 1, 3, 3), groups=6, dilation=2, padding=2),
    case("taps-4x4-16-taps", (1, 1, 6, 6), (5, 1, 4, 4), padding=2),
    case("taps-2x3-g2-mg5", (2, 2, 5, 33), (10, 1, 2, 3), groups=2),
    case("taps-1d-g4", (2, 4, 50), (8, 1, 5), groups=4, padding=2),
    case("taps-b1-chunks", (1, 1, 200, 100), (16, 1, 3, 3), padding=1),
    case("2d-one-output-row", (1, 8, 3, 2000), (8, 8, 3, 5)),
    case("2d-one-output-row-b2", (2, 8, 3, 700), (8, 8, 3, 5), padding=(0, 2)),
    case("2d-1x1-b2", (2, 32, 40, 40), (48, 32, 1, 1)),
    case("2d-1x1-b1-chunks", (1, 64, 20, 20), (64, 64, 1, 1)),
    case("2d-7x7-s2-p3", (1, 3, 96, 96), (16, 3, 7, 7), stride=2, padding=3),
    # disjoint windows (stride >= dilated kernel): each block zeroes the input it owns
    case("disjoint-1x1-s2-b1-blocks", (1, 16, 120, 64), (24, 16, 1, 1), stride=2),
    case("disjoint-1x1-s2-b1-chunks", (1, 64, 40, 40), (64, 64, 1, 1), stride=2),
    case("disjoint-2x2-d2-s3-p1", (2, 8, 90, 70), (8, 8, 2, 2), stride=3, dilation=2, padding=1),
    case("disjoint-one-output-row", (1, 8, 2, 3000), (8, 8, 2, 3), stride=(2, 3),
         padding=(0, 1)),
    case("disjoint-b40-1x1-s2-small", (40, 8, 9, 6), (12, 8, 1, 1), stride=2),
    case("disjoint-depthwise-direct-2x2-s2", (1, 8, 120, 64), (16, 1, 2, 2), groups=8, stride=2),
    case("disjoint-1d-k2-s3-p1-long", (1, 8, 6001), (8, 8, 2), stride=3, padding=1),
    # many small images, batch sizes that are not multiples of anything
    case("2d-b16-small-images", (16, 8, 7, 7), (40, 8, 3, 3), padding=1),
    case("2d-b24-10x9", (24, 4, 10, 9), (8, 4, 3, 3), padding=1),
    case("2d-b21-g4-small", (21, 8, 6, 7), (8, 2, 3, 3), groups=4, padding=1),
    case("2d-b19-s2-d2-small", (19, 4, 13, 12), (6, 4, 3, 3), stride=2, dilation=2, padding=2),
    case("2d-b40-1x1-small", (40, 8, 5, 6), (12, 8, 1, 1)),
    case("2d-b53-same-s2-small", (53, 3, 9, 8), (5, 3, 3, 3), stride=2, padding="same"),
    case("1d-b2-long", (2, 16, 5000), (24, 16, 3), padding=1),
    case("1d-b1-long-s2-d2", (1, 8, 3001), (16, 8, 5), stride=2, dilation=2, padding=2),
    case("1d-b4-cache-limited", (4, 64, 4001), (32, 64, 5), padding="same"),
    case("1d-1x1-long", (2, 16, 4099), (8, 16, 1)),
    case("1d-b29-short", (29, 4, 51), (6, 4, 3)),
    case("1d-b90-same-s3-short", (90, 5, 40), (7, 5, 4), stride=3, padding="same"),
    case("1d-b50-k1-short", (50, 6, 23), (4, 6, 1)),
    # output lengths around 384 positions (where blocks change from whole images to parts
    # of one image in the current csrc/conv.c), batch not a multiple of anything
    case("1d-b3-out383", (3, 4, 385), (5, 4, 3)),
    case("1d-b3-out384", (3, 4, 386), (5, 4, 3)),
    case("1d-b3-out385", (3, 4, 387), (5, 4, 3)),
    case("2d-b5-out19x20", (5, 4, 21, 22), (6, 4, 3, 3)),
    case("2d-b5-out16x24", (5, 4, 18, 26), (6, 4, 3, 3)),
    case("2d-b5-out20x20", (5, 4, 22, 22), (6, 4, 3, 3)),
    # 32768 positions or more, output channels a multiple of the panel: the weight
    # gradient transposed by the packed GEMM's tiles, by input channel and by output rows
    case("dw-tiles-7x7-s2-by-channel", (2, 3, 256, 256), (64, 3, 7, 7), stride=2, padding=3),
    case("dw-tiles-3x3-by-rows", (2, 8, 128, 128), (128, 8, 3, 3), padding=1),
    case("dw-tiles-1d-b4", (4, 16, 8200), (64, 16, 3), padding=1),
]


@pytest.mark.parametrize("x_shape,w_shape,options", BLOCK_CASES)
def test_conv_several_blocks_matches_reference(ref, rng, dtype, x_shape, w_shape, options):
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    check_conv_against_reference(ref, rng, x, w, b, **options)


@pytest.mark.parametrize("channels", [7, 8, 9, 15, 16, 17, 31, 32, 33])
def test_channels_and_widths_around_simd_widths(ref, rng, dtype, channels):
    c = channels
    # 2-d: c input and output channels, rows of c pixels, stride 1 and 2 (strided gathers)
    x, w, b = conv_arrays(rng, (2, c, 4, c), (c, c, 3, 3), dtype)
    check_conv_against_reference(ref, rng, x, w, b, padding=1)
    check_conv_against_reference(ref, rng, x, w, b, padding=1, stride=(1, 2))
    # 1-d: the same channel counts on a length-c signal
    x, w, b = conv_arrays(rng, (2, c, c), (c + 1, c, 3), dtype)
    check_conv_against_reference(ref, rng, x, w, b, padding="same")


# --- shapes of 'same' -------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2, 3], ids=lambda s: f"s{s}")
@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_same_padding_shape_and_placement(rng, dtype, dims, stride):
    """'same' gives ceil(size/stride) outputs and equals a convolution of the input padded
    explicitly as API.md states (odd pixel after); the reference is not needed here."""
    fwd, _ = conv_funcs(fastnn, dims)
    for size in (1, 5, 6, 7, 8):
        for k in (1, 2, 3, 4, 5):
            for d in (1, 2):
                shape = (2, 3) + ((size,) if dims == 1 else (size, size + 1))
                kernel = (k, max(1, k - 1))[:dims]
                x, w, b = conv_arrays(rng, shape, (4, 3) + kernel, dtype)
                y = fwd(x, w, b, stride=stride, padding="same", dilation=d)
                want = (2, 4) + tuple(-(-n // stride) for n in shape[2:])
                assert y.shape == want, (shape, kernel, stride, d)
                if stride == 1:
                    assert y.shape[2:] == x.shape[2:]
                pads = [same_padding(n, kk, stride, d) for n, kk in zip(shape[2:], kernel)]
                xp = np.pad(x, [(0, 0), (0, 0)] + pads)
                y_explicit = fwd(xp, w, b, stride=stride, padding=0, dilation=d)
                assert_close(y, y_explicit, dtype, what=f"{shape} k={kernel} d={d} pads={pads}")


@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_output_size_formula(rng, dims):
    """floor((H + 2p - d(k-1) - 1)/s) + 1 for explicit padding, and 'valid' means 0."""
    fwd, _ = conv_funcs(fastnn, dims)
    for size, k, s, p, d in [(10, 3, 1, 0, 1), (10, 3, 2, 1, 1), (11, 4, 3, 2, 2),
                             (7, 7, 1, 0, 1), (5, 2, 4, 3, 1), (9, 3, 2, 0, 3)]:
        x, w, _ = conv_arrays(rng, (1, 2) + (size,) * dims, (3, 2) + (k,) * dims, np.float64)
        out = conv_output_size(size, k, s, p, p, d)
        assert fwd(x, w, stride=s, padding=p, dilation=d).shape == (1, 3) + (out,) * dims
    for size, k, d in [(9, 3, 3), (4, 4, 1), (8, 2, 2)]:
        x, w, _ = conv_arrays(rng, (1, 2) + (size,) * dims, (3, 2) + (k,) * dims, np.float64)
        want = (1, 3) + (size - d * (k - 1),) * dims
        assert fwd(x, w, padding="valid", dilation=d).shape == want


# --- random shapes and options ----------------------------------------------------------

@st.composite
def conv_problems(draw):
    dims = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cg, mg = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    size = tuple(draw(st.integers(1, 12)) for _ in range(dims))
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if kind == "int":
        p = draw(st.integers(0, 3))
        padding, pads = p, [(p, p)] * dims
    elif kind == "tuple":
        padding = tuple(draw(st.integers(0, 3)) for _ in range(dims))
        pads = [(p, p) for p in padding]
    elif kind == "same":
        padding = "same"
        pads = [same_padding(*a) for a in zip(size, kernel, stride, dilation)]
    else:
        padding, pads = "valid", [(0, 0)] * dims
    out = tuple(conv_output_size(h, k, s, a, b, d)
                for h, k, s, (a, b), d in zip(size, kernel, stride, pads, dilation))
    assume(min(out) >= 1)
    # ints where a tuple has equal entries, sometimes, to exercise both forms
    if draw(st.booleans()) and len(set(stride)) == 1:
        stride = stride[0]
    if draw(st.booleans()) and len(set(dilation)) == 1:
        dilation = dilation[0]
    return dict(x_shape=(n, cg * groups) + size, w_shape=(mg * groups, cg) + kernel,
                options=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
                out=out, bias=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=40, deadline=None, database=None)
@given(problem=conv_problems())
def test_random_problems_match_reference(ref, problem):
    rng = np.random.default_rng(problem["seed"])
    x, w, b = conv_arrays(rng, problem["x_shape"], problem["w_shape"], problem["dtype"],
                          problem["bias"])
    y, _ = check_conv_against_reference(ref, rng, x, w, b, **problem["options"])
    assert y.shape == (x.shape[0], w.shape[0]) + problem["out"]


@st.composite
def multi_block_problems(draw):
    """Larger batches and images with few channels: several blocks per call, blocks of
    several images or of parts of one, odd sizes (the reference stays cheap)."""
    dims = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(1, 24))
    groups = draw(st.sampled_from([1, 2]))
    cg, mg = draw(st.integers(1, 3)), draw(st.integers(1, 20))
    size = tuple(draw(st.integers(1, 24 if dims == 2 else 400)) for _ in range(dims))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    padding = draw(st.sampled_from(["same", 0, 1, 2]))
    if padding == "same":
        pads = [same_padding(*a) for a in zip(size, kernel, stride, dilation)]
    else:
        pads = [(padding, padding)] * dims
    out = tuple(conv_output_size(h, k, s, a, b, d)
                for h, k, s, (a, b), d in zip(size, kernel, stride, pads, dilation))
    assume(min(out) >= 1)
    return dict(x_shape=(n, cg * groups) + size, w_shape=(mg * groups, cg) + kernel,
                options=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
                out=out, dtype=draw(st.sampled_from(DTYPES)),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=30, deadline=None, database=None)
@given(problem=multi_block_problems())
def test_random_multi_block_problems_match_reference(ref, problem):
    rng = np.random.default_rng(problem["seed"])
    x, w, b = conv_arrays(rng, problem["x_shape"], problem["w_shape"], problem["dtype"])
    y, _ = check_conv_against_reference(ref, rng, x, w, b, **problem["options"])
    assert y.shape == (x.shape[0], w.shape[0]) + problem["out"]


# --- gradients by central differences ---------------------------------------------------

FD_CASES = [
    case("2d-plain", (2, 2, 5, 4), (3, 2, 3, 3)),
    case("2d-s2-p1", (1, 2, 6, 5), (3, 2, 3, 3), stride=2, padding=1),
    case("2d-d2-p2", (1, 2, 5, 5), (2, 2, 3, 3), dilation=2, padding=2),
    case("2d-g2", (1, 4, 4, 5), (4, 2, 3, 3), groups=2, padding=1),
    case("2d-same-odd-total", (1, 2, 5, 6), (2, 2, 2, 4), padding="same"),
    case("2d-same-s2-odd-total", (1, 2, 6, 5), (2, 2, 3, 3), padding="same", stride=2),
    case("2d-1x1", (2, 3, 3, 4), (2, 3, 1, 1)),
    case("2d-depthwise-x2-s2", (2, 2, 5, 6), (4, 1, 3, 3), groups=2, stride=2, padding=1),
    case("2d-depthwise-s3-d2", (1, 2, 7, 7), (2, 1, 2, 2), groups=2, stride=3, dilation=2),
    case("1d-plain", (2, 2, 7), (3, 2, 3)),
    case("1d-s2-p1", (2, 2, 8), (3, 2, 3), stride=2, padding=1),
    case("1d-d2", (1, 2, 9), (3, 2, 3), dilation=2),
    case("1d-g2", (2, 4, 6), (4, 2, 3), groups=2, padding=1),
    case("1d-same-even-k", (1, 2, 7), (2, 2, 4), padding="same"),
    case("1d-same-s2-odd-total", (1, 2, 8), (2, 2, 3), padding="same", stride=2),
]


def _central_differences(f, arrays, which, h=1e-2):
    """d f / d arrays[which], one element at a time (f is linear in each argument, so central
    differences are exact up to rounding)."""
    a = arrays[which]
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        orig = a[idx]
        a[idx] = orig + h
        up = f(*arrays)
        a[idx] = orig - h
        down = f(*arrays)
        a[idx] = orig
        grad[idx] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("impl", ["fastnn", "reference"])
@pytest.mark.parametrize("x_shape,w_shape,options", FD_CASES)
def test_backward_matches_finite_differences(ref, rng, impl, x_shape, w_shape, options):
    module = fastnn if impl == "fastnn" else ref
    fwd, bwd = conv_funcs(module, len(x_shape) - 2)
    x, w, b = conv_arrays(rng, x_shape, w_shape, np.float64)
    g = rng.standard_normal(fwd(x, w, b, **options).shape)

    def loss(x, w, b):
        return float(np.sum(fwd(x, w, b, **options) * g))

    gx, gw, gb = bwd(g, x, w, **options)
    for name, got, which in (("grad_input", gx, 0), ("grad_weight", gw, 1), ("grad_bias", gb, 2)):
        want = _central_differences(loss, [x.copy(), w.copy(), b.copy()], which)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8, err_msg=name)


# --- layouts, aliasing, NaN ---------------------------------------------------------------

def _views(rng, shape, dtype, kind):
    """A non-contiguous array of `shape` (values random) built as `kind`."""
    if kind == "transposed":
        base = rng.standard_normal(shape[::-1]).astype(dtype)
        view = base.T
    elif kind == "sliced":
        base = rng.standard_normal(tuple(2 * n + 1 for n in shape)).astype(dtype)
        view = base[tuple(slice(1, 2 * n + 1, 2) for n in shape)]
    elif kind == "reversed":
        view = rng.standard_normal(shape).astype(dtype)[..., ::-1]
    elif kind == "fortran":
        view = np.asfortranarray(rng.standard_normal(shape).astype(dtype))
    else:
        raise AssertionError(kind)
    assert view.shape == shape
    if shape[-1] > 1:
        assert not view.flags.c_contiguous
    return view


@pytest.mark.parametrize("kind", ["transposed", "sliced", "reversed", "fortran"])
@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_non_contiguous_inputs(ref, rng, dtype, dims, kind):
    x_shape = (2, 4, 9) if dims == 1 else (2, 4, 7, 9)
    w_shape = (6, 2, 3) if dims == 1 else (6, 2, 3, 2)
    options = dict(padding=1, stride=2, groups=2)
    fwd, bwd = conv_funcs(fastnn, dims)
    rfwd, rbwd = conv_funcs(ref, dims)
    x = _views(rng, x_shape, dtype, kind)
    w = _views(rng, w_shape, dtype, kind)
    b = rng.standard_normal(12).astype(dtype)[::2]
    y = fwd(x, w, b, **options)
    y_contig = fwd(np.ascontiguousarray(x), np.ascontiguousarray(w), b.copy(), **options)
    np.testing.assert_array_equal(y, y_contig)
    assert_close(y, rfwd(x, w, b, **options), dtype)
    g = _views(rng, y.shape, dtype, kind)
    grads = bwd(g, x, w, **options)
    grads_contig = bwd(np.ascontiguousarray(g), np.ascontiguousarray(x),
                       np.ascontiguousarray(w), **options)
    for got, want_exact, want_ref in zip(grads, grads_contig, rbwd(g, x, w, **options)):
        np.testing.assert_array_equal(got, want_exact)
        assert_close(got, want_ref, dtype)


@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_read_only_and_broadcast_inputs(ref, rng, dtype, dims):
    """Read-only arrays and zero-stride broadcasts are valid inputs."""
    x_shape, w_shape = ((2, 3, 9), (4, 3, 3)) if dims == 1 else ((2, 3, 6, 7), (4, 3, 3, 3))
    fwd, bwd = conv_funcs(fastnn, dims)
    rfwd, rbwd = conv_funcs(ref, dims)
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    for a in (x, w, b):
        a.setflags(write=False)
    # every image the same: a broadcast of one image along the batch
    xb = np.broadcast_to(x[:1], x_shape)
    for xi in (x, xb):
        y = fwd(xi, w, b, padding=1)
        assert_close(y, rfwd(np.array(xi), w, b, padding=1), dtype)
        g = np.broadcast_to(rng.standard_normal((1,) + y.shape[1:]).astype(dtype), y.shape)
        for got, want in zip(bwd(g, xi, w, padding=1), rbwd(np.array(g), np.array(xi), w,
                                                            padding=1)):
            assert_close(got, want, dtype)


@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_non_native_byte_order(rng, dtype, dims):
    """float32/float64 data in the other byte order (e.g. read from a file) is still float32
    or float64: same result as in native order."""
    x_shape, w_shape = ((2, 3, 9), (4, 3, 3)) if dims == 1 else ((2, 3, 6, 7), (4, 3, 3, 3))
    fwd, bwd = conv_funcs(fastnn, dims)
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    swapped = np.dtype(dtype).newbyteorder("S")
    xs, ws, bs = x.astype(swapped), w.astype(swapped), b.astype(swapped)
    y = fwd(xs, ws, bs, padding=1)
    np.testing.assert_array_equal(y, fwd(x, w, b, padding=1))
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(fwd(xs, w, b, padding=1), y)  # mixed byte orders
    g = rng.standard_normal(y.shape).astype(dtype)
    for got, want in zip(bwd(g.astype(swapped), xs, ws, padding=1), bwd(g, x, w, padding=1)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_inputs_not_modified(rng, dtype, dims):
    x_shape, w_shape = ((2, 4, 11), (6, 2, 3)) if dims == 1 else ((2, 4, 7, 8), (6, 2, 3, 3))
    fwd, bwd = conv_funcs(fastnn, dims)
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    options = dict(padding="same", groups=2)
    g = rng.standard_normal(fwd(x, w, b, **options).shape).astype(dtype)
    # a non-contiguous x too: the copy made for it must not be written back
    x_view = np.asfortranarray(x)
    saved = [a.copy() for a in (x, w, b, g, x_view)]
    fwd(x, w, b, **options)
    fwd(x_view, w, b, **options)
    bwd(g, x, w, **options)
    bwd(g, x_view, w, **options)
    for before, after in zip(saved, (x, w, b, g, x_view)):
        np.testing.assert_array_equal(before, after)


def _influence(x_shape, w, nan_index, options, dims):
    """Which outputs depend on input element `nan_index`: a convolution of an indicator image
    with all-positive weights (so no cancellation), on the reference-free C path."""
    fwd, _ = conv_funcs(fastnn, dims)
    ind = np.zeros(x_shape)
    ind[nan_index] = 1.0
    return fwd(ind, np.ones(w.shape), **options) > 0


@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_nan_propagates(ref, rng, dtype, dims):
    x_shape, w_shape = ((2, 4, 12), (6, 2, 3)) if dims == 1 else ((2, 4, 9, 8), (6, 2, 3, 3))
    options = dict(padding=1, groups=2)
    fwd, bwd = conv_funcs(fastnn, dims)
    rfwd, rbwd = conv_funcs(ref, dims)
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    nan_at = (1, 3) + (5,) * dims
    x[nan_at] = np.nan
    y = fwd(x, w, b, **options)
    expected_nan = _influence(x_shape, w, nan_at, options, dims)
    assert expected_nan.sum() > 0 and not expected_nan.all()
    np.testing.assert_array_equal(np.isnan(y), expected_nan)
    assert_close(y, rfwd(x, w, b, **options), dtype)

    # NaN in a weight: its output channel is NaN everywhere, the others are not
    x2, w2, b2 = conv_arrays(rng, x_shape, w_shape, dtype)
    w2[(4, 1) + (0,) * dims] = np.nan
    y2 = fwd(x2, w2, b2, **options)
    assert np.isnan(y2[:, 4, 1:-1]).all() and not np.isnan(np.delete(y2, 4, axis=1)).any()
    assert_close(y2, rfwd(x2, w2, b2, **options), dtype)
    # NaN in the bias
    b2 = b2.copy()
    b2[2] = np.nan
    y3 = fwd(x2, w, b2, **options)
    assert np.isnan(y3[:, 2]).all() and not np.isnan(np.delete(y3, 2, axis=1)).any()
    assert_close(y3, rfwd(x2, w, b2, **options), dtype)

    # backward: NaN in x reaches grad_weight (not grad_input); NaN in grad_output reaches all
    g = rng.standard_normal(y.shape).astype(dtype)
    grads = bwd(g, x, w, **options)
    assert not np.isnan(grads[0]).any() and np.isnan(grads[1]).any()
    for got, want in zip(grads, rbwd(g, x, w, **options)):
        assert_close(got, want, dtype)
    g[(0, 1) + (3,) * dims] = np.nan
    x3 = np.nan_to_num(x)
    grads = bwd(g, x3, w, **options)
    assert np.isnan(grads[0]).any() and np.isnan(grads[1]).any() and np.isnan(grads[2][1])
    assert not np.isnan(np.delete(grads[2], 1)).any()
    for got, want in zip(grads, rbwd(g, x3, w, **options)):
        assert_close(got, want, dtype)


def test_result_dtype_follows_input(rng, dtype):
    x, w, b = conv_arrays(rng, (1, 2, 5, 5), (3, 2, 3, 3), dtype)
    assert fastnn.conv2d(x, w, b).dtype == np.dtype(dtype)
    assert all(g.dtype == np.dtype(dtype) for g in
               fastnn.conv2d_backward(np.ones((1, 3, 3, 3), dtype), x, w))


# --- the BLAS binding -----------------------------------------------------------------------

@pytest.mark.parametrize("batch,m,k,n", [(3, 17, 33, 65), (1, 64, 9, 1000), (5, 1, 1, 1)],
                         ids=["b3-17x33x65", "b1-column-chunks", "b5-1x1x1"])
def test_gemm_batch_matches_matmul(rng, dtype, batch, m, k, n):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((batch, k, n)).astype(dtype)
    c = np.full((batch, m, n), np.nan, dtype=dtype)
    _kernels.gemm_batch(a, b, c)
    want = np.einsum("mk,bkn->bmn", a.astype(np.float64), b.astype(np.float64))
    assert_close(c, want.astype(dtype), dtype)
