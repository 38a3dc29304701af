"""Recurrences on the C/OpenMP path: fused LSTM, GRU and RNN sequence loops and cells.

`rnn_sequence` runs one layer in one direction over a whole sequence in one
call (csrc/rnn.c): one GEMM projects the inputs of all steps, then each step
adds the recurrent GEMM (its weight packed once) and the gate nonlinearities
in one pass. `rnn_sequence_backward` runs backpropagation through time from
what the forward kept. `fastnn.nn.LSTM/GRU/RNN` stack these into layers and
directions; `fastnn.reference.rnn` has the same two functions in NumPy.

Gate orders are PyTorch's: LSTM i, f, g, o; GRU r, z, n with
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from fastnn import _kernels
from fastnn._memory import empty
from fastnn._validate import (RNN_GATES, as_bool, check_rnn_sizes, contiguous, nonlinearity_mode,
                              prepare_cell, prepare_rnn_sequence, rnn_upstream, state_pair)

__all__ = ["rnn_sequence", "rnn_sequence_backward", "lstm_cell", "gru_cell", "rnn_cell"]

Array = np.ndarray


class RNNGeometry(NamedTuple):
    """Sizes of one layer and direction of a recurrence, as the C `fnn_rnn_shape`."""
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    mode: int
    reverse: int


# The C kernels' mode numbers (csrc/fastnn.h).
_MODE_NUMBERS = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}


class _Tape(NamedTuple):
    """What the backward of one fused sequence reads: the inputs and the kept activations."""
    geometry: RNNGeometry
    x: Array
    w_ih: Array
    w_hh: Array
    has_bias: bool
    lengths: Optional[Array]  # sorted longest first when `order` is not None
    order: Optional[Array]  # the caller's row of each kernel row (x is sorted), or None
    gates: list  # [the kept activations (T, N, G)], emptied by the backward that consumes them
    hs: Array
    cs: Optional[Array]


def _flat(a: Optional[Array]) -> Optional[Array]:
    return None if a is None else a.reshape(-1)


def _mode_name(geo: RNNGeometry) -> str:
    return next(k for k, v in _MODE_NUMBERS.items() if v == geo.mode)


def _gate_width(geo: RNNGeometry) -> int:
    """Columns of a step's gate row: 4H for LSTM and GRU, H for RNN (csrc/fastnn.h)."""
    return (4 if geo.mode in (0, 1) else 1) * geo.hidden_size


