"""Named convolution shapes shared by the tests, the benchmarks and ``python -m fastnn``.

A new shape is added here once. Each case is the input shape, the weight shape
and the keyword options of `fastnn.conv2d` / `fastnn.conv1d`.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

import numpy as np


# Tolerances of fastnn against the reference (tests, benchmarks, python -m fastnn),
# relative to the scale of the expected result.
#
# A convolution output is a sum of K = C_in/groups*kH*kW terms (a weight gradient sums
# N*out_h*out_w terms, up to 10^4 here) computed in a different order by the C
# path (OpenBLAS blocked GEMM, cache-sized blocks of positions, fixed partial sums) and by
# the NumPy reference. With unit-variance data the rounding error of such a sum grows like
# sqrt(K) * eps * (size of the terms), while an element of the result may be close to zero
# through cancellation, so a purely element-wise relative test is meaningless for those
# elements. The check is therefore
#     |actual - expected| <= rtol * |expected| + atol * max(1, max|expected|)
# float32: eps = 6e-8; sqrt(10^4) * eps ~ 6e-6 for the longest sums here (weight gradients
#          over 10^4 positions); the largest error measured over this suite is ~3e-7 of the
#          scale, so atol = 1e-5 keeps a wide margin for other BLAS kernels, while one missing
#          or doubled term (about scale / sqrt(K), >= 1e-2 of the scale) fails by far.
# float64: eps = 1.1e-16; the largest error measured is ~2e-15 of the scale: atol = 1e-12.
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 2e-5, "atol": 1e-5},
    np.dtype(np.float64): {"rtol": 1e-11, "atol": 1e-12},
}

class ConvCase(NamedTuple):
    name: str
    x_shape: Tuple[int, ...]
    w_shape: Tuple[int, ...]
    options: Dict[str, object]
    dtype: type = np.float32

    @property
    def dims(self) -> int:
        return len(self.x_shape) - 2

    def arrays(self, seed: int = 0):
        """Random (x, weight, bias) for this case, in its dtype."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(self.dtype)
        fan_in = np.prod(self.w_shape[1:])
        w = (rng.standard_normal(self.w_shape) / np.sqrt(fan_in)).astype(self.dtype)
        b = rng.standard_normal(self.w_shape[0]).astype(self.dtype)
        return x, w, b

    def flops(self) -> int:
        """Forward multiply-adds x 2 (bias not counted)."""
        from fastnn._validate import conv_geometry

        opts = self.options
        geo = conv_geometry(self.x_shape, self.w_shape, opts.get("stride", 1),
                            opts.get("padding", 0), opts.get("dilation", 1),
                            opts.get("groups", 1), self.dims)
        k = geo.in_channels // geo.groups * geo.kernel_h * geo.kernel_w
        return 2 * geo.batch * geo.out_channels * geo.out_h * geo.out_w * k


