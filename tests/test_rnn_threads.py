"""The recurrences whatever the thread count and instruction set: outputs and every gradient
bit-identical for 1, 2 and 3 threads (and under threadpoolctl's OpenMP limit), the forced
portable/AVX2 paths (FASTNN_SIMD, in a subprocess) agreeing with the NumPy reference, and
concurrent calls from Python threads (the kernels release the GIL) giving correct results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastnn
import fastnn.nn as nn
import fastnn.rnn as crnn
from fastnn import _kernels

from conftest import assert_close, cpu_has

MODES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}

# Threads split a sequence by hidden units or by batch rows (csrc/rnn.c). By units, each owns
# whole panels, so a sequence uses at most ceil(H / NR) threads, NR the packed GEMM's panel
# width (8-64 columns by instruction set and dtype). H = 100 is not a multiple of any NR;
# `several_panels` gives an H of at least three panels (the last one partial) on the
# instruction set in use, so 3 threads really run. By rows (small W_hh, 8+ rows per thread):
# the "rows" case, a batch of 30 with H = 20, which 1, 2 and 3 threads split differently.
STEPS, BATCH, INPUT, HIDDEN = 7, 9, 13, 100
ROWS_BATCH, ROWS_HIDDEN = 30, 20
ROWS_LENGTHS = np.array([7, 1, 4, 7, 2, 6, 3, 5, 1, 2] * 3)


def several_panels(dtype):
    nr = _kernels.packed_nr("f" if np.dtype(dtype) == np.float32 else "d")
    hidden = 2 * nr + nr // 2 + 1
    assert -(-hidden // nr) >= 3 and hidden % nr
    return hidden
LENGTHS = np.array([7, 1, 4, 7, 2, 6, 3, 5, 1])


def arrays(rng, mode, dtype, steps=STEPS, batch=BATCH, input_size=INPUT, hidden=HIDDEN):
    """x, h0, c0, w_ih, w_hh, b_ih, b_hh and the upstream gradients (grad_y, h_n, c_n)."""
    G = GATES[mode] * hidden
    bound = 1 / np.sqrt(hidden)

    def draw(*shape, scale=None):
        if scale is None:
            return rng.standard_normal(shape).astype(dtype)
        return rng.uniform(-scale, scale, shape).astype(dtype)

    lstm = mode == "lstm"
    ins = [draw(steps, batch, input_size), draw(batch, hidden),
           draw(batch, hidden) if lstm else None, draw(G, input_size, scale=bound),
           draw(G, hidden, scale=bound), draw(G, scale=bound), draw(G, scale=bound)]
    grads = [draw(steps, batch, hidden), draw(batch, hidden),
             draw(batch, hidden) if lstm else None]
    return ins, grads


def run(mode, ins, grads, lengths, reverse):
    """Forward (training and not) and backward: every result as a list of arrays."""
    y, h_n, c_n, tape = crnn.rnn_sequence(mode, *ins, lengths=lengths, reverse=reverse)
    y2, h2, c2, _ = crnn.rnn_sequence(mode, *ins, lengths=lengths, reverse=reverse,
                                      training=False)
    back = crnn.rnn_sequence_backward(tape, *grads)
    return [a for a in (y, h_n, c_n, y2, h2, c2, *back) if a is not None]


def assert_all_equal(got, want, what):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(a, b), f"result {i} differs {what}"


@pytest.mark.parametrize("hidden", ["100", "3-panels", "rows"])
@pytest.mark.parametrize("mode", MODES)
def test_sequence_bit_identical_across_thread_counts(mode, hidden, dtype, rng,
                                                     restore_threads):
    batch, lengths = (ROWS_BATCH, ROWS_LENGTHS) if hidden == "rows" else (BATCH, LENGTHS)
    hidden = {"100": HIDDEN, "rows": ROWS_HIDDEN}.get(hidden) or several_panels(dtype)
    ins, grads = arrays(rng, mode, dtype, batch=batch, hidden=hidden)
    cases = [(lens, reverse) for lens in (None, lengths) for reverse in (False, True)]
    fastnn.set_num_threads(1)
    one = [run(mode, ins, grads, *c) for c in cases]
    for n in (2, 3):
        fastnn.set_num_threads(n)
        for c, want in zip(cases, one):
            assert_all_equal(run(mode, ins, grads, *c), want,
                             f"with {n} threads (lengths={c[0] is not None}, reverse={c[1]})")
    fastnn.set_num_threads(3)
    with threadpool_limits(limits=1, user_api="openmp"):
        for c, want in zip(cases, one):
            assert_all_equal(run(mode, ins, grads, *c), want, "under threadpool_limits(1)")


@pytest.mark.parametrize("mode", MODES)
def test_layer_bit_identical_across_thread_counts(mode, dtype, rng, restore_threads):
    """A 2-layer bidirectional layer with lengths and hx: outputs, states, input, state and
    parameter gradients."""
    H = several_panels(dtype)
    kwargs = dict(num_layers=2, bidirectional=True, dtype=dtype)
    if mode.startswith("rnn"):
        layer = nn.RNN(INPUT, H, nonlinearity=mode[4:], rng=np.random.default_rng(1), **kwargs)
    else:
        cls = nn.LSTM if mode == "lstm" else nn.GRU
        layer = cls(INPUT, H, rng=np.random.default_rng(1), **kwargs)
    x = rng.standard_normal((STEPS, BATCH, INPUT)).astype(dtype)
    h = rng.standard_normal((4, BATCH, H)).astype(dtype)
    hx = (h, -h) if mode == "lstm" else h
    g = rng.standard_normal((STEPS, BATCH, 2 * H)).astype(dtype)

    def once():
        layer.zero_grad()
        out, st = layer(x, hx, LENGTHS)
        gx, ghx = layer.backward(g, h)
        flat = [out, *(st if mode == "lstm" else (st,)), gx,
                *(ghx if mode == "lstm" else (ghx,))]
        return flat + [p.grad for p in layer.parameters()]

    fastnn.set_num_threads(1)
    want = once()
    for n in (2, 3):
        fastnn.set_num_threads(n)
        assert_all_equal(once(), want, f"with {n} threads")


_SIMD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastnn
    import fastnn.rnn as crnn
    from fastnn._config import config

    data = np.load(sys.argv[1])
    out = {}
    keys = sorted({k.split("/")[0] for k in data.files if "/" in k})

    def compute():
      out = {}
      for key in keys:
        mode, dt = key.split("-")
        get = lambda name: data[key + "/" + name] if key + "/" + name in data.files else None
        ins = [get(n) for n in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
        grads = [get(n) for n in ("gy", "gh", "gc")]
        lengths = data["lengths"]
        for reverse in (0, 1):
            y, h_n, c_n, tape = crnn.rnn_sequence(mode, *ins, lengths=lengths,
                                                  reverse=bool(reverse))
            back = crnn.rnn_sequence_backward(tape, *grads)
            for i, a in enumerate((y, h_n, c_n) + tuple(back)):
                if a is not None:
                    out[f"{key}/{reverse}/{i}"] = a
      return out

    fastnn.set_num_threads(1)
    one = compute()
    fastnn.set_num_threads(3)
    out = compute()
    same = all(np.array_equal(one[k], out[k]) for k in out)
    np.savez(sys.argv[2], **out)
    print(json.dumps({"simd": config()["simd"], "same_1_3_threads": same}))
""")

_NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")


@pytest.mark.parametrize("simd", ["portable", "avx2"])
def test_forced_simd_path_matches_reference(rng, tmp_path, simd):
    """Every mode, both dtypes, both directions, lengths; H = 33 (not a multiple of any
    vector width or panel; 3 to 9 panels there) with N = 3: each forced instruction set
    within the tolerance table of the reference, and bit-identical for 1 and 3 threads."""
    ref = pytest.importorskip("fastnn.reference.rnn")
    lengths = np.array([5, 1, 3])
    data = {"lengths": lengths}
    cases = {}
    for mode in MODES:
        for dtype, dt in ((np.float32, "f32"), (np.float64, "f64")):
            ins, grads = arrays(rng, mode, dtype, steps=5, batch=3, input_size=4, hidden=33)
            cases[f"{mode}-{dt}"] = (mode, dtype, ins, grads)
            for name, a in zip(_NAMES + ("gy", "gh", "gc"), ins + grads):
                if a is not None:
                    data[f"{mode}-{dt}/{name}"] = a
    np.savez(tmp_path / "in.npz", **data)
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNN_SIMD", "OMP_NUM_THREADS")}
    env.update(FASTNN_SIMD=simd, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", _SIMD_SCRIPT, str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = simd if simd == "portable" or cpu_has("avx2", "fma") else "portable"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["simd"] == expected
    assert report["same_1_3_threads"], f"{simd}: results differ between 1 and 3 threads"
    out = np.load(tmp_path / "out.npz")
    for key, (mode, dtype, ins, grads) in cases.items():
        for reverse in (0, 1):
            y, h_n, c_n, tape = ref.rnn_sequence(mode, *ins, lengths=lengths,
                                                 reverse=bool(reverse))
            back = ref.rnn_sequence_backward(tape, *grads)
            for i, want in enumerate((y, h_n, c_n) + tuple(back)):
                name = f"{key}/{reverse}/{i}"
                if want is None:
                    assert name not in out.files, name
                else:
                    assert_close(out[name], want, dtype, what=f"{simd} {name}")


def test_concurrent_python_threads(rng):
    """Eight calls at once from four Python threads (the kernels run without the GIL) give
    the results of the same calls made one after the other."""
    jobs = []
    for i in range(8):
        mode = MODES[i % 4]
        dtype = np.float32 if i % 2 else np.float64
        ins, grads = arrays(rng, mode, dtype, steps=7, batch=5, input_size=7, hidden=33 + i)
        jobs.append((mode, ins, grads, LENGTHS[:5] if i % 3 else None, bool(i % 2)))

    def call(job):
        mode, ins, grads, lengths, reverse = job
        results = []
        for _ in range(5):
            results.append(run(mode, ins, grads, lengths, reverse))
        return results

    serial = [run(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(call, jobs))
    for i, (want, got) in enumerate(zip(serial, parallel)):
        for repeat in got:
            assert_all_equal(repeat, want, f"in job {i} when run concurrently")


def test_concurrent_layers_in_python_threads(rng):
    """Layers (each with its own saved forward) trained in parallel Python threads."""
    layers = [nn.LSTM(5, 20, num_layers=2, bidirectional=True, rng=np.random.default_rng(i))
              for i in range(4)]
    xs = [rng.standard_normal((6, 3, 5)).astype(np.float32) for _ in layers]

    def train(i):
        out, _ = layers[i](xs[i], lengths=[6, 2, 1])
        gx = layers[i].backward(np.ones_like(out))
        return out, gx, [p.grad.copy() for p in layers[i].parameters()]

    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(train, range(4)))
    for i, (out, gx, grads) in enumerate(parallel):
        layers[i].zero_grad()
        o2, g2, p2 = train(i)
        assert np.array_equal(out, o2) and np.array_equal(gx, g2)
        assert_all_equal(grads, p2, f"param grads of layer {i}")
