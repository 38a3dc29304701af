"""Recurrent networks the textbook way: one time step at a time, forward and then back.

A convolution or a fully connected layer treats its inputs as independent of one another. A
sequence is not like that: in "I am Chinese, my mother tongue is ___" the blank depends on
words seen earlier. A recurrent network gives the layer a memory, the hidden state H_t, which
it carries from one time step to the next. With a minibatch X_t (N, I) at step t:

    H_t = phi(X_t W_ih^T + b_ih + H_{t-1} W_hh^T + b_hh)           (plain RNN, `rnn_cell`)

phi is tanh (or ReLU). The same weights serve every step, so one network reads sequences of
any length, and because H_t is computed from H_{t-1} it summarizes the whole history up to
step t. An output layer, if any, reads H_t; here the sequence's output is the hidden state
itself, y_t = H_t. Two biases are kept where the maths needs one, because PyTorch (and cuDNN)
keep two and their weights must load unchanged.

A bidirectional network adds a second recurrence that walks the sequence from its end to its
start (`reverse=True` below) and concatenates the two hidden states at each step, so every
output depends on the steps before it and on the steps after it.

Backpropagation through time (BPTT)
-----------------------------------
The loss of a sequence is the sum of the losses of its steps. The forward pass computes the
steps left to right; the backward pass walks them right to left, "back through time". The
gradient of the loss at step t with respect to the recurrent weight is a sum over every
earlier step k of a product of Jacobians:

    dL_t/dW_hh = sum_{k <= t} dL_t/dH_t (prod_{j=k+1..t} dH_j/dH_{j-1}) dH_k/dW_hh

`rnn_sequence_backward` does not form these products: it carries one array, dL/dH for the
current step, from right to left, multiplying it by one Jacobian per step (through W_hh and
phi'), and adds each step's contribution to the weight gradients as it goes. That is the sum
above, computed once for all t. Every factor dH_j/dH_{j-1} holds a tanh' in (0, 1], so over
many steps the product tends to zero (vanishing gradients: long-range dependencies are hard
to learn); with large weights or ReLU it can instead grow without bound (exploding
gradients, which make the loss jump during training; `fastnn.utils.clip_grad_norm_` and
`clip_grad_value_` cut them down). Gated cells address the vanishing side.

GRU (gated recurrent unit), `gru_cell`
--------------------------------------
Two gates, each a sigmoid layer over X_t and H_{t-1} with values in (0, 1):

    R_t = sigmoid(X_t W_ir^T + b_ir + H_{t-1} W_hr^T + b_hr)        reset gate
    Z_t = sigmoid(X_t W_iz^T + b_iz + H_{t-1} W_hz^T + b_hz)        update gate
    N_t = tanh(X_t W_in^T + b_in + R_t * (H_{t-1} W_hn^T + b_hn))   candidate hidden state
    H_t = (1 - Z_t) * N_t + Z_t * H_{t-1}

(* is the element-wise product.) A reset gate near 0 drops the previous state from the
candidate, so the reset gate serves short-term dependencies; an update gate near 1 copies
H_{t-1} straight through, and if it stays near 1 from step t' to t the state of step t'
reaches step t (and its gradient flows back) untouched, so the update gate serves long-term
dependencies. Textbooks often put the reset gate inside the product, (R_t * H_{t-1}) W_hn^T;
PyTorch and cuDNN apply it after, R_t * (H_{t-1} W_hn^T + b_hn), as written above and as
done here, so their weights give their numbers. PyTorch stacks the gates' weights in the
order r, z, n: W_ih is (3H, I), W_hh is (3H, H).

LSTM (long short-term memory), `lstm_cell`
------------------------------------------
Three gates and a memory cell C_t of the same shape as H_t:

    I_t = sigmoid(X_t W_ii^T + b_ii + H_{t-1} W_hi^T + b_hi)        input gate
    F_t = sigmoid(X_t W_if^T + b_if + H_{t-1} W_hf^T + b_hf)        forget gate
    G_t = tanh(X_t W_ig^T + b_ig + H_{t-1} W_hg^T + b_hg)           candidate memory cell
    O_t = sigmoid(X_t W_io^T + b_io + H_{t-1} W_ho^T + b_ho)        output gate
    C_t = F_t * C_{t-1} + I_t * G_t
    H_t = O_t * tanh(C_t)

The forget gate decides how much of the old cell passes on, the input gate how much of the
candidate enters, the output gate how much of the cell shows in the hidden state. If the
forget gate stays near 1 and the input gate near 0, the cell carries information across any
number of steps. The cell update is a sum, a residual connection in time: dC_t/dC_{t-1} is
just F_t, with no activation derivative in it, so the gradient between distant steps is not
a long product of tanh' factors and vanishes far less. Sigmoid suits the gates (its output
is in (0, 1), saturating towards closed or open); tanh suits the candidate (zero-centred, in
(-1, 1)). PyTorch's gate order is i, f, g, o: W_ih is (4H, I), W_hh is (4H, H).

Compared with the LSTM, the GRU has no separate memory cell and no output gate, and one
update gate does the work of the forget and input gates: fewer parameters and less work per
step, while the LSTM is the more flexible of the two.

Sequences of different lengths
------------------------------
`rnn_sequence` runs one layer in one direction over a padded batch (T, N, I). With
`lengths`, row n takes part in step t only while t < lengths[n], as PyTorch's
`pack_padded_sequence(..., enforce_sorted=False)` followed by `pad_packed_sequence` does: at
a step past its end a row's state does not change and its output is 0, so h_n holds each
sequence's state at its own last step, and the reverse direction starts from h0 at each
sequence's own last step. Backward follows the same rule: gradients arriving at padded steps
are ignored, and a row's state gradient passes a padded step unchanged.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from fastnn._validate import (as_bool, nonlinearity_mode, prepare_cell, prepare_rnn_sequence,
                              rnn_upstream, state_pair)


Saved = Dict[str, np.ndarray]


class Weights(NamedTuple):
    """The weights of one layer in one direction (biases may be None)."""
    ih: np.ndarray
    hh: np.ndarray
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]

    @property
    def input_size(self) -> int:
        return self.ih.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.hh.shape[1]


class TapeStep(NamedTuple):
    """One time step of the forward pass: its time index, the batch rows that took part
    (the sequences still running) and what the step's backward needs."""
    t: int
    rows: np.ndarray
    saved: Saved


