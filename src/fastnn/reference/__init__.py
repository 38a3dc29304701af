"""The NumPy reference: every fastnn kernel in plain NumPy, written to be read.

Same names, signatures and argument checks as the C path (`fastnn.conv2d` and
`fastnn.reference.conv2d` differ only in how they compute), so the tests and
anyone else can compare the two.
"""
from fastnn.reference.conv import (col2im, conv1d, conv1d_backward, conv2d, conv2d_backward,
                                   im2col)
from fastnn.reference.pool import (adaptive_avg_pool1d, adaptive_avg_pool1d_backward,
                                   adaptive_avg_pool2d, adaptive_avg_pool2d_backward,
                                   adaptive_max_pool1d, adaptive_max_pool1d_backward,
                                   adaptive_max_pool2d, adaptive_max_pool2d_backward, avg_pool1d,
                                   avg_pool1d_backward, avg_pool2d, avg_pool2d_backward,
                                   global_avg_pool2d, global_max_pool2d, max_pool1d,
                                   max_pool1d_backward, max_pool2d, max_pool2d_backward,
                                   spatial_pyramid_pool, spatial_pyramid_pool_backward)
from fastnn.reference.rnn import (gru_cell, lstm_cell, rnn_cell, rnn_sequence,
                                  rnn_sequence_backward)
from fastnn.pool import __all__ as _pool_all

__all__ = (["im2col", "col2im", "conv1d", "conv2d", "conv1d_backward", "conv2d_backward"]
           + _pool_all
           + ["lstm_cell", "gru_cell", "rnn_cell", "rnn_sequence", "rnn_sequence_backward"])
