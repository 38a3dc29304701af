"""The NumPy reference of the recurrences (`fastnn.reference.rnn`): cells, sequences and
their backward pass.

Two oracles: finite differences in float64 (no torch needed) and PyTorch (cells against
`torch.nn.LSTMCell`/`GRUCell`/`RNNCell`, sequences against a bidirectional single-layer
`torch.nn.LSTM`/`GRU`/`RNN` fed through `pack_padded_sequence(enforce_sorted=False)`, its
gradients by autograd). Only the PyTorch tests skip without torch.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import reference as ref
from fastnn._validate import RNN_GATES as GATES, RNN_MODES as MODES

from conftest import assert_close

GRAD_NAMES = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih",
              "grad_b_hh")


@pytest.fixture(scope="module")
def torch():
    """PyTorch, or a skip when it is not installed."""
    return pytest.importorskip("torch")


def weights(rng, mode, input_size, hidden, dtype, bias=True):
    """(w_ih, w_hh, b_ih, b_hh) drawn as PyTorch initializes them: U(-1/sqrt(H), 1/sqrt(H))."""
    rows = GATES[mode] * hidden
    bound = 1 / np.sqrt(hidden)
    def draw(*shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)
    w_ih, w_hh = draw(rows, input_size), draw(rows, hidden)
    return (w_ih, w_hh, draw(rows), draw(rows)) if bias else (w_ih, w_hh, None, None)


def sequence_inputs(rng, mode, steps, batch, input_size, hidden, dtype):
    """Random x (T, N, I), h0 (N, H) and c0 (N, H) ('lstm') or None."""
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    h0 = rng.standard_normal((batch, hidden)).astype(dtype)
    c0 = rng.standard_normal((batch, hidden)).astype(dtype) if mode == "lstm" else None
    return x, h0, c0


def upstream(rng, mode, steps, batch, hidden, dtype):
    """Random gradients (grad_y, grad_h_n, grad_c_n)."""
    draw = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    return (draw(steps, batch, hidden), draw(batch, hidden),
            draw(batch, hidden) if mode == "lstm" else None)


# --------------------------------------------------------------------------- finite differences


# --------------------------------------------------------------------------- torch-free checks


@pytest.mark.parametrize("mode", MODES)
def test_one_step_sequence_is_the_cell(mode, dtype, rng):
    """rnn_sequence over T = 1 gives the cell's new state, in the input dtype."""
    x, h0, c0 = sequence_inputs(rng, mode, 1, 3, 4, 5, dtype)
    w = weights(rng, mode, 4, 5, dtype)
    y, h_n, c_n, _ = ref.rnn_sequence(mode, x, h0, c0, *w)
    if mode == "lstm":
        h, c = ref.lstm_cell(x[0], (h0, c0), *w)
        assert_close(c_n, c, dtype, what="c_n")
    elif mode == "gru":
        h = ref.gru_cell(x[0], h0, *w)
    else:
        h = ref.rnn_cell(x[0], h0, *w, nonlinearity=mode[4:])
    assert_close(h_n, h, dtype, what="h_n")
    assert_close(y[0], h, dtype, what="y")


@pytest.mark.parametrize("mode", MODES)
def test_unbatched_cell_is_a_batch_of_one(mode, dtype, rng):
    x = rng.standard_normal(3).astype(dtype)
    h = rng.standard_normal(6).astype(dtype)
    w = weights(rng, mode, 3, 6, dtype)
    if mode == "lstm":
        c = rng.standard_normal(6).astype(dtype)
        single = ref.lstm_cell(x, (h, c), *w)
        batched = ref.lstm_cell(x[None], (h[None], c[None]), *w)
    elif mode == "gru":
        single, batched = (ref.gru_cell(x, h, *w),), (ref.gru_cell(x[None], h[None], *w),)
    else:
        kind = mode[4:]
        single = (ref.rnn_cell(x, h, *w, nonlinearity=kind),)
        batched = (ref.rnn_cell(x[None], h[None], *w, nonlinearity=kind),)
    for got, want in zip(single, batched):
        assert got.shape == (6,)
        assert_close(got, want[0], dtype)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode", MODES)
