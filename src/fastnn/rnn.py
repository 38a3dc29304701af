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
from fastnn._validate import (RNNGeometry, check_shape, contiguous, float_arrays,
                              nonlinearity_mode, prepare_cell, prepare_rnn_sequence)

__all__ = ["rnn_sequence", "rnn_sequence_backward", "lstm_cell", "gru_cell", "rnn_cell"]

Array = np.ndarray


class _Tape(NamedTuple):
    """What the backward of one fused sequence reads: the inputs and the kept activations."""
    geometry: RNNGeometry
    x: Array
    w_ih: Array
    w_hh: Array
    has_bias: bool
    lengths: Optional[Array]
    gates: list  # [the kept activations (T, N, G)], emptied by the backward that consumes them
    hs: Array
    cs: Optional[Array]


def _flat(a: Optional[Array]) -> Optional[Array]:
    return None if a is None else a.reshape(-1)


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
    geo, arrays, lengths = prepare_rnn_sequence(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                                lengths, reverse)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = arrays
    steps, batch, _, hidden = geo[:4]
    lstm = c0 is not None
    dtype = x.dtype
    y = np.empty((steps, batch, hidden), dtype)
    h_n = np.empty((batch, hidden), dtype)
    c_n = np.empty((batch, hidden), dtype) if lstm else None
    gates = np.empty((steps, batch, _gate_width(geo)), dtype) if training else None
    hs = np.empty((steps + 1, batch, hidden), dtype) if training else None
    cs = np.empty((steps + 1, batch, hidden), dtype) if training and lstm else None
    _kernels.rnn_forward(geo, _flat(x), _flat(w_ih), _flat(w_hh), b_ih, b_hh, lengths,
                         _flat(h0), _flat(c0), _flat(y), _flat(h_n), _flat(c_n), _flat(gates),
                         _flat(hs), _flat(cs))
    tape = (_Tape(geo, x, w_ih, w_hh, b_ih is not None, lengths, [gates], hs, cs)
            if training else None)
    return y, h_n, c_n, tape


def _upstream(grad: Optional[Array], shape: Tuple[int, ...], dtype: np.dtype,
              name: str) -> Optional[Array]:
    """An upstream gradient of the tape's dtype and the given shape, or None (zero)."""
    if grad is None:
        return None
    (grad,), got = float_arrays(**{name: grad})
    if got != dtype:
        raise TypeError(f"{name} has dtype {got}, the forward ran in {dtype}")
    check_shape(grad, shape, name)
    return contiguous(grad)


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
        raise TypeError("tape must be what rnn_sequence(..., training=True) returned")
    if not tape.gates:
        raise RuntimeError("this tape was already used by a backward; run the forward again")
    geo = tape.geometry
    steps, batch, _, hidden = geo[:4]
    lstm = tape.cs is not None
    dtype = tape.x.dtype
    dy = _upstream(grad_y, (steps, batch, hidden), dtype, "grad_y")
    dh_n = _upstream(grad_h_n, (batch, hidden), dtype, "grad_h_n")
    dc_n = _upstream(grad_c_n, (batch, hidden), dtype, "grad_c_n") if lstm else None
    if grad_c_n is not None and not lstm:
        raise ValueError("grad_c_n is only for LSTM")
    dx = np.empty_like(tape.x)
    dh0 = np.empty((batch, hidden), dtype)
    dc0 = np.empty((batch, hidden), dtype) if lstm else None
    dw_ih = np.empty_like(tape.w_ih)
    dw_hh = np.empty_like(tape.w_hh)
    db_ih = np.empty(tape.w_hh.shape[0], dtype) if tape.has_bias else None
    db_hh = np.empty(tape.w_hh.shape[0], dtype) if tape.has_bias else None
    gates = tape.gates.pop()  # the backward overwrites them with the gate gradients
    _kernels.rnn_backward(geo, _flat(tape.x), _flat(tape.w_ih), _flat(tape.w_hh), tape.lengths,
                          _flat(gates), _flat(tape.hs), _flat(tape.cs), _flat(dy),
                          _flat(dh_n), _flat(dc_n), _flat(dx), _flat(dh0), _flat(dc0),
                          _flat(dw_ih), _flat(dw_hh), db_ih, db_hh)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def _cell(mode: str, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of a recurrence: the fused sequence kernel with T = 1."""
    x, h, c, w_ih, w_hh, b_ih, b_hh, unbatched = prepare_cell(mode, x, h, c, w_ih, w_hh,
                                                              b_ih, b_hh)
    _, h_n, c_n, _ = rnn_sequence(mode, x[None], h, c, w_ih, w_hh, b_ih, b_hh, training=False)
    if unbatched:
        h_n = h_n[0]
        c_n = None if c_n is None else c_n[0]
    return h_n, c_n


def _state_pair(hx, name: str = "hx"):
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"{name} must be a pair (h, c) for an LSTM cell, got {type(hx).__name__}")
    return hx


def lstm_cell(x: Array, hx: Tuple[Array, Array], w_ih: Array, w_hh: Array,
              b_ih: Optional[Array] = None, b_hh: Optional[Array] = None) -> Tuple[Array, Array]:
    """One LSTM step: ``(h', c')`` from x (N, I) or (I,) and hx = (h, c).

    Gates i, f, g, o: c' = f * c + i * g, h' = o * tanh(c'); weights (4H, I)
    and (4H, H), as ``torch.nn.LSTMCell``.
    """
    h, c = _state_pair(hx)
    return _cell("lstm", x, h, c, w_ih, w_hh, b_ih, b_hh)


def gru_cell(x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Optional[Array] = None,
             b_hh: Optional[Array] = None) -> Array:
    """One GRU step: h' = (1 - z) * n + z * h, n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""
    return _cell("gru", x, h, None, w_ih, w_hh, b_ih, b_hh)[0]


def rnn_cell(x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Optional[Array] = None,
             b_hh: Optional[Array] = None, nonlinearity: str = "tanh") -> Array:
    """One Elman RNN step: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu."""
    return _cell(nonlinearity_mode(nonlinearity), x, h, None, w_ih, w_hh, b_ih, b_hh)[0]
