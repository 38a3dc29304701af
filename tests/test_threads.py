"""Thread count and SIMD path: results bit-identical whatever the number of threads, the
thread-count API, and the forced portable/AVX2 row primitives (FASTNN_SIMD) in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastnn

from conftest import assert_close, conv_arrays, conv_funcs, cpu_has


def case(id, x_shape, w_shape, **options):
    return pytest.param(x_shape, w_shape, options, id=id)


# Shapes with several blocks of positions and/or chunks of channels (see test_conv.py).
THREAD_CASES = [
    case("2d-b2-64x40x40", (2, 64, 40, 40), (64, 64, 3, 3), padding=1),
    case("2d-b1-32x48x48", (1, 32, 48, 48), (40, 32, 3, 3), padding=1),
    case("2d-b1-chunks", (1, 16, 12, 12), (50, 16, 3, 3), padding=1),
    case("2d-b1-d2-s2-5x5", (1, 24, 50, 50), (32, 24, 5, 5), stride=2, dilation=2, padding=3),
    case("2d-b16-small-images-g2", (16, 8, 7, 7), (40, 4, 3, 3), padding=1, groups=2),
    case("2d-b40-1x1", (40, 8, 5, 6), (12, 8, 1, 1)),
    case("2d-b2-dw-tiles", (2, 8, 128, 128), (128, 8, 3, 3), padding=1),
    case("2d-b2-1x1", (2, 32, 40, 40), (48, 32, 1, 1)),
    case("2d-b1-1x1-s2-disjoint", (1, 64, 40, 40), (64, 64, 1, 1), stride=2),
    case("1d-b1-k2-s3-disjoint", (1, 8, 6001), (8, 8, 2), stride=3, padding=1),
    case("2d-one-output-row", (1, 8, 3, 2000), (8, 8, 3, 5)),
    case("1d-b2-long", (2, 16, 5000), (24, 16, 3), padding=1),
    case("1d-b1-long-same", (1, 8, 3001), (16, 8, 5), padding="same"),
    case("1d-b29-short", (29, 4, 51), (6, 4, 3)),
    case("2d-b1-depthwise-direct", (1, 8, 120, 64), (16, 1, 5, 5), groups=8, padding=2),
    case("2d-b3-depthwise-gemm", (3, 4, 50, 30), (32, 1, 3, 3), groups=4, padding=1),
    case("2d-b2-taps", (2, 1, 60, 50), (24, 1, 3, 3), padding=1),
    case("2d-b2-taps-depthwise", (2, 8, 40, 30), (16, 1, 3, 3), groups=8, padding=1),
    # Winograd: one block of tiles, transformed by all threads (csrc/winograd.c)
    case("2d-b1-winograd-one-block", (1, 64, 14, 14), (64, 64, 3, 3), padding=1),
]


def _run(x, w, b, g, options):
    fwd, bwd = conv_funcs(fastnn, x.ndim - 2)
    return (fwd(x, w, b, **options),) + bwd(g, x, w, **options)


def _assert_identical(results, reference, what):
    for name, got, want in zip(("output", "grad_input", "grad_weight", "grad_bias"), results,
                               reference):
        assert np.array_equal(got, want), f"{what}: {name} differs from the 1-thread result"


@pytest.mark.parametrize("x_shape,w_shape,options", THREAD_CASES)
def test_bit_identical_across_thread_counts(rng, dtype, restore_threads, x_shape, w_shape,
                                            options):
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    fwd, _ = conv_funcs(fastnn, x.ndim - 2)
    g = rng.standard_normal(fwd(x, w, b, **options).shape).astype(dtype)
    fastnn.set_num_threads(1)
    assert fastnn.get_num_threads() == 1
    one = _run(x, w, b, g, options)
    for n in (2, 3):
        fastnn.set_num_threads(n)
        assert fastnn.get_num_threads() == n
        _assert_identical(_run(x, w, b, g, options), one, f"set_num_threads({n})")
    # threadpoolctl's OpenMP limit controls fastnn too
    fastnn.set_num_threads(2)
    with threadpool_limits(limits=1, user_api="openmp"):
        assert fastnn.get_num_threads() == 1
        limited = _run(x, w, b, g, options)
    assert fastnn.get_num_threads() == 2
    _assert_identical(limited, one, "threadpool_limits(1)")
    _assert_identical(_run(x, w, b, g, options), one, "2 threads after threadpool_limits")


def test_im2col_col2im_identical_across_thread_counts(rng, dtype, restore_threads):
    x = rng.standard_normal((3, 7, 20, 21)).astype(dtype)
    results = []
    for n in (1, 2):
        fastnn.set_num_threads(n)
        cols = fastnn.im2col(x, 3, padding=1, stride=(1, 2), dilation=(2, 1))
        results.append((cols, fastnn.col2im(cols, (20, 21), 3, padding=1, stride=(1, 2),
                                            dilation=(2, 1))))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_set_and_get_num_threads(restore_threads):
    for n in (1, 3, 2):
        fastnn.set_num_threads(n)
        assert fastnn.get_num_threads() == n
    fastnn.set_num_threads(np.int64(1))
    assert fastnn.get_num_threads() == 1
    with threadpool_limits(limits=1, user_api="openmp"):
        assert fastnn.get_num_threads() == 1
    assert fastnn.get_num_threads() == 1
    fastnn.set_num_threads(2)
    with threadpool_limits(limits=1, user_api="openmp"):
        assert fastnn.get_num_threads() == 1
    assert fastnn.get_num_threads() == 2


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_set_num_threads_holds_in_other_python_threads():
    """OpenMP keeps its thread count per thread, and a thread started later begins from
    OMP_NUM_THREADS: set_num_threads(1) must still hold there. Seen from the worker
    threads OpenMP starts (libgomp gives each Python thread its own, listed in
    /proc/self/task): with OMP_NUM_THREADS=2 a fresh thread's first parallel call starts
    one, the control; after set_num_threads(1) it starts none. A threadpoolctl limit set
    in a thread holds in that thread only."""
    script = textwrap.dedent("""
        import json, os, time
        from concurrent.futures import ThreadPoolExecutor
        import numpy as np
        from threadpoolctl import threadpool_limits
        import fastnn

        x = np.ones((8, 16, 32, 32), np.float32)
        w = np.ones((16, 16, 3, 3), np.float32)

        def tasks():
            # threads of a finished worker may still be leaving: wait for a steady count
            counts = [len(os.listdir("/proc/self/task"))]
            while len(counts) < 3 or len(set(counts[-3:])) > 1:
                time.sleep(0.02)
                counts.append(len(os.listdir("/proc/self/task")))
            return counts[-1]

        def fresh_thread(limit=None):
            def run():
                before = tasks()
                if limit is None:
                    n = fastnn.get_num_threads()
                    fastnn.conv2d(x, w)
                else:
                    with threadpool_limits(limits=limit, user_api="openmp"):
                        n = fastnn.get_num_threads()
                        fastnn.conv2d(x, w)
                return n, tasks() - before
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(run).result()

        out = {"default": fresh_thread()}
        fastnn.set_num_threads(1)
        out["after set 1"] = fresh_thread()
        out["main after set 1"] = fastnn.get_num_threads()
        fastnn.set_num_threads(2)
        out["limited to 1 there"] = fresh_thread(limit=1)
        out["after set 2"] = fresh_thread()
        print(json.dumps(out))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=_subprocess_env(OMP_NUM_THREADS="2"), timeout=120)
    assert out.returncode == 0, out.stderr
    got = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(out.stdout).items()}
    assert got == {"default": (2, 1), "after set 1": (1, 0), "main after set 1": 1,
                   "limited to 1 there": (1, 0), "after set 2": (2, 1)}


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                       (True, TypeError), ("2", TypeError), (None, TypeError)],
                         ids=["zero", "negative", "float", "bool", "str", "none"])
