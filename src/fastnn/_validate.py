"""The one place where user arguments are checked and normalized.

Every public function (the C path and the NumPy reference alike) goes through
these helpers, so the same bad input gets the same clear message everywhere.
Messages name the argument and the shapes involved.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Sequence, Tuple, Union

import numpy as np

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], str]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# OpenBLAS32 takes 32-bit sizes and leading dimensions.
_BLAS_MAX = 2**31 - 1


def as_float_array(value, name: str) -> np.ndarray:
    """`value` as a native-byte-order float32/float64 ndarray (not copied when it is one).

    Raises TypeError for anything else: integers, booleans, complex, objects.
    """
    arr = np.asarray(value)
    if arr.dtype in FLOAT_DTYPES:  # native float32/float64: the common case, first
        return arr
    if arr.dtype.newbyteorder("=") not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a float32 or float64 array, got dtype {arr.dtype} "
            f"with shape {arr.shape}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def same_dtype(**arrays: np.ndarray | None) -> np.dtype:
    """The dtype shared by the given arrays (None entries are skipped)."""
    dtypes = {a.dtype for a in arrays.values() if a is not None}
    if len(dtypes) > 1:
        desc = ", ".join(f"{k} is {a.dtype}" for k, a in arrays.items() if a is not None)
        raise TypeError(f"dtype mismatch: {desc}; convert them to one float dtype")
    return next(iter(dtypes))


def check_ndim(arr: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-d {layout}, got shape {arr.shape} ({arr.ndim}-d)")


def check_shape(arr: np.ndarray, shape: Tuple[int, ...], name: str) -> None:
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")


def contiguous(arr: np.ndarray) -> np.ndarray:
    """C-contiguous and aligned (a copy only when needed)."""
    if arr.flags.c_contiguous and arr.flags.aligned:  # np.require costs ~5 us even then
        return arr
    return np.require(arr, requirements=["C", "A"])


def as_int(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_tuple(value: IntOrTuple, n: int, name: str, minimum: int) -> Tuple[int, ...]:
    """An int, or a sequence of n ints, as a tuple of n ints >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
        return tuple(as_int(v, name, minimum) for v in value)
    return (as_int(value, name, minimum),) * n


class ConvGeometry(NamedTuple):
    """Sizes of one convolution, in the field order of the C `fnn_conv_shape`.

    A 1-d convolution has in_h = kernel_h = out_h = 1. pad_h/pad_w are the
    top/left padding; the bottom/right padding follows from the output size.
    """
    batch: int
    in_channels: int
    in_h: int
    in_w: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dilation_h: int
    dilation_w: int
    groups: int
    out_h: int
    out_w: int

    @property
    def pad_bottom(self) -> int:
        return _far_pad(self.in_h, self.kernel_h, self.stride_h, self.pad_h,
                        self.dilation_h, self.out_h)

    @property
    def pad_right(self) -> int:
        return _far_pad(self.in_w, self.kernel_w, self.stride_w, self.pad_w,
                        self.dilation_w, self.out_w)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return (self.batch, self.in_channels, self.in_h, self.in_w)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        return (self.batch, self.out_channels, self.out_h, self.out_w)

    def output_shape_nd(self, dims: int) -> Tuple[int, ...]:
        """The output shape of a `dims`-d convolution: (N, C, L) or (N, C, H, W)."""
        return self.output_shape if dims == 2 else (self.batch, self.out_channels, self.out_w)

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel_h,
                self.kernel_w)


def _far_pad(size: int, k: int, s: int, pad: int, d: int, out: int) -> int:
    """Bottom/right padding the output size needs (0 when it ends inside the input)."""
    return max((out - 1) * s + d * (k - 1) + 1 - size - pad, 0)


