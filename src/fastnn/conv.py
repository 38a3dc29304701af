"""Convolution on the C/OpenMP path: im2col, col2im, conv1d/conv2d and their backward.

Layouts and numbers follow PyTorch's: inputs (N, C, H, W) or
(N, C, L), weights (C_out, C_in/groups, kH, kW); float32 or float64, the result
has the input's dtype. Inputs are never modified; non-contiguous inputs are
copied to contiguous ones first.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from fastnn import _kernels
from fastnn._memory import empty
from fastnn._validate import (IntOrTuple, Padding, contiguous, float_arrays, prepare_col2im,
                              prepare_conv, prepare_conv_backward, unfold_geometry)

__all__ = ["im2col", "col2im", "conv1d", "conv2d", "conv1d_backward", "conv2d_backward"]


def _flat(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if a is None else contiguous(a).reshape(-1)


def im2col(x: np.ndarray, kernel_size: IntOrTuple, dilation: IntOrTuple = 1,
           padding: IntOrTuple = 0, stride: IntOrTuple = 1) -> np.ndarray:
    """Unfold sliding local blocks of a batch of images into columns.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size, dilation, padding, stride : int or pair of ints
        As ``torch.nn.functional.unfold`` (padding is symmetric).

    Returns
    -------
    ndarray, shape (N, C*kH*kW, L)
        Row ``(c*kH + i)*kW + j`` holds tap (i, j) of channel c at each of the
        L = out_h*out_w output positions; padded taps are 0.
    """
    (x,), dtype = float_arrays(input=x)
    geo = unfold_geometry(x.shape, kernel_size, dilation, padding, stride)
    rows = geo.in_channels * geo.kernel_h * geo.kernel_w
    cols = empty((geo.batch, rows, geo.out_h * geo.out_w), dtype)
    _kernels.im2col(geo, _flat(x), cols.reshape(-1))
    return cols


def col2im(cols: np.ndarray, output_size: IntOrTuple, kernel_size: IntOrTuple,
           dilation: IntOrTuple = 1, padding: IntOrTuple = 0,
           stride: IntOrTuple = 1) -> np.ndarray:
    """Fold columns back into images, summing overlapping values (``F.fold``).

    Parameters
    ----------
    cols : ndarray, shape (N, C*kH*kW, L)
    output_size : int or pair
        The image size (H, W).
    kernel_size, dilation, padding, stride : int or pair of ints

    Returns
    -------
    ndarray, shape (N, C, H, W)
    """
    cols, geo = prepare_col2im(cols, output_size, kernel_size, dilation, padding, stride)
    x = empty(geo.input_shape, cols.dtype)
    _kernels.col2im(geo, _flat(cols), x.reshape(-1))
    return x


def _forward(x, weight, bias, stride, padding, dilation, groups, dims: int) -> np.ndarray:
    x, weight, bias, geo = prepare_conv(x, weight, bias, stride, padding, dilation, groups, dims)
    y = empty(geo.output_shape_nd(dims), x.dtype)
    _kernels.conv2d_forward(geo, _flat(x), _flat(weight), _flat(bias), y.reshape(-1))
    return y


def _backward(grad_output, x, weight, stride, padding, dilation, groups, dims: int):
    grad_output, x, weight, geo = prepare_conv_backward(grad_output, x, weight, stride,
                                                        padding, dilation, groups, dims)
    gx = empty(x.shape, x.dtype)
    gw = np.empty(weight.shape, dtype=x.dtype)
    gb = np.empty(geo.out_channels, dtype=x.dtype)
    _kernels.conv2d_backward(geo, _flat(grad_output), _flat(x), _flat(weight), gx.reshape(-1),
                             gw.reshape(-1), gb)
    return gx, gw, gb


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
           groups: int = 1) -> np.ndarray:
    """2-d convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    weight : ndarray, shape (C_out, C_in/groups, kH, kW)
    bias : ndarray, shape (C_out,), optional
    stride, dilation : int or pair
    padding : int, pair, 'valid' or 'same'
        'same' with stride 1 is PyTorch's (the odd pixel of padding goes
        bottom/right); with stride > 1 it is TensorFlow's (output ceil(H/stride)).
    groups : int
        Input and output channels are split into this many independent groups
        (groups = C_in is a depthwise convolution).

    Returns
    -------
    ndarray, shape (N, C_out, out_h, out_w), out = floor((H + pads - d(k-1) - 1)/s) + 1
    """
    return _forward(x, weight, bias, stride, padding, dilation, groups, 2)


def conv1d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
           groups: int = 1) -> np.ndarray:
    """1-d convolution of (N, C_in, L) with weight (C_out, C_in/groups, K); see `conv2d`."""
    return _forward(x, weight, bias, stride, padding, dilation, groups, 1)


def conv2d_backward(grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray,
                    stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
                    groups: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : ndarray, shape of conv2d's output
    x, weight, stride, padding, dilation, groups
        As given to `conv2d`.

    Returns
    -------
    grad_input : ndarray, shape of x
    grad_weight : ndarray, shape of weight
    grad_bias : ndarray, shape (C_out,)
    """
    return _backward(grad_output, x, weight, stride, padding, dilation, groups, 2)


def conv1d_backward(grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray,
                    stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
                    groups: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `conv1d`; see `conv2d_backward`."""
    return _backward(grad_output, x, weight, stride, padding, dilation, groups, 1)
