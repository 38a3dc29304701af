"""The NumPy reference: every fastnn kernel in plain NumPy, written to be read.

Same names, signatures and argument checks as the C path (`fastnn.conv2d` and
`fastnn.reference.conv2d` differ only in how they compute), so the tests and
anyone else can compare the two.
"""
from fastnn.reference.conv import (col2im, conv1d, conv1d_backward, conv2d, conv2d_backward,
                                   im2col)

__all__ = ["im2col", "col2im", "conv1d", "conv2d", "conv1d_backward", "conv2d_backward"]