def _resolve_padding(padding: Padding, size: Tuple[int, ...], kernel: Tuple[int, ...],
                     stride: Tuple[int, ...], dilation: Tuple[int, ...]
                     ) -> Tuple[Tuple[int, int], ...]:
    """(before, after) padding per spatial dim, for an int, a tuple, 'valid' or 'same'."""
    n = len(size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        pads = []
        for h, k, s, d in zip(size, kernel, stride, dilation):
            # stride 1: PyTorch's 'same'; stride > 1: TensorFlow's (out = ceil(h / s)).
            out = -(-h // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - h, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple((p, p) for p in as_tuple(padding, n, "padding", 0))


def _output_size(size: int, k: int, s: int, before: int, after: int, d: int) -> int:
    return (size + before + after - d * (k - 1) - 1) // s + 1


def conv_geometry(x_shape: Tuple[int, ...], weight_shape: Tuple[int, ...], stride: IntOrTuple,
                  padding: Padding, dilation: IntOrTuple, groups: int, dims: int
                  ) -> ConvGeometry:
    """Check a convolution's shapes and options; return its geometry.

    `dims` is 1 for (N, C, L) inputs and 2 for (N, C, H, W).
    """
    layout = "(N, C, L)" if dims == 1 else "(N, C, H, W)"
    wlayout = "(C_out, C_in/groups, K)" if dims == 1 else "(C_out, C_in/groups, kH, kW)"
    if len(x_shape) != dims + 2:
        raise ValueError(f"input must be {dims + 2}-d {layout}, got shape {tuple(x_shape)}")
    if len(weight_shape) != dims + 2:
        raise ValueError(f"weight must be {dims + 2}-d {wlayout}, got shape {tuple(weight_shape)}")
    groups = as_int(groups, "groups", 1)
    n, c = x_shape[:2]
    m, cg = weight_shape[:2]
    size, kernel = tuple(x_shape[2:]), tuple(weight_shape[2:])
    if min(x_shape) < 1:
        raise ValueError(f"input has an empty dimension: shape {tuple(x_shape)}")
    if min(weight_shape) < 1:
        raise ValueError(f"weight has an empty dimension: shape {tuple(weight_shape)}")
    if c % groups or m % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={c} (input {tuple(x_shape)}) and "
            f"out_channels={m} (weight {tuple(weight_shape)})")
    if cg * groups != c:
        raise ValueError(
            f"weight {tuple(weight_shape)} expects {cg * groups} input channels with "
            f"groups={groups}, but input {tuple(x_shape)} has {c}")
    stride = as_tuple(stride, dims, "stride", 1)
    dilation = as_tuple(dilation, dims, "dilation", 1)
    pads = _resolve_padding(padding, size, kernel, stride, dilation)
    out = tuple(_output_size(*args) for args in
                zip(size, kernel, stride, (p[0] for p in pads), (p[1] for p in pads), dilation))
    if min(out) < 1:
        raise ValueError(
            f"kernel {kernel} with dilation {dilation} is larger than the padded input "
            f"{tuple(h + a + b for h, (a, b) in zip(size, pads))} (input {tuple(x_shape)})")
    if dims == 1:
        geo = ConvGeometry(n, c, 1, size[0], m, 1, kernel[0], 1, stride[0], 0, pads[0][0],
                           1, dilation[0], groups, 1, out[0])
    else:
        geo = ConvGeometry(n, c, size[0], size[1], m, kernel[0], kernel[1], stride[0],
                           stride[1], pads[0][0], pads[1][0], dilation[0], dilation[1],
                           groups, out[0], out[1])
    check_sizes(geo)
    return geo


def check_sizes(geo: ConvGeometry) -> None:
    """Reject problems whose GEMM sizes overflow 32-bit BLAS or whose arrays overflow memory."""
    kk = geo.kernel_h * geo.kernel_w
    gemm = {"positions per image (out_h*out_w)": geo.out_h * geo.out_w,
            "input plane (H*W)": geo.in_h * geo.in_w,
            "in_channels/groups*kH*kW": geo.in_channels // geo.groups * kk,
            "out_channels": geo.out_channels}
    for what, v in gemm.items():
        if v > _BLAS_MAX:
            raise ValueError(f"{what} = {v} exceeds the 32-bit BLAS limit {_BLAS_MAX}")
    biggest = max(math.prod(geo.input_shape), math.prod(geo.output_shape),
                  geo.batch * geo.in_channels * kk * geo.out_h * geo.out_w)
    if biggest * 8 > np.iinfo(np.intp).max:
        raise ValueError(f"convolution too large: an array of {biggest} elements overflows")


def float_arrays(**named) -> Tuple[Tuple[np.ndarray | None, ...], np.dtype]:
    """Coerce the named arrays (None allowed) to one float dtype; return them and it."""
    arrays = {k: (None if v is None else as_float_array(v, k)) for k, v in named.items()}
    return tuple(arrays.values()), same_dtype(**arrays)


def prepare_conv(x, weight, bias, stride, padding, dilation, groups, dims: int):
    """Validated (x, weight, bias, geometry) of a convolution call."""
    (x, weight, bias), _ = float_arrays(input=x, weight=weight, bias=bias)
    geo = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups, dims)
    if bias is not None:
        check_shape(bias, (geo.out_channels,), "bias")
    return x, weight, bias, geo