class SequenceTape(NamedTuple):
    """What `rnn_sequence` records for `rnn_sequence_backward`.

    Attributes
    ----------
    mode : str
        'lstm', 'gru', 'rnn_tanh' or 'rnn_relu'.
    input_shape : tuple of int
        (T, N, I) of the forward's x.
    weights : Weights
        The forward's weights (references, not copies).
    steps : list of TapeStep
        The steps in the order the forward ran them. Each step's `saved` holds the step's
        input rows "x" and previous state "h" (and "c" for the LSTM), and the activations
        its backward needs: LSTM "i", "f", "g", "o", "tanh_c"; GRU "r", "z", "n" and
        "gh_n" = H_{t-1} W_hn^T + b_hn; RNN "h_new" (tanh' and ReLU' follow from it).
    """
    mode: str
    input_shape: Tuple[int, int, int]
    weights: Weights
    steps: List[TapeStep]


# --------------------------------------------------------------------------- validation


def _prepare_backward(tape, grad_y, grad_h_n, grad_c_n):
    """Validated upstream gradients (grad_y, dh, dc) of a backward call, as fresh arrays
    (zeros where None was given; dc is None but for the LSTM)."""
    if not isinstance(tape, SequenceTape):
        raise TypeError("tape must be the tape returned by fastnn.reference.rnn_sequence(..., "
                        f"training=True), got {type(tape).__name__}")
    if tape.mode != "lstm" and grad_c_n is not None:
        raise ValueError(f"grad_c_n must be None for mode {tape.mode!r} (no cell state)")
    steps, batch, _ = tape.input_shape
    hidden = tape.weights.hidden_size
    dtype = tape.weights.ih.dtype

    def upstream(grad, name: str, shape: Tuple[int, ...]) -> np.ndarray:
        grad = rnn_upstream(grad, name, shape, dtype)
        return np.zeros(shape, dtype=dtype) if grad is None else grad.copy()

    grad_y = upstream(grad_y, "grad_y", (steps, batch, hidden))
    dh = upstream(grad_h_n, "grad_h_n", (batch, hidden))
    dc = upstream(grad_c_n, "grad_c_n", (batch, hidden)) if tape.mode == "lstm" else None
    return grad_y, dh, dc


