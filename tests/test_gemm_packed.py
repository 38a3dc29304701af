"""The packed-panel GEMM of the recurrent per-step product (csrc/gemm_packed.c), through
the `_kernels.gemm_packed` hook, against NumPy: sizes around the register tile (MR is at
most 6 on every path, NR is `packed_nr`) and odd ones, both layouts of B, beta 0 and 1,
column ranges, strided rows, A read transposed, and the bits of a full call against column
ranges and single rows; and its tiles on a row-major B read in place (`_kernels.gemm_rows`,
convolution's forward), with a bias. The whole file also runs under the forced portable and AVX2 paths
(FASTNN_SIMD), in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn import _kernels

from conftest import assert_close, cpu_has

MAX_MR = 6  # the largest tile height of any path (AVX2); m runs past it


def _nr(dtype):
    return _kernels.packed_nr(np.dtype(dtype).char)


def _operands(rng, m, n, k, dtype, trans_b, pad=0):
    """a (m, k) and b (k, n), or (n, k) when trans_b, as views of arrays `pad` columns
    wider, so that their rows lie further apart than their width when pad > 0."""
    a = rng.standard_normal((m, k + pad)).astype(dtype)[:, :k]
    shape = (n, k) if trans_b else (k, n)
    b = rng.standard_normal((shape[0], shape[1] + pad)).astype(dtype)[:, :shape[1]]
    return a, b


def _expected(a, b, trans_b, beta, c0, n0, n1):
    """c0 with columns [n0, n1) replaced by (c0 if beta else 0) + a @ B, summed in float64."""
    full = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    out = c0.astype(np.float64)
    out[:, n0:n1] = full[:, n0:n1] + (out[:, n0:n1] if beta else 0)
    return out.astype(a.dtype)


def _run(a, b, trans_b, n0, n1, beta, c):
    _kernels.gemm_packed(a, b, trans_b, n0, n1, beta, c)
    return c


def _check(rng, m, n, k, dtype, trans_b, beta, pad=0):
    """The whole width: with beta 0 into NaN (never read), with beta 1 onto random values."""
    a, b = _operands(rng, m, n, k, dtype, trans_b, pad)
    c0 = (rng.standard_normal((m, n + pad)) if beta else np.full((m, n + pad), np.nan))
    c = c0.astype(dtype)
    _run(a, b, trans_b, 0, n, beta, c[:, :n])
    assert_close(c[:, :n], _expected(a, b, trans_b, beta, c0[:, :n], 0, n), dtype,
                 what=f"m={m} n={n} k={k} trans_b={trans_b} beta={beta}")
    np.testing.assert_array_equal(c[:, n:], c0[:, n:].astype(dtype), err_msg="padding written")


@pytest.mark.parametrize("beta", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("k", [1, 3, 97])
@pytest.mark.parametrize("m", range(1, MAX_MR + 2))
def test_sizes_around_the_tile(rng, dtype, m, k, trans_b, beta):
    """n around the panel width, and last panels of every vector count (a narrow last
    panel runs only the vectors that hold its columns: 1 to 4 of them on AVX-512)."""
    nr = _nr(dtype)
    for n in (nr - 1, nr, nr + 1, nr + nr // 4 + 1, nr + nr // 2 + 1, nr + 3 * nr // 4 + 1,
              3 * nr + 5):
        _check(rng, m, n, k, dtype, trans_b, beta)


@pytest.mark.parametrize("beta", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("m,k", [(1, 2048), (13, 2048), (9, 1100), (32, 256), (64, 512)])
def test_long_sums_and_recurrent_shapes(rng, dtype, m, k, trans_b, beta):
    _check(rng, m, 4 * _nr(dtype) + 3, k, dtype, trans_b, beta)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_rows_further_apart_than_their_width(rng, dtype, trans_b):
    nr = _nr(dtype)
    for m, n, k in [(1, nr + 1, 5), (MAX_MR + 1, 2 * nr + 3, 97), (9, nr, 33)]:
        for beta in (0, 1):
            _check(rng, m, n, k, dtype, trans_b, beta, pad=7)


@pytest.mark.parametrize("beta", [0, 1])
def test_column_ranges_touch_only_their_columns(rng, dtype, beta):
    nr = _nr(dtype)
    m, n, k = MAX_MR + 1, 4 * nr + 5, 31
    a, b = _operands(rng, m, n, k, dtype, 1)
    for n0, n1 in [(0, 1), (nr, 2 * nr - 1), (nr, 3 * nr + 2), (2 * nr, n), (4 * nr, n),
                   (nr, nr)]:
        c0 = rng.standard_normal((m, n)) if beta else np.full((m, n), np.nan)
        c = _run(a, b, 1, n0, n1, beta, c0.astype(dtype))
        want = _expected(a, b, 1, beta, c0, n0, n1)
        assert_close(c[:, n0:n1], want[:, n0:n1], dtype, what=f"columns [{n0}, {n1})")
        np.testing.assert_array_equal(c[:, :n0], want[:, :n0])
        np.testing.assert_array_equal(c[:, n1:], want[:, n1:])


@pytest.mark.parametrize("beta", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_bits_do_not_depend_on_the_column_range_or_the_rows(rng, dtype, trans_b, beta):
    """What threads splitting the columns (or a caller splitting the rows) rely on."""
    nr = _nr(dtype)
    m, n, k = 2 * MAX_MR + 3, 5 * nr + 7, 257
    a, b = _operands(rng, m, n, k, dtype, trans_b)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    whole = _run(a, b, trans_b, 0, n, beta, c0.copy())
    for cuts in ([0, nr, n], [0, 2 * nr, 3 * nr, n], [0, nr, 2 * nr, 3 * nr, 4 * nr, 5 * nr, n]):
        split = c0.copy()
        for n0, n1 in zip(cuts[:-1], cuts[1:]):
            _run(a, b, trans_b, n0, n1, beta, split)
        np.testing.assert_array_equal(split, whole, err_msg=f"cuts {cuts}")
    for i in range(m):
        row = c0[i:i + 1].copy()
        _run(a[i:i + 1], b, trans_b, 0, n, beta, row)
        np.testing.assert_array_equal(row[0], whole[i], err_msg=f"row {i} alone")
    for i0, i1 in [(0, MAX_MR - 1), (1, m), (MAX_MR, m)]:
        rows = c0[i0:i1].copy()
        _run(a[i0:i1], b, trans_b, 0, n, beta, rows)
        np.testing.assert_array_equal(rows, whole[i0:i1], err_msg=f"rows [{i0}, {i1})")


@pytest.mark.parametrize("beta", [0, 1])
def test_prefetch_changes_no_bit(rng, dtype, beta):
    """The prefetch flag only fetches panels ahead: the same bits, every column range."""
    nr = _nr(dtype)
    m, n, k = 2 * MAX_MR + 1, 5 * nr + 7, 1100  # several k blocks, a partial last panel
    a, b = _operands(rng, m, n, k, dtype, 1)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    for n0, n1 in [(0, n), (nr, 3 * nr), (2 * nr, n)]:
        plain, ahead = c0.copy(), c0.copy()
        _kernels.gemm_packed(a, b, True, n0, n1, bool(beta), plain)
        _kernels.gemm_packed(a, b, True, n0, n1, bool(beta), ahead, prefetch=True)
        np.testing.assert_array_equal(ahead, plain, err_msg=f"columns [{n0}, {n1})")


@pytest.mark.parametrize("beta", [0, 1])
@pytest.mark.parametrize("m", [1, 3, MAX_MR, 2 * MAX_MR + 1])
def test_transposed_a_gives_the_bits_of_a(rng, dtype, m, beta):
    """FNN_PACKED_TRANS_A reads A = a.T in place (the recurrences' weight gradients read x
    and h that way): the same chains, so the same bits as a.T copied, on every tile shape,
    k blocks and a partial last panel; the rows of a.T may lie further apart than m."""
    nr = _nr(dtype)
    n, k = 3 * nr + 5, 700
    a, b = _operands(rng, m, n, k, dtype, 0)
    wide = np.zeros((k, m + 9), dtype)
    wide[:, 2:2 + m] = a.T
    c0 = rng.standard_normal((m, n)).astype(dtype)
    for n0, n1 in [(0, n), (nr, n)]:
        plain, trans = c0.copy(), c0.copy()
        _kernels.gemm_packed(a, b, False, n0, n1, bool(beta), plain)
        _kernels.gemm_packed(wide[:, 2:2 + m], b, False, n0, n1, bool(beta), trans, trans_a=True)
        np.testing.assert_array_equal(trans, plain, err_msg=f"columns [{n0}, {n1})")
        assert_close(trans, _expected(a, b, 0, beta, c0, n0, n1), dtype)


def test_nan_and_inf_propagate(dtype):
    nr = _nr(dtype)
    a = np.ones((3, 4), dtype)
    a[1, 2] = np.nan
    b = np.ones((4, nr + 1), dtype)
    b[0, nr] = np.inf
    c = _run(a, b, 0, 0, nr + 1, 0, np.zeros((3, nr + 1), dtype))
    assert np.isnan(c[1]).all()
    assert np.isinf(c[[0, 2], nr]).all() and np.isfinite(c[[0, 2], :nr]).all()


def test_repeated_steps_accumulate(rng, dtype):
    a, b = _operands(rng, 5, 2 * _nr(dtype) + 1, 40, dtype, 1)
    c = np.zeros((5, b.shape[0]), dtype)
    _kernels.gemm_packed(a, b, True, 0, b.shape[0], True, c, steps=3)
    assert_close(c, 3 * _expected(a, b, 1, 0, c, 0, c.shape[1]), dtype)


def test_hook_rejects_bad_ranges_and_shapes(dtype):
    nr = _nr(dtype)
    a, b, c = np.ones((2, 3), dtype), np.ones((3, 2 * nr), dtype), np.ones((2, 2 * nr), dtype)
    for n0, n1 in [(1, 2 * nr), (0, 2 * nr + 1), (nr, nr - 1), (-nr, nr)]:
        with pytest.raises(ValueError, match="columns"):
            _kernels.gemm_packed(a, b, False, n0, n1, False, c)
    with pytest.raises(ValueError, match="shapes"):
        _kernels.gemm_packed(a, b, True, 0, nr, False, c)
    with pytest.raises(ValueError, match="empty"):
        _kernels.gemm_packed(a[:, :0], b[:0], False, 0, nr, False, c)
    with pytest.raises(ValueError, match="rows of a must be contiguous"):
        _kernels.gemm_packed(np.ones((2, 6), dtype)[:, ::2], b, False, 0, nr, False, c)
    with pytest.raises(ValueError, match="rows of c must follow"):
        _kernels.gemm_packed(a, b, False, 0, nr, False, c[::-1])
    with pytest.raises(ValueError, match="steps"):
        _kernels.gemm_packed(a, b, False, 0, nr, False, c, steps=0)
    with pytest.raises(ValueError, match="typecode"):
        _kernels.packed_nr("i")


@pytest.mark.parametrize("k", [1, 3, 97, 1100])
@pytest.mark.parametrize("m", [1, 4, MAX_MR + 1, 13])
def test_rows_in_place_give_the_packed_bits(rng, dtype, m, k):
    """gemm_rows runs the packed tiles on B as it lies (never reading past its last
    element): every element is the same chain, so the same bits as gemm_packed, with
    beta 0 and 1, and NumPy's numbers."""
    nr = _nr(dtype)
    # 3: rows closer than a panel; 2 * nr + nr // 2 + 1: a narrow last panel
    for n in (3, nr - 1, nr, 2 * nr + 1, 2 * nr + nr // 2 + 1, 5 * nr + 7):
        a, b = _operands(rng, m, n, k, dtype, 0, pad=3)
        for beta in (0, 1):
            c0 = rng.standard_normal((m, n)) if beta else np.full((m, n), np.nan)
            packed = _run(a, b, 0, 0, n, beta, c0.astype(dtype))
            rows = c0.astype(dtype)
            _kernels.gemm_rows(a, b, bool(beta), rows)
            np.testing.assert_array_equal(rows, packed, err_msg=f"m={m} n={n} k={k}")
            assert_close(rows, _expected(a, b, 0, beta, c0, 0, n), dtype)


def test_rows_in_place_start_from_the_bias(rng, dtype):
    nr = _nr(dtype)
    for m, n, k in [(1, nr + 1, 5), (MAX_MR + 1, 2 * nr + 3, 150), (13, 3 * nr, 1100)]:
        a, b = _operands(rng, m, n, k, dtype, 0)
        bias = rng.standard_normal(m).astype(dtype)
        c = np.full((m, n), np.nan, dtype)
        _kernels.gemm_rows(a, b, False, c, bias=bias)
        want = a.astype(np.float64) @ b.astype(np.float64) + bias[:, None]
        assert_close(c, want.astype(dtype), dtype, what=f"m={m} n={n} k={k}")
    with pytest.raises(ValueError, match="bias"):
        _kernels.gemm_rows(a, b, False, c, bias=bias[:-1])


def test_rows_hook_rejects_bad_shapes(dtype):
    a, b, c = np.ones((2, 3), dtype), np.ones((3, 5), dtype), np.ones((2, 5), dtype)
    with pytest.raises(ValueError, match="gemm_rows: shapes"):
        _kernels.gemm_rows(a, b[:2], False, c)
    with pytest.raises(ValueError, match="gemm_rows: empty"):
        _kernels.gemm_rows(a[:, :0], b[:0], False, c)
    with pytest.raises(ValueError, match="gemm_rows: the rows of b must be contiguous"):
        _kernels.gemm_rows(a, np.ones((3, 10), dtype)[:, ::2], False, c)
    with pytest.raises(ValueError, match="gemm_rows: the rows of c must follow"):
        _kernels.gemm_rows(a, b, False, c[::-1])
    with pytest.raises(ValueError, match="steps"):
        _kernels.gemm_rows(a, b, False, c, steps=0)


@pytest.mark.parametrize("simd", ["portable", "avx2"])
def test_forced_simd_path(simd):
    """Every test above, in a fresh interpreter on the forced instruction set."""
    if os.environ.get("FASTNN_SIMD"):
        pytest.skip("already running under a forced path")
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_SIMD"}
    env["FASTNN_SIMD"] = simd
    expected = simd if simd == "portable" or cpu_has("avx2", "fma") else "portable"
    proc = subprocess.run([sys.executable, "-c", "import fastnn._kernels as k; "
                           "print(k.config()[0], k.packed_nr('f'), k.packed_nr('d'))"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    path, nr_f32, nr_f64 = proc.stdout.split()
    assert path == expected
    assert int(nr_f32) == 2 * int(nr_f64)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           __file__], env=env, capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(__file__))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
