"""PyTorch as a second oracle for pooling, independent of the NumPy reference: values,
indices, output sizes (ceil_mode), and gradients by autograd. Skipped without torch."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn

from conftest import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional


def case(id, x_shape, **options):
    return pytest.param(x_shape, options, id=id)


MAX_CASES = [
    case("2d-k3-s2-p1", (2, 3, 11, 10), kernel_size=3, stride=2, padding=1),
    case("2d-k2", (2, 2, 8, 9), kernel_size=2),
    case("2d-k3-s2-ceil", (1, 3, 10, 15), kernel_size=3, stride=2, ceil_mode=True),
    case("2d-k3-s2-p1-ceil", (1, 3, 10, 16), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    case("2d-k2-s3-ceil", (1, 2, 11, 11), kernel_size=2, stride=3, ceil_mode=True),
    case("2d-dilation", (2, 2, 12, 33), kernel_size=(2, 3), stride=(1, 2), padding=(1, 1),
         dilation=(2, 1)),
    case("2d-dilation-wide-pad", (1, 2, 9, 20), kernel_size=(3, 4), stride=1, padding=(1, 2),
         dilation=(1, 3)),
    case("2d-k5-s3-p2-ceil", (2, 2, 17, 19), kernel_size=5, stride=3, padding=2, ceil_mode=True),
    case("2d-kernel-is-input", (2, 3, 5, 7), kernel_size=(5, 7)),
    case("2d-1x1", (2, 3, 1, 1), kernel_size=1),
    case("2d-1x1-k2-p1", (1, 2, 1, 1), kernel_size=2, padding=1),
    case("2d-big-planes", (1, 2, 40, 41), kernel_size=3, stride=2, padding=1),
    case("1d-k3-s2-p1", (2, 3, 21), kernel_size=3, stride=2, padding=1),
    case("1d-k4-d3-p2-ceil", (2, 2, 31), kernel_size=4, stride=3, padding=2, dilation=3,
         ceil_mode=True),
    case("1d-L1", (1, 2, 1), kernel_size=1),
]

AVG_CASES = [
    case("2d-k2", (2, 3, 8, 8), kernel_size=2),
    case("2d-k2-odd", (2, 3, 7, 33), kernel_size=2),
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
    case("2d-k5-s3-p2-ceil", (2, 2, 17, 19), kernel_size=5, stride=3, padding=2, ceil_mode=True),
    case("2d-1x1-k2-p1-nopad", (1, 2, 1, 1), kernel_size=2, padding=1, count_include_pad=False),
    case("2d-big-planes", (1, 2, 40, 41), kernel_size=2),
    case("1d-k3-s2-p1", (2, 3, 21), kernel_size=3, stride=2, padding=1),
    case("1d-k4-s3-p2-ceil-nopad", (2, 2, 31), kernel_size=4, stride=3, padding=2,
         ceil_mode=True, count_include_pad=False),
]

ADAPTIVE_SIZES = [
    case("2d-to-1", (2, 3, 7, 7), output_size=1),
    case("2d-not-divisible", (2, 3, 13, 10), output_size=(4, 3)),
    case("2d-larger", (1, 2, 3, 5), output_size=(7, 11)),
    case("2d-None", (1, 2, 6, 5), output_size=(None, 2)),
    case("2d-1x1-input", (2, 2, 1, 1), output_size=(3, 2)),
    case("1d-not-divisible", (2, 3, 13), output_size=5),
    case("1d-larger", (2, 2, 4), output_size=9),
    case("2d-tiles-34-planes", (2, 17, 9, 11), output_size=(4, 3)),
    case("1d-tiles-21-planes", (3, 7, 20), output_size=6),
]


def _t(a, grad=False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_() if grad else t


def _data(rng, shape, dtype, kind):
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if kind == "nan":
        x[rng.random(shape) < 0.1] = np.nan
    return x


def _names(dims, base):
    return base if dims == 2 else base.replace("2d", "1d")


@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("x_shape,options", MAX_CASES)
def test_max_pool_matches_torch(rng, dtype, kind, x_shape, options):
    dims = len(x_shape) - 2
    name = _names(dims, "max_pool2d")
    x = _data(rng, x_shape, dtype, kind)
    y, idx = getattr(fastnn, name)(x, return_indices=True, **options)
    tx = _t(x, grad=True)
    ty, tidx = getattr(F, name)(tx, return_indices=True, **options)
    assert_close(y, ty.detach().numpy(), dtype, what="output")
    np.testing.assert_array_equal(idx, tidx.numpy(), err_msg="indices")
    # without indices PyTorch takes other kernels: the same values still
    assert_close(getattr(fastnn, name)(x, **options),
                 getattr(F, name)(_t(x), **options).numpy(), dtype, what="output, no indices")
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(_t(g))
    assert_close(getattr(fastnn, name + "_backward")(g, idx, x.shape), tx.grad.numpy(), dtype,
                 what="grad_input")


@pytest.mark.parametrize("x_shape,options", AVG_CASES)
def test_avg_pool_matches_torch(rng, dtype, x_shape, options):
    dims = len(x_shape) - 2
    name = _names(dims, "avg_pool2d")
    x = _data(rng, x_shape, dtype, "normal")
    y = getattr(fastnn, name)(x, **options)
    tx = _t(x, grad=True)
    ty = getattr(F, name)(tx, **options)
    assert_close(y, ty.detach().numpy(), dtype, what="output")
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(_t(g))
    assert_close(getattr(fastnn, name + "_backward")(g, x.shape, **options), tx.grad.numpy(),
                 dtype, what="grad_input")


@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("x_shape,options", ADAPTIVE_SIZES)
def test_adaptive_pools_match_torch(rng, dtype, kind, x_shape, options):
    dims = len(x_shape) - 2
    out = options["output_size"]
    x = _data(rng, x_shape, dtype, kind)
    avg, mx = _names(dims, "adaptive_avg_pool2d"), _names(dims, "adaptive_max_pool2d")
    tx = _t(x, grad=True)
    ty = getattr(F, avg)(tx, out)
    y = getattr(fastnn, avg)(x, out)
    assert_close(y, ty.detach().numpy(), dtype, what="avg")
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(_t(g))
    assert_close(getattr(fastnn, avg + "_backward")(g, x.shape), tx.grad.numpy(), dtype,
                 what="avg backward")
    tx = _t(x, grad=True)
    ty, tidx = getattr(F, mx)(tx, out, return_indices=True)
    y, idx = getattr(fastnn, mx)(x, out, return_indices=True)
    assert_close(y, ty.detach().numpy(), dtype, what="max")
    np.testing.assert_array_equal(idx, tidx.numpy())
    ty.backward(_t(g))
    assert_close(getattr(fastnn, mx + "_backward")(g, idx, x.shape), tx.grad.numpy(), dtype,
                 what="max backward")


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("hw", [(13, 13), (1, 1), (5, 9), (2, 3)])
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_spp_matches_torch_concatenated_adaptive_pools(rng, dtype, mode, hw, kind):
    levels = (1, 2, 4)
    x = _data(rng, (2, 17) + hw, dtype, kind)  # two tiles of 16 planes, and 2 planes alone
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    tx = _t(x, grad=True)
    ty = torch.cat([pool(tx, l).reshape(2, -1) for l in levels], dim=1)
    y = fastnn.spatial_pyramid_pool(x, levels, mode)
    assert_close(y, ty.detach().numpy(), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(_t(g))
    assert_close(fastnn.spatial_pyramid_pool_backward(g, x, levels, mode), tx.grad.numpy(), dtype,
                 what="grad_input")


def test_global_pools_match_torch(rng, dtype):
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    assert_close(fastnn.global_avg_pool2d(x), F.adaptive_avg_pool2d(_t(x), 1).numpy()[:, :, 0, 0],
                 dtype)
    assert_close(fastnn.global_max_pool2d(x), F.adaptive_max_pool2d(_t(x), 1).numpy()[:, :, 0, 0],
                 dtype)


@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    (2, 2, 0, 1), (3, 2, 1, 1), (3, 3, 1, 1), (4, 3, 2, 1), (3, 2, 1, 2), (2, 3, 1, 3),
    (5, 4, 2, 1), (1, 2, 0, 1)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_output_sizes_match_torch(kernel, stride, padding, dilation, ceil_mode):
    """Output sizes over a range of input sizes, ceil_mode's last-window rule included;
    where PyTorch refuses (output too small), fastnn must refuse too."""
    for size in range(1, 14):
        x = np.zeros((1, 1, size), np.float32)
        opts = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                    ceil_mode=ceil_mode)
        try:
            want = F.max_pool1d(_t(x), **opts).shape
        except RuntimeError:
            with pytest.raises(ValueError):
                fastnn.max_pool1d(x, **opts)
            continue
        assert fastnn.max_pool1d(x, **opts).shape == tuple(want), f"size {size}"
        if dilation == 1:
            opts.pop("dilation")
            assert fastnn.avg_pool1d(x, **opts).shape == tuple(F.avg_pool1d(_t(x), **opts).shape)


@pytest.mark.parametrize("kernel,padding", [(2, 1), (2, 2), (3, 1), (3, 2), (4, 2), (4, 3),
                                            (5, 2), (5, 3), (1, 1)])
def test_padding_limit_matches_torch(kernel, padding):
    """PyTorch allows padding up to kernel_size // 2 (dilation does not raise it)."""
    x = np.zeros((1, 1, 12, 12), np.float32)
    for dilation in (1, 2):
        try:
            F.max_pool2d(_t(x), kernel, 1, padding, dilation, return_indices=True)
            allowed = True
        except RuntimeError:
            allowed = False
        if allowed:
            fastnn.max_pool2d(x, kernel, 1, padding, dilation)
        else:
            with pytest.raises(ValueError, match="padding"):
                fastnn.max_pool2d(x, kernel, 1, padding, dilation)
