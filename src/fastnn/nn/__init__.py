"""Layers with parameters, forward and backward, under PyTorch's names (`fastnn.nn`)."""
from fastnn.nn.module import Module, ModuleList, Parameter
from fastnn.nn.rnn import GRU, LSTM, RNN, DilatedRNN, GRUCell, LSTMCell, RNNCell

__all__ = ["Module", "ModuleList", "Parameter", "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell",
           "RNNCell", "DilatedRNN"]
