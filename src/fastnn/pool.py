"""Pooling on the C/OpenMP path: max, average, adaptive, global and spatial pyramid pooling,
1-d and 2-d, forward and backward.

Names, arguments, shapes and numbers follow ``torch.nn.functional``: inputs are batched,
(N, C, H, W) or (N, C, L), float32 or float64, and the result has the input's dtype.
Max pooling's indices are int64 flat positions in each input (H, W) plane (for 1-d, in
each row), as PyTorch returns them; ties keep the first maximum in row-major order and a
NaN in a window is its maximum (the last NaN, as PyTorch). Inputs are never modified;
non-contiguous inputs are copied to contiguous ones first. Each backward returns the
gradient with respect to the input.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from fastnn import _kernels
from fastnn._memory import empty
from fastnn._validate import (IntOrTuple, PoolGeometry, avg_options, contiguous,
                              indices_out_of_range,
                              prepare_adaptive, prepare_adaptive_backward, prepare_avg_backward,
                              prepare_max_backward, prepare_pool, prepare_spp,
                              prepare_spp_backward)

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool1d_backward", "max_pool2d_backward",
    "avg_pool1d", "avg_pool2d", "avg_pool1d_backward", "avg_pool2d_backward",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool1d_backward", "adaptive_max_pool2d_backward",
    "global_avg_pool2d", "global_max_pool2d",
    "spatial_pyramid_pool", "spatial_pyramid_pool_backward",
]

MaybeIndices = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def _flat(a: np.ndarray) -> np.ndarray:
    return contiguous(a).reshape(-1)


def _max_forward(kernel, x: np.ndarray, geo: PoolGeometry, dims: int, return_indices: bool
                 ) -> MaybeIndices:
    shape = geo.output_shape_nd(dims)
    y = empty(shape, x.dtype)
    idx = empty(shape, np.int64) if return_indices else None
    kernel(geo, _flat(x), y.reshape(-1), None if idx is None else idx.reshape(-1))
    return (y, idx) if return_indices else y


def _max_backward(grad_output, indices, input_shape, dims: int) -> np.ndarray:
    dy, idx, geo = prepare_max_backward(grad_output, indices, input_shape, dims)
    dx = empty(geo.input_shape_nd(dims), dy.dtype)  # the kernel zeroes each plane
    if not _kernels.max_pool2d_backward(geo, _flat(dy), _flat(idx), dx.reshape(-1)):
        raise indices_out_of_range(geo)
    return dx


# --------------------------------------------------------------------------- max pooling


def max_pool2d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> MaybeIndices:
    """2-d max pooling, as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size : int or pair
    stride : int or pair, optional
        Default: kernel_size.
    padding : int or pair
        Implicit -inf padding on both sides, at most kernel_size // 2.
    dilation : int or pair
        Spacing between the taps of the window.
    ceil_mode : bool
        Round the output size up (the last window may hang over the bottom/right
        edge, but must start inside the input or its top/left padding).
    return_indices : bool
        Also return where each maximum came from.

    Returns
    -------
    y : ndarray, shape (N, C, out_h, out_w)
        out = floor or ceil((H + 2p - d(k-1) - 1)/s) + 1.
    indices : ndarray of int64, same shape, if `return_indices`
        Flat position ih*W + iw of each maximum in its input plane.
    """
    x, geo = prepare_pool(x, kernel_size, stride, padding, dilation, ceil_mode, 2)
    return _max_forward(_kernels.max_pool2d_forward, x, geo, 2, bool(return_indices))


def max_pool1d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> MaybeIndices:
    """1-d max pooling of (N, C, L); indices are positions in each row. See `max_pool2d`."""
    x, geo = prepare_pool(x, kernel_size, stride, padding, dilation, ceil_mode, 1)
    return _max_forward(_kernels.max_pool2d_forward, x, geo, 1, bool(return_indices))


def max_pool2d_backward(grad_output: np.ndarray, indices: np.ndarray,
                        input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of `max_pool2d` with respect to its input.

    Parameters
    ----------
    grad_output : ndarray, shape (N, C, out_h, out_w)
    indices : ndarray of int64, same shape
        As returned by ``max_pool2d(..., return_indices=True)``.
    input_shape : tuple (N, C, H, W)

    Returns
    -------
    ndarray, shape `input_shape`
        Each output's gradient added at its index (summed where windows overlap
        on the same maximum).
    """
    return _max_backward(grad_output, indices, input_shape, 2)


