"""The Winograd F(2x2, 3x3) path of conv2d (csrc/winograd.c) against the NumPy reference.

fastnn takes it for 3x3, stride-1, undilated, ungrouped convolutions with padding up to 2,
at least 32 input and output channels (2^20 pairs at most) and 32 output tiles of 2x2
(csrc/conv.c; the GEMM path when its workspace cannot be allocated), and for the
input gradient of such a convolution (the same kind of convolution of grad_output, padding
2 - pad). The cases below all qualify, both ways, and reach the path's edges: odd output
sizes (a tile's last row or column outside the output), every padding from 0 to 2 and
unequal ones, a 1x1 output, blocks of tile rows that span images or differ by a row,
output-channel chunks (batch 1), channel counts off the vector widths. The whole convolution
suite also runs with the algorithm forced either way (FASTNN_CONV), in a subprocess.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import check_conv_against_reference, conv_arrays


def case(id, x_shape, w_shape, **options):
    return pytest.param(x_shape, w_shape, options, id=id)


WINOGRAD_CASES = [
    case("p1-even", (2, 32, 8, 8), (32, 32, 3, 3), padding=1),
    case("p1-odd-sizes", (2, 33, 9, 7), (40, 33, 3, 3), padding=1),
    case("same", (2, 32, 9, 10), (32, 32, 3, 3), padding="same"),
    case("valid", (2, 32, 10, 9), (36, 32, 3, 3)),
    case("p2", (2, 32, 7, 8), (32, 32, 3, 3), padding=2),
    case("p(0,2)", (2, 32, 8, 7), (32, 32, 3, 3), padding=(0, 2)),
    case("p(2,1)", (2, 32, 5, 9), (32, 32, 3, 3), padding=(2, 1)),
    case("1x1-output", (40, 32, 3, 3), (32, 32, 3, 3)),
    case("k=padded-input", (40, 32, 1, 1), (32, 32, 3, 3), padding=1),
    case("batch1-chunks", (1, 32, 16, 16), (64, 32, 3, 3), padding=1),
    case("blocks-span-images", (4, 64, 30, 30), (64, 64, 3, 3), padding=1),
    case("uneven-blocks", (3, 128, 20, 20), (40, 128, 3, 3), padding=1),
    case("wide-rows", (2, 48, 5, 40), (48, 48, 3, 3), padding=1),
    case("one-row", (16, 32, 1, 12), (32, 32, 3, 3), padding=1),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("x_shape,w_shape,options", WINOGRAD_CASES)
def test_winograd_against_reference(ref, rng, dtype, x_shape, w_shape, options, bias):
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype, bias=bias)
    check_conv_against_reference(ref, rng, x, w, b, **options)


@pytest.mark.skipif(bool(os.environ.get("FASTNN_CONV")), reason="FASTNN_CONV already set")
@pytest.mark.parametrize("algorithm", ["winograd", "gemm"])
def test_convolution_suite_with_the_algorithm_forced(algorithm):
    """FASTNN_CONV=winograd takes the path for every convolution it applies to (small
    channel counts and single tiles included); =gemm never takes it."""
    tests = Path(__file__).parent
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_CONV"}
    env["FASTNN_CONV"] = algorithm
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          str(tests / "test_conv.py"), str(tests / "test_winograd.py")],
                         capture_output=True, text=True, env=env, cwd=tests.parent, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
