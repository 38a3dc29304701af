"""Pooling the textbook way: gather every window, reduce it.

Pooling slides a window over each (H, W) plane of a feature map, channel by channel, and
replaces the pixels under it by one number: their maximum (max pooling) or their mean
(average, or mean, pooling). It has no weights. With a stride it shrinks the map (a 2x2
window with stride 2 halves height and width), which cuts the work of the layers that
follow, and it summarizes a neighbourhood: as long as a small shift of the input does not
change which value is the largest in a window, max pooling's output does not change. That
is where a convolutional network's (approximate) invariance to small translations comes
from: convolution itself is equivariant (a shifted input gives a shifted output), pooling
makes it invariant. Max pooling keeps the strongest response (texture, edges); average
pooling keeps more of the background.

The geometry is a convolution's: a kernel of kH x kW taps, spread `dilation` apart, moved
`stride` pixels at a time over the input padded by `padding` on each side (padding counts
as -inf for max pooling and as 0 for average pooling, at most half the kernel, as
PyTorch allows). The output size is floor((H + 2p - d(k-1) - 1)/s) + 1, or with
ceil_mode the ceiling, in which case a last window that would start in the right padding
is dropped (it must start inside the input or the left padding).

Max pooling's details follow PyTorch:
- `indices` give, for every output, where its maximum came from as a flat position
  ih*W + iw in the input plane; the backward pass sends each output's gradient there
  (adding up where overlapping windows chose the same pixel) and gives zero elsewhere.
- Among equal values the first in row-major order wins; a NaN in a window is its maximum
  (the last NaN, as PyTorch's loop keeps it), so NaN propagates.

Average pooling divides the window's sum by the window's size. Which size is the
question where the window meets the edge: with count_include_pad it counts the padding
(the window clipped to the padded input: in ceil_mode a window hanging over the
bottom/right padding is clipped there), without it only the pixels inside the input;
divisor_override replaces both. Its backward pass spreads each output's gradient evenly,
divided the same way, over its window.

Adaptive pooling fixes the output size instead of the kernel: output (i, j) of an
(out_h, out_w) grid pools the bin of rows floor(i*H/out_h) to ceil((i+1)*H/out_h) - 1
and likewise for columns. The bins tile the input, overlapping by a pixel where H is not
a multiple of out_h, and the output may be larger than the input (bins then repeat
pixels). Global pooling is the 1x1 case: one number per channel, which turns a feature map
of any size into a vector of C features (a Global Average Pooling head instead of large
fully connected layers).

Spatial pyramid pooling (SPP, He et al., 2014) runs adaptive pooling at several grid sizes,
say 1x1, 2x2 and 4x4, and concatenates the flattened results: C*(1 + 4 + 16) numbers per
image whatever its height and width. That is its point: the fully connected layers after
it see a vector of fixed length, so the network takes images of any size without
cropping or resizing first, and the pyramid keeps information at several scales (the
whole image, its quadrants, and finer cells). Its backward pass is the sum of the
levels' adaptive backward passes.

1-d pooling on (N, C, L) is the 2-d case with H = 1.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from fastnn._validate import (IntOrTuple, PoolGeometry, avg_options, indices_out_of_range,
                              prepare_adaptive, prepare_adaptive_backward, prepare_avg_backward,
                              prepare_max_backward, prepare_pool, prepare_spp,
                              prepare_spp_backward)


# --------------------------------------------------------------------------- windows


def _taps(out: int, k: int, stride: int, pad: int, dilation: int) -> np.ndarray:
    """(out, k): the input coordinate that tap t of window o reads (maybe outside)."""
    return np.arange(out)[:, None] * stride - pad + np.arange(k)[None, :] * dilation


def _windows(x4: np.ndarray, g: PoolGeometry):
    """Every window of every plane of x4 (N, C, H, W).

    Returns
    -------
    values : (N, C, out_h, out_w, kH*kW), taps in row-major order (0 where outside)
    positions : (out_h, out_w, kH*kW), flat position ih*W + iw of each tap
    inside : (out_h, out_w, kH*kW), whether the tap lies in the input (not the padding)
    """
    rows = _taps(g.out_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h)[:, None, :, None]
    cols = _taps(g.out_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w)[None, :, None, :]
    inside = (rows >= 0) & (rows < g.in_h) & (cols >= 0) & (cols < g.in_w)
    positions = np.where(inside, rows * g.in_w + cols, 0)
    n, c = x4.shape[:2]
    values = np.where(inside, x4.reshape(n, c, -1)[:, :, positions], 0)
    k = g.kernel_h * g.kernel_w
    return (values.reshape(n, c, g.out_h, g.out_w, k), positions.reshape(g.out_h, g.out_w, k),
            inside.reshape(g.out_h, g.out_w, k))


def _pick_max(values: np.ndarray, positions: np.ndarray, inside: np.ndarray):
    """PyTorch's maximum of each window (last axis) and its position.

    Among the taps inside the input: the greatest value, the first one in row-major order
    among equals; if the window holds a NaN, the last NaN.
    """
    candidates = np.where(inside, values, -np.inf)
    best = candidates.max(axis=-1, keepdims=True)  # NaN if the window holds one
    first_best = np.argmax(inside & (candidates == best), axis=-1)
    nans = np.isnan(candidates)
    last_nan = nans.shape[-1] - 1 - np.argmax(nans[..., ::-1], axis=-1)
    choice = np.where(nans.any(axis=-1), last_nan, first_best)[..., None]
    value = np.take_along_axis(candidates, choice, axis=-1)[..., 0]
    where = np.take_along_axis(np.broadcast_to(positions, values.shape), choice, axis=-1)
    return value, where[..., 0].astype(np.int64)


def _scatter_add(contributions: np.ndarray, positions: np.ndarray, g: PoolGeometry
                 ) -> np.ndarray:
    """Gradient planes (N, C, H, W): every contribution added at its flat position in its
    plane (contributions and positions have one row per (image, channel) plane)."""
    n, c = g.batch, g.channels
    grad = np.zeros((n * c, g.in_h * g.in_w), dtype=contributions.dtype)
    planes = np.arange(n * c)[:, None]
    np.add.at(grad, (planes, positions.reshape(n * c, -1)), contributions.reshape(n * c, -1))
    return grad.reshape(g.input_shape)


# --------------------------------------------------------------------------- max pooling


def _max(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, dims: int):
    x, g = prepare_pool(x, kernel_size, stride, padding, dilation, ceil_mode, dims)
    values, positions, inside = _windows(x.reshape(g.input_shape), g)
    y, idx = _pick_max(values, positions, inside)
    shape = g.output_shape_nd(dims)
    return (y.reshape(shape), idx.reshape(shape)) if return_indices else y.reshape(shape)


def _max_backward(grad_output, indices, input_shape, dims: int) -> np.ndarray:
    dy, idx, g = prepare_max_backward(grad_output, indices, input_shape, dims)
    if idx.size and (idx.min() < 0 or idx.max() >= g.in_h * g.in_w):
        raise indices_out_of_range(g)
    return _scatter_add(dy, idx, g).reshape(g.input_shape_nd(dims))


def max_pool2d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """2-d max pooling of (N, C, H, W); see fastnn.max_pool2d."""
    return _max(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2)


def max_pool1d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """1-d max pooling of (N, C, L); see fastnn.max_pool1d."""
    return _max(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1)


def max_pool2d_backward(grad_output: np.ndarray, indices: np.ndarray,
                        input_shape: Sequence[int]) -> np.ndarray:
    """Each output's gradient added at the position of its maximum."""
    return _max_backward(grad_output, indices, input_shape, 2)


