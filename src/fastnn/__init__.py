"""fastnn: fast CPU deep-learning kernels (C + OpenMP) for NumPy arrays.

The functions here run the C path; `fastnn.reference` has the same functions
in plain NumPy, written for clarity, to compare against.
"""
__version__ = "0.1.0"

from fastnn._config import get_num_threads, set_num_threads, show_config
from fastnn.conv import col2im, conv1d, conv1d_backward, conv2d, conv2d_backward, im2col

__all__ = [
    "im2col", "col2im", "conv1d", "conv2d", "conv1d_backward", "conv2d_backward",
    "set_num_threads", "get_num_threads", "show_config",
]