def test_set_num_threads_rejects_bad_values(restore_threads, bad, error):
    fastnn.set_num_threads(2)
    with pytest.raises(error, match=r"\bn\b"):
        fastnn.set_num_threads(bad)
    assert fastnn.get_num_threads() == 2


def _subprocess_env(**overrides):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTNN_SIMD", "OMP_NUM_THREADS")}
    env.update(overrides)
    return env


def test_config_reports_the_caches_that_size_the_blocks(capsys):
    """The per-core L1d and L2 the kernels block for: what the system reports, or the
    32 KB / 1 MB fallback; either way a positive size, and L2 above L1. Also the kernels
    OpenBLAS picked at load (OPENBLAS_CORETYPE may force them)."""
    from fastnn import _kernels
    l1, l2, blas_core = _kernels.config()[3:]
    assert 0 < l1 < l2
    assert blas_core
    fastnn.show_config()
    out = capsys.readouterr().out
    assert f"caches: L1d {l1 // 1024} KB, L2 {l2 // 1024} KB per core" in out
    assert f"{blas_core} kernels, 1 thread" in out


def test_omp_num_threads_sets_the_default():
    code = "import fastnn; print(fastnn.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=_subprocess_env(OMP_NUM_THREADS="3"),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["3"]
    out = subprocess.run([sys.executable, "-c", code], env=_subprocess_env(),
                         capture_output=True, text=True, check=True).stdout
    assert int(out) == len(os.sched_getaffinity(0))