def rnn_sequence(mode: str, x: Array, h0: Array, c0: Optional[Array], w_ih: Array,
                 w_hh: Array, b_ih: Optional[Array] = None, b_hh: Optional[Array] = None,
                 lengths: Optional[Array] = None, reverse: bool = False,
                 training: bool = True) -> Tuple[Array, Array, Optional[Array], Optional[_Tape]]:
    """One layer of a recurrence in one direction over a whole sequence.

    Parameters
    ----------
    mode : {'lstm', 'gru', 'rnn_tanh', 'rnn_relu'}
    x : ndarray, shape (T, N, I)
    h0 : ndarray, shape (N, H)
    c0 : ndarray, shape (N, H), or None
        The initial cell state; for 'lstm' only.
    w_ih, w_hh : ndarray, shapes (G*H, I) and (G*H, H)
        G = 4 (LSTM), 3 (GRU) or 1, gate blocks in PyTorch's order.
    b_ih, b_hh : ndarray, shape (G*H,), or None
        Both or neither.
    lengths : ndarray of int, shape (N,), optional
        Sequence n has lengths[n] steps (1 <= lengths[n] <= T), as PyTorch's
        ``pack_padded_sequence(..., enforce_sorted=False)``: its outputs past
        its end are 0, its state stops changing there, and with ``reverse`` it
        starts at its own last step.
    reverse : bool
        Walk the sequence from t = T - 1 down to 0.
    training : bool
        Keep the activations `rnn_sequence_backward` needs (the tape).

    Returns
    -------
    y : ndarray, shape (T, N, H)
    h_n : ndarray, shape (N, H)
    c_n : ndarray, shape (N, H), or None unless 'lstm'
    tape : the backward's input, or None when not training
    """
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse = prepare_rnn_sequence(
        mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse)
    training = as_bool(training, "training")
    steps, batch, size = x.shape
    hidden = w_hh.shape[1]
    check_rnn_sizes(steps, batch, size, hidden)
    geo = RNNGeometry(steps, batch, size, hidden, _MODE_NUMBERS[mode], int(reverse))
    order = None
    if lengths is not None and lengths.min() == steps:
        lengths = None
    if lengths is not None:
        # The kernels run each step's GEMMs over the rows up to the last one still
        # running, so sequences go longest first (as PyTorch packs them): x and
        # lengths are sorted here, the states and outputs are mapped row by row in C.
        order = np.argsort(-lengths, kind="stable")
        if np.array_equal(order, np.arange(batch)):
            order = None
        else:
            lengths = lengths[order]
        if training and order is not None:
            # The backward's GEMMs over all steps want x in the kernel's order. Padded
            # steps are never read, as in PyTorch: the forward and the backward skip them.
            x = _take_rows(x, order)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = (None if a is None else contiguous(a)
                                         for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh))
    lstm = c0 is not None
    dtype = x.dtype
    y = empty((steps, batch, hidden), dtype)
    h_n = empty((batch, hidden), dtype)
    c_n = empty((batch, hidden), dtype) if lstm else None
    gates = empty((steps, batch, _gate_width(geo)), dtype) if training else None
    hs = empty((steps + 1, batch, hidden), dtype) if training else None
    cs = empty((steps + 1, batch, hidden), dtype) if training and lstm else None
    # In inference the kernel reads x's rows through the order (a sorted copy of x
    # cost 20% of an RNN's time in page faults).
    _kernels.rnn_forward(geo, _flat(x), _flat(w_ih), _flat(w_hh), b_ih, b_hh, lengths, order,
                         _flat(h0), _flat(c0), _flat(y), _flat(h_n), _flat(c_n), _flat(gates),
                         _flat(hs), _flat(cs), x_rows=None if training else order)
    tape = (_Tape(geo, x, w_ih, w_hh, b_ih is not None, lengths, order, [gates], hs, cs)
            if training else None)
    return y, h_n, c_n, tape


def _take_rows(a: Array, rows: Array) -> Array:
    """a[:, rows] into an array from the block cache: a fresh one of a few MB (the
    sorted x, the unsorted dx) cost a bidirectional LSTM's training with lengths 4%
    of its time in page faults."""
    return np.take(a, rows, axis=1, out=empty(a.shape[:1] + rows.shape + a.shape[2:], a.dtype),
                   mode="clip")