def _resnet18(batch: int):
    return [
        ConvCase(f"stem7x7s2_b{batch}", (batch, 3, 224, 224), (64, 3, 7, 7),
                 {"stride": 2, "padding": 3}),
        ConvCase(f"3x3_64x56_b{batch}", (batch, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
        ConvCase(f"3x3_128x28_b{batch}", (batch, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}),
        ConvCase(f"3x3_256x14_b{batch}", (batch, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}),
        ConvCase(f"3x3_512x7_b{batch}", (batch, 512, 7, 7), (512, 512, 3, 3), {"padding": 1}),
        ConvCase(f"1x1s2_64to128_b{batch}", (batch, 64, 56, 56), (128, 64, 1, 1), {"stride": 2}),
    ]


# The benchmark table of the Foundation issue.
BENCH_CASES = _resnet18(1) + _resnet18(16) + [
    ConvCase("conv1d_128to256_k3", (32, 128, 100), (256, 128, 3), {}),
    ConvCase("depthwise3x3_128x56", (8, 128, 56, 56), (128, 1, 3, 3),
             {"padding": 1, "groups": 128}),
    ConvCase("1to32_3x3_28", (64, 1, 28, 28), (32, 1, 3, 3), {"padding": 1}),
    ConvCase("f64_3x3_64x56_b4", (4, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}, np.float64),
]

# A few of them for the quick table of ``python -m fastnn``.
QUICK_CASES = [c for c in BENCH_CASES if c.name in (
    "stem7x7s2_b16", "3x3_64x56_b16", "1x1s2_64to128_b16", "1to32_3x3_28", "f64_3x3_64x56_b4")]


# --------------------------------------------------------------------------- pooling


class PoolCase(NamedTuple):
    """One pooling benchmark: a function of fastnn (and of fastnn.reference) by name,
    its input shape and keyword options."""
    name: str
    op: str  # 'max_pool2d', 'avg_pool2d', 'adaptive_avg_pool2d' or 'spatial_pyramid_pool'
    x_shape: Tuple[int, ...]
    options: Dict[str, object]
    dtype: type = np.float32

    def array(self, seed: int = 0) -> np.ndarray:
        """A random input for this case, in its dtype."""
        return np.random.default_rng(seed).standard_normal(self.x_shape).astype(self.dtype)

    def output_shape(self) -> Tuple[int, ...]:
        """The forward's output shape (from the shapes alone)."""
        from fastnn import _validate as v

        n, c = self.x_shape[:2]
        o = self.options
        if self.op == "spatial_pyramid_pool":
            return (n, c * sum(l * l for l in o.get("levels", (1, 2, 4))))
        if self.op.startswith("adaptive"):
            out = v.adaptive_output_size(o["output_size"], self.x_shape[2:], 2)
            return (n, c) + out
        geo = v.pool_geometry(self.x_shape, o["kernel_size"], o.get("stride"),
                              o.get("padding", 0), o.get("dilation", 1),
                              o.get("ceil_mode", False), 2)
        return geo.output_shape_nd(2)

    def bytes(self, mode: str = "fwd") -> int:
        """The least memory traffic of a pass: input and output, and for forward+backward
        also grad_output and grad_input (max pooling's indices are not counted)."""
        size = np.dtype(self.dtype).itemsize
        x, y = int(np.prod(self.x_shape)), int(np.prod(self.output_shape()))
        return size * (x + y) * (2 if mode == "fwdbwd" else 1)


# The benchmark table of the pooling issue.
POOL_CASES = [
    PoolCase("max3x3s2p1_64x112_b16", "max_pool2d", (16, 64, 112, 112),
             {"kernel_size": 3, "stride": 2, "padding": 1}),
    PoolCase("avg2x2s2_64x56_b16", "avg_pool2d", (16, 64, 56, 56),
             {"kernel_size": 2, "stride": 2}),
    PoolCase("adaptive_avg1_512x7_b32", "adaptive_avg_pool2d", (32, 512, 7, 7),
             {"output_size": 1}),
    PoolCase("spp124_max_256x13_b8", "spatial_pyramid_pool", (8, 256, 13, 13),
             {"levels": (1, 2, 4), "mode": "max"}),
]


# --------------------------------------------------------------------------- recurrences


class RNNCase(NamedTuple):
    """One recurrence benchmark: a `fastnn.nn.LSTM`/`GRU`/`RNN` stack (``torch.nn``'s twin)
    run over a (T, N, I) float32 sequence, and its speed targets against PyTorch.

    `targets` are (inference, training) speedups over PyTorch the issue asks for;
    `varlen` says whether the random-lengths variant (lengths in [T/2, T]) applies.
    """
    name: str
    mode: str  # 'lstm', 'gru' or 'rnn_tanh' (the `fastnn._validate.RNN_GATES` keys)
    steps: int  # T
    batch: int  # N
    input_size: int  # I
    hidden_size: int  # H
    num_layers: int = 1
    bidirectional: bool = False
    targets: Tuple[float, float] = (1.0, 1.0)
    varlen: bool = True
    dtype: type = np.float32

    @property
    def gates(self) -> int:
        """G: gate blocks of the weights (4 LSTM, 3 GRU, 1 RNN)."""
        return {"lstm": 4, "gru": 3}.get(self.mode, 1)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def x_shape(self) -> Tuple[int, int, int]:
        return (self.steps, self.batch, self.input_size)

    def output_shape(self) -> Tuple[int, int, int]:
        return (self.steps, self.batch, self.directions * self.hidden_size)

    def arrays(self, seed: int = 0):
        """Random (x, grad_output) for this case, in its dtype."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape()).astype(self.dtype)
        g = rng.standard_normal(self.output_shape()).astype(self.dtype)
        return x, g

    def lengths(self, seed: int = 0) -> np.ndarray:
        """Random sequence lengths in [T/2, T] (int64, (N,)), the longest always T."""
        rng = np.random.default_rng(seed + 1)
        lengths = rng.integers((self.steps + 1) // 2, self.steps + 1, self.batch)
        lengths[0] = self.steps  # the padded batch's T: the same output shape either way
        return lengths.astype(np.int64)

    def flops(self) -> int:
        """Inference multiply-adds x 2: 2*T*N*G*H*(I_l + H) per layer and direction, I_l
        the layer's input width (gate nonlinearities and biases not counted). Training
        (forward + backward) is 3x this."""
        total = 0
        for layer in range(self.num_layers):
            width = self.input_size if layer == 0 else self.directions * self.hidden_size
            total += (self.directions * 2 * self.steps * self.batch * self.gates
                      * self.hidden_size * (width + self.hidden_size))
        return total


def _rnn_shapes(mode: str, batch_targets, latency_targets):
    return [
        RNNCase(f"{mode}_T100_N32_I128_H256", mode, 100, 32, 128, 256, targets=batch_targets),
        RNNCase(f"{mode}_T50_N64_I512_H512", mode, 50, 64, 512, 512, targets=batch_targets),
        RNNCase(f"{mode}_T200_N1_I64_H128", mode, 200, 1, 64, 128, targets=latency_targets,
                varlen=False),
    ]


# The benchmark table of the recurrence issue; targets are (inference, training) speedups
# over PyTorch, at 1 and 2 threads.
RNN_CASES = _rnn_shapes("lstm", (0.9, 1.0), (1.5, 1.5)) + _rnn_shapes("gru", (1.2, 1.3),
                                                                      (3.0, 5.0)) + [
    RNNCase("lstm2bi_T50_N32_I128_H256", "lstm", 50, 32, 128, 256, num_layers=2,
            bidirectional=True, targets=(0.9, 1.0)),
    RNNCase("rnn_tanh_T100_N32_I128_H256", "rnn_tanh", 100, 32, 128, 256, targets=(1.3, 1.3)),
]


# The recurrences of the main job (`python -m fastnn`): a batch and a batch of one.
QUICK_RNN_CASES = [c for c in RNN_CASES if c.name in (
    "lstm_T100_N32_I128_H256", "gru_T200_N1_I64_H128")]


class GemmStepCase(NamedTuple):
    """One per-step GEMM of a recurrence: c (m, n) = a (m, k) @ W.T, W (n, k) the same
    weight at every step (the packed-panel kernel's use, csrc/gemm_packed.c)."""
    name: str
    m: int
    n: int
    k: int

    def flops(self) -> int:
        return 2 * self.m * self.n * self.k


# Forward: batch x gates (4H for an LSTM, 3H for a GRU) x hidden H. Backward: the
# gradient of the hidden state, batch x H x gates.
GEMM_STEP_CASES = [GemmStepCase(f"{name}_{m}x{n}x{k}", m, n, k) for name, m, n, k in [
    ("lstm_h256", 32, 1024, 256), ("lstm_h512", 64, 2048, 512), ("lstm_h128_b1", 1, 512, 128),
    ("gru_h256", 32, 768, 256), ("gru_h512", 64, 1536, 512), ("gru_h128_b1", 1, 384, 128),
    ("lstm_h256_dh", 32, 256, 1024), ("lstm_h512_dh", 64, 512, 2048),
    ("lstm_h128_b1_dh", 1, 128, 512),
]]
