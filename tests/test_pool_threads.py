"""Pooling whatever the thread count and instruction set: results bit-identical for 1, 2
and 3 threads (and under threadpoolctl's OpenMP limit), and the forced portable/AVX2 paths
(FASTNN_SIMD) agreeing with the reference, in a subprocess."""
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

from conftest import assert_close, cpu_has


def _run_all(x, g2, g1):
    """Every pooling kernel, forward and backward, on x (N, C, H, W) and its rows as 1-d."""
    x1 = np.ascontiguousarray(x[:, :, 0])
    y, idx = fastnn.max_pool2d(x, 3, 2, 1, return_indices=True)
    out = [y, idx, fastnn.max_pool2d(x, 3, 2, 1), fastnn.max_pool2d_backward(g2, idx, x.shape)]
    a = fastnn.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    ga = np.cos(np.arange(a.size)).reshape(a.shape).astype(x.dtype)  # ceil_mode: its own shape
    out += [a, fastnn.avg_pool2d_backward(ga, x.shape, 3, 2, 1, ceil_mode=True,
                                          count_include_pad=False)]
    m, midx = fastnn.adaptive_max_pool2d(x, g2.shape[2:], return_indices=True)
    out += [m, midx, fastnn.adaptive_avg_pool2d(x, g2.shape[2:]),
            fastnn.adaptive_avg_pool2d_backward(g2, x.shape),
            fastnn.adaptive_max_pool2d_backward(g2, midx, x.shape)]
    y1, idx1 = fastnn.max_pool1d(x1, 3, 2, 1, return_indices=True)
    out += [y1, idx1, fastnn.max_pool1d_backward(g1, idx1, x1.shape),
            fastnn.avg_pool1d(x1, 3, 2, 1), fastnn.avg_pool1d_backward(g1, x1.shape, 3, 2, 1)]
    s = fastnn.spatial_pyramid_pool(x)
    out += [s, fastnn.spatial_pyramid_pool_backward(np.ones_like(s), x, mode="avg")]
    return out


# Many planes; one plane of many rows (cut into runs of rows); a few long rows.
@pytest.mark.parametrize("x_shape", [(16, 8, 20, 22), (1, 1, 300, 200), (2, 3, 4, 6000)],
                         ids=["many-planes", "one-big-plane", "long-rows"])
def test_bit_identical_across_thread_counts(rng, dtype, restore_threads, x_shape):
    x = rng.standard_normal(x_shape).astype(dtype)
    y = fastnn.max_pool2d(x, 3, 2, 1)
    g2 = rng.standard_normal(y.shape).astype(dtype)
    g1 = rng.standard_normal(fastnn.max_pool1d(x[:, :, 0], 3, 2, 1).shape).astype(dtype)
    fastnn.set_num_threads(1)
    one = _run_all(x, g2, g1)
    for n in (2, 3):
        fastnn.set_num_threads(n)
        for i, (a, b) in enumerate(zip(_run_all(x, g2, g1), one)):
            assert np.array_equal(a, b), f"result {i} differs with {n} threads"
    fastnn.set_num_threads(2)
    with threadpool_limits(limits=1, user_api="openmp"):
        for i, (a, b) in enumerate(zip(_run_all(x, g2, g1), one)):
            assert np.array_equal(a, b), f"result {i} differs under threadpool_limits(1)"


_SIMD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastnn
    from fastnn._config import config

    data = np.load(sys.argv[1])
    x, g = data["x"], data["g"]
    out = {}
    out["max"], out["idx"] = fastnn.max_pool2d(x, 3, 2, 1, return_indices=True)
    out["max_noidx"] = fastnn.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1),
                                         ceil_mode=True)
    out["max_bwd"] = fastnn.max_pool2d_backward(g, out["idx"], x.shape)
    out["avg"] = fastnn.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    out["avg_bwd"] = fastnn.avg_pool2d_backward(g, x.shape, 3, 2, 1, ceil_mode=True)
    out["avg_s1"] = fastnn.avg_pool2d(x, 2, 1)
    out["adaptive"] = fastnn.adaptive_avg_pool2d(x, (5, 7))
    np.savez(sys.argv[2], **out)
    print(json.dumps({"simd": config()["simd"]}))
""")


@pytest.mark.parametrize("simd", ["portable", "avx2"])
def test_forced_simd_path_matches_reference(ref, rng, dtype, tmp_path, simd):
    # widths 15-17 and 33 around the vector lanes, NaN and ties in the data
    x = rng.integers(-3, 4, (2, 3, 17, 33)).astype(dtype)
    x[0, 0, 3, 5] = np.nan
    g = rng.standard_normal((2, 3, 9, 17)).astype(dtype)
    np.savez(tmp_path / "in.npz", x=x, g=g)
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNN_SIMD", "OMP_NUM_THREADS")}
    env.update(FASTNN_SIMD=simd, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", _SIMD_SCRIPT, str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = simd if simd == "portable" or cpu_has("avx2", "fma") else "portable"
    assert json.loads(proc.stdout.strip().splitlines()[-1])["simd"] == expected
    out = np.load(tmp_path / "out.npz")
    y, idx = ref.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert_close(out["max"], y, dtype)
    np.testing.assert_array_equal(out["idx"], idx)
    assert_close(out["max_noidx"], ref.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1),
                                                  ceil_mode=True), dtype)
    assert_close(out["max_bwd"], ref.max_pool2d_backward(g, idx, x.shape), dtype)
    assert_close(out["avg"], ref.avg_pool2d(x, 3, 2, 1, ceil_mode=True), dtype)
    assert_close(out["avg_bwd"], ref.avg_pool2d_backward(g, x.shape, 3, 2, 1, ceil_mode=True),
                 dtype)
    assert_close(out["avg_s1"], ref.avg_pool2d(x, 2, 1), dtype)
    assert_close(out["adaptive"], ref.adaptive_avg_pool2d(x, (5, 7)), dtype)
