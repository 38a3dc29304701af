"""The recurrences' C path (`fastnn.rnn`) and layers (`fastnn.nn.LSTM/GRU/RNN`, the cells,
`DilatedRNN`) against the NumPy reference (`fastnn.reference.rnn`), without torch.

Functional level: `rnn_sequence` / `rnn_sequence_backward` for every mode, dtype, direction,
lengths (unsorted, with 1 and T), hidden sizes around the packed-panel and vector widths, and
every upstream-gradient combination; finite differences in float64; NaN, untouched inputs,
non-contiguous inputs. Layer level: the same layer with ``backend`` switched to the reference
(1-3 layers, both directions, batch_first, lengths, dropout with equal masks, unbatched),
gradient accumulation, state dicts under PyTorch's names. DilatedRNN from its definition.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
import fastnn.nn as nn
import fastnn.rnn as crnn
from fastnn import reference as ref

from conftest import assert_close

rrnn = pytest.importorskip("fastnn.reference.rnn")

MODES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
GRAD_NAMES = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih",
              "grad_b_hh")


# --------------------------------------------------------------------------- helpers


def weights(rng, mode, input_size, hidden, dtype, bias=True):
    """(w_ih, w_hh, b_ih, b_hh) drawn as PyTorch does, U(-1/sqrt(H), 1/sqrt(H))."""
    rows = GATES[mode] * hidden
    bound = 1 / np.sqrt(hidden)

    def draw(*shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)

    w_ih, w_hh = draw(rows, input_size), draw(rows, hidden)
    return (w_ih, w_hh, draw(rows), draw(rows)) if bias else (w_ih, w_hh, None, None)


def states(rng, mode, batch, hidden, dtype):
    """Nonzero h0 and c0 (None unless LSTM)."""
    h0 = rng.standard_normal((batch, hidden)).astype(dtype)
    c0 = rng.standard_normal((batch, hidden)).astype(dtype) if mode == "lstm" else None
    return h0, c0


def upstream(rng, mode, steps, batch, hidden, dtype):
    draw = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    return (draw(steps, batch, hidden), draw(batch, hidden),
            draw(batch, hidden) if mode == "lstm" else None)


def lengths_for(rng, steps, batch):
    """Unsorted lengths holding 1 and T (when the batch has room for both)."""
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps if batch > 1 else lengths[0]
    lengths[-1] = 1
    return lengths[rng.permutation(batch)] if batch > 2 else lengths


def compare_sequence(mode, x, h0, c0, w, lengths=None, reverse=False, grads=(None,) * 3,
                     what=""):
    """rnn_sequence and its backward on the C path and on the reference agree; returns the
    C path's (forward, backward) results."""
    dtype = x.dtype
    y, h_n, c_n, tape = crnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths,
                                          reverse=reverse)
    ry, rh_n, rc_n, rtape = rrnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths,
                                              reverse=reverse)
    assert_close(y, ry, dtype, what=f"{what} y")
    assert_close(h_n, rh_n, dtype, what=f"{what} h_n")
    if mode == "lstm":
        assert_close(c_n, rc_n, dtype, what=f"{what} c_n")
    else:
        assert c_n is None
    if lengths is not None:
        pad = np.arange(x.shape[0])[:, None] >= np.asarray(lengths)[None, :]
        assert np.all(y[pad] == 0), f"{what}: outputs past a sequence's end must be 0"
    got = crnn.rnn_sequence_backward(tape, *grads)
    want = rrnn.rnn_sequence_backward(rtape, *grads)
    for name, a, b in zip(GRAD_NAMES, got, want):
        if b is None:
            assert a is None, f"{what} {name} should be None"
        else:
            assert_close(a, b, dtype, what=f"{what} {name}")
    return (y, h_n, c_n), got


# --------------------------------------------------------------------------- rnn_sequence


HIDDEN = [1, 7, 15, 16, 17, 31, 32, 33, 63, 100]


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("mode", MODES)
def test_sequence_matches_reference_hidden_sizes(mode, hidden, dtype, rng):
    """Both directions, with and without (unsorted) lengths, nonzero h0/c0, every
    upstream gradient given."""
    steps, batch, input_size = 4, 3, 5
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype)
    grads = upstream(rng, mode, steps, batch, hidden, dtype)
    lengths = np.array([2, 4, 1])
    for reverse in (False, True):
        for lens in (None, lengths):
            compare_sequence(mode, x, h0, c0, w, lens, reverse, grads,
                             what=f"reverse={reverse} lengths={lens}")


def case(id, steps, batch, input_size, hidden, bias=True, lengths=None):
    return pytest.param(steps, batch, input_size, hidden, bias, lengths, id=id)


SHAPE_CASES = [
    case("T1", 1, 3, 4, 5),
    case("N1", 5, 1, 4, 5),
    case("I1", 5, 3, 1, 6),
    case("T1-N1-I1-H1", 1, 1, 1, 1),
    case("no-bias", 4, 3, 4, 17, bias=False),
    case("no-bias-lengths", 4, 3, 4, 17, bias=False, lengths=[4, 1, 3]),
    case("N1-lengths", 4, 1, 3, 9, lengths=[2]),
    case("all-length-1", 3, 4, 2, 5, lengths=[1, 1, 1, 1]),
    case("long-batch-lengths", 6, 9, 3, 33, lengths=[6, 1, 3, 5, 2, 6, 4, 1, 2]),
    # more rows than one projection chunk (256 rows) and than one 64-row block
    case("many-rows", 40, 9, 3, 16, lengths=[40, 1, 17, 39, 2, 40, 25, 8, 33]),
    # a batch wider than a chunk: chunks of one step
    case("N300", 3, 300, 2, 5, lengths=[1, 3, 2] * 100),
]


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("steps, batch, input_size, hidden, bias, lengths", SHAPE_CASES)
@pytest.mark.parametrize("mode", MODES)
def test_sequence_matches_reference_shapes(mode, steps, batch, input_size, hidden, bias,
                                           lengths, reverse, dtype, rng):
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype, bias)
    grads = upstream(rng, mode, steps, batch, hidden, dtype)
    lengths = None if lengths is None else np.array(lengths)
    _, got = compare_sequence(mode, x, h0, c0, w, lengths, reverse, grads)
    if not bias:
        assert got[5] is None and got[6] is None
    if lengths is not None:
        pad = np.arange(steps)[:, None] >= lengths[None, :]
        assert np.all(got[0][pad] == 0), "grad_x on padded steps must be 0"