# Runs in a fresh interpreter with FASTNN_SIMD set: computes the cases stored in the input
# file on the C path and stores the results, the configuration and show_config's text.
_SIMD_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    import numpy as np
    import fastnn
    from fastnn._config import config

    data = dict(np.load(sys.argv[1]))
    opts = json.loads(sys.argv[3])
    out = {}
    for name, o in opts.items():
        x, w, b, g = (data[f"{name}/{k}"] for k in "xwbg")
        fwd = fastnn.conv1d if x.ndim == 3 else fastnn.conv2d
        bwd = fastnn.conv1d_backward if x.ndim == 3 else fastnn.conv2d_backward
        out[f"{name}/y"] = fwd(x, w, b, **o)
        out[f"{name}/gx"], out[f"{name}/gw"], out[f"{name}/gb"] = bwd(g, x, w, **o)
        if x.ndim == 4:
            out[f"{name}/cols"] = fastnn.im2col(x, w.shape[2:], padding=1, stride=(1, 2))
    np.savez(sys.argv[2], **out)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        fastnn.show_config()
    print(json.dumps({"simd": config()["simd"], "show_config": text.getvalue()}))
""")

SIMD_CASES = {
    # widths around 8 and 16 lanes, strided gathers, bias rows, sums for grad_bias
    "w15-p1": ((2, 5, 6, 15), (6, 5, 3, 3), dict(padding=1)),
    "w16-s2": ((2, 5, 6, 16), (6, 5, 3, 3), dict(padding=1, stride=2)),
    "w17-d2-same": ((2, 5, 7, 17), (6, 5, 3, 3), dict(padding="same", dilation=2)),
    "w33-s(1,3)": ((1, 4, 5, 33), (8, 4, 3, 2), dict(padding=(1, 0), stride=(1, 3))),
    "blocks": ((2, 16, 40, 40), (24, 16, 3, 3), dict(padding=1)),
    "g2-1x1": ((3, 4, 9, 7), (6, 2, 1, 1), dict(groups=2)),
    "1d-L97": ((2, 3, 97), (4, 3, 5), dict(padding=2, stride=2)),
}


@pytest.mark.parametrize("simd", ["portable", "avx2"])
def test_forced_simd_path_matches_reference(ref, rng, dtype, tmp_path, simd):
    inputs, opts = {}, {}
    for name, (x_shape, w_shape, options) in SIMD_CASES.items():
        x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
        fwd, _ = conv_funcs(ref, len(x_shape) - 2)
        g = rng.standard_normal(fwd(x, w, b, **options).shape).astype(dtype)
        inputs.update({f"{name}/x": x, f"{name}/w": w, f"{name}/b": b, f"{name}/g": g})
        opts[name] = options
    np.savez(tmp_path / "in.npz", **inputs)
    proc = subprocess.run(
        [sys.executable, "-c", _SIMD_SCRIPT, str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
         json.dumps(opts)],
        env=_subprocess_env(FASTNN_SIMD=simd, OMP_NUM_THREADS="2"),
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = simd if simd == "portable" or cpu_has("avx2", "fma") else "portable"
    assert info["simd"] == expected
    assert expected in info["show_config"]
    out = np.load(tmp_path / "out.npz")
    for name, options in opts.items():
        x, w, b, g = (inputs[f"{name}/{k}"] for k in "xwbg")
        fwd, bwd = conv_funcs(ref, x.ndim - 2)
        assert_close(out[f"{name}/y"], fwd(x, w, b, **options), dtype, what=f"{name} forward")
        for key, want in zip(("gx", "gw", "gb"), bwd(g, x, w, **options)):
            assert_close(out[f"{name}/{key}"], want, dtype, what=f"{name} {key}")
        if x.ndim == 4:
            np.testing.assert_array_equal(
                out[f"{name}/cols"], ref.im2col(x, w.shape[2:], padding=1, stride=(1, 2)))


def test_concurrent_calls_from_python_threads(rng, dtype):
    """The kernels release the GIL and share no state but the workspace cache, which calls
    exchange atomically: calls from several Python threads at once, of different sizes (the
    last two on the Winograd path, with the largest workspaces), give the results of the same
    calls made one after another."""
    from concurrent.futures import ThreadPoolExecutor

    problems = []
    for i, (c, m) in enumerate([(8, 12)] * 6 + [(32, 32), (48, 40)]):
        x = rng.standard_normal((2, c, 20 + i, 17)).astype(dtype)
        w = rng.standard_normal((m, c, 3, 3)).astype(dtype)
        g = rng.standard_normal((2, m, 20 + i, 17)).astype(dtype)
        problems.append((x, w, None, g))
    options = dict(padding=1)
    expected = [_run(*p, options) for p in problems]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda p: _run(*p, options), problems * 3))
    for i, got in enumerate(results):
        _assert_identical(got, expected[i % len(problems)], f"problem {i % len(problems)}")
