"""The bad-input table of the recurrences: `fastnn.rnn.rnn_sequence` / `rnn_sequence_backward`,
the functional cells, and the layers (`LSTM`/`GRU`/`RNN`, the cells, `DilatedRNN`). Every
entry must raise TypeError/ValueError (RuntimeError for a backward without its forward) with a
message naming the argument (and the shapes, where shapes are the problem); the C path and
the NumPy reference give the same message (both use fastnn._validate)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import fastnn
import fastnn.nn as nn
import fastnn.rnn as crnn

f32, f64 = np.float32, np.float64
T, N, I, H = 4, 3, 5, 6


def z(*shape, dtype=f64):
    return np.zeros(shape, dtype=dtype)


def s(shape):
    return re.escape(str(tuple(shape)))


X = z(T, N, I)
H0, C0 = z(N, H), z(N, H)
WL = (z(4 * H, I), z(4 * H, H), z(4 * H), z(4 * H))  # LSTM
WG = (z(3 * H, I), z(3 * H, H), z(3 * H), z(3 * H))  # GRU
WR = (z(H, I), z(H, H), z(H), z(H))  # RNN


def bad(id, args, error, match, marks=(), **kwargs):
    return pytest.param(args, kwargs, error, match, id=id, marks=marks)


SEQUENCE_BAD = [
    # input rank, sizes, dtype
    bad("x-2d", ("lstm", X[0], H0, C0, *WL), ValueError,
        rf"x must be 3-d \(T, N, I\), got shape {s((N, I))}"),
    bad("x-4d", ("gru", X[None], H0, None, *WG), ValueError, r"x must be 3-d"),
    bad("x-wrong-input-size", ("lstm", X[..., :4], H0, C0, *WL), ValueError,
        rf"x has 4 features .*w_ih {s(WL[0].shape)} expects I = {I}"),
    bad("x-empty-T", ("lstm", X[:0], H0, C0, *WL), ValueError, r"x has an empty dimension"),
    bad("x-empty-N", ("gru", X[:, :0], H0[:0], None, *WG), ValueError,
        r"x has an empty dimension"),
    bad("x-int", ("lstm", X.astype(np.int64), H0, C0, *WL), TypeError,
        r"x must be a float32 or float64 array, got dtype int64"),
    bad("x-bool", ("rnn_tanh", X.astype(bool), H0, None, *WR), TypeError, r"x must be a float"),
    bad("x-complex", ("rnn_tanh", X.astype(complex), H0, None, *WR), TypeError,
        r"x must be a float"),
    bad("x-f32-weights-f64", ("lstm", X.astype(f32), H0, C0, *WL), TypeError,
        r"dtype mismatch: x is float32, h0 is float64"),
    bad("w-f32-x-f64", ("gru", X, H0, None, WG[0].astype(f32), *WG[1:]), TypeError,
        r"dtype mismatch: .*w_ih is float32"),
    # states
    bad("h0-wrong-batch", ("lstm", X, H0[:2], C0, *WL), ValueError,
        rf"h0 must have shape {s((N, H))} .* got {s((2, H))}"),
    bad("h0-wrong-hidden", ("gru", X, z(N, H + 1), None, *WG), ValueError,
        rf"h0 must have shape {s((N, H))}"),
    bad("h0-3d", ("rnn_tanh", X, H0[None], None, *WR), ValueError, r"h0 must have shape"),
    bad("h0-None", ("gru", X, None, None, *WG), ValueError, r"h0 is required"),
    bad("c0-wrong", ("lstm", X, H0, C0[:, :2], *WL), ValueError,
        rf"c0 must have shape {s((N, H))} .* got {s((N, 2))}"),
    bad("c0-missing-lstm", ("lstm", X, H0, None, *WL), ValueError,
        r"c0 is required for mode 'lstm'"),
    bad("c0-given-gru", ("gru", X, H0, C0, *WG), ValueError, r"c0 must be None for mode 'gru'"),
    # mode and weights
    bad("mode-unknown", ("LSTM", X, H0, C0, *WL), ValueError, r"mode must be one of"),
    bad("mode-None", (None, X, H0, C0, *WL), ValueError, r"mode must be one of"),
    bad("lstm-weights-for-gru", ("gru", X, H0, None, *WL), ValueError,
        rf"w_hh must have shape \(3\*H, H\) with H >= 1, got {s((4 * H, H))}"),
    bad("gru-weights-for-rnn", ("rnn_relu", X, H0, None, *WG), ValueError,
        r"w_hh must have shape \(1\*H, H\)"),
    bad("w_hh-3d", ("lstm", X, H0, C0, WL[0], WL[1][None], *WL[2:]), ValueError,
        r"w_hh must be 2-d"),
    bad("w_ih-1d", ("lstm", X, H0, C0, WL[0][0], *WL[1:]), ValueError, r"w_ih must be 2-d"),
    bad("w_ih-wrong-rows", ("lstm", X, H0, C0, WL[0][:-1], *WL[1:]), ValueError,
        rf"w_ih must have shape \(4\*H, I\) = \(24, I\) .* got {s((4 * H - 1, I))}"),
    bad("w_ih-wrong-cols", ("lstm", X, H0, C0, WL[0][:, :-1], *WL[1:]), ValueError,
        rf"w_ih {s((4 * H, I - 1))} expects I = {I - 1}"),
    bad("hidden-0", ("rnn_tanh", X, z(N, 0), None, z(0, I), z(0, 0)), ValueError,
        r"w_hh must have shape .* H >= 1"),
    bad("b_ih-without-b_hh", ("lstm", X, H0, C0, WL[0], WL[1], WL[2], None), ValueError,
        r"b_ih and b_hh must both be given or both be None"),
    bad("b_hh-without-b_ih", ("gru", X, H0, None, WG[0], WG[1], None, WG[3]), ValueError,
        r"b_ih and b_hh must both be given"),
    bad("b_ih-wrong-size", ("lstm", X, H0, C0, WL[0], WL[1], WL[2][:-1], WL[3]), ValueError,
        rf"b_ih must have shape {s((4 * H,))}, got {s((4 * H - 1,))}"),
    bad("b_hh-2d", ("gru", X, H0, None, *WG[:3], WG[3][None]), ValueError,
        r"b_hh must have shape"),
    # lengths
    bad("lengths-0", ("lstm", X, H0, C0, *WL), ValueError,
        rf"lengths must lie in \[1, T\] = \[1, {T}\] .* from 0 to 2", lengths=[0, 1, 2]),
    bad("lengths-negative", ("gru", X, H0, None, *WG), ValueError, r"lengths must lie in",
        lengths=[-1, 1, 2]),
    bad("lengths-above-T", ("lstm", X, H0, C0, *WL), ValueError,
        rf"lengths must lie in \[1, T\] = \[1, {T}\] .* from 1 to {T + 1}",
        lengths=[T + 1, 1, 2]),
    bad("lengths-float", ("lstm", X, H0, C0, *WL), TypeError,
        r"lengths must be an integer array, got dtype float64", lengths=np.array([1., 2, 3])),
    bad("lengths-bool", ("gru", X, H0, None, *WG), TypeError,
        r"lengths must be an integer array, got dtype bool", lengths=[True, True, True]),
    bad("lengths-short", ("lstm", X, H0, C0, *WL), ValueError,
        rf"lengths must have shape \(N,\) = \({N},\) .* got \(2,\)", lengths=[1, 2]),
    bad("lengths-2d", ("lstm", X, H0, C0, *WL), ValueError,
        rf"lengths must have shape \(N,\) = \({N},\)", lengths=[[1, 2, 3]]),
    bad("lengths-scalar", ("lstm", X, H0, C0, *WL), ValueError, r"lengths must have shape",
        lengths=2),
    bad("reverse-int", ("lstm", X, H0, C0, *WL), TypeError, r"reverse must be a bool",
        reverse=1),
]


@pytest.mark.parametrize("args, kwargs, error, match", SEQUENCE_BAD)
def test_sequence_rejects_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        crnn.rnn_sequence(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, error, match", SEQUENCE_BAD)
def test_sequence_same_message_as_reference(args, kwargs, error, match):
    rrnn = pytest.importorskip("fastnn.reference.rnn")
    with pytest.raises(error) as fast:
        crnn.rnn_sequence(*args, **kwargs)
    with pytest.raises(error) as slow:
        rrnn.rnn_sequence(*args, **kwargs)
    assert str(fast.value) == str(slow.value)


def _tape(mode="lstm", dtype=f64):
    w = {"lstm": WL, "gru": WG}.get(mode, WR)
    c0 = C0.astype(dtype) if mode == "lstm" else None
    return crnn.rnn_sequence(mode, X.astype(dtype), H0.astype(dtype), c0,
                             *(a.astype(dtype) for a in w))[3]


BACKWARD_BAD = [
    bad("grad_y-wrong-shape", ("lstm", z(T, N, H + 1)), ValueError,
        rf"grad_y must have shape {s((T, N, H))}, got {s((T, N, H + 1))}"),
    bad("grad_y-2d", ("gru", z(T, N * H)), ValueError, r"grad_y must have shape"),
    bad("grad_y-f32", ("lstm", z(T, N, H, dtype=f32)), TypeError,
        r"dtype mismatch: grad_y is float32, the forward ran in float64"),
    bad("grad_y-int", ("lstm", np.zeros((T, N, H), int)), TypeError,
        r"grad_y must be a float32 or float64 array"),
    bad("grad_h_n-wrong", ("lstm", None, z(N, H + 1)), ValueError,
        rf"grad_h_n must have shape {s((N, H))}"),
    bad("grad_c_n-wrong", ("lstm", None, None, z(N + 1, H)), ValueError,
        rf"grad_c_n must have shape {s((N, H))}"),
    bad("grad_c_n-for-gru", ("gru", None, None, z(N, H)), ValueError,
        r"grad_c_n must be None for mode 'gru'"),
    bad("grad_c_n-for-rnn", ("rnn_relu", None, None, z(N, H)), ValueError,
        r"grad_c_n must be None for mode 'rnn_relu'"),
]


@pytest.mark.parametrize("args, kwargs, error, match", BACKWARD_BAD)
def test_sequence_backward_rejects_bad_gradients(args, kwargs, error, match):
    mode, *grads = args
    tape = _tape(mode)
    with pytest.raises(error, match=match):
        crnn.rnn_sequence_backward(tape, *grads)
    # the tape survives a rejected call
    crnn.rnn_sequence_backward(tape, None)


def test_sequence_backward_tape_checks():
    with pytest.raises(TypeError, match=r"tape must be the tape returned by .*got str"):
        crnn.rnn_sequence_backward("tape", None)
    with pytest.raises(TypeError, match=r"tape must be .*got NoneType"):
        crnn.rnn_sequence_backward(None, None)
    rrnn = pytest.importorskip("fastnn.reference.rnn")
    ref_tape = rrnn.rnn_sequence("lstm", X, H0, C0, *WL)[3]
    with pytest.raises(TypeError, match=r"tape must be .*rnn_sequence"):
        crnn.rnn_sequence_backward(ref_tape, None)
    tape = _tape("gru")
    crnn.rnn_sequence_backward(tape, None)
    with pytest.raises(RuntimeError, match=r"already used by a backward"):
        crnn.rnn_sequence_backward(tape, None)
    # training=False gives no tape to go backward from
    assert crnn.rnn_sequence("gru", X, H0, None, *WG, training=False)[3] is None


# --------------------------------------------------------------------------- functional cells

XC = z(N, I)

CELL_BAD = [
    bad("lstm-x-3d", ("lstm_cell", X, (H0, C0), *WL), ValueError,
        rf"x must be 2-d \(N, I\) or 1-d \(I,\) unbatched, got shape {s(X.shape)}"),
    bad("gru-x-empty", ("gru_cell", XC[:0], H0[:0], *WG), ValueError,
        r"x has an empty dimension"),
    bad("lstm-hx-not-pair", ("lstm_cell", XC, H0, *WL), TypeError,
        r"hx must be a pair \(h, c\)"),
    bad("lstm-hx-triple", ("lstm_cell", XC, (H0, C0, C0), *WL), TypeError,
        r"hx must be a pair"),
    bad("lstm-h-wrong", ("lstm_cell", XC, (H0[:, :2], C0), *WL), ValueError,
        rf"h must have shape {s((N, H))} .* got {s((N, 2))}"),
    bad("lstm-c-wrong", ("lstm_cell", XC, (H0, C0[:1]), *WL), ValueError,
        rf"c must have shape {s((N, H))}"),
    bad("gru-h-wrong", ("gru_cell", XC, z(N, H + 1), *WG), ValueError, r"h must have shape"),
    bad("gru-unbatched-x-batched-h", ("gru_cell", XC[0], H0, *WG), ValueError,
        rf"h must have shape {s((H,))}"),
    bad("gru-wrong-input-size", ("gru_cell", XC[:, :2], H0, *WG), ValueError,
        rf"x has 2 features .* expects I = {I}"),
    bad("gru-given-lstm-weights", ("gru_cell", XC, H0, *WL), ValueError,
        r"w_hh must have shape \(3\*H, H\)"),
    bad("rnn-given-gru-weights", ("rnn_cell", XC, H0, *WG), ValueError,
        r"w_hh must have shape \(1\*H, H\)"),
    bad("lstm-w_ih-wrong", ("lstm_cell", XC, (H0, C0), WL[0][:, :2], *WL[1:]), ValueError,
        r"expects I = 2"),
    bad("lstm-b_ih-wrong", ("lstm_cell", XC, (H0, C0), *WL[:2], WL[2][:3], WL[3]),
        ValueError, r"b_ih must have shape"),
    bad("rnn-bad-nonlinearity", ("rnn_cell", XC, H0, *WR), ValueError,
        r"nonlinearity must be 'tanh' or 'relu', got 'sigmoid'", nonlinearity="sigmoid"),
    bad("gru-int-x", ("gru_cell", XC.astype(int), H0, *WG), TypeError,
        r"x must be a float32 or float64 array"),
    bad("gru-mixed-dtypes", ("gru_cell", XC.astype(f32), H0, *WG), TypeError,
        r"dtype mismatch: x is float32, h is float64"),
    bad("gru-h-None", ("gru_cell", XC, None, *WG), (TypeError, ValueError), r"\bh\b"),
    bad("lstm-h-None", ("lstm_cell", XC, (None, C0), *WL), (TypeError, ValueError), r"\bh\b"),
]


@pytest.mark.parametrize("args, kwargs, error, match", CELL_BAD)
def test_cell_rejects_bad_input(args, kwargs, error, match):
    func, *rest = args
    with pytest.raises(error, match=match):
        getattr(fastnn, func)(*rest, **kwargs)


@pytest.mark.parametrize("args, kwargs, error, match",
                         [p for p in CELL_BAD if not p.marks])
def test_cell_same_message_as_reference(args, kwargs, error, match):
    rrnn = pytest.importorskip("fastnn.reference.rnn")
    func, *rest = args
    with pytest.raises(error) as fast:
        getattr(fastnn, func)(*rest, **kwargs)
    with pytest.raises(error) as slow:
        getattr(rrnn, func)(*rest, **kwargs)
    assert str(fast.value) == str(slow.value)


def test_cell_accepts_one_bias(rng):
    """Unlike rnn_sequence, a cell takes b_ih or b_hh alone (as torch's cell functions):
    the missing one is zero."""
    w = [rng.standard_normal(a.shape) for a in WG]
    x, h = rng.standard_normal((N, I)), rng.standard_normal((N, H))
    zero = np.zeros(3 * H)
    np.testing.assert_array_equal(fastnn.gru_cell(x, h, w[0], w[1], w[2]),
                                  fastnn.gru_cell(x, h, w[0], w[1], w[2], zero))
    np.testing.assert_array_equal(fastnn.gru_cell(x, h, w[0], w[1], None, w[3]),
                                  fastnn.gru_cell(x, h, w[0], w[1], zero, w[3]))


# --------------------------------------------------------------------------- layers


def layer(kind="lstm", **kwargs):
    if kind == "lstm":
        return nn.LSTM(I, H, **kwargs)
    if kind == "gru":
        return nn.GRU(I, H, **kwargs)
    return nn.RNN(I, H, **kwargs)


XF = z(T, N, I, dtype=f32)
SF = z(2, N, H, dtype=f32)  # (L*D, N, H) of a 2-layer or bidirectional layer

LAYER_BAD = [
    bad("x-4d", ("lstm", XF[None]), ValueError,
        rf"input must be \(T, N, {I}\), \(N, T, {I}\) with batch_first, or \(T, {I}\) "
        rf"unbatched; got shape {s((1, T, N, I))}"),
    bad("x-1d", ("gru", XF[0, 0]), ValueError, rf"input must be .*got shape {s((I,))}"),
    bad("x-wrong-input-size", ("lstm", XF[..., :4]), ValueError,
        rf"input has 4 features per step, the layer expects input_size={I}"),
    bad("x-wrong-input-size-batch-first", ("gru", z(N, T, I + 2, dtype=f32)), ValueError,
        r"input has 7 features per step", batch_first=True),
    bad("x-empty", ("rnn", XF[:0]), ValueError, r"empty dimension: shape \(0, 3, 5\)"),
    bad("x-f64-layer-f32", ("lstm", XF.astype(f64)), TypeError,
        r"input has dtype float64 but the layer's parameters are float32"),
    bad("x-f32-layer-f64", ("gru", XF), TypeError,
        r"input has dtype float32 but the layer's parameters are float64", dtype=f64),
    bad("x-int", ("lstm", XF.astype(np.int32)), TypeError,
        r"input must be a float32 or float64 array, got dtype int32"),
    # hx
    bad("lstm-hx-not-pair", ("lstm", XF, SF), TypeError, r"hx must be a pair \(h_0, c_0\)",
        num_layers=2),
    bad("lstm-hx-triple", ("lstm", XF, (SF, SF, SF)), TypeError, r"hx must be a pair",
        num_layers=2),
    bad("lstm-h0-wrong-layers", ("lstm", XF, (SF, SF)), ValueError,
        rf"h_0 must have shape {s((4, N, H))}, got {s((2, N, H))}", num_layers=2,
        bidirectional=True),
    bad("lstm-c0-wrong-hidden", ("lstm", XF, (SF, z(2, N, H + 1, dtype=f32))), ValueError,
        rf"c_0 must have shape {s((2, N, H))}, got {s((2, N, H + 1))}", bidirectional=True),
    bad("lstm-h0-2d-batched", ("lstm", XF, (SF[:, 0], SF[:, 0])), ValueError,
        rf"h_0 must have shape {s((2, N, H))}", num_layers=2),
    bad("lstm-h0-f64", ("lstm", XF, (SF.astype(f64), SF)), TypeError,
        r"h_0 has dtype float64 but the layer's parameters are float32", num_layers=2),
    bad("lstm-h0-None", ("lstm", XF, (None, SF)), (TypeError, ValueError), r"h_0",
        num_layers=2),
    bad("gru-h0-wrong", ("gru", XF, SF), ValueError,
        rf"h_0 must have shape {s((1, N, H))}, got {s((2, N, H))}"),
    bad("gru-hx-pair", ("gru", XF, (SF[:1], SF[:1])), ValueError, r"h_0 must have shape"),
    bad("rnn-unbatched-h0-3d", ("rnn", XF[:, 0], SF[:1]), ValueError,
        rf"h_0 must have shape {s((1, H))}, got {s((1, N, H))}"),
    # lengths
    bad("lengths-0", ("lstm", XF, None, [0, 1, 2]), ValueError,
        rf"lengths must lie in \[1, T\] = \[1, {T}\]"),
    bad("lengths-above-T", ("gru", XF, None, [1, T + 1, 2]), ValueError,
        rf"lengths must lie in \[1, T\] = \[1, {T}\] .* from 1 to {T + 1}"),
    bad("lengths-above-T-batch-first", ("gru", z(N, T, I, dtype=f32), None, [1, T + 1, 2]),
        ValueError, rf"lengths must lie in \[1, T\] = \[1, {T}\]", batch_first=True),
    bad("lengths-float", ("rnn", XF, None, np.array([1.0, 2.0, 3.0])), TypeError,
        r"lengths must be an integer array, got dtype float64"),
    bad("lengths-wrong-shape", ("lstm", XF, None, [1, 2]), ValueError,
        rf"lengths must have shape \(N,\) = \({N},\)"),
    bad("lengths-unbatched-scalar", ("lstm", XF[:, 0], None, 2), ValueError,
        r"lengths must have shape \(N,\) = \(1,\)"),
]


@pytest.mark.parametrize("args, kwargs, error, match", LAYER_BAD)
def test_layer_forward_rejects_bad_input(args, kwargs, error, match):
    kind, *call = args
    dtype = kwargs.pop("dtype", f32)
    m = layer(kind, dtype=dtype, **kwargs)
    with pytest.raises(error, match=match):
        m(*call)


CONSTRUCTOR_BAD = [
    bad("rnn-nonlinearity", ("rnn",), ValueError,
        r"nonlinearity must be 'tanh' or 'relu', got 'sigmoid'", nonlinearity="sigmoid"),
    bad("dtype-int", ("lstm",), TypeError, r"dtype must be float32 or float64, got int32",
        dtype=np.int32),
    bad("dtype-f16", ("gru",), TypeError, r"dtype must be float32 or float64, got float16",
        dtype=np.float16),
    bad("num_layers-0", ("lstm",), ValueError, r"num_layers must be >= 1, got 0", num_layers=0),
    bad("num_layers-float", ("lstm",), TypeError, r"num_layers must be an int", num_layers=2.0),
    bad("dropout-above-1", ("gru",), ValueError, r"dropout must be a probability in \[0, 1\]",
        dropout=1.5),
    bad("dropout-negative", ("gru",), ValueError, r"dropout must be a probability", dropout=-0.1),
    bad("dropout-nan", ("gru",), ValueError, r"dropout must be a probability",
        dropout=float("nan")),
    bad("dropout-str", ("lstm",), (TypeError, ValueError), r"dropout", dropout="a"),
    bad("dropout-None", ("lstm",), (TypeError, ValueError), r"dropout", dropout=None),
    bad("bidirectional-int", ("lstm",), TypeError, r"bidirectional must be a bool",
        bidirectional=1),
    bad("batch_first-str", ("gru",), TypeError, r"batch_first must be a bool",
        batch_first="yes"),
    bad("bias-int", ("rnn",), TypeError, r"bias must be a bool", bias=0),
]


@pytest.mark.parametrize("args, kwargs, error, match", CONSTRUCTOR_BAD)
def test_layer_constructor_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        layer(args[0], **kwargs)


def test_layer_constructor_sizes():
    with pytest.raises(ValueError, match=r"input_size must be >= 1, got 0"):
        nn.LSTM(0, 4)
    with pytest.raises(ValueError, match=r"hidden_size must be >= 1, got 0"):
        nn.GRU(3, 0)
    with pytest.raises(TypeError, match=r"hidden_size must be an int, got 2.0"):
        nn.RNN(3, 2.0)
    for cls in (nn.LSTMCell, nn.GRUCell, nn.RNNCell):
        with pytest.raises(ValueError, match=r"hidden_size must be >= 1"):
            cls(3, 0)
    with pytest.raises(ValueError, match=r"nonlinearity must be"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
        nn.GRUCell(3, 4, dtype=np.int64)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_layer_backward_misuse(kind):
    m = layer(kind, num_layers=2)
    g = z(T, N, H, dtype=f32)
    with pytest.raises(RuntimeError, match=r"backward needs a forward in training mode"):
        m.backward(g)
    m(XF)
    with pytest.raises(ValueError, match=rf"grad_output must have shape {s((T, N, H))}, "
                                         rf"got {s((T, N, H + 1))}"):
        m.backward(z(T, N, H + 1, dtype=f32))
    with pytest.raises(TypeError, match=r"grad_output has dtype float64"):
        m.backward(g.astype(f64))
    with pytest.raises(ValueError, match=rf"grad_h_n must have shape {s((2, N, H))}"):
        m.backward(g, z(1, N, H, dtype=f32))
    if kind == "lstm":
        with pytest.raises(ValueError, match=rf"grad_c_n must have shape {s((2, N, H))}"):
            m.backward(g, None, z(2, N, H + 1, dtype=f32))
    else:
        with pytest.raises(ValueError, match=r"grad_c_n is only for LSTM"):
            m.backward(g, None, z(2, N, H, dtype=f32))
    # rejected calls keep the forward: a correct backward still runs, once
    m.backward(g)
    with pytest.raises(RuntimeError, match=r"runs once per forward"):
        m.backward(g)
    # eval mode keeps nothing
    m.eval()
    m(XF)
    with pytest.raises(RuntimeError, match=r"forward in training mode"):
        m.backward(g)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_layer_backward_shapes_follow_layout(kind):
    m = layer(kind, batch_first=True, bidirectional=True)
    m(z(N, T, I, dtype=f32))
    with pytest.raises(ValueError, match=rf"grad_output must have shape {s((N, T, 2 * H))}"):
        m.backward(z(T, N, 2 * H, dtype=f32))
    m.backward(z(N, T, 2 * H, dtype=f32))
    m(XF[:, 0])  # unbatched
    with pytest.raises(ValueError, match=rf"grad_output must have shape {s((T, 2 * H))}"):
        m.backward(z(T, 1, 2 * H, dtype=f32))
    with pytest.raises(ValueError, match=rf"grad_h_n must have shape {s((2, H))}"):
        m.backward(z(T, 2 * H, dtype=f32), z(2, 1, H, dtype=f32))


def cell(kind, **kwargs):
    return {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[kind](I, H, **kwargs)


XCF = z(N, I, dtype=f32)
HCF = z(N, H, dtype=f32)

CELL_MODULE_BAD = [
    bad("x-3d", ("lstm", XF), ValueError, rf"input must be \(N, {I}\) or \({I},\), got shape"),
    bad("x-wrong-size", ("gru", XCF[:, :2]), ValueError,
        rf"input must be \(N, {I}\) or \({I},\), got shape {s((N, 2))}"),
    bad("x-f64", ("rnn", XCF.astype(f64)), TypeError,
        r"input has dtype float64 but the layer's parameters are float32"),
    bad("x-int", ("rnn", XCF.astype(int)), TypeError, r"input must be a float32 or float64"),
    bad("lstm-hx-not-pair", ("lstm", XCF, HCF), TypeError, r"hx must be a pair \(h, c\)"),
    bad("lstm-h-wrong", ("lstm", XCF, (z(N, H + 1, dtype=f32), HCF)), ValueError,
        rf"hx must have shape {s((N, H))}, got {s((N, H + 1))}"),
    bad("lstm-c-wrong", ("lstm", XCF, (HCF, HCF[:1])), ValueError,
        rf"cx must have shape {s((N, H))}"),
    bad("gru-h-wrong", ("gru", XCF, HCF[:, :2]), ValueError, rf"hx must have shape {s((N, H))}"),
    bad("gru-h-f64", ("gru", XCF, HCF.astype(f64)), TypeError, r"hx has dtype float64"),
    bad("rnn-unbatched-h-batched", ("rnn", XCF[0], HCF), ValueError,
        rf"hx must have shape {s((H,))}"),
    bad("lstm-h-None-in-pair", ("lstm", XCF, (None, HCF)), (TypeError, ValueError), r"\bhx\b"),
]


@pytest.mark.parametrize("args, kwargs, error, match", CELL_MODULE_BAD)
def test_cell_module_rejects_bad_input(args, kwargs, error, match):
    kind, *call = args
    with pytest.raises(error, match=match):
        cell(kind)(*call)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_module_backward_misuse(kind):
    c = cell(kind)
    with pytest.raises(RuntimeError, match=r"backward needs a forward in training mode"):
        c.backward(HCF)
    c(XCF)
    with pytest.raises(ValueError, match=rf"grad_h must have shape {s((N, H))}"):
        c.backward(z(N, H + 1, dtype=f32))
    with pytest.raises(TypeError, match=r"grad_h has dtype float64"):
        c.backward(HCF.astype(f64))
    if kind != "lstm":
        with pytest.raises(ValueError, match=r"grad_c is only for LSTMCell"):
            c.backward(HCF, HCF)
    else:
        with pytest.raises(ValueError, match=rf"grad_c must have shape {s((N, H))}"):
            c.backward(HCF, HCF[:1])
    c.backward(HCF)
    with pytest.raises(RuntimeError, match=r"runs once per forward"):
        c.backward(HCF)
    c.eval()
    c(XCF)
    with pytest.raises(RuntimeError, match=r"forward in training mode"):
        c.backward(HCF)


# --------------------------------------------------------------------------- DilatedRNN

DILATED_BAD = [
    bad("cell-unknown", ("transformer", (1, 2)), ValueError,
        r"cell must be one of \['gru', 'lstm', 'rnn'\], got 'transformer'"),
    bad("cell-upper", ("LSTM", (1, 2)), ValueError, r"cell must be one of"),
    bad("cell-rnn_relu", ("rnn_relu", (1, 2)), ValueError, r"cell must be one of"),
    bad("dilations-empty", ("lstm", ()), ValueError,
        r"dilations must be a non-empty sequence of ints, got \(\)"),
    bad("dilations-int", ("lstm", 2), ValueError, r"dilations must be a non-empty sequence"),
    bad("dilations-0", ("gru", (1, 0)), ValueError, r"dilations must be >= 1, got 0"),
    bad("dilations-negative", ("gru", (1, -2)), ValueError, r"dilations must be >= 1, got -2"),
    bad("dilations-float", ("rnn", (1, 2.5)), TypeError, r"dilations must be an int, got 2.5"),
    bad("dilations-str", ("rnn", "12"), TypeError, r"dilations must be an int"),
    bad("dilations-None", ("lstm", None), (TypeError, ValueError), r"dilations"),
    bad("dtype-int", ("lstm", (1, 2)), TypeError, r"dtype must be float32 or float64",
        dtype=np.int64),
]


@pytest.mark.parametrize("args, kwargs, error, match", DILATED_BAD)
def test_dilated_rnn_rejects_bad_arguments(args, kwargs, error, match):
    cell_kind, dilations = args
    with pytest.raises(error, match=match):
        nn.DilatedRNN(cell_kind, I, H, dilations, **kwargs)


def test_dilated_rnn_rejects_bad_input():
    d = nn.DilatedRNN("lstm", I, H, (1, 2))
    with pytest.raises(ValueError, match=rf"input must be \(T, N, {I}\) .*got shape {s((T, I))}"):
        d(XF[:, 0])
    with pytest.raises(ValueError, match=rf"input must be \(T, N, {I}\).*{s((T, N, 2))}"):
        d(XF[..., :2])
    with pytest.raises(ValueError, match=r"T, N >= 1"):
        d(XF[:0])
    with pytest.raises(TypeError, match=r"input has dtype float64"):
        d(XF.astype(f64))
    with pytest.raises(RuntimeError, match=r"forward in training mode"):
        d.backward(z(T, N, H, dtype=f32))
    d(XF)
    with pytest.raises(ValueError, match=rf"grad_output must have shape {s((T, N, H))}"):
        d.backward(z(T, N, H + 1, dtype=f32))
    with pytest.raises(TypeError, match=r"grad_output has dtype float64"):
        d.backward(z(T, N, H))
    d.backward(z(T, N, H, dtype=f32))
    d.eval()
    d(XF)
    with pytest.raises(RuntimeError, match=r"forward in training mode"):
        d.backward(z(T, N, H, dtype=f32))


# --------------------------------------------------------------------------- accepted inputs


def test_accepted_unusual_inputs(rng):
    """Things that must work: byte-swapped arrays, lengths as lists / uint, hx as a list,
    None upstream gradients on a cell."""
    x = rng.standard_normal((T, N, I)).astype(f32)
    m = nn.LSTM(I, H, rng=np.random.default_rng(0))
    want = m(x)[0]
    np.testing.assert_array_equal(m(x.astype(">f4"))[0], want)
    h = np.zeros((1, N, H), f32)
    np.testing.assert_array_equal(m(x, [h, h])[0], want)
    a = m(x, lengths=[4, 1, 2])[0]
    b = m(x, lengths=np.array([4, 1, 2], np.uint8))[0]
    np.testing.assert_array_equal(a, b)
    c = nn.GRUCell(I, H)
    c(x[0])
    assert np.all(c.backward(None) == 0)


@pytest.mark.parametrize("what", ["lstm-forward", "gru-backward", "cell-forward",
                                  "dilated-forward"])
def test_none_array_is_a_clear_error(what):
    """None where an array is required names the argument (TypeError or ValueError)."""
    if what == "lstm-forward":
        call, name = (lambda: nn.LSTM(I, H)(None)), "input"
    elif what == "gru-backward":
        m = nn.GRU(I, H)
        m(XF)
        call, name = (lambda: m.backward(None)), "grad_output"
    elif what == "cell-forward":
        call, name = (lambda: nn.GRUCell(I, H)(None)), "input"
    else:
        call, name = (lambda: nn.DilatedRNN("gru", I, H)(None)), "input"
    with pytest.raises((TypeError, ValueError), match=name):
        call()