GIVEN_CASES = [(mode, given) for mode in MODES
               for given in ("none", "y", "h_n", "c_n", "y+h_n", "h_n+c_n")
               if mode == "lstm" or "c_n" not in given]


@pytest.mark.parametrize("mode, given", GIVEN_CASES)
def test_sequence_upstream_gradients_none_or_given(mode, given, dtype, rng):
    """None means zero: the same gradients as explicit zeros, and as the reference."""
    steps, batch, input_size, hidden = 4, 3, 3, 7
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype)
    full = upstream(rng, mode, steps, batch, hidden, dtype)
    parts = given.split("+")
    grads = tuple(g if name in parts else None for g, name in zip(full, ("y", "h_n", "c_n")))
    lengths = np.array([3, 1, 4])
    _, got = compare_sequence(mode, x, h0, c0, w, lengths, False, grads)
    zeros = tuple(np.zeros_like(f) if (g is None and f is not None) else g
                  for g, f in zip(grads, full))
    *_, tape = crnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths)
    with_zeros = crnn.rnn_sequence_backward(tape, *zeros)
    for name, a, b in zip(GRAD_NAMES, got, with_zeros):
        if a is None:
            assert b is None
        else:
            assert_close(a, b, dtype, what=name)
    if given == "none":
        for name, a in zip(GRAD_NAMES, got):
            assert a is None or not np.any(a), f"{name} must be 0 without upstream gradients"


@pytest.mark.parametrize("steps, batch", [(7, 3), (40, 9), (3, 300)],
                         ids=["one-chunk", "chunks-of-28-steps", "chunks-of-1-step"])
@pytest.mark.parametrize("mode", MODES)
def test_sequence_not_training_gives_same_forward_and_no_tape(mode, steps, batch, dtype, rng):
    """Without training the projection goes through a small workspace, chunk by chunk
    (about 256 rows of whole steps): the same bits as the training forward."""
    x = rng.standard_normal((steps, batch, 4)).astype(dtype)
    h0, c0 = states(rng, mode, batch, 17, dtype)
    w = weights(rng, mode, 4, 17, dtype)
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps
    for reverse in (False, True):
        a = crnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths, reverse=reverse)
        b = crnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths, reverse=reverse,
                              training=False)
        assert b[3] is None
        for u, v in zip(a[:3], b[:3]):
            assert (u is None and v is None) or np.array_equal(u, v)


@pytest.mark.parametrize("mode", MODES)
def test_sequence_lengths_equal_to_truncated_sequences(mode, dtype, rng):
    """Row n with length l gives what the sequence cut to its first l steps gives alone
    (both directions): the reverse direction starts at the row's own last step."""
    steps, batch, input_size, hidden = 5, 4, 3, 9
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype)
    lengths = np.array([3, 5, 1, 2])
    for reverse in (False, True):
        y, h_n, c_n, _ = crnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths,
                                           reverse=reverse, training=False)
        for n, l in enumerate(lengths):
            yn, hn, cn, _ = crnn.rnn_sequence(
                mode, x[:l, n:n + 1], h0[n:n + 1], None if c0 is None else c0[n:n + 1], *w,
                reverse=reverse, training=False)
            assert_close(y[:l, n], yn[:, 0], dtype, what=f"y row {n}")
            assert_close(h_n[n], hn[0], dtype, what=f"h_n row {n}")
            if mode == "lstm":
                assert_close(c_n[n], cn[0], dtype, what=f"c_n row {n}")


@pytest.mark.parametrize("mode", MODES)
def test_sequence_saturated_gates(mode, dtype, rng):
    """Inputs 30x larger than usual drive sigmoid/tanh deep into saturation (pre-activations
    of +-100): no overflow, finite results equal to the reference's."""
    steps, batch, input_size, hidden = 5, 3, 4, 19
    x = (30 * rng.standard_normal((steps, batch, input_size))).astype(dtype)
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype)
    grads = upstream(rng, mode, steps, batch, hidden, dtype)
    for reverse in (False, True):
        (y, h_n, c_n), back = compare_sequence(mode, x, h0, c0, w, np.array([5, 1, 3]),
                                               reverse, grads)
        for a in (y, h_n, c_n, *back):
            assert a is None or np.all(np.isfinite(a))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("mode", MODES)
def test_sequence_nan_propagates(mode, dtype, rng):
    """A NaN in x reaches that row's outputs from its step on (and only that row)."""
    steps, batch, input_size, hidden = 4, 3, 3, 17
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    x[1, 0, 0] = np.nan
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype)
    y, h_n, c_n, _ = crnn.rnn_sequence(mode, x, h0, c0, *w, training=False)
    ry, rh_n, rc_n, _ = rrnn.rnn_sequence(mode, x, h0, c0, *w, training=False)
    assert_close(y, ry, dtype, what="y")
    assert_close(h_n, rh_n, dtype, what="h_n")
    assert np.all(np.isnan(y[1, 0])), "the NaN step's output must be NaN"
    assert np.all(np.isfinite(y[:, 1:])) and np.all(np.isfinite(y[0]))
    if mode != "rnn_relu":
        # relu of NaN is NaN (as torch and the reference), so all later steps are NaN too
        assert np.all(np.isnan(y[1:, 0]))
    assert np.all(np.isnan(h_n[0]))


