"""Recurrent layers: LSTM, GRU and RNN (stacked, bidirectional), their cells, and DilatedRNN.

Each layer and direction is one fused call of ``backend.rnn_sequence`` (by
default `fastnn.rnn`, the C kernels; `fastnn.reference.rnn` is the NumPy twin
with the same functions), so the per-step work never returns to Python.
Constructor arguments, parameter names, initialisation and numbers are
PyTorch's; ``lengths`` gives what PyTorch's packed sequences give.
"""
from __future__ import annotations

import numbers
from functools import partial
from types import ModuleType
from typing import List, Optional, Sequence, Tuple

import numpy as np

import fastnn.rnn
from fastnn._concurrent import side_by_side
from fastnn._validate import (RNN_GATES, as_bool, as_int, check_shape, float_arrays,
                              nonlinearity_mode, rnn_lengths)
from fastnn.nn.module import Module, ModuleList, Parameter

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "DilatedRNN"]

Array = np.ndarray


def _layer_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _uniform_init(rng: np.random.Generator, shape: Tuple[int, ...], hidden: int,
                  dtype: np.dtype) -> Parameter:
    """PyTorch's recurrent init: U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / np.sqrt(hidden)
    return Parameter(rng.uniform(-bound, bound, shape).astype(dtype))


def _input(x, dtype: np.dtype, name: str = "input") -> Array:
    if x is None:
        raise TypeError(f"{name} must be a float32 or float64 array, got None")
    (x,), got = float_arrays(**{name: x})
    if got != dtype:
        raise TypeError(f"{name} has dtype {got} but the layer's parameters are {dtype}; "
                        f"build the layer with dtype={got.name} or convert the input")
    return x


class _RNNBase(Module):
    """Stacked, optionally bidirectional recurrence of one kind (`mode`)."""

    backend: ModuleType = fastnn.rnn

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, dtype=np.float32,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        self.mode = mode
        self.input_size = as_int(input_size, "input_size", 1)
        self.hidden_size = as_int(hidden_size, "hidden_size", 1)
        self.num_layers = as_int(num_layers, "num_layers", 1)
        self.bias = as_bool(bias, "bias")
        self.batch_first = as_bool(batch_first, "batch_first")
        self.bidirectional = as_bool(bidirectional, "bidirectional")
        if (isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real)
                or not 0.0 <= float(dropout) <= 1.0):
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        self.dtype = _layer_dtype(dtype)
        self.rng = rng if rng is not None else np.random.default_rng()
        gates = RNN_GATES[mode] * self.hidden_size
        init = lambda shape: _uniform_init(self.rng, shape, self.hidden_size, self.dtype)
        for layer in range(self.num_layers):
            for suffix in self._suffixes:
                width = self.input_size if layer == 0 else self.hidden_size * self.directions
                name = f"l{layer}{suffix}"
                setattr(self, "weight_ih_" + name, init((gates, width)))
                setattr(self, "weight_hh_" + name, init((gates, self.hidden_size)))
                if self.bias:
                    setattr(self, "bias_ih_" + name, init((gates,)))
                    setattr(self, "bias_hh_" + name, init((gates,)))
        self._saved = None

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _suffixes(self) -> Tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def _params(self, layer: int, direction: int) -> List[Parameter]:
        """[weight_ih, weight_hh, bias_ih, bias_hh] of one layer and direction (no biases
        when bias=False)."""
        name = f"l{layer}{self._suffixes[direction]}"
        kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        return [getattr(self, f"{kind}_{name}") for kind in kinds]

    def _arrays(self, layer: int, direction: int) -> List[Optional[Array]]:
        """w_ih, w_hh, b_ih, b_hh as arrays (None biases when bias=False)."""
        arrays = [p.data for p in self._params(layer, direction)]
        return arrays + [None] * (4 - len(arrays))

    # ---------------------------------------------------------------- forward
    def _states(self, hx, batch: int, unbatched: bool):
        """(h0, c0) as (L*D, N, H) arrays (zeros when hx is None; c0 None unless LSTM)."""
        shape = (self.num_layers * self.directions, batch, self.hidden_size)
        lstm = self.mode == "lstm"
        if hx is None:
            zeros = np.zeros(shape, self.dtype)
            return zeros, (zeros if lstm else None)
        if lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx must be a pair (h_0, c_0) for an LSTM")
            states = [_input(s, self.dtype, n) for s, n in zip(hx, ("h_0", "c_0"))]
        else:
            states = [_input(hx, self.dtype, "h_0")]
        want = shape[:1] + shape[2:] if unbatched else shape
        for s, n in zip(states, ("h_0", "c_0")):
            check_shape(s, want, n)
        states = [s.reshape(shape) for s in states]
        return states[0], (states[1] if lstm else None)

    def forward(self, x, hx=None, lengths=None):
        """Run the whole stack over a sequence.

        Parameters
        ----------
        x : ndarray, shape (T, N, input_size), (N, T, input_size) with batch_first,
            or (T, input_size) for one unbatched sequence
        hx : ndarray (L*D, N, H), or for LSTM a pair (h_0, c_0) of them; zeros if None
        lengths : ints (N,), optional
            Each sequence's length, as PyTorch's ``pack_padded_sequence(...,
            enforce_sorted=False)`` then ``pad_packed_sequence``: outputs past a
            sequence's end are 0 and h_n holds its state at its own last step.

        Returns
        -------
        output : ndarray (T, N, D*H) (or batch-first / unbatched like x)
        (h_n, c_n) for LSTM, h_n otherwise : ndarrays (L*D, N, H)
        """
        x = _input(x, self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"input must be (T, N, {self.input_size}), (N, T, "
                             f"{self.input_size}) with batch_first, or (T, {self.input_size}) "
                             f"unbatched; got shape {x.shape}")
        unbatched = x.ndim == 2
        seq = x[:, None] if unbatched else (x.transpose(1, 0, 2) if self.batch_first else x)
        steps, batch, size = seq.shape
        if size != self.input_size:
            raise ValueError(f"input has {size} features per step, the layer expects "
                             f"input_size={self.input_size} (input shape {x.shape})")
        lengths = rnn_lengths(lengths, batch, steps, x.shape)
        h0, c0 = self._states(hx, batch, unbatched)
        layer_input, tapes, masks, h_n, c_n = seq, [], [], [], []
        for layer in range(self.num_layers):
            outputs = []
            calls = [partial(self.backend.rnn_sequence, self.mode, layer_input,
                             h0[k], None if c0 is None else c0[k], *self._arrays(layer, d),
                             lengths=lengths, reverse=d == 1, training=self.training)
                     for d, k in enumerate(range(layer * self.directions,
                                                 (layer + 1) * self.directions))]
            for y, h, c, tape in self._run_directions(calls):
                outputs.append(y)
                tapes.append(tape)
                h_n.append(h)
                c_n.append(c)
            layer_input = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                keep = self.rng.random(layer_input.shape) >= self.dropout
                masks.append(keep / self.dtype.type(1 - self.dropout) if self.dropout < 1
                             else np.zeros(layer_input.shape, self.dtype))
                layer_input = layer_input * masks[-1]
            else:
                masks.append(None)
        output = layer_input
        if unbatched:
            output = output[:, 0]
        elif self.batch_first:
            output = output.transpose(1, 0, 2)
        h_n = np.stack(h_n)
        c_n = np.stack(c_n) if self.mode == "lstm" else None
        if unbatched:
            h_n = h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        self._saved = ((tapes, masks, unbatched, batch, steps, hx is not None)
                       if self.training else None)
        return (output, (h_n, c_n)) if self.mode == "lstm" else (output, h_n)

    def _run_directions(self, calls):
        """The directions' calls of one layer: side by side on the C backend (each
        direction's sequence on its share of the threads), else in turn."""
        if len(calls) == 2 and self.backend is fastnn.rnn:
            return side_by_side(*calls)
        return [call() for call in calls]

    # --------------------------------------------------------------- backward
    def backward(self, grad_output, grad_h_n=None, grad_c_n=None):
        """Backpropagation through time of the last training forward.

        Adds every parameter's gradient to its ``grad`` and returns grad_x (the
        layout of x), or ``(grad_x, grad_hx)`` when hx was given, grad_hx
        being ``(grad_h_0, grad_c_0)`` for LSTM. Gradients on padded steps are
        ignored.
        """
        if self._saved is None:
            raise RuntimeError("backward needs a forward in training mode first (and runs "
                               "once per forward)")
        tapes, masks, unbatched, batch, steps, hx_given = self._saved
        D, H, L = self.directions, self.hidden_size, self.num_layers
        grad = _input(grad_output, self.dtype, "grad_output")
        out_shape = ((steps, D * H) if unbatched else
                     (batch, steps, D * H) if self.batch_first else (steps, batch, D * H))
        check_shape(grad, out_shape, "grad_output")
        grad = grad[:, None] if unbatched else (grad.transpose(1, 0, 2) if self.batch_first
                                                else grad)
        finals = []
        for g, name in ((grad_h_n, "grad_h_n"), (grad_c_n, "grad_c_n")):
            if g is not None:
                g = _input(g, self.dtype, name)
                check_shape(g, (L * D, H) if unbatched else (L * D, batch, H), name)
                g = g.reshape(L * D, batch, H)
            finals.append(g)
        if finals[1] is not None and self.mode != "lstm":
            raise ValueError("grad_c_n is only for LSTM")
        self._saved = None
        grad_h0 = np.empty((L * D, batch, H), self.dtype)
        grad_c0 = np.empty((L * D, batch, H), self.dtype) if self.mode == "lstm" else None
        for layer in reversed(range(L)):
            if masks[layer] is not None:
                grad = grad * masks[layer]
            grad_input = None
            calls = [partial(self.backend.rnn_sequence_backward, tapes[k],
                             grad if D == 1 else np.ascontiguousarray(grad[..., d * H:(d + 1) * H]),
                             None if finals[0] is None else finals[0][k],
                             None if finals[1] is None else finals[1][k])
                     for d, k in enumerate(range(layer * D, (layer + 1) * D))]
            for d, (dx, dh0, dc0, *dparams) in enumerate(self._run_directions(calls)):
                k = layer * D + d
                grad_h0[k] = dh0
                if grad_c0 is not None:
                    grad_c0[k] = dc0
                for p, dp in zip(self._params(layer, d), dparams):
                    p.accumulate(dp)
                grad_input = dx if grad_input is None else grad_input + dx
            grad = grad_input
        if unbatched:
            grad, grad_h0 = grad[:, 0], grad_h0[:, 0]
            grad_c0 = None if grad_c0 is None else grad_c0[:, 0]
        elif self.batch_first:
            grad = grad.transpose(1, 0, 2)
        if not hx_given:
            return grad
        return grad, ((grad_h0, grad_c0) if self.mode == "lstm" else grad_h0)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bias={self.bias}, batch_first="
                f"{self.batch_first}, dropout={self.dropout}, bidirectional="
                f"{self.bidirectional})")