def test_padding_is_never_read(mode, reverse, dtype, rng):
    """NaN in the padded steps of x and of grad_y changes nothing: outputs there are 0,
    grad_x there is 0, every other result is finite and equals running each sequence alone
    on its own steps."""
    steps, batch, hidden = 5, 3, 4
    lengths = np.array([2, 5, 1])
    x, h0, c0 = sequence_inputs(rng, mode, steps, batch, 3, hidden, dtype)
    w = weights(rng, mode, 3, hidden, dtype)
    grads = upstream(rng, mode, steps, batch, hidden, dtype)
    padded = np.arange(steps)[:, None] >= lengths[None, :]
    x[padded] = np.nan
    grads[0][padded] = np.nan
    y, h_n, c_n, tape = ref.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths, reverse=reverse)
    result = ref.rnn_sequence_backward(tape, *grads)
    assert np.all(y[padded] == 0)
    assert np.all(result[0][padded] == 0)
    for n, length in enumerate(lengths):
        alone = ref.rnn_sequence(mode, x[:length, n:n + 1], h0[n:n + 1],
                                 None if c0 is None else c0[n:n + 1], *w, reverse=reverse)
        assert_close(y[:length, n:n + 1], alone[0], dtype, what=f"y of sequence {n}")
        assert_close(h_n[n:n + 1], alone[1], dtype, what=f"h_n of sequence {n}")
        alone_grads = ref.rnn_sequence_backward(
            alone[3], grads[0][:length, n:n + 1], grads[1][n:n + 1],
            None if c_n is None else grads[2][n:n + 1])
        assert_close(result[0][:length, n:n + 1], alone_grads[0], dtype, what="grad_x")
        assert_close(result[1][n:n + 1], alone_grads[1], dtype, what="grad_h0")
    for name, got in zip(GRAD_NAMES, result):
        assert got is None or np.all(np.isfinite(got)), name


