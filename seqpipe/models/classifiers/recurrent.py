"""Recurrent sequence classifiers (Elman RNN, LSTM, GRU), optionally bidirectional.

Sequences are packed to their real lengths, so the recurrence never steps through
padding. The head reads the final state of each direction (forward: after the last real
step; backward: after reading back to the first) beside the mean of the outputs over
the real steps, which carries evidence from the whole utterance, not only its end.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqpipe.hyperparams import RecurrentClassifierParams
from seqpipe.models.classifiers.base import SequenceClassifier, lengths_of, masked_mean, split_mask
from seqpipe.models.classifiers.shape import ClassifierShape


class _RecurrentClassifier(SequenceClassifier):
    Params = RecurrentClassifierParams
    cell: type[nn.Module]

    def __init__(self, shape: ClassifierShape, params: RecurrentClassifierParams) -> None:
        super().__init__(shape, params)
        self.directions = 2 if params.bidirectional else 1
        self.encoder = self.cell(
            input_size=shape.channels,
            hidden_size=params.hidden_size,
            num_layers=params.num_layers,
            dropout=params.dropout if params.num_layers > 1 else 0.0,
            bidirectional=params.bidirectional,
            batch_first=True,
        )
        width = params.hidden_size * self.directions
        self.dropout = nn.Dropout(params.dropout)
        self.head = nn.Linear(2 * width, shape.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = split_mask(x)
        # pack_padded_sequence wants the lengths on the CPU, wherever the batch is.
        packed = pack_padded_sequence(features, lengths_of(mask).cpu(), batch_first=True, enforce_sorted=False)
        outputs, state = self.encoder(packed)
        final = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (hidden, cell)
        # (layers * directions, batch, hidden): the top layer's directions, side by side.
        last = final[-self.directions:].transpose(0, 1).flatten(1)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
        pooled = torch.cat([last, masked_mean(outputs, mask)], dim=1)
        return self.head(self.dropout(pooled))


class RNNClassifier(_RecurrentClassifier):
    arch = "rnn_classifier"
    cell = nn.RNN


class LSTMClassifier(_RecurrentClassifier):
    arch = "lstm_classifier"
    cell = nn.LSTM


class GRUClassifier(_RecurrentClassifier):
    arch = "gru_classifier"
    cell = nn.GRU
