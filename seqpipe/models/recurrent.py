"""Recurrent forecasters (Elman RNN, LSTM, GRU): one global model across all series.

The encoder reads the history; a linear head maps its last hidden state to the whole
horizon at once (direct multi-output), which avoids compounding one-step errors.
"""

from __future__ import annotations

import torch
from torch import nn

from seqpipe.hyperparams import RecurrentParams
from seqpipe.models.base import WindowNormalizedForecaster


class _Recurrent(WindowNormalizedForecaster):
    Params = RecurrentParams
    cell: type[nn.Module]

    def __init__(self, shape, params: RecurrentParams) -> None:
        super().__init__(shape, params)
        self.encoder = self.cell(
            input_size=shape.channels,
            hidden_size=params.hidden_size,
            num_layers=params.num_layers,
            dropout=params.dropout if params.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(params.hidden_size, shape.horizon)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        encoded, _ = self.encoder(x)
        return self.head(encoded[:, -1])


class RNNForecaster(_Recurrent):
    arch = "rnn"
    cell = nn.RNN


class LSTMForecaster(_Recurrent):
    arch = "lstm"
    cell = nn.LSTM


class GRUForecaster(_Recurrent):
    arch = "gru"
    cell = nn.GRU