def test_lengths_none_means_all_steps(dtype, rng):
    x, h0, c0 = sequence_inputs(rng, "lstm", 4, 3, 2, 5, dtype)
    w = weights(rng, "lstm", 2, 5, dtype)
    full = ref.rnn_sequence("lstm", x, h0, c0, *w, lengths=[4, 4, 4])
    default = ref.rnn_sequence("lstm", x, h0, c0, *w)
    for got, want in zip(full[:3], default[:3]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", MODES)
def test_dtype_inputs_untouched_and_non_contiguous(mode, dtype, rng):
    """Results in the input dtype; inputs not modified; a transposed (non-contiguous) x
    gives the same numbers as a contiguous one."""
    x, h0, c0 = sequence_inputs(rng, mode, 4, 3, 5, 6, dtype)
    w = weights(rng, mode, 5, 6, dtype)
    grads = upstream(rng, mode, 4, 3, 6, dtype)
    inputs = [x, h0, c0, *w] + list(grads)
    before = [None if a is None else a.copy() for a in inputs]
    y, h_n, c_n, tape = ref.rnn_sequence(mode, x, h0, c0, *w, lengths=np.array([4, 2, 3]))
    result = ref.rnn_sequence_backward(tape, *grads)
    for got, want in zip(inputs, before):
        if got is not None:
            np.testing.assert_array_equal(got, want)
    for out in (y, h_n, c_n) + tuple(result):
        assert out is None or out.dtype == dtype
    x_t = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    assert not x_t.flags.c_contiguous
    y_t = ref.rnn_sequence(mode, x_t, h0, c0, *w, lengths=np.array([4, 2, 3]))[0]
    np.testing.assert_array_equal(y_t, y)


def test_no_tape_when_not_training(rng):
    x, h0, _ = sequence_inputs(rng, "gru", 2, 2, 3, 4, np.float64)
    *_, tape = ref.rnn_sequence("gru", x, h0, None, *weights(rng, "gru", 3, 4, np.float64),
                                training=False)
    assert tape is None
    with pytest.raises(TypeError, match="tape must be the tape returned by .*training=True"):
        ref.rnn_sequence_backward(tape, np.zeros((2, 2, 4)))


def test_backward_with_no_upstream_gradient_is_zero(rng):
    x, h0, c0 = sequence_inputs(rng, "lstm", 3, 2, 3, 4, np.float32)
    *_, tape = ref.rnn_sequence("lstm", x, h0, c0, *weights(rng, "lstm", 3, 4, np.float32))
    for grad in ref.rnn_sequence_backward(tape, None):
        assert grad.dtype == np.float32 and not grad.any()


# --------------------------------------------------------------------------- bad inputs


def _lstm_args(**changes):
    """Arguments of a valid lstm_cell call (N=2, I=3, H=4), with some replaced."""
    args = {"x": np.zeros((2, 3)), "hx": (np.zeros((2, 4)), np.zeros((2, 4))),
            "w_ih": np.zeros((16, 3)), "w_hh": np.zeros((16, 4)), "b_ih": np.zeros(16),
            "b_hh": np.zeros(16)}
    args.update(changes)
    return args


CELL_ERRORS = [
    (_lstm_args(x=np.zeros((2, 3), dtype=np.int64)), TypeError,
     r"x must be a float32 or float64 array, got dtype int64"),
    (_lstm_args(x=np.zeros((2, 3), dtype=np.float32)), TypeError,
     r"dtype mismatch: x is float32, h is float64"),
    (_lstm_args(x=np.zeros((2, 3), dtype=np.complex128)), TypeError, r"x must be a float32"),
    (_lstm_args(x=np.zeros((2, 5))), ValueError,
     r"x has 5 features \(shape \(2, 5\)\) but w_ih \(16, 3\) expects I = 3"),
    (_lstm_args(x=np.zeros((1, 2, 3))), ValueError, r"x must be 2-d \(N, I\) or 1-d"),
    (_lstm_args(x=np.zeros((0, 3))), ValueError, r"x has an empty dimension"),
    (_lstm_args(hx=(np.zeros((2, 5)), np.zeros((2, 4)))), ValueError,
     r"h must have shape \(2, 4\) for x \(2, 3\) and w_hh \(16, 4\), got \(2, 5\)"),
    (_lstm_args(hx=(np.zeros((2, 4)), np.zeros((3, 4)))), ValueError,
     r"c must have shape \(2, 4\)"),
    (_lstm_args(x=np.zeros(3)), ValueError, r"h must have shape \(4,\) for x \(3,\)"),
    (_lstm_args(hx=np.zeros((2, 4))), TypeError, r"hx must be a pair \(h, c\)"),
    (_lstm_args(w_hh=np.zeros((12, 4))), ValueError,
     r"w_hh must have shape \(4\*H, H\) with H >= 1, got \(12, 4\)"),
    (_lstm_args(w_hh=np.zeros(16)), ValueError, r"w_hh must be 2-d"),
    (_lstm_args(w_ih=np.zeros((12, 3))), ValueError,
     r"w_ih must have shape \(4\*H, I\) = \(16, I\) with I >= 1 to match w_hh \(16, 4\)"),
    (_lstm_args(b_ih=np.zeros(12)), ValueError, r"b_ih must have shape \(16,\), got \(12,\)"),
]


@pytest.mark.parametrize("args, error, match", CELL_ERRORS)
def test_cell_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        ref.lstm_cell(**args)


def test_gru_and_rnn_cells_check_their_gate_count():
    with pytest.raises(ValueError, match=r"w_hh must have shape \(3\*H, H\)"):
        ref.gru_cell(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((16, 3)), np.zeros((16, 4)))
    with pytest.raises(ValueError, match=r"w_hh must have shape \(1\*H, H\)"):
        ref.rnn_cell(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((12, 3)), np.zeros((12, 4)))
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        ref.rnn_cell(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((4, 3)), np.zeros((4, 4)),
                     nonlinearity="sigmoid")


def _sequence_args(mode="lstm", **changes):
    """Arguments of a valid rnn_sequence call (T=3, N=2, I=3, H=4), with some replaced."""
    rows = GATES[mode] * 4
    args = {"mode": mode, "x": np.zeros((3, 2, 3)), "h0": np.zeros((2, 4)),
            "c0": np.zeros((2, 4)) if mode == "lstm" else None, "w_ih": np.zeros((rows, 3)),
            "w_hh": np.zeros((rows, 4)), "b_ih": np.zeros(rows), "b_hh": np.zeros(rows)}
    args.update(changes)
    return args


SEQUENCE_ERRORS = [
    ({**_sequence_args(), "mode": "LSTM"}, ValueError, r"mode must be one of \('lstm', 'gru'"),
    (_sequence_args(x=np.zeros((2, 3))), ValueError, r"x must be 3-d \(T, N, I\)"),
    (_sequence_args(x=np.zeros((0, 2, 3))), ValueError, r"x has an empty dimension"),
    (_sequence_args(x=np.zeros((3, 2, 2))), ValueError, r"x has 2 features"),
    (_sequence_args(h0=np.zeros((3, 4))), ValueError,
     r"h0 must have shape \(2, 4\) for x \(3, 2, 3\)"),
    (_sequence_args(h0=None), ValueError, r"h0 is required"),
    (_sequence_args(c0=None), ValueError, r"c0 is required for mode 'lstm'"),
    (_sequence_args(mode="gru", c0=np.zeros((2, 4))), ValueError,
     r"c0 must be None for mode 'gru'"),
    (_sequence_args(b_hh=None), ValueError, r"b_ih and b_hh must both be given or both be None"),
    (_sequence_args(h0=np.zeros((2, 4), dtype=np.float32)), TypeError, r"dtype mismatch"),
    (_sequence_args(lengths=[3, 0]), ValueError,
     r"lengths must lie in \[1, T\] = \[1, 3\] for x \(3, 2, 3\), got values from 0 to 3"),
    (_sequence_args(lengths=[4, 1]), ValueError, r"lengths must lie in \[1, T\]"),
    (_sequence_args(lengths=[3, 2, 1]), ValueError, r"lengths must have shape \(N,\) = \(2,\)"),
    (_sequence_args(lengths=[3.0, 2.0]), TypeError, r"lengths must be an integer array"),
    (_sequence_args(reverse=1), TypeError, r"reverse must be a bool"),
]


@pytest.mark.parametrize("args, error, match", SEQUENCE_ERRORS)
def test_sequence_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        ref.rnn_sequence(**args)


def test_sequence_backward_rejects_bad_gradients():
    *_, tape = ref.rnn_sequence(**_sequence_args(mode="gru"))
    with pytest.raises(ValueError, match=r"grad_y must have shape \(3, 2, 4\), got \(3, 2, 5\)"):
        ref.rnn_sequence_backward(tape, np.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match=r"grad_h_n must have shape \(2, 4\)"):
        ref.rnn_sequence_backward(tape, None, np.zeros(4))
    with pytest.raises(ValueError, match=r"grad_c_n must be None for mode 'gru'"):
        ref.rnn_sequence_backward(tape, None, None, np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"dtype mismatch: grad_y is float32, the forward ran in "
                                        r"float64"):
        ref.rnn_sequence_backward(tape, np.zeros((3, 2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match=r"grad_y must be a float32 or float64 array"):
        ref.rnn_sequence_backward(tape, np.zeros((3, 2, 4), dtype=np.int32))


# --------------------------------------------------------------------------- against PyTorch


def torch_module(torch, mode, input_size, hidden, bias, dtype, cell=False):
    """The torch layer (bidirectional, one layer) or cell of `mode`, in `dtype`."""
    if mode == "lstm":
        cls = torch.nn.LSTMCell if cell else torch.nn.LSTM
        options = {}
    elif mode == "gru":
        cls = torch.nn.GRUCell if cell else torch.nn.GRU
        options = {}
    else:
        cls = torch.nn.RNNCell if cell else torch.nn.RNN
        options = {"nonlinearity": mode[4:]}
    if not cell:
        options["bidirectional"] = True
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    return cls(input_size, hidden, bias=bias, **options).to(torch_dtype)


def numpy_of(tensor):
    return tensor.detach().numpy()


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("hidden", [1, 7, 13])
@pytest.mark.parametrize("mode", MODES)
def test_cell_matches_torch(torch, mode, hidden, bias, batched, dtype, rng):
    cell = torch_module(torch, mode, 5, hidden, bias, dtype, cell=True)
    params = {k: numpy_of(v) for k, v in cell.named_parameters()}
    w = (params["weight_ih"], params["weight_hh"], params.get("bias_ih"), params.get("bias_hh"))
    shape = (3,) if batched else ()
    x = rng.standard_normal(shape + (5,)).astype(dtype)
    h = rng.standard_normal(shape + (hidden,)).astype(dtype)
    if mode == "lstm":
        c = rng.standard_normal(shape + (hidden,)).astype(dtype)
        got = ref.lstm_cell(x, (h, c), *w)
        want = cell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    elif mode == "gru":
        got = (ref.gru_cell(x, h, *w),)
        want = (cell(torch.from_numpy(x), torch.from_numpy(h)),)
    else:
        got = (ref.rnn_cell(x, h, *w, nonlinearity=mode[4:]),)
        want = (cell(torch.from_numpy(x), torch.from_numpy(h)),)
    for name, g, t in zip(("h", "c"), got, want):
        assert_close(g, numpy_of(t), dtype, what=name)


SEQUENCE_SHAPES = [
    # (T, N, I, H, lengths): unsorted lengths with a length-1 sequence and a full-length one
    pytest.param(5, 4, 3, 7, [3, 5, 1, 4], id="T5-N4-H7"),
    pytest.param(6, 3, 5, 13, [1, 6, 4], id="T6-N3-H13"),
    pytest.param(4, 1, 2, 1, [4], id="T4-N1-H1"),
    pytest.param(1, 2, 3, 5, [1, 1], id="T1-N2-H5"),
]


@pytest.mark.parametrize("use_lengths", [True, False], ids=["lengths", "no-lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("steps, batch, input_size, hidden, lengths", SEQUENCE_SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_sequence_matches_torch(torch, mode, steps, batch, input_size, hidden, lengths, bias,
                                use_lengths, dtype, rng):
    """Both directions of a bidirectional torch layer (the forward half is the
    reverse=False run, the reverse half the reverse=True run), with nonzero h0/c0 and random
    upstream gradients on y (padded steps included: PyTorch ignores them, and so must we),
    h_n and c_n; every output and every gradient compared."""
    layer = torch_module(torch, mode, input_size, hidden, bias, dtype)
    params = dict(layer.named_parameters())
    x, _, _ = sequence_inputs(rng, mode, steps, batch, input_size, hidden, dtype)
    h0 = rng.standard_normal((2, batch, hidden)).astype(dtype)
    c0 = rng.standard_normal((2, batch, hidden)).astype(dtype) if mode == "lstm" else None
    grad_y = rng.standard_normal((steps, batch, 2 * hidden)).astype(dtype)
    grad_h_n = rng.standard_normal((2, batch, hidden)).astype(dtype)
    grad_c_n = rng.standard_normal((2, batch, hidden)).astype(dtype) if mode == "lstm" else None
    lengths = np.array(lengths) if use_lengths else None

    # PyTorch, by autograd
    x_t = torch.from_numpy(x).requires_grad_()
    h0_t = torch.from_numpy(h0).requires_grad_()
    c0_t = torch.from_numpy(c0).requires_grad_() if mode == "lstm" else None
    inputs = x_t
    if use_lengths:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(x_t, torch.from_numpy(lengths),
                                                         enforce_sorted=False)
    out, state = layer(inputs, (h0_t, c0_t) if mode == "lstm" else h0_t)
    if use_lengths:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=steps)
    h_n_t, c_n_t = state if mode == "lstm" else (state, None)
    total = (out * torch.from_numpy(grad_y)).sum() + (h_n_t * torch.from_numpy(grad_h_n)).sum()
    if mode == "lstm":
        total = total + (c_n_t * torch.from_numpy(grad_c_n)).sum()
    total.backward()

    grad_x = np.zeros_like(x)
    for d, suffix in enumerate(("", "_reverse")):
        half = slice(d * hidden, (d + 1) * hidden)
        w = [params[f"weight_ih_l0{suffix}"], params[f"weight_hh_l0{suffix}"]]
        if bias:
            w += [params[f"bias_ih_l0{suffix}"], params[f"bias_hh_l0{suffix}"]]
        y, h_n, c_n, tape = ref.rnn_sequence(
            mode, x, h0[d], None if c0 is None else c0[d], *(numpy_of(p) for p in w),
            lengths=lengths, reverse=bool(d))
        what = f"{'reverse' if d else 'forward'} "
        assert_close(y, numpy_of(out[..., half]), dtype, what=what + "y")
        assert_close(h_n, numpy_of(h_n_t[d]), dtype, what=what + "h_n")
        if mode == "lstm":
            assert_close(c_n, numpy_of(c_n_t[d]), dtype, what=what + "c_n")
        else:
            assert c_n is None
        grads = ref.rnn_sequence_backward(tape, grad_y[..., half], grad_h_n[d],
                                          None if grad_c_n is None else grad_c_n[d])
        grad_x += grads[0]
        assert_close(grads[1], numpy_of(h0_t.grad[d]), dtype, what=what + "grad_h0")
        if mode == "lstm":
            assert_close(grads[2], numpy_of(c0_t.grad[d]), dtype, what=what + "grad_c0")
        else:
            assert grads[2] is None
        for name, got, param in zip(GRAD_NAMES[3:], grads[3:], w):
            assert_close(got, numpy_of(param.grad), dtype, what=what + name)
        if not bias:
            assert grads[5] is None and grads[6] is None
    # x feeds both directions: its gradient is the sum of the two runs'
    assert_close(grad_x, numpy_of(x_t.grad), dtype, what="grad_x")