def max_pool1d_backward(grad_output: np.ndarray, indices: np.ndarray,
                        input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of max_pool1d; see max_pool2d_backward."""
    return _max_backward(grad_output, indices, input_shape, 1)


# --------------------------------------------------------------------------- average pooling


def _divisors(g: PoolGeometry, inside: np.ndarray, count_include_pad: bool,
              divisor_override: int) -> np.ndarray:
    """(out_h, out_w): what each window's sum is divided by, as PyTorch does."""
    if divisor_override:
        return np.full((g.out_h, g.out_w), divisor_override)
    if not count_include_pad:
        return inside.sum(axis=-1)
    # the window clipped to the padded input (it may hang over it in ceil_mode)
    def extent(out, k, stride, pad, size):
        start = np.arange(out) * stride - pad
        return np.minimum(start + k, size + pad) - start
    return (extent(g.out_h, g.kernel_h, g.stride_h, g.pad_h, g.in_h)[:, None]
            * extent(g.out_w, g.kernel_w, g.stride_w, g.pad_w, g.in_w)[None, :])


def _avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
         dims: int) -> np.ndarray:
    x, g = prepare_pool(x, kernel_size, stride, padding, 1, ceil_mode, dims)
    cip, divisor = avg_options(count_include_pad, divisor_override)
    values, _, inside = _windows(x.reshape(g.input_shape), g)
    sums = values.sum(axis=-1)  # taps outside the input hold 0
    y = sums / _divisors(g, inside, cip, divisor).astype(x.dtype)
    y = np.where(inside.any(axis=-1), y, 0)  # a window entirely in the padding gives 0
    return y.reshape(g.output_shape_nd(dims))


