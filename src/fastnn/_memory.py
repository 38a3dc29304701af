"""Outputs of the kernels: large ones come from the C layer's block cache.

A fresh NumPy array of tens of MB is new memory, which the operating system
maps and zeroes page by page as the kernel first writes it (14% of the 7x7
stride-2 stem's forward at batch 16, whose output is 51 MB). A program that
calls a kernel over and over (a training loop) frees one call's output before
the next call's; taken from the cache, the next output is memory already
mapped. Such an array is an ordinary, writable, aligned NumPy array whose
memory goes back to the cache (at most 256 MB of it is kept) when the last
array using it goes.
"""
from __future__ import annotations

import math
from typing import Tuple, Union

import numpy as np

from fastnn import _kernels

# Below this, np.empty: glibc keeps blocks of that size mapped by itself.
_CACHED_BYTES = 1 << 20


def empty(shape: Union[int, Tuple[int, ...]], dtype) -> np.ndarray:
    """Like ``np.empty(shape, dtype)``, from the block cache when it is large.

    Parameters
    ----------
    shape : int or tuple of int
        The array's shape.
    dtype : data-type
        Its dtype.

    Returns
    -------
    ndarray
        Uninitialized, C-contiguous.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: exact, and 10x faster than np.prod
    if nbytes < _CACHED_BYTES:
        return np.empty(shape, dtype)
    return np.frombuffer(_kernels.Block(nbytes), dtype=dtype).reshape(shape)