class LSTM(_RNNBase):
    """Long short-term memory over sequences (``torch.nn.LSTM``): gates i, f, g, o."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, dtype=np.float32,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype=dtype, rng=rng)


class GRU(_RNNBase):
    """Gated recurrent unit over sequences (``torch.nn.GRU``): gates r, z, n."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, dtype=np.float32,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype=dtype, rng=rng)


class RNN(_RNNBase):
    """Elman RNN over sequences (``torch.nn.RNN``): h' = tanh or relu(W_ih x + W_hh h + b)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, *, dtype=np.float32,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__(nonlinearity_mode(nonlinearity), input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity


class _CellBase(Module):
    """One step of a recurrence (``torch.nn.LSTMCell`` and kin), forward and backward."""

    backend: ModuleType = fastnn.rnn

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype=np.float32, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        self.mode = mode
        self.input_size = as_int(input_size, "input_size", 1)
        self.hidden_size = as_int(hidden_size, "hidden_size", 1)
        self.bias = as_bool(bias, "bias")
        self.dtype = _layer_dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        gates = RNN_GATES[mode] * self.hidden_size
        init = lambda shape: _uniform_init(rng, shape, self.hidden_size, self.dtype)
        self.weight_ih = init((gates, self.input_size))
        self.weight_hh = init((gates, self.hidden_size))
        if self.bias:
            self.bias_ih = init((gates,))
            self.bias_hh = init((gates,))
        self._saved = None

    def _params(self) -> List[Parameter]:
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        return [getattr(self, n) for n in names]

    def forward(self, x, hx=None):
        """One step from x (N, I) or (I,); hx (h, c) for LSTM, h otherwise (zeros if None).

        Returns ``(h', c')`` for LSTMCell, h' otherwise.
        """
        x = _input(x, self.dtype)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"input must be (N, {self.input_size}) or ({self.input_size},), "
                             f"got shape {x.shape}")
        unbatched = x.ndim == 1
        x2 = x[None] if unbatched else x
        shape = (x2.shape[0], self.hidden_size)
        lstm = self.mode == "lstm"
        if hx is None:
            h, c = np.zeros(shape, self.dtype), (np.zeros(shape, self.dtype) if lstm else None)
        else:
            if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError("hx must be a pair (h, c) for an LSTMCell")
            states = [_input(s, self.dtype, n) for s, n in zip(hx if lstm else (hx,),
                                                                 ("hx", "cx"))]
            for s, n in zip(states, ("hx", "cx")):
                check_shape(s, shape[1:] if unbatched else shape, n)
            h, c = [s.reshape(shape) for s in states] + [None] * (not lstm)
        params = [p.data for p in self._params()] + [None, None] * (not self.bias)
        _, h_n, c_n, tape = self.backend.rnn_sequence(self.mode, x2[None], h, c, *params,
                                                      training=self.training)
        self._saved = (tape, unbatched, x2.shape[0], hx is not None) if self.training else None
        if unbatched:
            h_n, c_n = h_n[0], (None if c_n is None else c_n[0])
        return (h_n, c_n) if lstm else h_n

    def backward(self, grad_h, grad_c=None):
        """Gradients of the last training step: returns grad_x, or ``(grad_x, grad_hx)``
        when hx was given (grad_hx a pair for LSTMCell); parameter gradients accumulate."""
        if self._saved is None:
            raise RuntimeError("backward needs a forward in training mode first (and runs "
                               "once per forward)")
        tape, unbatched, batch, hx_given = self._saved
        if grad_c is not None and self.mode != "lstm":
            raise ValueError("grad_c is only for LSTMCell")
        grads = []
        for g, name in ((grad_h, "grad_h"), (grad_c, "grad_c")):
            if g is not None:
                g = _input(g, self.dtype, name)
                check_shape(g, (self.hidden_size,) if unbatched else (batch, self.hidden_size),
                            name)
                g = g.reshape(batch, self.hidden_size)
            grads.append(g)
        self._saved = None
        dx, dh0, dc0, *dparams = self.backend.rnn_sequence_backward(tape, None, *grads)
        for p, dp in zip(self._params(), dparams):
            p.accumulate(dp)
        dx = dx[0]
        if unbatched:
            dx, dh0 = dx[0], dh0[0]
            dc0 = None if dc0 is None else dc0[0]
        if not hx_given:
            return dx
        return dx, ((dh0, dc0) if self.mode == "lstm" else dh0)


class LSTMCell(_CellBase):
    """One LSTM step (``torch.nn.LSTMCell``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype=np.float32, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__("lstm", input_size, hidden_size, bias, dtype=dtype, rng=rng)


class GRUCell(_CellBase):
    """One GRU step (``torch.nn.GRUCell``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype=np.float32, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__("gru", input_size, hidden_size, bias, dtype=dtype, rng=rng)


class RNNCell(_CellBase):
    """One Elman RNN step (``torch.nn.RNNCell``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", *, dtype=np.float32,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__(nonlinearity_mode(nonlinearity), input_size, hidden_size, bias,
                         dtype=dtype, rng=rng)


_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


class DilatedRNN(Module):
    """Stacked recurrent layers where layer l links step t to step t - dilations[l].

    Chang et al., 2017. Layer l is one single-layer LSTM/GRU/RNN (tanh), its
    parameters under ``layers.{l}.``. With dilation d, the steps t = r (mod d)
    form an ordinary recurrence from a zero state for each residue r, so the
    layer runs as one fused call on a batch d times larger: the sequence,
    padded to a multiple of d, is reshaped (T/d, d, N, C) -> (T/d, d*N, C).
    The padding comes after each residue's last real step, so it changes no
    real output.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 dilations: Sequence[int] = (1, 2, 4, 8), *, dtype=np.float32,
                 rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
        if not hasattr(dilations, "__len__") or len(dilations) == 0:
            raise ValueError(f"dilations must be a non-empty sequence of ints, got {dilations!r}")
        self.cell = cell
        self.dilations = tuple(as_int(d, "dilations", 1) for d in dilations)
        self.input_size = as_int(input_size, "input_size", 1)
        self.hidden_size = as_int(hidden_size, "hidden_size", 1)
        rng = rng if rng is not None else np.random.default_rng()
        self.layers = ModuleList(
            _CELLS[cell](self.input_size if i == 0 else self.hidden_size, self.hidden_size,
                         dtype=dtype, rng=rng)
            for i in range(len(self.dilations)))
        self._steps = None

    @staticmethod
    def _interleave(seq: Array, d: int) -> Array:
        """(T, N, C) -> (ceil(T/d), d*N, C): residue r of the steps becomes batch block r."""
        steps, batch, size = seq.shape
        padded = -(-steps // d) * d
        if padded != steps:
            seq = np.concatenate([seq, np.zeros((padded - steps, batch, size), seq.dtype)])
        return seq.reshape(padded // d, d * batch, size)

    @staticmethod
    def _deinterleave(seq: Array, steps: int, batch: int) -> Array:
        return seq.reshape(-1, batch, seq.shape[-1])[:steps]

    def forward(self, x) -> Array:
        """x (T, N, input_size) -> the last layer's output (T, N, hidden_size)."""
        dtype = self.layers[0].dtype
        x = _input(x, dtype)
        if x.ndim != 3 or x.shape[2] != self.input_size or 0 in x.shape:
            raise ValueError(f"input must be (T, N, {self.input_size}) with T, N >= 1, got "
                             f"shape {x.shape}")
        steps, batch, _ = x.shape
        out = x
        for layer, d in zip(self.layers, self.dilations):
            y, _ = layer(self._interleave(out, d))
            out = self._deinterleave(y, steps, batch)
        self._steps = (steps, batch) if self.training else None
        return out

    def backward(self, grad_output) -> Array:
        """Input gradient of the last training forward; parameter gradients accumulate."""
        if self._steps is None:
            raise RuntimeError("backward needs a forward in training mode first")
        steps, batch = self._steps
        grad = _input(grad_output, self.layers[0].dtype, "grad_output")
        check_shape(grad, (steps, batch, self.hidden_size), "grad_output")
        for layer, d in zip(reversed(list(self.layers)), reversed(self.dilations)):
            grad = self._deinterleave(layer.backward(self._interleave(grad, d)), steps, batch)
        self._steps = None
        return grad