# --------------------------------------------------------------------------- one time step


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a)), written exp(-log(1 + exp(-a))) so that no exp overflows."""
    return np.exp(-np.logaddexp(0, -a))


def _affine(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray]) -> np.ndarray:
    """x W^T + b: the fully connected layers of all gates at once (b may be None)."""
    out = x @ w.T
    return out if b is None else out + b


def _lstm_step(x: np.ndarray, h: np.ndarray, c: np.ndarray, w: Weights):
    """(h', c', saved) of one LSTM step for a batch of rows."""
    gates = _affine(x, w.ih, w.b_ih) + _affine(h, w.hh, w.b_hh)
    a_i, a_f, a_g, a_o = np.split(gates, 4, axis=1)
    i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g), _sigmoid(a_o)
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    h_new = o * tanh_c
    return h_new, c_new, {"x": x, "h": h, "c": c, "i": i, "f": f, "g": g, "o": o,
                          "tanh_c": tanh_c}


def _lstm_step_backward(s: Saved, dh_new: np.ndarray, dc_new: np.ndarray):
    """(d_ih, d_hh, dh_direct, dc_prev) of one LSTM step; see `_step_backward`."""
    d_o = dh_new * s["tanh_c"]
    dc = dc_new + dh_new * s["o"] * (1 - s["tanh_c"] ** 2)  # C_t feeds C_{t+1} and H_t
    d_i, d_f, d_g = dc * s["g"], dc * s["c"], dc * s["i"]
    # back through the activations: sigmoid' = s (1 - s), tanh' = 1 - tanh^2
    d_gates = np.concatenate([d_i * s["i"] * (1 - s["i"]), d_f * s["f"] * (1 - s["f"]),
                              d_g * (1 - s["g"] ** 2), d_o * s["o"] * (1 - s["o"])], axis=1)
    # the pre-activations are one sum, x W_ih^T + b_ih + h W_hh^T + b_hh, so both products
    # get the same gradient; H_{t-1} enters the step only through W_hh
    return d_gates, d_gates, 0.0, dc * s["f"]


def _gru_step(x: np.ndarray, h: np.ndarray, w: Weights):
    """(h', saved) of one GRU step for a batch of rows."""
    gi_r, gi_z, gi_n = np.split(_affine(x, w.ih, w.b_ih), 3, axis=1)
    gh_r, gh_z, gh_n = np.split(_affine(h, w.hh, w.b_hh), 3, axis=1)
    r = _sigmoid(gi_r + gh_r)
    z = _sigmoid(gi_z + gh_z)
    n = np.tanh(gi_n + r * gh_n)
    h_new = (1 - z) * n + z * h
    return h_new, {"x": x, "h": h, "r": r, "z": z, "n": n, "gh_n": gh_n}


def _gru_step_backward(s: Saved, dh_new: np.ndarray):
    """(d_ih, d_hh, dh_direct) of one GRU step; see `_step_backward`."""
    r, z, n = s["r"], s["z"], s["n"]
    da_n = dh_new * (1 - z) * (1 - n ** 2)
    da_z = dh_new * (s["h"] - n) * z * (1 - z)
    da_r = da_n * s["gh_n"] * r * (1 - r)
    d_ih = np.concatenate([da_r, da_z, da_n], axis=1)
    d_hh = np.concatenate([da_r, da_z, da_n * r], axis=1)  # r scales H W_hn^T + b_hn
    return d_ih, d_hh, dh_new * z  # H_t = ... + Z_t * H_{t-1}: the update gate's copy path


def _rnn_step(x: np.ndarray, h: np.ndarray, w: Weights, relu: bool):
    """(h', saved) of one plain RNN step for a batch of rows."""
    a = _affine(x, w.ih, w.b_ih) + _affine(h, w.hh, w.b_hh)
    h_new = np.maximum(a, 0) if relu else np.tanh(a)
    return h_new, {"x": x, "h": h, "h_new": h_new}


def _rnn_step_backward(s: Saved, dh_new: np.ndarray, relu: bool):
    """(d_ih, d_hh, dh_direct) of one plain RNN step; see `_step_backward`."""
    h_new = s["h_new"]
    da = dh_new * ((h_new > 0) if relu else (1 - h_new ** 2))
    return da, da, 0.0


def _step(mode: str, x: np.ndarray, h: np.ndarray, c: Optional[np.ndarray], w: Weights):
    """One step of `mode` for a batch of rows: (h', c' (None but for the LSTM), saved)."""
    if mode == "lstm":
        return _lstm_step(x, h, c, w)
    if mode == "gru":
        h_new, saved = _gru_step(x, h, w)
    else:
        h_new, saved = _rnn_step(x, h, w, relu=mode == "rnn_relu")
    return h_new, None, saved


def _step_backward(mode: str, saved: Saved, dh_new: np.ndarray, dc_new: Optional[np.ndarray]):
    """Backward of one step, given the gradients of its new state (dh_new, dc_new).

    Returns
    -------
    d_ih : (n, G*H) gradient of the step's input products x W_ih^T + b_ih
    d_hh : (n, G*H) gradient of its recurrent products h W_hh^T + b_hh
    dh_direct : the part of dL/dH_{t-1} that does not pass through W_hh (0 but for the GRU)
    dc_prev : dL/dC_{t-1} for the LSTM, else None
    """
    if mode == "lstm":
        return _lstm_step_backward(saved, dh_new, dc_new)
    if mode == "gru":
        return _gru_step_backward(saved, dh_new) + (None,)
    return _rnn_step_backward(saved, dh_new, relu=mode == "rnn_relu") + (None,)


# --------------------------------------------------------------------------- cells


def _unbatch(h: np.ndarray, unbatched: bool) -> np.ndarray:
    return h[0] if unbatched else h


def lstm_cell(x: np.ndarray, hx: Tuple[np.ndarray, np.ndarray], w_ih: np.ndarray,
              w_hh: np.ndarray, b_ih: Optional[np.ndarray] = None,
              b_hh: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """One LSTM step, as `torch.nn.LSTMCell`.

    Parameters
    ----------
    x : ndarray, (N, I) or unbatched (I,)
        The input at this step, float32 or float64.
    hx : pair of ndarray
        (h, c), the previous hidden and cell states, each (N, H), or (H,) with an
        unbatched x.
    w_ih : ndarray, (4H, I)
        Input weights of the gates i, f, g, o, stacked in that order.
    w_hh : ndarray, (4H, H)
        Recurrent weights, same order.
    b_ih, b_hh : ndarray, (4H,), optional
        Biases (None: no bias).

    Returns
    -------
    h, c : ndarray
        The new states, shaped like the old ones, in x's dtype:
        c = f * c_prev + i * g and h = o * tanh(c).
    """
    h, c = state_pair(hx)
    x, (h, c), w, unbatched = prepare_cell(4, x, {"h": h, "c": c}, w_ih, w_hh, b_ih, b_hh)
    w = Weights(*w)
    h_new, c_new, _ = _lstm_step(x, h, c, w)
    return _unbatch(h_new, unbatched), _unbatch(c_new, unbatched)


def gru_cell(x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
             b_ih: Optional[np.ndarray] = None,
             b_hh: Optional[np.ndarray] = None) -> np.ndarray:
    """One GRU step, as `torch.nn.GRUCell`.

    Parameters
    ----------
    x : ndarray, (N, I) or unbatched (I,)
        The input at this step, float32 or float64.
    h : ndarray, (N, H) or (H,)
        The previous hidden state.
    w_ih : ndarray, (3H, I)
        Input weights of r, z, n, stacked in that order.
    w_hh : ndarray, (3H, H)
        Recurrent weights, same order.
    b_ih, b_hh : ndarray, (3H,), optional
        Biases (None: no bias).

    Returns
    -------
    ndarray
        The new hidden state (1 - z) * n + z * h, shaped like h, in x's dtype, with
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    """
    x, (h,), w, unbatched = prepare_cell(3, x, {"h": h}, w_ih, w_hh, b_ih, b_hh)
    h_new, _ = _gru_step(x, h, Weights(*w))
    return _unbatch(h_new, unbatched)


def rnn_cell(x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
             b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None,
             nonlinearity: str = "tanh") -> np.ndarray:
    """One plain RNN step, as `torch.nn.RNNCell`.

    Parameters
    ----------
    x : ndarray, (N, I) or unbatched (I,)
        The input at this step, float32 or float64.
    h : ndarray, (N, H) or (H,)
        The previous hidden state.
    w_ih : ndarray, (H, I)
    w_hh : ndarray, (H, H)
    b_ih, b_hh : ndarray, (H,), optional
        Biases (None: no bias).
    nonlinearity : {'tanh', 'relu'}

    Returns
    -------
    ndarray
        phi(W_ih x + b_ih + W_hh h + b_hh), shaped like h, in x's dtype.
    """
    relu = nonlinearity_mode(nonlinearity) == "rnn_relu"
    x, (h,), w, unbatched = prepare_cell(1, x, {"h": h}, w_ih, w_hh, b_ih, b_hh)
    h_new, _ = _rnn_step(x, h, Weights(*w), relu=relu)
    return _unbatch(h_new, unbatched)


# --------------------------------------------------------------------------- sequences


def rnn_sequence(mode: str, x: np.ndarray, h0: np.ndarray, c0: Optional[np.ndarray],
                 w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Optional[np.ndarray] = None,
                 b_hh: Optional[np.ndarray] = None, lengths: Optional[np.ndarray] = None,
                 reverse: bool = False, training: bool = True):
    """One layer of a recurrent network, in one direction, over a padded batch of sequences.

    Parameters
    ----------
    mode : {'lstm', 'gru', 'rnn_tanh', 'rnn_relu'}
    x : ndarray, (T, N, I)
        The inputs, time first, float32 or float64.
    h0 : ndarray, (N, H)
        The initial hidden state.
    c0 : ndarray, (N, H), or None
        The initial cell state for 'lstm'; None for the other modes.
    w_ih : ndarray, (G*H, I)
        Input weights, G = 4 (lstm, gates i, f, g, o), 3 (gru, r, z, n) or 1 (rnn).
    w_hh : ndarray, (G*H, H)
        Recurrent weights.
    b_ih, b_hh : ndarray, (G*H,), or None
        Both given or both None.
    lengths : int array, (N,), optional
        Sequence n runs the steps t < lengths[n] (1 <= lengths[n] <= T); the rest of its
        rows in x are padding and are never read. None: all T steps.
    reverse : bool
        Walk t = T-1 .. 0 (the backward half of a bidirectional layer); each sequence then
        starts from h0 at its own last step lengths[n] - 1.
    training : bool
        Record the tape for `rnn_sequence_backward` (False: tape is None).

    Returns
    -------
    y : ndarray, (T, N, H)
        The hidden state after each step, 0 at padded steps.
    h_n : ndarray, (N, H)
        Each sequence's final hidden state (after its own last step).
    c_n : ndarray, (N, H), or None
        Each sequence's final cell state for 'lstm', else None.
    tape : SequenceTape or None
        What `rnn_sequence_backward` needs.
    """
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse = prepare_rnn_sequence(
        mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse)
    w = Weights(w_ih, w_hh, b_ih, b_hh)
    training = as_bool(training, "training")
    steps, batch, _ = x.shape
    if lengths is None:
        lengths = np.full(batch, steps, dtype=np.int64)
    h = h0.copy()
    c = None if c0 is None else c0.copy()
    y = np.zeros((steps, batch, w.hidden_size), dtype=x.dtype)
    tape = SequenceTape(mode, x.shape, w, []) if training else None
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        rows = np.flatnonzero(t < lengths)  # the sequences still running at step t
        h_new, c_new, saved = _step(mode, x[t, rows], h[rows],
                                    None if c is None else c[rows], w)
        h[rows] = h_new
        y[t, rows] = h_new
        if c is not None:
            c[rows] = c_new
        if training:
            tape.steps.append(TapeStep(t, rows, saved))
    return y, h, c, tape


def rnn_sequence_backward(tape: SequenceTape, grad_y: Optional[np.ndarray],
                          grad_h_n: Optional[np.ndarray] = None,
                          grad_c_n: Optional[np.ndarray] = None):
    """Backpropagation through time of `rnn_sequence`.

    Parameters
    ----------
    tape : SequenceTape
        The tape of the forward (run with training=True).
    grad_y : ndarray, (T, N, H), or None
        dL/dy (None: zeros). Its values at padded steps are ignored: those outputs are
        constant zeros.
    grad_h_n, grad_c_n : ndarray, (N, H), or None
        dL/dh_n and, for 'lstm' only, dL/dc_n (None: zeros).

    Returns
    -------
    grad_x : ndarray, (T, N, I)
        0 at padded steps.
    grad_h0 : ndarray, (N, H)
    grad_c0 : ndarray, (N, H), or None
        None unless 'lstm'.
    grad_w_ih, grad_w_hh : ndarray
        Shaped like the weights: sums over all steps.
    grad_b_ih, grad_b_hh : ndarray, (G*H,), or None
        None when the forward had no bias.
    """
    grad_y, dh, dc = _prepare_backward(tape, grad_y, grad_h_n, grad_c_n)
    w = tape.weights
    has_bias = w.b_ih is not None
    grad_x = np.zeros(tape.input_shape, dtype=w.ih.dtype)
    grad_w_ih, grad_w_hh = np.zeros_like(w.ih), np.zeros_like(w.hh)
    grad_b_ih = np.zeros(w.ih.shape[0], dtype=w.ih.dtype) if has_bias else None
    grad_b_hh = np.zeros(w.hh.shape[0], dtype=w.hh.dtype) if has_bias else None
    # Right to left through time; dh (and dc) hold dL/dH (dL/dC) of the state after the step
    # about to be undone. A row that did not take part in a step keeps them unchanged.
    for t, rows, saved in reversed(tape.steps):
        dh_new = dh[rows] + grad_y[t, rows]  # H_t goes on to step t+1 and out as y_t
        d_ih, d_hh, dh_direct, dc_prev = _step_backward(
            tape.mode, saved, dh_new, None if dc is None else dc[rows])
        grad_x[t, rows] = d_ih @ w.ih
        dh[rows] = dh_direct + d_hh @ w.hh
        if dc is not None:
            dc[rows] = dc_prev
        grad_w_ih += d_ih.T @ saved["x"]
        grad_w_hh += d_hh.T @ saved["h"]
        if has_bias:
            grad_b_ih += d_ih.sum(axis=0)
            grad_b_hh += d_hh.sum(axis=0)
    return grad_x, dh, dc, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
