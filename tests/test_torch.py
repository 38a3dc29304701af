"""PyTorch as a second oracle, independent of the NumPy reference (skipped without torch)."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn

from conftest import assert_close, conv_arrays, conv_funcs, same_padding

torch = pytest.importorskip("torch")
F = torch.nn.functional

# PyTorch notes that it copies the input for 'same' with an even kernel: not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def case(id, x_shape, w_shape, **options):
    return pytest.param(x_shape, w_shape, options, id=id)


TORCH_CASES = [
    case("2d-3x3-p1", (2, 3, 9, 8), (4, 3, 3, 3), padding=1),
    case("2d-s2-p(1,2)", (2, 3, 9, 8), (4, 3, 3, 3), stride=2, padding=(1, 2)),
    case("2d-s(1,3)-d(2,1)", (2, 3, 11, 12), (4, 3, 3, 2), stride=(1, 3), dilation=(2, 1)),
    case("2d-same", (2, 3, 8, 9), (4, 3, 3, 3), padding="same"),
    case("2d-same-even-kernel", (2, 3, 8, 9), (4, 3, 2, 4), padding="same"),
    case("2d-same-d2", (1, 3, 8, 9), (4, 3, 3, 3), padding="same", dilation=2),
    case("2d-valid", (2, 3, 8, 9), (4, 3, 5, 3), padding="valid"),
    case("2d-g2", (2, 4, 7, 8), (6, 2, 3, 3), groups=2, padding=1),
    case("2d-depthwise-x2", (2, 4, 7, 8), (8, 1, 3, 3), groups=4, padding=1, stride=2),
    case("2d-1x1", (2, 8, 6, 7), (5, 8, 1, 1)),
    case("2d-7x7-s2-p3", (1, 3, 20, 19), (8, 3, 7, 7), stride=2, padding=3),
    case("2d-pad>kernel", (2, 2, 3, 4), (3, 2, 2, 2), padding=3),
    case("2d-blocks-b2", (2, 32, 40, 40), (32, 32, 3, 3), padding=1),
    case("2d-blocks-b16-small", (16, 8, 7, 7), (40, 8, 3, 3), padding=1),
    case("1d-k3-p1", (2, 3, 20), (4, 3, 3), padding=1),
    case("1d-s2-d2", (2, 3, 21), (4, 3, 3), stride=2, dilation=2),
    case("1d-same-even-k", (2, 3, 20), (4, 3, 4), padding="same"),
    case("1d-g3", (2, 6, 20), (9, 2, 5), groups=3, padding=2),
    case("1d-long", (2, 8, 3001), (16, 8, 5), padding=2),
]


def _t(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def _torch_conv(dims):
    return F.conv1d if dims == 1 else F.conv2d


@pytest.mark.parametrize("x_shape,w_shape,options", TORCH_CASES)
def test_forward_and_backward_match_torch(rng, dtype, x_shape, w_shape, options):
    dims = len(x_shape) - 2
    fwd, bwd = conv_funcs(fastnn, dims)
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    y = fwd(x, w, b, **options)
    tx, tw, tb = (_t(a).requires_grad_() for a in (x, w, b))
    ty = _torch_conv(dims)(tx, tw, tb, **options)
    assert_close(y, ty.detach().numpy(), dtype, what="forward")
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(_t(g))
    for name, got, want in zip(("grad_input", "grad_weight", "grad_bias"), bwd(g, x, w, **options),
                               (tx.grad, tw.grad, tb.grad)):
        assert_close(got, want.numpy(), dtype, what=name)


@pytest.mark.parametrize("stride", [2, 3, (2, 3)], ids=["s2", "s3", "s(2,3)"])
@pytest.mark.parametrize("dims", [1, 2], ids=["1d", "2d"])
def test_same_with_stride_matches_torch_on_explicit_padding(rng, dtype, dims, stride):
    """PyTorch refuses 'same' with stride > 1; fastnn follows TensorFlow: compare with an
    explicitly, asymmetrically padded input (F.pad, odd pixel bottom/right)."""
    if dims == 1 and isinstance(stride, tuple):
        stride = stride[:1]
    strides = (stride,) * dims if isinstance(stride, int) else stride
    fwd, bwd = conv_funcs(fastnn, dims)
    for size, k, d in [(8, 3, 1), (7, 3, 1), (10, 4, 1), (9, 3, 2), (5, 5, 1), (6, 1, 1)]:
        shape = (2, 3) + ((size,) if dims == 1 else (size, size + 1))
        kernel = (k,) * dims
        x, w, b = conv_arrays(rng, shape, (4, 3) + kernel, dtype)
        y = fwd(x, w, b, stride=stride, padding="same", dilation=d)
        assert y.shape[2:] == tuple(-(-n // s) for n, s in zip(shape[2:], strides))
        pads = [same_padding(n, kk, s, d) for n, kk, s in zip(shape[2:], kernel, strides)]
        flat = [p for pair in reversed(pads) for p in pair]  # F.pad: last dim first
        tx, tw, tb = (_t(a).requires_grad_() for a in (x, w, b))
        ty = _torch_conv(dims)(F.pad(tx, flat), tw, tb, stride=stride, dilation=d)
        what = f"{shape} k={k} d={d} pads={pads}"
        assert_close(y, ty.detach().numpy(), dtype, what=what)
        g = rng.standard_normal(y.shape).astype(dtype)
        ty.backward(_t(g))
        grads = bwd(g, x, w, stride=stride, padding="same", dilation=d)
        for got, want in zip(grads, (tx.grad, tw.grad, tb.grad)):
            assert_close(got, want.numpy(), dtype, what=what)


UNFOLD_CASES = [
    pytest.param((2, 3, 7, 8), 3, {}, id="k3"),
    pytest.param((2, 3, 7, 8), (2, 3), dict(padding=(1, 0), stride=(1, 2)), id="k(2,3)-p-s"),
    pytest.param((2, 3, 11, 10), 3, dict(dilation=2, stride=2, padding=2), id="k3-d2-s2-p2"),
    pytest.param((1, 2, 5, 6), (7, 8), dict(padding=1), id="kernel==padded-input"),
    pytest.param((2, 4, 9, 9), 1, dict(stride=3), id="k1-s3"),
]


@pytest.mark.parametrize("x_shape,kernel_size,options", UNFOLD_CASES)
def test_im2col_col2im_match_unfold_fold(rng, dtype, x_shape, kernel_size, options):
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = fastnn.im2col(x, kernel_size, **options)
    np.testing.assert_array_equal(cols, F.unfold(_t(x), kernel_size, **options).numpy())
    c = rng.standard_normal(cols.shape).astype(dtype)
    want = F.fold(_t(c), x_shape[2:], kernel_size, **options).numpy()
    assert_close(fastnn.col2im(c, x_shape[2:], kernel_size, **options), want, dtype)