def _avg_backward(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                  count_include_pad, divisor_override, dims: int) -> np.ndarray:
    dy, g = prepare_avg_backward(grad_output, input_shape, kernel_size, stride, padding,
                                 ceil_mode, dims)
    cip, divisor = avg_options(count_include_pad, divisor_override)
    n, c = g.batch, g.channels
    _, positions, inside = _windows(np.zeros((1, 1, g.in_h, g.in_w), dy.dtype), g)
    divisors = _divisors(g, inside, cip, divisor).astype(dy.dtype)
    share = dy.reshape(n, c, g.out_h, g.out_w) / divisors
    # every tap of a window inside the input gets the window's share
    contributions = np.where(inside, share[..., None], 0)
    grad = _scatter_add(contributions, np.broadcast_to(positions, contributions.shape), g)
    return grad.reshape(g.input_shape_nd(dims))


def avg_pool2d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> np.ndarray:
    """2-d average pooling of (N, C, H, W); see fastnn.avg_pool2d."""
    return _avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, 2)


def avg_pool1d(x: np.ndarray, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> np.ndarray:
    """1-d average pooling of (N, C, L); see fastnn.avg_pool1d."""
    return _avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, 1)


def avg_pool2d_backward(grad_output: np.ndarray, input_shape: Sequence[int],
                        kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
                        padding: IntOrTuple = 0, ceil_mode: bool = False,
                        count_include_pad: bool = True,
                        divisor_override: Optional[int] = None) -> np.ndarray:
    """Each output's gradient, divided as in the forward, spread over its window."""
    return _avg_backward(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, 2)


def avg_pool1d_backward(grad_output: np.ndarray, input_shape: Sequence[int],
                        kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
                        padding: IntOrTuple = 0, ceil_mode: bool = False,
                        count_include_pad: bool = True,
                        divisor_override: Optional[int] = None) -> np.ndarray:
    """Gradient of avg_pool1d; see avg_pool2d_backward."""
    return _avg_backward(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, 1)


# --------------------------------------------------------------------------- adaptive pooling