@pytest.mark.parametrize("sorted_lengths", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_sequence_padding_is_never_read(mode, dtype, rng, sorted_lengths):
    """NaN and inf in x past a sequence's end reach nothing: outputs and every gradient
    (the weight gradients included) equal those of zero padding, both directions; also
    with the lengths already sorted, where the kernel reads the caller's x itself."""
    steps, batch, input_size, hidden = 5, 4, 3, 17
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    lengths = np.array([5, 3, 2, 1] if sorted_lengths else [5, 2, 1, 3])
    pad = np.arange(steps)[:, None] >= lengths[None, :]
    x[pad] = 0
    dirty = x.copy()
    dirty[pad] = np.nan
    dirty[4, 1, 0] = np.inf
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype)
    grads = upstream(rng, mode, steps, batch, hidden, dtype)
    for reverse in (False, True):
        (y, h_n, c_n), back = compare_sequence(mode, dirty, h0, c0, w, lengths, reverse, grads)
        *clean, tape = crnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths,
                                         reverse=reverse)
        for a, b in zip((y, h_n, c_n), clean):
            assert (a is None and b is None) or np.array_equal(a, b)
        for name, a, b in zip(GRAD_NAMES, back, crnn.rnn_sequence_backward(tape, *grads)):
            assert (a is None and b is None) or (np.all(np.isfinite(a))
                                                 and np.array_equal(a, b)), name


@pytest.mark.parametrize("mode", MODES)
def test_sequence_inputs_never_modified(mode, dtype, rng):
    steps, batch, input_size, hidden = 4, 3, 3, 17
    x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype)
    grads = upstream(rng, mode, steps, batch, hidden, dtype)
    lengths = np.array([4, 1, 2])
    inputs = [x, h0, c0, *w, lengths, *grads]
    copies = [None if a is None else a.copy() for a in inputs]
    for reverse in (False, True):
        *_, tape = crnn.rnn_sequence(mode, x, h0, c0, *w, lengths=lengths, reverse=reverse)
        crnn.rnn_sequence_backward(tape, *grads)
    for a, b in zip(inputs, copies):
        assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_sequence_non_contiguous_inputs(mode, dtype, rng):
    """Slices and transposes of every argument give the same bits as contiguous copies."""
    steps, batch, input_size, hidden = 4, 3, 5, 9
    G = GATES[mode] * hidden
    big_x = rng.standard_normal((batch, steps * 2, input_size * 2)).astype(dtype)
    x = big_x[:, ::2, ::2].transpose(1, 0, 2)  # (T, N, I), strided
    h0 = np.asfortranarray(rng.standard_normal((batch, hidden)).astype(dtype))
    c0 = (rng.standard_normal((hidden, batch)).astype(dtype).T if mode == "lstm" else None)
    w_ih = rng.uniform(-0.3, 0.3, (input_size, G)).astype(dtype).T
    w_hh = rng.uniform(-0.3, 0.3, (G, 2 * hidden)).astype(dtype)[:, 1::2]
    b_ih = rng.uniform(-0.3, 0.3, 2 * G).astype(dtype)[::2]
    b_hh = rng.uniform(-0.3, 0.3, 2 * G).astype(dtype)[1::2]
    lengths = np.array([1, 9, 4, 9, 3])[::2]  # [1, 4, 3], strided
    gy = rng.standard_normal((batch, steps, hidden)).astype(dtype).transpose(1, 0, 2)
    gh = np.asfortranarray(rng.standard_normal((batch, hidden)).astype(dtype))
    gc = np.asfortranarray(rng.standard_normal((batch, hidden)).astype(dtype)) \
        if mode == "lstm" else None
    args = [x, h0, c0, w_ih, w_hh, b_ih, b_hh]
    assert not x.flags.c_contiguous and not w_ih.flags.c_contiguous
    cont = [None if a is None else np.ascontiguousarray(a) for a in args]
    for reverse in (False, True):
        a = crnn.rnn_sequence(mode, *args, lengths=lengths, reverse=reverse)
        b = crnn.rnn_sequence(mode, *cont, lengths=np.ascontiguousarray(lengths),
                              reverse=reverse)
        for u, v in zip(a[:3], b[:3]):
            assert (u is None and v is None) or np.array_equal(u, v)
        ga = crnn.rnn_sequence_backward(a[3], gy, gh, gc)
        gb = crnn.rnn_sequence_backward(b[3], np.ascontiguousarray(gy),
                                        np.ascontiguousarray(gh),
                                        None if gc is None else np.ascontiguousarray(gc))
        for name, u, v in zip(GRAD_NAMES, ga, gb):
            assert (u is None and v is None) or np.array_equal(u, v), name


@st.composite
def sequence_problems(draw):
    steps = draw(st.integers(1, 9))
    batch = draw(st.integers(1, 6))
    return dict(mode=draw(st.sampled_from(MODES)), steps=steps, batch=batch,
                input_size=draw(st.integers(1, 9)), hidden=draw(st.integers(1, 70)),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                bias=draw(st.booleans()), reverse=draw(st.booleans()),
                lengths=draw(st.none() | st.lists(st.integers(1, steps), min_size=batch,
                                                  max_size=batch)),
                grads=draw(st.sampled_from(["all", "y", "h_n", "none"])),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=40, deadline=None, database=None)