def prepare_conv_backward(grad_output, x, weight, stride, padding, dilation, groups, dims: int):
    """Validated (grad_output, x, weight, geometry) of a convolution backward call."""
    (grad_output, x, weight), _ = float_arrays(grad_output=grad_output, input=x, weight=weight)
    geo = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups, dims)
    check_shape(grad_output, geo.output_shape_nd(dims), "grad_output")
    return grad_output, x, weight, geo


def unfold_geometry(x_shape: Tuple[int, ...], kernel_size: IntOrTuple, dilation: IntOrTuple,
                    padding: IntOrTuple, stride: IntOrTuple) -> ConvGeometry:
    """Geometry of im2col/col2im on an (N, C, H, W) input (symmetric padding, as unfold)."""
    if len(x_shape) != 4:
        raise ValueError(f"input must be 4-d (N, C, H, W), got shape {tuple(x_shape)}")
    kernel = as_tuple(kernel_size, 2, "kernel_size", 1)
    n, c = x_shape[:2]
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int or a pair for im2col/col2im, got {padding!r}")
    return conv_geometry(x_shape, (c, 1) + kernel, stride, padding, dilation, c, 2)


def prepare_col2im(cols, output_size: IntOrTuple, kernel_size: IntOrTuple,
                   dilation: IntOrTuple, padding: IntOrTuple, stride: IntOrTuple):
    """Validated (cols, geometry) of a col2im call; cols is (N, C*kH*kW, L)."""
    (cols,), _ = float_arrays(cols=cols)
    check_ndim(cols, 3, "cols", "(N, C*kH*kW, L)")
    h, w = as_tuple(output_size, 2, "output_size", 1)
    kh, kw = as_tuple(kernel_size, 2, "kernel_size", 1)
    n, rows, length = cols.shape
    if rows % (kh * kw):
        raise ValueError(f"cols has {rows} rows (shape {cols.shape}), not a multiple of "
                         f"kH*kW = {kh * kw}")
    geo = unfold_geometry((n, rows // (kh * kw), h, w), (kh, kw), dilation, padding, stride)
    if length != geo.out_h * geo.out_w:
        raise ValueError(f"cols has L = {length} blocks (shape {cols.shape}), but output_size "
                         f"{(h, w)} gives {geo.out_h}x{geo.out_w} = {geo.out_h * geo.out_w}")
    return cols, geo


# --------------------------------------------------------------------------- pooling


def _layout(dims: int) -> str:
    return "(N, C, L)" if dims == 1 else "(N, C, H, W)"


def as_bool(value, name: str) -> bool:
    """A bool (or NumPy bool); PyTorch refuses ints here too."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


class PoolGeometry(NamedTuple):
    """Sizes of one pooling, in the field order of the C `fnn_pool_shape`.

    1-d pooling has in_h = out_h = kernel_h = 1. pad_h/pad_w are the top/left
    padding; out_h/out_w (ceil_mode included) imply the rest. Adaptive pooling
    and the max backward use only the sizes (kernel, stride, dilation 1, pad 0).
    """
    batch: int
    channels: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return (self.batch, self.channels, self.in_h, self.in_w)

    def input_shape_nd(self, dims: int) -> Tuple[int, ...]:
        return self.input_shape if dims == 2 else (self.batch, self.channels, self.in_w)

    def output_shape_nd(self, dims: int) -> Tuple[int, ...]:
        """The output shape of a `dims`-d pooling: (N, C, L) or (N, C, H, W)."""
        if dims == 2:
            return (self.batch, self.channels, self.out_h, self.out_w)
        return (self.batch, self.channels, self.out_w)


def _sizes_geometry(shape: Tuple[int, ...], out: Tuple[int, ...], dims: int) -> PoolGeometry:
    """A geometry of sizes only: (N, C, *in) pooled to `out`."""
    n, c = shape[:2]
    if dims == 1:
        return PoolGeometry(n, c, 1, shape[2], 1, out[0])
    return PoolGeometry(n, c, shape[2], shape[3], out[0], out[1])


def check_pool_input(shape: Tuple[int, ...], dims: int, name: str = "input") -> None:
    """Rank (batched only, as fastnn's convolutions), no empty dimension, and planes of
    fewer than 2^31 pixels (the kernels keep positions within a plane in 32 bits, as the
    convolutions' BLAS does)."""
    if len(shape) != dims + 2:
        raise ValueError(f"{name} must be {dims + 2}-d {_layout(dims)}, got shape {tuple(shape)}")
    if min(shape) < 1:
        raise ValueError(f"{name} has an empty dimension: shape {tuple(shape)}")
    plane = math.prod(shape[2:])
    if plane > _BLAS_MAX:
        raise ValueError(f"input plane ({' * '.join(map(str, shape[2:]))} = {plane} positions, "
                         f"{name} {tuple(shape)}) exceeds the 32-bit limit {_BLAS_MAX}")


def pool_output_size(size: int, k: int, s: int, pad: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; in ceil_mode the last window must start inside the
    input or its left padding (a window starting in the right padding is dropped)."""
    span = size + 2 * pad - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + pad:
        out -= 1
    return out


def pool_geometry(x_shape: Tuple[int, ...], kernel_size: IntOrTuple,
                  stride: IntOrTuple | None, padding: IntOrTuple, dilation: IntOrTuple,
                  ceil_mode: bool, dims: int, name: str = "input") -> PoolGeometry:
    """Check a max/average pooling's shapes and options; return its geometry."""
    check_pool_input(tuple(x_shape), dims, name)
    kernel = as_tuple(kernel_size, dims, "kernel_size", 1)
    stride = kernel if stride is None else as_tuple(stride, dims, "stride", 1)
    pad = as_tuple(padding, dims, "padding", 0)
    dilation = as_tuple(dilation, dims, "dilation", 1)
    ceil_mode = as_bool(ceil_mode, "ceil_mode")
    if any(p > k // 2 for p, k in zip(pad, kernel)):
        raise ValueError(f"padding {pad} must be at most half of kernel_size {kernel} "
                         f"(padding <= kernel_size // 2, as PyTorch)")
    size = tuple(x_shape[2:])
    out = tuple(pool_output_size(*a, ceil_mode) for a in zip(size, kernel, stride, pad, dilation))
    if min(out) < 1:
        raise ValueError(
            f"kernel_size {kernel} with dilation {dilation} is larger than the padded input "
            f"{tuple(h + 2 * p for h, p in zip(size, pad))} ({name} {tuple(x_shape)}): "
            f"output size {out}")
    n, c = x_shape[:2]
    if dims == 1:
        return PoolGeometry(n, c, 1, size[0], 1, out[0], 1, kernel[0], 1, stride[0], 0, pad[0],
                            1, dilation[0])
    return PoolGeometry(n, c, size[0], size[1], out[0], out[1], kernel[0], kernel[1],
                        stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1])


def prepare_pool(x, kernel_size, stride, padding, dilation, ceil_mode, dims: int):
    """Validated (x, geometry) of a max/average pooling call."""
    (x,), _ = float_arrays(input=x)
    return x, pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, dims)


def avg_options(count_include_pad, divisor_override) -> Tuple[bool, int]:
    """(count_include_pad, divisor_override as an int, 0 for None)."""
    cip = as_bool(count_include_pad, "count_include_pad")
    return cip, 0 if divisor_override is None else as_int(divisor_override, "divisor_override", 1)


def as_input_shape(input_shape, dims: int) -> Tuple[int, ...]:
    """The `input_shape` argument of a backward: dims + 2 positive ints."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != dims + 2:
        raise ValueError(f"input_shape must be {dims + 2} ints {_layout(dims)}, "
                         f"got {input_shape!r}")
    return tuple(as_int(v, "input_shape", 1) for v in input_shape)


def _grad_fits(grad_output: np.ndarray, input_shape: Tuple[int, ...], dims: int) -> None:
    check_ndim(grad_output, dims + 2, "grad_output", _layout(dims))
    if grad_output.shape[:2] != input_shape[:2] or min(grad_output.shape) < 1:
        raise ValueError(f"grad_output {grad_output.shape} does not fit input_shape "
                         f"{input_shape}: N and C must agree and no size may be 0")


def prepare_max_backward(grad_output, indices, input_shape, dims: int):
    """Validated (grad_output, indices, geometry) of a max pooling backward (plain or
    adaptive): indices int64 of grad_output's shape, flat positions in input planes."""
    (grad_output,), _ = float_arrays(grad_output=grad_output)
    input_shape = as_input_shape(input_shape, dims)
    indices = np.asarray(indices)
    if indices.dtype != np.int64:
        raise TypeError(f"indices must be an int64 array (as the forward returns them), got "
                        f"dtype {indices.dtype} with shape {indices.shape}")
    _grad_fits(grad_output, input_shape, dims)
    check_shape(indices, grad_output.shape, "indices")
    return grad_output, indices, _sizes_geometry(input_shape, grad_output.shape[2:], dims)


def indices_out_of_range(geo: PoolGeometry) -> ValueError:
    """The error for indices that point outside their input plane (checked as data, by the
    C kernel during its scatter and by the reference before it)."""
    hw = geo.in_h * geo.in_w
    return ValueError(f"indices: a value lies outside [0, {hw}), the positions of an input "
                      f"plane of {(geo.in_h, geo.in_w) if geo.in_h > 1 else (geo.in_w,)}")


def prepare_avg_backward(grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                         dims: int):
    """Validated (grad_output, geometry) of an average pooling backward."""
    (grad_output,), _ = float_arrays(grad_output=grad_output)
    input_shape = as_input_shape(input_shape, dims)
    geo = pool_geometry(input_shape, kernel_size, stride, padding, 1, ceil_mode, dims,
                        "input_shape")
    check_shape(grad_output, geo.output_shape_nd(dims), "grad_output")
    return grad_output, geo


def adaptive_output_size(output_size, size: Tuple[int, ...], dims: int) -> Tuple[int, ...]:
    """An int or dims entries, each an int >= 1 or None (the input's size there)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != dims:
            raise ValueError(f"output_size must be an int or {dims} ints, got {output_size!r}")
        return tuple(s if o is None else as_int(o, "output_size", 1)
                     for o, s in zip(output_size, size))
    return (as_int(output_size, "output_size", 1),) * dims


def prepare_adaptive(x, output_size, dims: int):
    """Validated (x, geometry) of an adaptive pooling call."""
    (x,), _ = float_arrays(input=x)
    check_pool_input(x.shape, dims)
    out = adaptive_output_size(output_size, x.shape[2:], dims)
    return x, _sizes_geometry(x.shape, out, dims)


def prepare_adaptive_backward(grad_output, input_shape, dims: int):
    """Validated (grad_output, geometry) of an adaptive average pooling backward."""
    (grad_output,), _ = float_arrays(grad_output=grad_output)
    input_shape = as_input_shape(input_shape, dims)
    _grad_fits(grad_output, input_shape, dims)
    return grad_output, _sizes_geometry(input_shape, grad_output.shape[2:], dims)


SPP_MODES = ("max", "avg")


def spp_options(levels, mode) -> Tuple[Tuple[int, ...], str]:
    """(levels as a tuple of ints >= 1, mode 'max' or 'avg') of a spatial pyramid pooling."""
    if not isinstance(levels, (tuple, list, np.ndarray)) or len(levels) == 0:
        raise ValueError(f"levels must be a non-empty sequence of ints >= 1, got {levels!r}")
    levels = tuple(as_int(v, "levels", 1) for v in levels)
    if mode not in SPP_MODES:
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    return levels, mode


def prepare_spp(x, levels, mode):
    """Validated (x, levels, mode) of a spatial pyramid pooling on (N, C, H, W)."""
    (x,), _ = float_arrays(input=x)
    check_pool_input(x.shape, 2)
    levels, mode = spp_options(levels, mode)
    return x, levels, mode


def prepare_spp_backward(grad_output, x, levels, mode):
    """Validated (grad_output, x, levels, mode); grad_output is (N, C*sum(l*l))."""
    (grad_output, x), _ = float_arrays(grad_output=grad_output, input=x)
    check_pool_input(x.shape, 2)
    levels, mode = spp_options(levels, mode)
    n, c = x.shape[:2]
    check_shape(grad_output, (n, c * sum(l * l for l in levels)), "grad_output")
    return grad_output, x, levels, mode


# --------------------------------------------------------------------------- recurrences

RNN_MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")
# Gate blocks of H rows in W_ih (G*H, I) and W_hh (G*H, H).
RNN_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def nonlinearity_mode(nonlinearity) -> str:
    """'tanh' or 'relu' as the recurrence mode 'rnn_tanh' / 'rnn_relu'."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "rnn_" + nonlinearity


def rnn_weights(gates: int, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None,
                b_hh: np.ndarray | None) -> int:
    """Check w_hh (gates*H, H), w_ih (gates*H, I), biases (gates*H,) with H, I >= 1; return H."""
    check_ndim(w_hh, 2, "w_hh", f"({gates}*H, H)")
    rows, hidden = w_hh.shape
    if hidden < 1 or rows != gates * hidden:
        raise ValueError(f"w_hh must have shape ({gates}*H, H) with H >= 1, got {w_hh.shape}")
    check_ndim(w_ih, 2, "w_ih", f"({gates}*H, I)")
    if w_ih.shape[0] != rows or w_ih.shape[1] < 1:
        raise ValueError(f"w_ih must have shape ({gates}*H, I) = ({rows}, I) with I >= 1 to "
                         f"match w_hh {w_hh.shape}, got {w_ih.shape}")
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None:
            check_shape(bias, (rows,), name)
    return hidden


def _rnn_input_size(x: np.ndarray, w_ih: np.ndarray) -> None:
    if x.shape[-1] != w_ih.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features (shape {x.shape}) but w_ih "
                         f"{w_ih.shape} expects I = {w_ih.shape[1]}")


def _rnn_state(name: str, state: np.ndarray, shape: Tuple[int, ...], x: np.ndarray,
               w_hh: np.ndarray) -> None:
    if state.shape != shape:
        raise ValueError(f"{name} must have shape {shape} for x {x.shape} and w_hh "
                         f"{w_hh.shape}, got {state.shape}")


def prepare_cell(gates: int, x, states: dict, w_ih, w_hh, b_ih, b_hh):
    """Validated (x, states, (w_ih, w_hh, b_ih, b_hh), unbatched) of one cell step, x and
    the states made 2-d: an unbatched x (I,) with states (H,) becomes a batch of one."""
    arrays, _ = float_arrays(x=x, **states, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    x, *state_arrays, w_ih, w_hh, b_ih, b_hh = arrays
    hidden = rnn_weights(gates, w_ih, w_hh, b_ih, b_hh)
    if x.ndim not in (1, 2):
        raise ValueError(f"x must be 2-d (N, I) or 1-d (I,) unbatched, got shape {x.shape}")
    if x.shape[0] < 1:
        raise ValueError(f"x has an empty dimension: shape {x.shape}")
    _rnn_input_size(x, w_ih)
    for name, state in zip(states, state_arrays):
        if state is None:
            raise TypeError(f"{name} must be a float32 or float64 array, got None")
        _rnn_state(name, state, x.shape[:-1] + (hidden,), x, w_hh)
    unbatched = x.ndim == 1
    if unbatched:
        x, state_arrays = x[None], [s[None] for s in state_arrays]
    return x, state_arrays, (w_ih, w_hh, b_ih, b_hh), unbatched


def state_pair(hx) -> Tuple[object, object]:
    """An LSTM state (h, c)."""
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"hx must be a pair (h, c) of arrays, got {type(hx).__name__}")
    return hx[0], hx[1]


def rnn_lengths(lengths, batch: int, steps: int, x_shape: Tuple[int, ...]) -> np.ndarray | None:
    """lengths as int64 (N,) in [1, T], or None (every sequence runs all T steps)."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"lengths must be an integer array, got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape (N,) = ({batch},) for x {x_shape}, got "
                         f"{lengths.shape}")
    if lengths.min() < 1 or lengths.max() > steps:
        raise ValueError(f"lengths must lie in [1, T] = [1, {steps}] for x {x_shape}, got "
                         f"values from {lengths.min()} to {lengths.max()}")
    return np.ascontiguousarray(lengths, dtype=np.int64)


def prepare_rnn_sequence(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    """Validated (x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse) of one layer and
    direction of a recurrence; lengths None or int64 (N,); c0 None unless 'lstm'."""
    if mode not in RNN_MODES:
        raise ValueError(f"mode must be one of {RNN_MODES}, got {mode!r}")
    (x, h0, c0, w_ih, w_hh, b_ih, b_hh), _ = float_arrays(
        x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh must both be given or both be None, got "
                         f"b_ih {'None' if b_ih is None else b_ih.shape} and "
                         f"b_hh {'None' if b_hh is None else b_hh.shape}")
    if h0 is None:
        raise ValueError("h0 is required: an (N, H) array (zeros for a fresh start)")
    if mode == "lstm" and c0 is None:
        raise ValueError("c0 is required for mode 'lstm': an (N, H) array")
    if mode != "lstm" and c0 is not None:
        raise ValueError(f"c0 must be None for mode {mode!r} (only the LSTM has a cell "
                         f"state), got shape {c0.shape}")
    hidden = rnn_weights(RNN_GATES[mode], w_ih, w_hh, b_ih, b_hh)
    check_ndim(x, 3, "x", "(T, N, I)")
    if min(x.shape) < 1:
        raise ValueError(f"x has an empty dimension: shape {x.shape}")
    _rnn_input_size(x, w_ih)
    steps, batch, _ = x.shape
    for name, state in (("h0", h0), ("c0", c0)):
        if state is not None:
            _rnn_state(name, state, (batch, hidden), x, w_hh)
    lengths = rnn_lengths(lengths, batch, steps, x.shape)
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, as_bool(reverse, "reverse")


def check_rnn_sizes(steps: int, batch: int, input_size: int, hidden: int) -> None:
    """The 32-bit BLAS limits on the all-steps GEMMs (rows, columns, leading dimensions)."""
    width = 4 * hidden
    if steps * batch > _BLAS_MAX or width > _BLAS_MAX or input_size > _BLAS_MAX:
        raise ValueError(
            f"recurrence too large: {steps} steps x batch {batch} with input size "
            f"{input_size} and hidden size {hidden} exceeds the 32-bit BLAS limits")


def rnn_upstream(grad, name: str, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """An upstream gradient of a recurrence backward: None, or of `dtype` and `shape`."""
    if grad is None:
        return None
    grad = as_float_array(grad, name)
    if grad.dtype != dtype:
        raise TypeError(f"dtype mismatch: {name} is {grad.dtype}, the forward ran in {dtype}")
    check_shape(grad, shape, name)
    return grad
