"""fastnn: fast CPU deep-learning kernels (C + OpenMP) for NumPy arrays.

The functions here run the C path; `fastnn.reference` has the same functions
in plain NumPy, written for clarity, to compare against. `fastnn.nn` has the
layers (LSTM, GRU, RNN, their cells, DilatedRNN), `fastnn.utils` gradient
clipping.
"""
__version__ = "0.1.0"


def _load_kernels() -> None:
    """Import the extension with its OpenBLAS told, as it loads, to start no threads.

    OpenBLAS sizes its thread pool when the library loads, and idle pool threads
    spin on the cores OpenMP is using; fastnn only ever calls it single-threaded
    from inside its own OpenMP regions. NumPy is imported first so that its own
    BLAS sees the user's environment, which is restored right after.
    """
    import os

    import numpy  # noqa: F401

    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        from fastnn import _kernels  # noqa: F401
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


_load_kernels()

from fastnn._config import get_num_threads, set_num_threads, show_config
from fastnn.conv import col2im, conv1d, conv1d_backward, conv2d, conv2d_backward, im2col
from fastnn.pool import (adaptive_avg_pool1d, adaptive_avg_pool1d_backward, adaptive_avg_pool2d,
                         adaptive_avg_pool2d_backward, adaptive_max_pool1d,
                         adaptive_max_pool1d_backward, adaptive_max_pool2d,
                         adaptive_max_pool2d_backward, avg_pool1d, avg_pool1d_backward,
                         avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_max_pool2d,
                         max_pool1d, max_pool1d_backward, max_pool2d, max_pool2d_backward,
                         spatial_pyramid_pool, spatial_pyramid_pool_backward)
from fastnn.pool import __all__ as _pool_all
from fastnn.rnn import gru_cell, lstm_cell, rnn_cell
from fastnn import nn, utils  # noqa: E402  (the layers and fastnn.utils.clip_grad_norm_)

__all__ = [
    "im2col", "col2im", "conv1d", "conv2d", "conv1d_backward", "conv2d_backward",
    "lstm_cell", "gru_cell", "rnn_cell", "set_num_threads", "get_num_threads", "show_config",
] + _pool_all
