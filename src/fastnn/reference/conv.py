"""Convolution the textbook way: pad, unfold into columns (im2col), multiply.

im2col ("image to column") turns every sliding window of the input into one
column, so that a convolution becomes a single matrix product: the kernels,
each flattened into a row, times the matrix of window columns. For an input
(N, C, H, W) and kernel kH x kW the column matrix of one image has C*kH*kW
rows (row (c*kH + i)*kW + j holds tap (i, j) of channel c) and one column per
output position; with the weight as a (C_out, C*kH*kW) matrix the output is
their product, reshaped back to (C_out, out_h, out_w).

Dilation d spreads the taps apart: the kernel covers k + (k-1)(d-1) input
pixels. Stride s moves the window s pixels at a time. Groups split the input
and output channels into independent convolutions.

The backward pass is the same picture read backwards. With y = W @ cols:
- dL/dW = dL/dy @ cols^T, summed over the batch;
- dL/dcols = W^T @ dL/dy, and col2im folds those columns back onto the image,
  summing where windows overlap (col2im is the transpose of im2col: this is
  also why a transposed convolution is the backward of a convolution);
- dL/db = dL/dy summed over the batch and all positions.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from fastnn._validate import (ConvGeometry, IntOrTuple, Padding, float_arrays, prepare_col2im,
                              prepare_conv, prepare_conv_backward, unfold_geometry)


def _pad(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """x zero-padded as the geometry says (possibly more at the bottom/right, for 'same')."""
    return np.pad(x, ((0, 0), (0, 0), (g.pad_h, g.pad_bottom), (g.pad_w, g.pad_right)))


def _window(g: ConvGeometry, i: int, j: int) -> Tuple[slice, slice]:
    """The padded-input pixels that kernel tap (i, j) sees, one per output position."""
    top, left = i * g.dilation_h, j * g.dilation_w
    return (slice(top, top + g.stride_h * (g.out_h - 1) + 1, g.stride_h),
            slice(left, left + g.stride_w * (g.out_w - 1) + 1, g.stride_w))


def _unfold(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """im2col of a (N, C, H, W) input: (N, C*kH*kW, out_h*out_w)."""
    xp = _pad(x, g)
    n, c = x.shape[:2]
    cols = np.empty((n, c, g.kernel_h, g.kernel_w, g.out_h, g.out_w), dtype=x.dtype)
    for i in range(g.kernel_h):
        for j in range(g.kernel_w):
            cols[:, :, i, j] = xp[(slice(None), slice(None)) + _window(g, i, j)]
    return cols.reshape(n, c * g.kernel_h * g.kernel_w, g.out_h * g.out_w)


def _fold(cols: np.ndarray, g: ConvGeometry, channels: int) -> np.ndarray:
    """col2im: add every column back onto the window it came from; crop the padding."""
    n = cols.shape[0]
    cols = cols.reshape(n, channels, g.kernel_h, g.kernel_w, g.out_h, g.out_w)
    xp = np.zeros((n, channels, g.in_h + g.pad_h + g.pad_bottom,
                   g.in_w + g.pad_w + g.pad_right), dtype=cols.dtype)
    for i in range(g.kernel_h):
        for j in range(g.kernel_w):
            xp[(slice(None), slice(None)) + _window(g, i, j)] += cols[:, :, i, j]
    return xp[:, :, g.pad_h:g.pad_h + g.in_h, g.pad_w:g.pad_w + g.in_w]


def _groups(g: ConvGeometry, x: np.ndarray, w: np.ndarray):
    """Per group: (slice of input channels, slice of output channels, weight matrix)."""
    cg, mg = g.in_channels // g.groups, g.out_channels // g.groups
    for k in range(g.groups):
        yield (slice(k * cg, (k + 1) * cg), slice(k * mg, (k + 1) * mg),
               w[k * mg:(k + 1) * mg].reshape(mg, -1))


def _forward(x, weight, bias, stride, padding, dilation, groups, dims: int) -> np.ndarray:
    x, weight, bias, g = prepare_conv(x, weight, bias, stride, padding, dilation, groups, dims)
    x4 = x.reshape(g.input_shape)
    w4 = weight.reshape(g.weight_shape)
    y = np.empty((g.batch, g.out_channels, g.out_h * g.out_w), dtype=x.dtype)
    for cin, cout, wmat in _groups(g, x4, w4):
        y[:, cout] = wmat @ _unfold(x4[:, cin], g)
    if bias is not None:
        y += bias[:, None]
    return y.reshape(g.output_shape_nd(dims))


def _backward(grad_output, x, weight, stride, padding, dilation, groups, dims: int):
    dy, x, weight, g = prepare_conv_backward(grad_output, x, weight, stride, padding,
                                             dilation, groups, dims)
    x4 = x.reshape(g.input_shape)
    w4 = weight.reshape(g.weight_shape)
    dy = dy.reshape(g.batch, g.out_channels, g.out_h * g.out_w)
    grad_x = np.empty(g.input_shape, dtype=x.dtype)
    grad_w = np.empty(g.weight_shape, dtype=x.dtype)
    for cin, cout, wmat in _groups(g, x4, w4):
        cols = _unfold(x4[:, cin], g)
        grad_w[cout] = np.einsum("nml,nkl->mk", dy[:, cout], cols).reshape(grad_w[cout].shape)
        grad_x[:, cin] = _fold(wmat.T @ dy[:, cout], g, cin.stop - cin.start)
    grad_b = dy.sum(axis=(0, 2))
    return grad_x.reshape(x.shape), grad_w.reshape(weight.shape), grad_b


def im2col(x: np.ndarray, kernel_size: IntOrTuple, dilation: IntOrTuple = 1,
           padding: IntOrTuple = 0, stride: IntOrTuple = 1) -> np.ndarray:
    """Sliding windows of (N, C, H, W) as columns: (N, C*kH*kW, L), as ``F.unfold``."""
    (x,), _ = float_arrays(input=x)
    return _unfold(x, unfold_geometry(x.shape, kernel_size, dilation, padding, stride))


def col2im(cols: np.ndarray, output_size: IntOrTuple, kernel_size: IntOrTuple,
           dilation: IntOrTuple = 1, padding: IntOrTuple = 0,
           stride: IntOrTuple = 1) -> np.ndarray:
    """Columns (N, C*kH*kW, L) folded back to (N, C, H, W), overlaps summed (``F.fold``)."""
    cols, g = prepare_col2im(cols, output_size, kernel_size, dilation, padding, stride)
    return _fold(cols, g, g.in_channels)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
           groups: int = 1) -> np.ndarray:
    """2-d convolution of (N, C_in, H, W) with (C_out, C_in/groups, kH, kW); see fastnn.conv2d."""
    return _forward(x, weight, bias, stride, padding, dilation, groups, 2)


def conv1d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
           stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
           groups: int = 1) -> np.ndarray:
    """1-d convolution of (N, C_in, L) with (C_out, C_in/groups, K); see fastnn.conv1d."""
    return _forward(x, weight, bias, stride, padding, dilation, groups, 1)


def conv2d_backward(grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray,
                    stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
                    groups: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_input, grad_weight, grad_bias) of conv2d; see fastnn.conv2d_backward."""
    return _backward(grad_output, x, weight, stride, padding, dilation, groups, 2)


def conv1d_backward(grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray,
                    stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
                    groups: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_input, grad_weight, grad_bias) of conv1d; see fastnn.conv2d_backward."""
    return _backward(grad_output, x, weight, stride, padding, dilation, groups, 1)
