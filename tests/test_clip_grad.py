"""Gradient clipping (`fastnn.utils`): exact checks without torch, and against
`torch.nn.utils.clip_grad_norm_` / `clip_grad_value_` (skipped without torch)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn._cases import TOLERANCES
from fastnn.utils import clip_grad_norm_, clip_grad_value_

from conftest import DTYPES, DTYPE_IDS


class Param:
    """The least a parameter needs: a `.grad` attribute."""

    def __init__(self, grad):
        self.grad = grad


@pytest.fixture(scope="module")
def torch():
    """PyTorch, or a skip when it is not installed."""
    return pytest.importorskip("torch")


# --------------------------------------------------------------------------- clip_grad_norm_


def test_norm_is_returned_and_grads_scaled_in_place():
    a, b = np.array([3.0, 0.0]), np.array([[4.0]])
    params = [Param(a), Param(None), Param(b)]
    total = clip_grad_norm_(params, max_norm=1.0)
    assert total == 5.0 and isinstance(total, float)
    coefficient = 1.0 / (5.0 + 1e-6)
    assert params[0].grad is a and params[2].grad is b  # the same arrays, scaled in place
    np.testing.assert_array_equal(a, [3.0 * coefficient, 0.0])
    np.testing.assert_array_equal(b, [[4.0 * coefficient]])
    assert params[1].grad is None


@pytest.mark.parametrize("norm_type, expected", [(1, 7.0), (2.0, 5.0), ("inf", 4.0),
                                                 (float("inf"), 4.0), (3, (27 + 64) ** (1 / 3))])
def test_norm_types(norm_type, expected):
    grads = [np.array([3.0]), np.array([-4.0, 0.0])]
    total = clip_grad_norm_([Param(g) for g in grads], max_norm=100.0, norm_type=norm_type)
    assert total == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("norm_type", [2.0, "inf"])
def test_max_norm_above_the_norm_leaves_grads_unchanged(norm_type, dtype, rng):
    grads = [rng.standard_normal(s).astype(dtype) for s in [(3, 4), (5,)]]
    before = [g.copy() for g in grads]
    total = clip_grad_norm_([Param(g) for g in grads], max_norm=1e3, norm_type=norm_type)
    assert 0 < total < 1e3
    for got, want in zip(grads, before):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == dtype


def test_clipped_norm_is_max_norm(dtype, rng):
    """After clipping the norm is max_norm, less the 1e-6 guard: max_norm * t / (t + 1e-6)."""
    grads = [rng.standard_normal(s).astype(dtype) * 10 for s in [(7, 3), (11,)]]
    total = clip_grad_norm_([Param(g) for g in grads], max_norm=0.5)
    after = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    assert after == pytest.approx(0.5 * total / (total + 1e-6),
                                  rel=TOLERANCES[np.dtype(dtype)]["rtol"])


def test_single_parameter_generator_and_empty():
    p = Param(np.array([6.0, 8.0]))
    assert clip_grad_norm_(p, 5.0) == 10.0
    np.testing.assert_allclose(p.grad, [3.0, 4.0], rtol=1e-6)
    assert clip_grad_norm_((q for q in [Param(np.array([1.0]))]), 5.0) == 1.0
    assert clip_grad_norm_([], 1.0) == 0.0
    assert clip_grad_norm_([Param(None), Param(np.zeros((0, 3)))], 1.0) == 0.0


def test_nonfinite_norm():
    """As PyTorch: NaN or inf in the total norm raises only when asked; otherwise the
    gradients are multiplied by the (NaN or zero) coefficient."""
    p = Param(np.array([np.inf, 1.0]))
    with pytest.raises(RuntimeError, match="total norm of order 2.0 .* is inf"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert np.isinf(clip_grad_norm_([p], 1.0))
    np.testing.assert_array_equal(p.grad, [np.nan, 0.0])
    q = Param(np.array([np.nan, 1.0]))
    assert math.isnan(clip_grad_norm_([q], 1.0))
    assert np.isnan(q.grad).all()


BAD_NORM_CALLS = [
    ([Param(np.ones(2)), object()], {}, TypeError, r"parameters\[1\] has no .grad attribute"),
    (5, {}, TypeError, r"parameters must be an object with a .grad attribute or an iterable"),
    ([Param(np.ones(2, dtype=np.int64))], {}, TypeError,
     r"parameters\[0\].grad must be a floating NumPy array or None, got ndarray of dtype int64"),
    ([Param([1.0, 2.0])], {}, TypeError, r"got list"),
    ([Param(np.ones(2))], {"max_norm": -1.0}, ValueError, r"max_norm must be >= 0, got -1.0"),
    ([Param(np.ones(2))], {"max_norm": float("nan")}, ValueError, r"max_norm must be >= 0"),
    ([Param(np.ones(2))], {"max_norm": "big"}, TypeError, r"max_norm must be a real number"),
    ([Param(np.ones(2))], {"norm_type": "l2"}, TypeError, r"norm_type must be a real number"),
    ([Param(np.ones(2))], {"norm_type": float("nan")}, ValueError, r"norm_type must not be NaN"),
]


@pytest.mark.parametrize("parameters, options, error, match", BAD_NORM_CALLS)
def test_clip_grad_norm_rejects_bad_input(parameters, options, error, match):
    options = {"max_norm": 1.0, **options}
    with pytest.raises(error, match=match):
        clip_grad_norm_(parameters, **options)


# --------------------------------------------------------------------------- clip_grad_value_


def test_clip_value_in_place(dtype):
    a = np.array([-3.0, -0.5, 0.25, 2.0, np.nan], dtype=dtype)
    b = np.array([[0.1, 9.0]], dtype=dtype)
    params = [Param(a), Param(None), Param(b)]
    assert clip_grad_value_(params, 1) is None
    assert params[0].grad is a and a.dtype == dtype
    np.testing.assert_array_equal(a, np.array([-1.0, -0.5, 0.25, 1.0, np.nan], dtype=dtype))
    np.testing.assert_array_equal(b, np.array([[0.1, 1.0]], dtype=dtype))
    single = Param(np.array([5.0]))
    clip_grad_value_(single, 0.5)
    np.testing.assert_array_equal(single.grad, [0.5])


def test_clip_grad_value_rejects_bad_input():
    with pytest.raises(ValueError, match=r"clip_value must be >= 0, got -1.0"):
        clip_grad_value_([Param(np.ones(2))], -1)
    with pytest.raises(TypeError, match=r"parameters\[0\] has no .grad attribute"):
        clip_grad_value_([np.ones(2)], 1.0)


# --------------------------------------------------------------------------- against PyTorch


def twin_parameters(torch, rng, dtype, scale):
    """The same gradients as fastnn parameters and as torch parameters (one without grad)."""
    shapes = [(4, 3), (7,), None, (2, 2, 5)]
    grads = [None if s is None else (rng.standard_normal(s) * scale).astype(dtype)
             for s in shapes]
    ours = [Param(None if g is None else g.copy()) for g in grads]
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    theirs = []
    for g, s in zip(grads, shapes):
        p = torch.nn.Parameter(torch.zeros(s or (1,), dtype=torch_dtype))
        p.grad = None if g is None else torch.from_numpy(g.copy())
        theirs.append(p)
    return ours, theirs


@pytest.mark.parametrize("max_norm", [0.3, 1e4])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, float("inf"), 0.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm, dtype, rng):
    """Total norm and clipped gradients as PyTorch's (which sums in the gradients' dtype
    while fastnn sums in float64: the dtype's tolerance covers the difference)."""
    ours, theirs = twin_parameters(torch, rng, dtype, scale=3.0)
    total = clip_grad_norm_(ours, max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    rtol = TOLERANCES[np.dtype(dtype)]["rtol"]
    np.testing.assert_allclose(total, want.item(), rtol=rtol)
    for p, q in zip(ours, theirs):
        if p.grad is None:
            assert q.grad is None
            continue
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_clip_grad_value_matches_torch(torch, dtype, rng):
    ours, theirs = twin_parameters(torch, rng, dtype, scale=2.0)
    clip_grad_value_(ours, 0.7)
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, q in zip(ours, theirs):
        if p.grad is not None:
            np.testing.assert_array_equal(p.grad, q.grad.numpy())