def _bins(size: int, out: int):
    """The adaptive bins [floor(i*size/out), ceil((i+1)*size/out)) for i < out."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_avg(x, output_size, dims: int) -> np.ndarray:
    x, g = prepare_adaptive(x, output_size, dims)
    x4 = x.reshape(g.input_shape)
    y = np.empty((g.batch, g.channels, g.out_h, g.out_w), dtype=x.dtype)
    for i, (h0, h1) in enumerate(_bins(g.in_h, g.out_h)):
        for j, (w0, w1) in enumerate(_bins(g.in_w, g.out_w)):
            y[:, :, i, j] = x4[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y.reshape(g.output_shape_nd(dims))


def _adaptive_max(x, output_size, return_indices, dims: int):
    x, g = prepare_adaptive(x, output_size, dims)
    x4 = x.reshape(g.input_shape)
    y = np.empty((g.batch, g.channels, g.out_h, g.out_w), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64)
    for i, (h0, h1) in enumerate(_bins(g.in_h, g.out_h)):
        for j, (w0, w1) in enumerate(_bins(g.in_w, g.out_w)):
            window = x4[:, :, h0:h1, w0:w1].reshape(g.batch, g.channels, -1)
            positions = (np.arange(h0, h1)[:, None] * g.in_w + np.arange(w0, w1)).reshape(-1)
            y[:, :, i, j], idx[:, :, i, j] = _pick_max(window, positions,
                                                       np.ones(positions.shape, bool))
    shape = g.output_shape_nd(dims)
    return (y.reshape(shape), idx.reshape(shape)) if return_indices else y.reshape(shape)


def _adaptive_avg_backward(grad_output, input_shape, dims: int) -> np.ndarray:
    dy, g = prepare_adaptive_backward(grad_output, input_shape, dims)
    dy = dy.reshape(g.batch, g.channels, g.out_h, g.out_w)
    grad = np.zeros(g.input_shape, dtype=dy.dtype)
    for i, (h0, h1) in enumerate(_bins(g.in_h, g.out_h)):
        for j, (w0, w1) in enumerate(_bins(g.in_w, g.out_w)):
            grad[:, :, h0:h1, w0:w1] += dy[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return grad.reshape(g.input_shape_nd(dims))


def adaptive_avg_pool2d(x: np.ndarray, output_size: IntOrTuple) -> np.ndarray:
    """Mean over the adaptive bins of (N, C, H, W); see fastnn.adaptive_avg_pool2d."""
    return _adaptive_avg(x, output_size, 2)


def adaptive_avg_pool1d(x: np.ndarray, output_size: IntOrTuple) -> np.ndarray:
    """Mean over the adaptive bins of (N, C, L)."""
    return _adaptive_avg(x, output_size, 1)


def adaptive_max_pool2d(x: np.ndarray, output_size: IntOrTuple, return_indices: bool = False):
    """Maximum over the adaptive bins of (N, C, H, W), indices as max_pool2d."""
    return _adaptive_max(x, output_size, return_indices, 2)


def adaptive_max_pool1d(x: np.ndarray, output_size: IntOrTuple, return_indices: bool = False):
    """Maximum over the adaptive bins of (N, C, L)."""
    return _adaptive_max(x, output_size, return_indices, 1)


def adaptive_avg_pool2d_backward(grad_output: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Each output's gradient spread evenly over its bin."""
    return _adaptive_avg_backward(grad_output, input_shape, 2)


def adaptive_avg_pool1d_backward(grad_output: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of adaptive_avg_pool1d."""
    return _adaptive_avg_backward(grad_output, input_shape, 1)


def adaptive_max_pool2d_backward(grad_output: np.ndarray, indices: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Each output's gradient added at the position of its bin's maximum."""
    return _max_backward(grad_output, indices, input_shape, 2)


def adaptive_max_pool1d_backward(grad_output: np.ndarray, indices: np.ndarray,
                                 input_shape: Sequence[int]) -> np.ndarray:
    """Gradient of adaptive_max_pool1d."""
    return _max_backward(grad_output, indices, input_shape, 1)


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean of each plane: (N, C, H, W) -> (N, C)."""
    y = adaptive_avg_pool2d(x, 1)
    return y.reshape(y.shape[:2])


def global_max_pool2d(x: np.ndarray) -> np.ndarray:
    """Maximum of each plane: (N, C, H, W) -> (N, C)."""
    y = adaptive_max_pool2d(x, 1)
    return y.reshape(y.shape[:2])


# --------------------------------------------------------------------------- spatial pyramid


def spatial_pyramid_pool(x: np.ndarray, levels: Sequence[int] = (1, 2, 4),
                         mode: str = "max") -> np.ndarray:
    """Adaptive pooling to l x l for each level l, flattened and concatenated in order:
    (N, C, H, W) -> (N, C * sum(l*l)) for any H, W."""
    x, levels, mode = prepare_spp(x, levels, mode)
    pool = adaptive_max_pool2d if mode == "max" else adaptive_avg_pool2d
    n = x.shape[0]
    return np.concatenate([pool(x, l).reshape(n, -1) for l in levels], axis=1)


def spatial_pyramid_pool_backward(grad_output: np.ndarray, x: np.ndarray,
                                  levels: Sequence[int] = (1, 2, 4),
                                  mode: str = "max") -> np.ndarray:
    """The sum over levels of each level's adaptive pooling backward."""
    dy, x, levels, mode = prepare_spp_backward(grad_output, x, levels, mode)
    n, c = x.shape[:2]
    grad = np.zeros(x.shape, dtype=x.dtype)
    start = 0
    for l in levels:
        g = dy[:, start:start + c * l * l].reshape(n, c, l, l)
        start += c * l * l
        if mode == "max":
            _, idx = adaptive_max_pool2d(x, l, return_indices=True)
            grad += adaptive_max_pool2d_backward(g, idx, x.shape)
        else:
            grad += adaptive_avg_pool2d_backward(g, x.shape)
    return grad
