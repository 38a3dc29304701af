"""PyTorch as the oracle of the recurrent layers: `fastnn.nn.LSTM/GRU/RNN` and the cells loaded
with a torch module's state dict give torch's outputs, final states and every gradient
(autograd), with lengths through `pack_padded_sequence(enforce_sorted=False)` and
`pad_packed_sequence`. Parameter names, order, shapes and the default initialization range
are torch's. Skipped without torch."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
import fastnn.nn as nn

from conftest import assert_close

torch = pytest.importorskip("torch")
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

MODES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def torch_dtype(dtype):
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def close(actual, expected, dtype, what):
    """assert_close for torch comparisons. float64 uses the table as is. float32: torch
    computes its GEMMs with other kernels (MKL-DNN / its own blocking) and other gate
    formulas, and here the errors of up to 3 layers and two directions add up through BPTT;
    the measured worst case is ~6e-7 of the scale, so the table's f32 tolerance (rtol 2e-5,
    atol 1e-5 x scale) still holds with a 10x margin; it is used unchanged."""
    assert_close(actual, expected, dtype, what=what)


def t(a, dtype, grad=False):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch_dtype(dtype), requires_grad=grad)


def torch_layer(mode, input_size, hidden, dtype, **kwargs):
    if mode == "lstm":
        cls = torch.nn.LSTM
    elif mode == "gru":
        cls = torch.nn.GRU
    else:
        cls = torch.nn.RNN
        kwargs["nonlinearity"] = mode[4:]
    return cls(input_size, hidden, dtype=torch_dtype(dtype), **kwargs)


def fastnn_layer(mode, input_size, hidden, dtype, **kwargs):
    if mode == "lstm":
        return nn.LSTM(input_size, hidden, dtype=dtype, **kwargs)
    if mode == "gru":
        return nn.GRU(input_size, hidden, dtype=dtype, **kwargs)
    return nn.RNN(input_size, hidden, nonlinearity=mode[4:], dtype=dtype, **kwargs)


def numpy_state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def config(id, num_layers=1, bidirectional=False, batch_first=False, lengths=False, hx=False,
           bias=True, unbatched=False):
    return pytest.param(num_layers, bidirectional, batch_first, bias, lengths, hx, unbatched,
                        id=id)


CONFIGS = [
    config("L1"),
    config("L1-hx-lengths", lengths=True, hx=True),
    config("L1-bi-batch_first-lengths", bidirectional=True, batch_first=True, lengths=True),
    config("L2-bi-hx", 2, True, hx=True),
    config("L2-batch_first-lengths-hx", 2, batch_first=True, lengths=True, hx=True),
    config("L3-bi-lengths-hx", 3, True, lengths=True, hx=True),
    config("L3-bi-batch_first-lengths-no-bias", 3, True, True, lengths=True, bias=False),
    config("L2-bi-unbatched-hx", 2, True, unbatched=True, hx=True),
    config("L1-unbatched", unbatched=True),
]


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, bias, lengths, hx, unbatched",
                         CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_layer_matches_torch(mode, num_layers, bidirectional, batch_first, bias, lengths, hx,
                             unbatched, dtype, rng):
    steps, batch, I, H = 5, 4, 3, 7
    L, D = num_layers, 2 if bidirectional else 1
    torch.manual_seed(int(rng.integers(2**31)))
    options = dict(num_layers=L, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    tm = torch_layer(mode, I, H, dtype, **options)
    fm = fastnn_layer(mode, I, H, dtype, **options)
    fm.load_state_dict(numpy_state(tm))

    if unbatched:
        x = rng.standard_normal((steps, I)).astype(dtype)
        sshape = (L * D, H)
    else:
        x = rng.standard_normal((batch, steps, I) if batch_first
                                else (steps, batch, I)).astype(dtype)
        sshape = (L * D, batch, H)
    h0 = rng.standard_normal(sshape).astype(dtype) if hx else None
    c0 = rng.standard_normal(sshape).astype(dtype) if hx and mode == "lstm" else None
    lens = None
    if lengths:
        lens = np.array([2, steps, 1, 4])  # unsorted, with a length-1 sequence and T

    # ---- torch
    tx = t(x, dtype, grad=True)
    th0 = t(h0, dtype, grad=True) if hx else None
    tc0 = t(c0, dtype, grad=True) if c0 is not None else None
    thx = (th0, tc0) if mode == "lstm" and hx else th0
    if lens is not None:
        packed = pack_padded_sequence(tx, torch.tensor(lens), batch_first=batch_first,
                                      enforce_sorted=False)
        tout, tstate = tm(packed, thx)
        tout, _ = pad_packed_sequence(tout, batch_first=batch_first, total_length=steps)
    else:
        tout, tstate = tm(tx, thx)
    th_n, tc_n = tstate if mode == "lstm" else (tstate, None)

    # ---- fastnn
    fhx = (h0, c0) if mode == "lstm" and hx else h0
    fout, fstate = fm(x, fhx, lens)
    fh_n, fc_n = fstate if mode == "lstm" else (fstate, None)

    close(fout, tout.detach().numpy(), dtype, "output")
    close(fh_n, th_n.detach().numpy(), dtype, "h_n")
    if mode == "lstm":
        close(fc_n, tc_n.detach().numpy(), dtype, "c_n")

    # ---- gradients: upstream gradients everywhere, padded steps included (fastnn must
    # ignore them; torch's padded outputs are constants and get none)
    g = rng.standard_normal(fout.shape).astype(dtype)
    gh = rng.standard_normal(sshape).astype(dtype)
    gc = rng.standard_normal(sshape).astype(dtype) if mode == "lstm" else None
    total = (tout * t(g, dtype)).sum() + (th_n * t(gh, dtype)).sum()
    if mode == "lstm":
        total = total + (tc_n * t(gc, dtype)).sum()
    total.backward()
    res = fm.backward(g, gh, gc)
    if hx:
        gx, ghx = res
        gh0, gc0 = ghx if mode == "lstm" else (ghx, None)
        close(gh0, th0.grad.numpy(), dtype, "grad_h0")
        if mode == "lstm":
            close(gc0, tc0.grad.numpy(), dtype, "grad_c0")
    else:
        gx = res
    close(gx, tx.grad.numpy(), dtype, "grad_x")
    tparams = dict(tm.named_parameters())
    for name, p in fm.named_parameters():
        close(p.grad, tparams[name].grad.numpy(), dtype, f"{name}.grad")


@pytest.mark.parametrize("mode", MODES)
def test_layer_eval_output_matches_torch_long_sequence(mode, dtype, rng):
    """A longer sequence (60 steps) in eval mode, bidirectional, 2 layers: errors do not grow
    along the sequence beyond the f32 table (the states are bounded)."""
    torch.manual_seed(3)
    tm = torch_layer(mode, 4, 33, dtype, num_layers=2, bidirectional=True)
    fm = fastnn_layer(mode, 4, 33, dtype, num_layers=2, bidirectional=True)
    fm.load_state_dict(numpy_state(tm))
    fm.eval()
    x = rng.standard_normal((60, 3, 4)).astype(dtype)
    with torch.no_grad():
        tout, tstate = tm(t(x, dtype))
    fout, fstate = fm(x)
    close(fout, tout.numpy(), dtype, "output")
    th = tstate[0] if mode == "lstm" else tstate
    fh = fstate[0] if mode == "lstm" else fstate
    close(fh, th.numpy(), dtype, "h_n")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_parameters_names_order_shapes_as_torch(mode, bidirectional, bias):
    options = dict(num_layers=3, bias=bias, bidirectional=bidirectional)
    tm = torch_layer(mode, 5, 6, np.float32, **options)
    fm = fastnn_layer(mode, 5, 6, np.float32, **options)
    tnames = [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
    fnames = [(n, p.shape) for n, p in fm.named_parameters()]
    assert fnames == tnames
    assert list(fm.state_dict()) == list(tm.state_dict())


@pytest.mark.parametrize("mode", MODES)
def test_default_init_range_is_torch(mode):
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch (whose samples are checked to
    fill the same range)."""
    H = 16
    bound = 1 / np.sqrt(H)
    fm = fastnn_layer(mode, 5, H, np.float32, num_layers=2, bidirectional=True,
                      rng=np.random.default_rng(0))
    tm = torch_layer(mode, 5, H, np.float32, num_layers=2, bidirectional=True)
    for (name, p), (_, q) in zip(fm.named_parameters(), tm.named_parameters()):
        for arr in (p.data, q.detach().numpy()):
            assert arr.min() >= -bound and arr.max() <= bound, name
        assert p.data.dtype == np.float32
    # all parameters together: they fill the range, centred (n >= 1500 samples: the
    # extremes are within 1% of the bound, the mean within 0.1 * bound, by far)
    for module in (fm, tm):
        every = np.concatenate([np.asarray(p.data if module is fm else p.detach()).ravel()
                                for p in module.parameters()])
        assert every.size >= 1500
        assert every.min() < -0.95 * bound and every.max() > 0.95 * bound
        assert abs(every.mean()) < 0.1 * bound
    cell = nn.LSTMCell(5, H, rng=np.random.default_rng(0)) if mode == "lstm" else \
        nn.GRUCell(5, H, rng=np.random.default_rng(0)) if mode == "gru" else \
        nn.RNNCell(5, H, rng=np.random.default_rng(0))
    every = np.concatenate([p.data.ravel() for p in cell.parameters()])
    assert every.min() >= -bound and every.max() <= bound
    assert every.min() < -0.8 * bound and every.max() > 0.8 * bound