def max_pool1d_backward(grad_output: np.ndarray, indices: np.ndarray,
                        input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of `max_pool1d`; input_shape (N, C, L). See `max_pool2d_backward`."""
    return _max_backward(grad_output, indices, input_shape, 1)


# --------------------------------------------------------------------------- average pooling


def _avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
         dims: int) -> np.ndarray:
    x, geo = prepare_pool(x, kernel_size, stride, padding, 1, ceil_mode, dims)
    cip, divisor = avg_options(count_include_pad, divisor_override)
    y = empty(geo.output_shape_nd(dims), x.dtype)
    _kernels.avg_pool2d_forward(geo, _flat(x), y.reshape(-1), cip, divisor)
    return y


def _avg_backward(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                  count_include_pad, divisor_override, dims: int) -> np.ndarray:
    dy, geo = prepare_avg_backward(grad_output, input_shape, kernel_size, stride, padding,
                                   ceil_mode, dims)
    cip, divisor = avg_options(count_include_pad, divisor_override)
    dx = empty(geo.input_shape_nd(dims), dy.dtype)  # the kernel zeroes each plane
    _kernels.avg_pool2d_backward(geo, _flat(dy), dx.reshape(-1), cip, divisor)
    return dx


def avg_pool2d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> np.ndarray:
    """2-d average pooling, as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size : int or pair
    stride : int or pair, optional
        Default: kernel_size.
    padding : int or pair
        Zero padding on both sides, at most kernel_size // 2.
    ceil_mode : bool
        Round the output size up; see `max_pool2d`.
    count_include_pad : bool
        Divide by the window clipped to the padded input (True) or to the input.
        A window hanging over the bottom/right edge in ceil_mode is clipped to
        the padded input either way, as PyTorch does.
    divisor_override : int, optional
        Divide every sum by this instead.

    Returns
    -------
    ndarray, shape (N, C, out_h, out_w)
    """
    return _avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, 2)


def avg_pool1d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> np.ndarray:
    """1-d average pooling of (N, C, L); see `avg_pool2d` (``divisor_override`` is an
    extension: PyTorch's avg_pool1d lacks it)."""
    return _avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, 1)


def avg_pool2d_backward(grad_output: np.ndarray, input_shape: Sequence[int],
                        kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
                        padding: IntOrTuple = 0, ceil_mode: bool = False,
                        count_include_pad: bool = True,
                        divisor_override: Optional[int] = None) -> np.ndarray:
    """Gradient of `avg_pool2d` with respect to its input.

    Parameters
    ----------
    grad_output : ndarray, shape of avg_pool2d's output
    input_shape : tuple (N, C, H, W)
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        As given to `avg_pool2d`.

    Returns
    -------
    ndarray, shape `input_shape`
    """
    return _avg_backward(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, 2)


def avg_pool1d_backward(grad_output: np.ndarray, input_shape: Sequence[int],
                        kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
                        padding: IntOrTuple = 0, ceil_mode: bool = False,
                        count_include_pad: bool = True,
                        divisor_override: Optional[int] = None) -> np.ndarray:
    """Gradient of `avg_pool1d`; input_shape (N, C, L). See `avg_pool2d_backward`."""
    return _avg_backward(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, 1)


# --------------------------------------------------------------------------- adaptive pooling


def _adaptive_avg(x, output_size, dims: int) -> np.ndarray:
    x, geo = prepare_adaptive(x, output_size, dims)
    y = empty(geo.output_shape_nd(dims), x.dtype)
    _kernels.adaptive_avg_pool2d_forward(geo, _flat(x), y.reshape(-1))
    return y


def _adaptive_max(x, output_size, return_indices, dims: int) -> MaybeIndices:
    x, geo = prepare_adaptive(x, output_size, dims)
    # a pyramid of one level: small planes go through its tiles of 16 planes
    out_hw = np.array([geo.out_h, geo.out_w], dtype=np.int64)

    def pyramid(g, xf, yf, idx):
        _kernels.pyramid_pool_forward(g, out_hw, True, xf, yf, idx)
    return _max_forward(pyramid, x, geo, dims, bool(return_indices))


def _adaptive_avg_backward(grad_output, input_shape, dims: int) -> np.ndarray:
    dy, geo = prepare_adaptive_backward(grad_output, input_shape, dims)
    dx = empty(geo.input_shape_nd(dims), dy.dtype)  # the kernel zeroes each plane
    _kernels.adaptive_avg_pool2d_backward(geo, _flat(dy), dx.reshape(-1))
    return dx


def adaptive_avg_pool2d(x: np.ndarray, output_size: IntOrTuple) -> np.ndarray:
    """Average over bins that tile the input, as ``F.adaptive_avg_pool2d``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    output_size : int or pair
        (out_h, out_w); an entry may be None for the input's size. May exceed
        the input's size (bins then repeat input pixels).

    Returns
    -------
    ndarray, shape (N, C, out_h, out_w)
        Bin (i, j) covers rows floor(i*H/out_h) to ceil((i+1)*H/out_h) - 1, and
        likewise columns.
    """
    return _adaptive_avg(x, output_size, 2)


def adaptive_avg_pool1d(x: np.ndarray, output_size: IntOrTuple) -> np.ndarray:
    """Adaptive average pooling of (N, C, L); see `adaptive_avg_pool2d`."""
    return _adaptive_avg(x, output_size, 1)


def adaptive_max_pool2d(x: np.ndarray, output_size: IntOrTuple,
                        return_indices: bool = False) -> MaybeIndices:
    """Maximum over bins that tile the input, as ``F.adaptive_max_pool2d``; bins as
    `adaptive_avg_pool2d`, indices as `max_pool2d`."""
    return _adaptive_max(x, output_size, return_indices, 2)


def adaptive_max_pool1d(x: np.ndarray, output_size: IntOrTuple,
                        return_indices: bool = False) -> MaybeIndices:
    """Adaptive max pooling of (N, C, L); see `adaptive_max_pool2d`."""
    return _adaptive_max(x, output_size, return_indices, 1)


def adaptive_avg_pool2d_backward(grad_output: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of `adaptive_avg_pool2d`: each output's gradient over its bin's size,
    added over the bin. The output size is grad_output's."""
    return _adaptive_avg_backward(grad_output, input_shape, 2)


def adaptive_avg_pool1d_backward(grad_output: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of `adaptive_avg_pool1d`; see `adaptive_avg_pool2d_backward`."""
    return _adaptive_avg_backward(grad_output, input_shape, 1)


def adaptive_max_pool2d_backward(grad_output: np.ndarray, indices: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of `adaptive_max_pool2d`; see `max_pool2d_backward`."""
    return _max_backward(grad_output, indices, input_shape, 2)


def adaptive_max_pool1d_backward(grad_output: np.ndarray, indices: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of `adaptive_max_pool1d`; see `max_pool2d_backward`."""
    return _max_backward(grad_output, indices, input_shape, 1)


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean of each (H, W) plane: (N, C, H, W) -> (N, C)."""
    y = adaptive_avg_pool2d(x, 1)
    return y.reshape(y.shape[:2])


def global_max_pool2d(x: np.ndarray) -> np.ndarray:
    """Maximum of each (H, W) plane (NaN if it holds one): (N, C, H, W) -> (N, C)."""
    y = adaptive_max_pool2d(x, 1)
    return y.reshape(y.shape[:2])


# --------------------------------------------------------------------------- spatial pyramid


def _pyramid(x: np.ndarray, levels: Tuple[int, ...]):
    """(geometry, out_hw) of a spatial pyramid on x: its sizes, the levels' (l, l) grids."""
    n, c, h, w = x.shape
    return PoolGeometry(n, c, h, w, 1, 1), np.array([[l, l] for l in levels], np.int64).ravel()


def spatial_pyramid_pool(x: np.ndarray, levels: Sequence[int] = (1, 2, 4),
                         mode: str = "max") -> np.ndarray:
    """Spatial pyramid pooling (He et al., 2014): a fixed-length vector from any image size.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), any H, W >= 1
    levels : sequence of ints
        Level l pools each plane into an l x l grid of adaptive bins.
    mode : {'max', 'avg'}

    Returns
    -------
    ndarray, shape (N, C * sum(l*l for l in levels))
        ``adaptive_{mode}_pool2d(x, l).reshape(N, -1)`` concatenated over the
        levels in order (computed in one pass, straight into that layout).
    """
    x, levels, mode = prepare_spp(x, levels, mode)
    geo, out_hw = _pyramid(x, levels)
    y = empty((geo.batch, geo.channels * sum(l * l for l in levels)), x.dtype)
    _kernels.pyramid_pool_forward(geo, out_hw, mode == "max", _flat(x), y.reshape(-1), None)
    return y


def spatial_pyramid_pool_backward(grad_output: np.ndarray, x: np.ndarray,
                                  levels: Sequence[int] = (1, 2, 4),
                                  mode: str = "max") -> np.ndarray:
    """Gradient of `spatial_pyramid_pool` with respect to x: the sum over levels of each
    level's adaptive pooling backward (max mode recomputes the levels' indices from x).

    Parameters
    ----------
    grad_output : ndarray, shape (N, C * sum(l*l))
    x : ndarray, shape (N, C, H, W), the forward's input
    levels, mode
        As given to `spatial_pyramid_pool`.

    Returns
    -------
    ndarray, shape of x
    """
    dy, x, levels, mode = prepare_spp_backward(grad_output, x, levels, mode)
    geo, out_hw = _pyramid(x, levels)
    x, dy = _flat(x), _flat(dy)
    idx = None
    if mode == "max":
        idx = empty(dy.shape, np.int64)
        _kernels.pyramid_pool_forward(geo, out_hw, True, x, empty(dy.shape, dy.dtype), idx)
    dx = empty(geo.input_shape, dy.dtype)  # the kernel zeroes each plane
    _kernels.pyramid_pool_backward(geo, out_hw, mode == "max", dy, idx, dx.reshape(-1))
    return dx
