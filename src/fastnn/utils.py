"""Training helpers: gradient clipping, as `torch.nn.utils`.

Backpropagation through time multiplies one Jacobian per time step, so a recurrent
network's gradients can grow very large from one minibatch to the next (exploding
gradients) and the loss jumps about while it trains; one oversized step can undo many
good ones. Clipping puts a ceiling on the gradient before the optimizer uses it:

- `clip_grad_value_` cuts every gradient element to [-clip_value, clip_value], the simple
  rule "above the threshold, use the threshold". It changes the gradient's direction.
- `clip_grad_norm_` rescales all gradients together, when their joint norm exceeds
  max_norm, so that it becomes max_norm: the direction is kept, only the step is shorter.

Clipping cures exploding gradients, not vanishing ones (gated cells such as the LSTM and
GRU address those).

`parameters` is one object with a `.grad` attribute (a `fastnn.nn.Parameter`, or anything
else holding a floating NumPy array or None there) or an iterable of such objects; None
gradients are skipped. Gradients are modified in place.
"""
from __future__ import annotations

import math
from typing import Iterable, List, Union

import numpy as np

__all__ = ["clip_grad_norm_", "clip_grad_value_"]

# Anything with a `.grad` attribute, or an iterable of them.
Parameters = Union[object, Iterable[object]]


def _gradients(parameters: Parameters) -> List[np.ndarray]:
    """The gradient arrays of `parameters`, None gradients skipped."""
    if hasattr(parameters, "grad"):
        items = [parameters]
    else:
        try:
            items = list(parameters)
        except TypeError:
            raise TypeError("parameters must be an object with a .grad attribute or an "
                            f"iterable of them, got {type(parameters).__name__}") from None
    grads = []
    for k, item in enumerate(items):
        if not hasattr(item, "grad"):
            raise TypeError(f"parameters[{k}] has no .grad attribute: "
                            f"{type(item).__name__}")
        grad = item.grad
        if grad is None:
            continue
        if not isinstance(grad, np.ndarray) or grad.dtype.kind != "f":
            raise TypeError(f"parameters[{k}].grad must be a floating NumPy array or None, "
                            f"got {type(grad).__name__}"
                            + (f" of dtype {grad.dtype}" if isinstance(grad, np.ndarray)
                               else ""))
        grads.append(grad)
    return grads


def _non_negative(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _vector_norm(values: np.ndarray, norm_type: float) -> float:
    """PyTorch's vector_norm of all the values, computed in float64: max |v| for inf,
    min |v| for -inf, the number of nonzeros for 0, else (sum |v|^p)^(1/p)."""
    with np.errstate(divide="ignore"):  # 0 ** p for p < 0 is inf, as in PyTorch
        return float(np.linalg.norm(np.asarray(values, dtype=np.float64).ravel(), norm_type))


def clip_grad_norm_(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale the gradients in place so that their joint norm is at most max_norm.

    The total norm is the norm of the vector of each gradient's norm (for p-norms, the norm
    of all gradient elements taken as one vector). With the coefficient
    max_norm / (total_norm + 1e-6), gradients are multiplied by min(coefficient, 1), as in
    PyTorch: unchanged when the norm is within max_norm, and a NaN total norm makes every
    gradient NaN.

    Parameters
    ----------
    parameters : object with `.grad`, or iterable of them
        None gradients are skipped, and so are empty ones.
    max_norm : float
        The largest norm allowed, >= 0.
    norm_type : float or 'inf'
        The p of the p-norm; inf for the largest absolute value.
    error_if_nonfinite : bool
        Raise RuntimeError if the total norm is NaN or infinite instead of scaling.

    Returns
    -------
    float
        The total norm of the gradients before clipping (0.0 without gradients), computed
        in float64 whatever the gradients' dtype.
    """
    grads = [g for g in _gradients(parameters) if g.size]
    max_norm = _non_negative(max_norm, "max_norm")
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"norm_type must be a real number or 'inf', got {norm_type!r}") from None
    if math.isnan(norm_type):
        raise ValueError("norm_type must not be NaN")
    if not grads:
        return 0.0
    total_norm = _vector_norm([_vector_norm(g, norm_type) for g in grads], norm_type)
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(f"The total norm of order {norm_type} of the gradients is "
                           f"{total_norm}, so they cannot be clipped; pass "
                           "error_if_nonfinite=False to scale them by it anyway")
    coefficient = max_norm / (total_norm + 1e-6)
    if coefficient < 1 or math.isnan(coefficient):
        with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in PyTorch
            for grad in grads:
                grad *= coefficient
    return total_norm


def clip_grad_value_(parameters: Parameters, clip_value: float) -> None:
    """Clip every gradient element to [-clip_value, clip_value], in place.

    Parameters
    ----------
    parameters : object with `.grad`, or iterable of them
        None gradients are skipped.
    clip_value : float
        The largest absolute value allowed, >= 0. NaN elements stay NaN.
    """
    grads = _gradients(parameters)
    clip_value = _non_negative(clip_value, "clip_value")
    for grad in grads:
        np.clip(grad, -clip_value, clip_value, out=grad)