@given(problem=sequence_problems())
def test_random_sequences_match_reference(problem):
    p = problem
    rng = np.random.default_rng(p["seed"])
    mode, dtype = p["mode"], p["dtype"]
    x = rng.standard_normal((p["steps"], p["batch"], p["input_size"])).astype(dtype)
    h0, c0 = states(rng, mode, p["batch"], p["hidden"], dtype)
    w = weights(rng, mode, p["input_size"], p["hidden"], dtype, p["bias"])
    full = upstream(rng, mode, p["steps"], p["batch"], p["hidden"], dtype)
    keep = {"all": (1, 1, 1), "y": (1, 0, 0), "h_n": (0, 1, 1), "none": (0, 0, 0)}[p["grads"]]
    grads = tuple(g if k else None for g, k in zip(full, keep))
    lengths = None if p["lengths"] is None else np.array(p["lengths"])
    compare_sequence(mode, x, h0, c0, w, lengths, p["reverse"], grads, what=str(p))


# --------------------------------------------------------------------------- finite differences


def _loss(impl, mode, arrays, lengths, reverse, grads):
    """sum(y * grad_y) + sum(h_n * grad_h_n) + sum(c_n * grad_c_n): its gradient with
    respect to anything is what rnn_sequence_backward returns for these upstream grads."""
    y, h_n, c_n, _ = impl.rnn_sequence(mode, *arrays, lengths=lengths, reverse=reverse,
                                       training=False)
    total = np.sum(y * grads[0]) + np.sum(h_n * grads[1])
    return total + (np.sum(c_n * grads[2]) if c_n is not None else 0.0)