def rnn_sequence_backward(tape: _Tape, grad_y: Optional[Array], grad_h_n: Optional[Array] = None,
                          grad_c_n: Optional[Array] = None):
    """Backpropagation through time of one `rnn_sequence` call (made with training=True).

    Parameters
    ----------
    tape : the fourth result of `rnn_sequence`
    grad_y : ndarray, shape (T, N, H), or None (zero)
        Gradients on padded steps are ignored.
    grad_h_n, grad_c_n : ndarray, shape (N, H), or None (zero)

    Returns
    -------
    (grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)
        grad_c0 is None unless LSTM; the bias gradients are None when the
        forward had no biases.
    """
    if not isinstance(tape, _Tape):
        raise TypeError("tape must be the tape returned by fastnn.rnn.rnn_sequence(..., "
                        f"training=True), got {type(tape).__name__}")
    if not tape.gates:
        raise RuntimeError("this tape was already used by a backward; run the forward again")
    geo = tape.geometry
    steps, batch, _, hidden = geo[:4]
    lstm = tape.cs is not None
    dtype = tape.x.dtype
    if grad_c_n is not None and not lstm:
        raise ValueError(f"grad_c_n must be None for mode {_mode_name(geo)!r} (no cell state)")
    dy, dh_n, dc_n = (rnn_upstream(grad_y, "grad_y", (steps, batch, hidden), dtype),
                      rnn_upstream(grad_h_n, "grad_h_n", (batch, hidden), dtype),
                      rnn_upstream(grad_c_n, "grad_c_n", (batch, hidden), dtype))
    dy, dh_n, dc_n = (None if g is None else contiguous(g) for g in (dy, dh_n, dc_n))
    dx = empty(tape.x.shape, tape.x.dtype)
    dh0 = empty((batch, hidden), dtype)
    dc0 = empty((batch, hidden), dtype) if lstm else None
    dw_ih = empty(tape.w_ih.shape, dtype)
    dw_hh = empty(tape.w_hh.shape, dtype)
    db_ih = empty(tape.w_hh.shape[0], dtype) if tape.has_bias else None
    db_hh = empty(tape.w_hh.shape[0], dtype) if tape.has_bias else None
    gates = tape.gates.pop()  # the backward overwrites them with the gate gradients
    _kernels.rnn_backward(geo, _flat(tape.x), _flat(tape.w_ih), _flat(tape.w_hh), tape.lengths,
                          tape.order, _flat(gates), _flat(tape.hs), _flat(tape.cs), _flat(dy),
                          _flat(dh_n), _flat(dc_n), _flat(dx), _flat(dh0), _flat(dc0),
                          _flat(dw_ih), _flat(dw_hh), db_ih, db_hh)
    if tape.order is not None:  # dx comes out in the kernel's (sorted) row order
        dx = _take_rows(dx, np.argsort(tape.order))
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def _cell(mode: str, x, states: dict, w_ih, w_hh, b_ih, b_hh):
    """One step of a recurrence: the fused sequence kernel with T = 1."""
    x, states, (w_ih, w_hh, b_ih, b_hh), unbatched = prepare_cell(
        RNN_GATES[mode], x, states, w_ih, w_hh, b_ih, b_hh)
    if (b_ih is None) != (b_hh is None):  # a cell may have one bias: the kernel takes both
        b_ih, b_hh = (np.zeros_like(b_hh) if b_ih is None else b_ih,
                      np.zeros_like(b_ih) if b_hh is None else b_hh)
    h, c = states if mode == "lstm" else (states[0], None)
    _, h_n, c_n, _ = rnn_sequence(mode, x[None], h, c, w_ih, w_hh, b_ih, b_hh, training=False)
    if unbatched:
        h_n = h_n[0]
        c_n = None if c_n is None else c_n[0]
    return h_n, c_n


def lstm_cell(x: Array, hx: Tuple[Array, Array], w_ih: Array, w_hh: Array,
              b_ih: Optional[Array] = None, b_hh: Optional[Array] = None) -> Tuple[Array, Array]:
    """One LSTM step: ``(h', c')`` from x (N, I) or (I,) and hx = (h, c).

    Gates i, f, g, o: c' = f * c + i * g, h' = o * tanh(c'); weights (4H, I)
    and (4H, H), as ``torch.nn.LSTMCell``.
    """
    h, c = state_pair(hx)
    return _cell("lstm", x, {"h": h, "c": c}, w_ih, w_hh, b_ih, b_hh)


def gru_cell(x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Optional[Array] = None,
             b_hh: Optional[Array] = None) -> Array:
    """One GRU step: h' = (1 - z) * n + z * h, n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""
    return _cell("gru", x, {"h": h}, w_ih, w_hh, b_ih, b_hh)[0]


def rnn_cell(x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Optional[Array] = None,
             b_hh: Optional[Array] = None, nonlinearity: str = "tanh") -> Array:
    """One Elman RNN step: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu."""
    return _cell(nonlinearity_mode(nonlinearity), x, {"h": h}, w_ih, w_hh, b_ih, b_hh)[0]