def torch_cell(mode, I, H, dtype, bias):
    if mode == "lstm":
        return torch.nn.LSTMCell(I, H, bias=bias, dtype=torch_dtype(dtype))
    if mode == "gru":
        return torch.nn.GRUCell(I, H, bias=bias, dtype=torch_dtype(dtype))
    return torch.nn.RNNCell(I, H, bias=bias, nonlinearity=mode[4:], dtype=torch_dtype(dtype))


def fastnn_cell(mode, I, H, dtype, bias):
    if mode == "lstm":
        return nn.LSTMCell(I, H, bias=bias, dtype=dtype)
    if mode == "gru":
        return nn.GRUCell(I, H, bias=bias, dtype=dtype)
    return nn.RNNCell(I, H, bias=bias, nonlinearity=mode[4:], dtype=dtype)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("mode", MODES)
def test_cell_matches_torch(mode, unbatched, hx, bias, dtype, rng):
    I, H, N = 4, 17, 3
    torch.manual_seed(int(rng.integers(2**31)))
    tc = torch_cell(mode, I, H, dtype, bias)
    fc = fastnn_cell(mode, I, H, dtype, bias)
    fc.load_state_dict(numpy_state(tc))
    assert [n for n, _ in fc.named_parameters()] == [n for n, _ in tc.named_parameters()]
    x = rng.standard_normal((I,) if unbatched else (N, I)).astype(dtype)
    sshape = (H,) if unbatched else (N, H)
    h = rng.standard_normal(sshape).astype(dtype) if hx else None
    c = rng.standard_normal(sshape).astype(dtype) if hx and mode == "lstm" else None
    tx = t(x, dtype, True)
    th = t(h, dtype, True) if hx else None
    tcs = t(c, dtype, True) if c is not None else None
    thx = ((th, tcs) if hx else None) if mode == "lstm" else th
    fhx = ((h, c) if hx else None) if mode == "lstm" else h
    tout = tc(tx, thx)
    fout = fc(x, fhx)
    gh = rng.standard_normal(sshape).astype(dtype)
    gc = rng.standard_normal(sshape).astype(dtype) if mode == "lstm" else None
    if mode == "lstm":
        close(fout[0], tout[0].detach().numpy(), dtype, "h'")
        close(fout[1], tout[1].detach().numpy(), dtype, "c'")
        total = (tout[0] * t(gh, dtype)).sum() + (tout[1] * t(gc, dtype)).sum()
    else:
        close(fout, tout.detach().numpy(), dtype, "h'")
        total = (tout * t(gh, dtype)).sum()
    total.backward()
    res = fc.backward(gh, gc)
    gx = res[0] if hx else res
    close(gx, tx.grad.numpy(), dtype, "grad_x")
    if hx:
        if mode == "lstm":
            close(res[1][0], th.grad.numpy(), dtype, "grad_h")
            close(res[1][1], tcs.grad.numpy(), dtype, "grad_c")
        else:
            close(res[1], th.grad.numpy(), dtype, "grad_h")
    tparams = dict(tc.named_parameters())
    for name, p in fc.named_parameters():
        close(p.grad, tparams[name].grad.numpy(), dtype, f"{name}.grad")
    # the functional cells give the same numbers
    w = [p.data for p in fc.parameters()] + [None, None] * (not bias)
    if hx:
        if mode == "lstm":
            close(fastnn.lstm_cell(x, (h, c), *w)[0], tout[0].detach().numpy(), dtype, "fn")
        elif mode == "gru":
            close(fastnn.gru_cell(x, h, *w), tout.detach().numpy(), dtype, "fn")
        else:
            close(fastnn.rnn_cell(x, h, *w, nonlinearity=mode[4:]), tout.detach().numpy(),
                  dtype, "fn")