def numerical_gradient(f, array, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of array."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        up = f()
        array[index] = saved - eps
        down = f()
        array[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


FD_CASES = [
    pytest.param(3, 3, 2, 3, [3, 1, 2], True, id="lengths"),
    pytest.param(4, 2, 3, 2, None, True, id="full"),
    pytest.param(3, 2, 2, 3, [2, 3], False, id="lengths-no-bias"),
    pytest.param(1, 1, 1, 1, None, True, id="T1-N1-I1-H1"),
]


@pytest.mark.parametrize("impl", [crnn, ref.rnn], ids=["c", "reference"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("steps, batch, input_size, hidden, lengths, bias", FD_CASES)
@pytest.mark.parametrize("mode", MODES)
def test_backward_matches_finite_differences(impl, mode, steps, batch, input_size, hidden,
                                             lengths, bias, reverse, rng):
    """Every gradient (x, h0, c0, weights, biases) of the C path and of the reference
    against central differences of their own forward, float64. eps = 1e-6: truncation
    ~eps^2, rounding ~1e-16/eps = 1e-10 on gradients of order 1, so rtol 1e-6 / atol 1e-8
    leave a wide margin while a wrong term (order 0.1) fails by far."""
    dtype = np.float64
    x = rng.standard_normal((steps, batch, input_size))
    h0, c0 = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype, bias)
    arrays = [x, h0, c0, *w]
    grads = upstream(rng, mode, steps, batch, hidden, dtype)
    lengths = None if lengths is None else np.array(lengths)
    *_, tape = impl.rnn_sequence(mode, *arrays, lengths=lengths, reverse=reverse)
    analytic = impl.rnn_sequence_backward(tape, *grads)
    for name, array, got in zip(GRAD_NAMES, arrays, analytic):
        if array is None:
            assert got is None, f"{name} should be None"
            continue
        want = numerical_gradient(lambda: _loss(impl, mode, arrays, lengths, reverse, grads),
                                  array)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8, err_msg=name)


# --------------------------------------------------------------------------- functional cells


def cell_call(module, mode, x, h, c, w):
    if mode == "lstm":
        return module.lstm_cell(x, (h, c), *w)
    if mode == "gru":
        return module.gru_cell(x, h, *w)
    return module.rnn_cell(x, h, *w, nonlinearity=mode[4:])


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("hidden", [1, 17, 33])
@pytest.mark.parametrize("mode", MODES)
def test_cells_match_reference(mode, hidden, bias, dtype, rng):
    batch, input_size = 3, 4
    x = rng.standard_normal((batch, input_size)).astype(dtype)
    h, c = states(rng, mode, batch, hidden, dtype)
    w = weights(rng, mode, input_size, hidden, dtype, bias)
    got = cell_call(fastnn, mode, x, h, c, w)
    want = cell_call(rrnn, mode, x, h, c, w)
    if mode == "lstm":
        assert_close(got[0], want[0], dtype, what="h'")
        assert_close(got[1], want[1], dtype, what="c'")
    else:
        assert_close(got, want, dtype, what="h'")
    # unbatched: a batch of one
    ub = cell_call(fastnn, mode, x[1], h[1], None if c is None else c[1], w)
    if mode == "lstm":
        assert ub[0].shape == ub[1].shape == (hidden,)
        assert_close(ub[0], got[0][1], dtype, what="unbatched h'")
        assert_close(ub[1], got[1][1], dtype, what="unbatched c'")
        rub = cell_call(rrnn, mode, x[1], h[1], c[1], w)
        assert_close(ub[0], rub[0], dtype)
    else:
        assert ub.shape == (hidden,)
        assert_close(ub, got[1], dtype, what="unbatched h'")
        assert_close(ub, cell_call(rrnn, mode, x[1], h[1], None, w), dtype)


@pytest.mark.parametrize("mode", MODES)
def test_cells_non_contiguous_and_untouched(mode, dtype, rng):
    """Strided x, h, c and weights give the bits of contiguous copies; no input changes."""
    G = GATES[mode] * 9
    x = rng.standard_normal((4, 6)).astype(dtype).T[::2]  # (3, 4), strided
    h = np.asfortranarray(rng.standard_normal((3, 9)).astype(dtype))
    c = rng.standard_normal((9, 3)).astype(dtype).T if mode == "lstm" else None
    w = (rng.uniform(-0.3, 0.3, (4, G)).astype(dtype).T,
         rng.uniform(-0.3, 0.3, (G, 18)).astype(dtype)[:, ::2],
         rng.uniform(-0.3, 0.3, 2 * G).astype(dtype)[::2], rng.uniform(-0.3, 0.3, G).astype(dtype))
    args = [x, h, c, *w]
    copies = [None if a is None else a.copy() for a in args]
    got = cell_call(fastnn, mode, x, h, c, w)
    want = cell_call(fastnn, mode, *(None if a is None else np.ascontiguousarray(a)
                                     for a in (x, h, c)),
                     [np.ascontiguousarray(a) for a in w])
    for a, b in zip(got if mode == "lstm" else (got,), want if mode == "lstm" else (want,)):
        assert np.array_equal(a, b)
    for a, b in zip(args, copies):
        assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_cell_equals_one_step_sequence(mode, dtype, rng):
    x = rng.standard_normal((2, 3)).astype(dtype)
    h, c = states(rng, mode, 2, 7, dtype)
    w = weights(rng, mode, 3, 7, dtype)
    got = cell_call(fastnn, mode, x, h, c, w)
    _, h_n, c_n, _ = crnn.rnn_sequence(mode, x[None], h, c, *w, training=False)
    assert np.array_equal(got[0] if mode == "lstm" else got, h_n)
    if mode == "lstm":
        assert np.array_equal(got[1], c_n)


# --------------------------------------------------------------------------- layers


def make(mode, *args, **kwargs):
    if mode == "lstm":
        return nn.LSTM(*args, **kwargs)
    if mode == "gru":
        return nn.GRU(*args, **kwargs)
    return nn.RNN(*args, nonlinearity=mode[4:], **kwargs)


def make_cell(mode, *args, **kwargs):
    if mode == "lstm":
        return nn.LSTMCell(*args, **kwargs)
    if mode == "gru":
        return nn.GRUCell(*args, **kwargs)
    return nn.RNNCell(*args, nonlinearity=mode[4:], **kwargs)


def twins(factory, seed, *args, **kwargs):
    """The same layer twice (same seed, same state dict): on the C backend and on the
    reference backend (set on the instance)."""
    fast = factory(*args, rng=np.random.default_rng(seed), **kwargs)
    slow = factory(*args, rng=np.random.default_rng(seed), **kwargs)
    slow.load_state_dict(fast.state_dict())
    if isinstance(slow, nn.DilatedRNN):
        for layer in slow.layers:
            layer.backend = rrnn
    else:
        assert type(fast).backend is crnn
        slow.backend = rrnn
    return fast, slow


def compare_results(got, want, dtype, what):
    if isinstance(got, tuple):
        assert isinstance(want, tuple) and len(got) == len(want), what
        for i, (a, b) in enumerate(zip(got, want)):
            compare_results(a, b, dtype, f"{what}[{i}]")
    elif got is None:
        assert want is None, what
    else:
        assert_close(got, want, dtype, what=what)


def compare_param_grads(fast, slow, dtype):
    for (name, p), (name2, q) in zip(fast.named_parameters(), slow.named_parameters()):
        assert name == name2
        assert p.grad is not None, f"{name} got no gradient"
        assert_close(p.grad, q.grad, dtype, what=f"{name}.grad")


def layer_config(id, num_layers=1, bidirectional=False, batch_first=False, lengths=False,
                 hx=False, bias=True, unbatched=False):
    return pytest.param(dict(num_layers=num_layers, bidirectional=bidirectional,
                             batch_first=batch_first, bias=bias),
                        lengths, hx, unbatched, id=id)


LAYER_CONFIGS = [
    layer_config("L1"),
    layer_config("L1-bi-lengths-hx", bidirectional=True, lengths=True, hx=True),
    layer_config("L2-bi-batch_first-lengths", 2, True, True, lengths=True),
    layer_config("L2-hx-batch_first", 2, batch_first=True, hx=True),
    layer_config("L3-bi-lengths-hx", 3, True, lengths=True, hx=True),
    layer_config("L3-no-bias-lengths", 3, lengths=True, bias=False),
    layer_config("L2-bi-unbatched-hx", 2, True, unbatched=True, hx=True),
    layer_config("L1-unbatched-batch_first", 1, batch_first=True, unbatched=True),
]


def layer_inputs(rng, mode, layer, steps, batch, dtype, lengths, hx, unbatched):
    L, D, H = layer.num_layers, layer.directions, layer.hidden_size
    I = layer.input_size
    if unbatched:
        x = rng.standard_normal((steps, I)).astype(dtype)
        sshape = (L * D, H)
    else:
        x = rng.standard_normal((batch, steps, I) if layer.batch_first
                                else (steps, batch, I)).astype(dtype)
        sshape = (L * D, batch, H)
    h = None
    if hx:
        h = rng.standard_normal(sshape).astype(dtype)
        if mode == "lstm":
            h = (h, rng.standard_normal(sshape).astype(dtype))
    lens = lengths_for(rng, steps, batch) if lengths else None
    return x, h, lens, sshape


@pytest.mark.parametrize("config, lengths, hx, unbatched", LAYER_CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_layer_matches_reference_backend(mode, config, lengths, hx, unbatched, dtype, rng):
    steps, batch, I, H = 5, 4, 3, 7
    fast, slow = twins(make, int(rng.integers(2**31)), mode, I, H, dtype=dtype, **config)
    x, h, lens, sshape = layer_inputs(rng, mode, fast, steps, batch, dtype, lengths, hx,
                                      unbatched)
    out_f = fast(x, h, lens)
    out_s = slow(x, h, lens)
    compare_results(out_f, out_s, dtype, "forward")
    output = out_f[0]
    D = fast.directions
    if unbatched:
        assert output.shape == (steps, D * H)
    elif fast.batch_first:
        assert output.shape == (batch, steps, D * H)
    else:
        assert output.shape == (steps, batch, D * H)
    states_f = out_f[1] if mode == "lstm" else (out_f[1],)
    for s in states_f:
        assert s.shape == sshape
    if lens is not None:
        seq = output.transpose(1, 0, 2) if fast.batch_first else output
        pad = np.arange(steps)[:, None] >= lens[None, :]
        assert np.all(seq[pad] == 0)
    g = rng.standard_normal(output.shape).astype(dtype)
    gh = rng.standard_normal(sshape).astype(dtype)
    gc = rng.standard_normal(sshape).astype(dtype) if mode == "lstm" else None
    res_f = fast.backward(g, gh, gc)
    res_s = slow.backward(g, gh, gc)
    compare_results(res_f, res_s, dtype, "backward")
    if hx:
        gx, ghx = res_f
        assert gx.shape == x.shape
        if mode == "lstm":
            assert ghx[0].shape == ghx[1].shape == sshape
        else:
            assert ghx.shape == sshape
    else:
        assert isinstance(res_f, np.ndarray) and res_f.shape == x.shape
    compare_param_grads(fast, slow, dtype)


@pytest.mark.parametrize("mode", MODES)
def test_layer_unbatched_is_a_batch_of_one(mode, dtype, rng):
    fast = make(mode, 3, 5, num_layers=2, bidirectional=True, dtype=dtype,
                rng=np.random.default_rng(1))
    x = rng.standard_normal((4, 3)).astype(dtype)
    h = rng.standard_normal((4, 5)).astype(dtype)
    hx = (h, h * 0.5) if mode == "lstm" else h
    hx1 = (h[:, None], h[:, None] * 0.5) if mode == "lstm" else h[:, None]
    out, st = fast(x, hx)
    g = rng.standard_normal(out.shape).astype(dtype)
    gx, ghx = fast.backward(g)
    out1, st1 = fast(x[:, None], hx1)
    gx1, ghx1 = fast.backward(g[:, None])
    assert_close(out, out1[:, 0], dtype)
    assert_close(gx, gx1[:, 0], dtype)
    if mode == "lstm":
        for a, b in zip(st + ghx, st1 + ghx1):
            assert_close(a, b[:, 0], dtype)
    else:
        assert_close(st, st1[:, 0], dtype)
        assert_close(ghx, ghx1[:, 0], dtype)


@pytest.mark.parametrize("mode", MODES)
def test_layer_dropout_same_masks_as_reference_backend(mode, dtype, rng):
    """Dropout between layers in training draws from the layer's rng: two layers built with
    the same seed draw the same masks, so the C and reference backends agree."""
    steps, batch, I, H = 5, 3, 4, 6
    fast, slow = twins(make, 7, mode, I, H, num_layers=3, dropout=0.4, bidirectional=True,
                       dtype=dtype)
    x = rng.standard_normal((steps, batch, I)).astype(dtype)
    lens = np.array([5, 1, 3])
    out_f = fast(x, lengths=lens)
    out_s = slow(x, lengths=lens)
    compare_results(out_f, out_s, dtype, "forward")
    g = rng.standard_normal(out_f[0].shape).astype(dtype)
    compare_results(fast.backward(g), slow.backward(g), dtype, "grad_x")
    compare_param_grads(fast, slow, dtype)
    # the masks do something: eval mode (no dropout) gives another output
    fast.eval()
    assert not np.allclose(fast(x, lengths=lens)[0], out_f[0])
    # and the output dtype stays the layer's
    assert out_f[0].dtype == dtype


def test_layer_dropout_one_cuts_the_input_off(dtype, rng):
    """dropout=1 zeroes everything between layers: no gradient reaches x or layer 0."""
    layer = nn.GRU(3, 4, num_layers=2, dropout=1.0, dtype=dtype)
    x = rng.standard_normal((4, 2, 3)).astype(dtype)
    out = layer(x)[0]
    assert np.all(np.isfinite(out))
    gx = layer.backward(np.ones_like(out))
    assert not np.any(gx)
    assert not np.any(layer.weight_ih_l0.grad) and not np.any(layer.bias_hh_l0.grad)
    assert np.any(layer.bias_hh_l1.grad)


@pytest.mark.parametrize("mode", MODES)
def test_layer_eval_mode_matches_training_forward(mode, dtype, rng):
    layer = make(mode, 3, 9, num_layers=2, bidirectional=True, dtype=dtype,
                 rng=np.random.default_rng(3))
    x = rng.standard_normal((4, 2, 3)).astype(dtype)
    train = layer(x, lengths=[4, 2])
    layer.eval()
    ev = layer(x, lengths=[4, 2])
    compare_results(train, ev, dtype, "eval vs train")
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(np.ones_like(ev[0]))


@pytest.mark.parametrize("mode", MODES)
def test_layer_gradients_accumulate_and_zero_grad(mode, dtype, rng):
    layer = make(mode, 3, 5, num_layers=2, bidirectional=True, dtype=dtype,
                 rng=np.random.default_rng(5))
    xs = [rng.standard_normal((4, 2, 3)).astype(dtype) for _ in range(2)]
    singles = []
    for x in xs:
        layer.zero_grad()
        out = layer(x)[0]
        layer.backward(np.cos(np.arange(out.size)).reshape(out.shape).astype(dtype))
        singles.append({n: p.grad.copy() for n, p in layer.named_parameters()})
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())
    for x in xs:
        out = layer(x)[0]
        layer.backward(np.cos(np.arange(out.size)).reshape(out.shape).astype(dtype))
    for name, p in layer.named_parameters():
        assert_close(p.grad, singles[0][name] + singles[1][name], dtype, what=name)
        assert p.grad.dtype == dtype
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())


def torch_names(num_layers, bidirectional, bias):
    names = []
    for layer in range(num_layers):
        for suffix in ("", "_reverse") if bidirectional else ("",):
            kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
            names += [f"{k}_l{layer}{suffix}" for k in kinds]
    return names


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_layer_state_dict_names_and_shapes(mode, bidirectional, bias):
    I, H, L = 3, 5, 3
    layer = make(mode, I, H, num_layers=L, bias=bias, bidirectional=bidirectional)
    sd = layer.state_dict()
    assert list(sd) == torch_names(L, bidirectional, bias)
    assert [n for n, _ in layer.named_parameters()] == list(sd)
    D, G = (2 if bidirectional else 1), GATES[mode] * H
    for name, arr in sd.items():
        layer_index = int(name.split("_l")[1].split("_")[0])
        if name.startswith("weight_ih"):
            want = (G, I if layer_index == 0 else D * H)
        elif name.startswith("weight_hh"):
            want = (G, H)
        else:
            want = (G,)
        assert arr.shape == want, name
        assert arr.dtype == np.float32


@pytest.mark.parametrize("mode", MODES)
def test_layer_load_state_dict_copies_and_converts(mode, rng):
    layer = make(mode, 3, 4, num_layers=2, bidirectional=True, dtype=np.float32)
    sd = {k: rng.uniform(-0.5, 0.5, v.shape) for k, v in layer.state_dict().items()}  # f64
    keep = {k: v.copy() for k, v in sd.items()}
    layer.load_state_dict(sd)
    for name, p in layer.named_parameters():
        assert p.data.dtype == np.float32, name
        assert not np.shares_memory(p.data, sd[name]), name
        assert_close(p.data, sd[name].astype(np.float32), np.float32, what=name)
    # train: a backward and an in-place SGD step must not reach the caller's arrays
    x = rng.standard_normal((3, 2, 3)).astype(np.float32)
    out = layer(x)[0]
    layer.backward(np.ones_like(out))
    for p in layer.parameters():
        p.data -= 0.1 * p.grad
    for k in sd:
        assert np.array_equal(sd[k], keep[k]), f"{k} was written into"
    # state_dict hands out copies too
    got = layer.state_dict()
    got["weight_ih_l0"][...] = 123
    assert not np.any(layer.weight_ih_l0.data == 123)
    # f32 into f64
    layer64 = make(mode, 3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    layer64.load_state_dict(layer.state_dict())
    for (name, p), (_, q) in zip(layer64.named_parameters(), layer.named_parameters()):
        assert p.data.dtype == np.float64
        assert np.array_equal(p.data, q.data.astype(np.float64)), name


def test_layer_load_state_dict_bad_keys_and_shapes():
    layer = nn.LSTM(3, 4)
    sd = layer.state_dict()
    with pytest.raises(KeyError, match="missing keys.*weight_ih_l0"):
        layer.load_state_dict({k: v for k, v in sd.items() if k != "weight_ih_l0"})
    with pytest.raises(KeyError, match="unexpected keys.*weight_ih_l1"):
        layer.load_state_dict({**sd, "weight_ih_l1": sd["weight_ih_l0"]})
    before = layer.state_dict()
    bad = dict(sd, weight_hh_l0=np.zeros((16, 5), np.float32),
               weight_ih_l0=np.full((16, 3), 7, np.float32))
    with pytest.raises(ValueError, match=r"weight_hh_l0.*\(16, 5\)"):
        layer.load_state_dict(bad)
    for k, v in layer.state_dict().items():
        assert np.array_equal(v, before[k]), f"{k} changed by a failed load"


@pytest.mark.parametrize("mode", MODES)
def test_layer_inputs_never_modified(mode, dtype, rng):
    layer = make(mode, 3, 5, num_layers=2, bidirectional=True, dropout=0.3, dtype=dtype)
    x = rng.standard_normal((4, 3, 3)).astype(dtype)
    h = rng.standard_normal((4, 3, 5)).astype(dtype)
    hx = (h, h + 1) if mode == "lstm" else h
    lens = np.array([4, 1, 3])
    keep = [x.copy(), h.copy(), lens.copy()]
    out, _ = layer(x, hx, lens)
    g = rng.standard_normal(out.shape).astype(dtype)
    gh = rng.standard_normal(h.shape).astype(dtype)
    gkeep = [g.copy(), gh.copy()]
    layer.backward(g, gh)
    for a, b in zip([x, h, lens, g, gh], keep + gkeep):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_layer_non_contiguous_input(mode, dtype, rng):
    layer = make(mode, 3, 6, num_layers=2, bidirectional=True, batch_first=True,
                 dtype=dtype)
    big = rng.standard_normal((5, 4, 6)).astype(dtype)
    x = big[:, :, ::2].transpose(1, 0, 2)  # (N=4, T=5, I=3), strided
    out1, st1 = layer(x, lengths=[5, 2, 1, 4])
    g = rng.standard_normal(out1.shape).astype(dtype)
    g_wide = np.zeros(g.shape[:2] + (2 * g.shape[2],), dtype)
    g_wide[..., ::2] = g
    gx1 = layer.backward(g_wide[..., ::2])
    out2, st2 = layer(np.ascontiguousarray(x), lengths=np.array([5, 2, 1, 4]))
    gx2 = layer.backward(np.ascontiguousarray(g))
    assert np.array_equal(out1, out2) and np.array_equal(gx1, gx2)


# --------------------------------------------------------------------------- cell modules


@pytest.mark.parametrize("hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("mode", MODES)
def test_cell_module_matches_reference_backend(mode, unbatched, hx, dtype, rng):
    I, H, N = 4, 17, 3
    fast, slow = twins(make_cell, 11, mode, I, H, dtype=dtype)
    x = rng.standard_normal((I,) if unbatched else (N, I)).astype(dtype)
    sshape = (H,) if unbatched else (N, H)
    h = None
    if hx:
        h = rng.standard_normal(sshape).astype(dtype)
        if mode == "lstm":
            h = (h, rng.standard_normal(sshape).astype(dtype))
    out_f, out_s = fast(x, h), slow(x, h)
    compare_results(out_f, out_s, dtype, "forward")
    # the functional cell agrees
    params = [p.data for p in fast.parameters()]
    if h is None:
        z = np.zeros(sshape, dtype)
        hh = (z, z) if mode == "lstm" else z
    else:
        hh = h
    if mode == "lstm":
        want = fastnn.lstm_cell(x, hh, *params)
    elif mode == "gru":
        want = fastnn.gru_cell(x, hh, *params)
    else:
        want = fastnn.rnn_cell(x, hh, *params, nonlinearity=mode[4:])
    compare_results(out_f, want, dtype, "vs functional")
    gh = rng.standard_normal(sshape).astype(dtype)
    gc = rng.standard_normal(sshape).astype(dtype) if mode == "lstm" else None
    res_f = fast.backward(gh, gc)
    res_s = slow.backward(gh, gc)
    compare_results(res_f, res_s, dtype, "backward")
    if hx:
        assert res_f[0].shape == x.shape
    else:
        assert res_f.shape == x.shape
    compare_param_grads(fast, slow, dtype)


@pytest.mark.parametrize("mode", MODES)
def test_cell_module_state_dict_names(mode):
    cell = make_cell(mode, 3, 5)
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert cell.weight_ih.shape == (GATES[mode] * 5, 3)
    assert list(make_cell(mode, 3, 5, bias=False).state_dict()) == ["weight_ih", "weight_hh"]


# --------------------------------------------------------------------------- DilatedRNN


DILATED_MODES = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}


def dilated_by_hand(model, x):
    """The definition: layer l's state at step t comes from its state at step t - d_l (zero
    before the start), a plain loop over steps with the reference cells."""
    mode = DILATED_MODES[model.cell]
    out = x
    steps, batch, _ = x.shape
    H = model.hidden_size
    for layer, d in zip(model.layers, model.dilations):
        w = [layer.weight_ih_l0.data, layer.weight_hh_l0.data, layer.bias_ih_l0.data,
             layer.bias_hh_l0.data]
        hs, cs, ys = {}, {}, []
        for t in range(steps):
            zero = np.zeros((batch, H), x.dtype)
            h_prev, c_prev = hs.get(t - d, zero), cs.get(t - d, zero)
            if mode == "lstm":
                hs[t], cs[t] = rrnn.lstm_cell(out[t], (h_prev, c_prev), *w)
            elif mode == "gru":
                hs[t] = rrnn.gru_cell(out[t], h_prev, *w)
            else:
                hs[t] = rrnn.rnn_cell(out[t], h_prev, *w)
            ys.append(hs[t])
        out = np.stack(ys)
    return out


@pytest.mark.parametrize("dilations, steps", [((1, 2, 4), 7), ((2, 3), 6), ((4,), 3),
                                              ((1, 2, 4, 8), 9)],
                         ids=["1-2-4-T7", "2-3-T6", "4-T3", "1-2-4-8-T9"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_dilated_rnn_matches_definition(cell, dilations, steps, dtype, rng):
    model = nn.DilatedRNN(cell, 3, 5, dilations, dtype=dtype, rng=np.random.default_rng(2))
    x = rng.standard_normal((steps, 2, 3)).astype(dtype)
    y = model(x)
    assert y.shape == (steps, 2, 5) and y.dtype == dtype
    assert_close(y, dilated_by_hand(model, x), dtype, what="DilatedRNN output")
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["layers.0.weight_ih_l0", "layers.0.weight_hh_l0",
                         "layers.0.bias_ih_l0", "layers.0.bias_hh_l0"]
    assert len(names) == 4 * len(dilations)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_dilated_rnn_backward_matches_reference_backend(cell, dtype, rng):
    fast, slow = twins(nn.DilatedRNN, 4, cell, 3, 5, (1, 2, 3), dtype=dtype)
    x = rng.standard_normal((7, 2, 3)).astype(dtype)
    assert_close(fast(x), slow(x), dtype, what="forward")
    g = rng.standard_normal((7, 2, 5)).astype(dtype)
    assert_close(fast.backward(g), slow.backward(g), dtype, what="grad_x")
    compare_param_grads(fast, slow, dtype)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_dilated_rnn_backward_finite_differences(cell, rng):
    """float64, tiny: the input gradient and every parameter gradient against central
    differences of the forward (tolerances as test_backward_matches_finite_differences)."""
    model = nn.DilatedRNN(cell, 2, 3, (1, 2), dtype=np.float64, rng=np.random.default_rng(9))
    x = rng.standard_normal((5, 2, 2))
    g = rng.standard_normal((5, 2, 3))

    def f():
        return float(np.sum(model(x) * g))

    model(x)
    gx = model.backward(g)
    np.testing.assert_allclose(gx, numerical_gradient(f, x), rtol=1e-6, atol=1e-8,
                               err_msg="grad_x")
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, numerical_gradient(f, p.data), rtol=1e-6,
                                   atol=1e-8, err_msg=name)


def test_dilated_rnn_backward_needs_forward(dtype):
    model = nn.DilatedRNN("gru", 2, 3, (1, 2), dtype=dtype)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.zeros((4, 1, 3), dtype))
    y = model(np.ones((4, 1, 2), dtype))
    model.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.ones_like(y))
