"""Transformer encoder sequence classifier (Vaswani et al. 2017).

Each step's features are projected to ``d_model`` and given a sinusoidal position,
computed for whatever length arrives, so a sequence longer than any seen in training
still gets positions. Attention ignores padded keys; the classification reads the
mean of the encoded real steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqpipe.hyperparams import TransformerClassifierParams
from seqpipe.models.classifiers.base import SequenceClassifier, masked_mean, split_mask
from seqpipe.models.classifiers.shape import ClassifierShape

# The longest wavelength of the sinusoids is 2 pi times this many steps (the paper's value).
POSITION_BASE = 10_000.0


def sinusoidal_positions(length: int, width: int, device: torch.device) -> torch.Tensor:
    """``(length, width)`` sines and cosines of geometrically spaced frequencies, per step."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32, device=device)
                          * (-math.log(POSITION_BASE) / width))
    table = torch.zeros(length, width, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : width // 2]
    return table


class TransformerClassifier(SequenceClassifier):
    arch = "transformer_classifier"
    Params = TransformerClassifierParams

    def __init__(self, shape: ClassifierShape, params: TransformerClassifierParams) -> None:
        super().__init__(shape, params)
        if params.d_model % params.num_heads:
            raise ValueError(f"transformer_classifier: d_model ({params.d_model}) must be a multiple of "
                             f"num_heads ({params.num_heads})")
        self.embed = nn.Linear(shape.channels, params.d_model)
        layer = nn.TransformerEncoderLayer(
            params.d_model, params.num_heads, params.feedforward, params.dropout, batch_first=True, norm_first=True
        )
        # No nested tensors: they would take a different kernel path in eval than in training.
        self.encoder = nn.TransformerEncoder(layer, params.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(params.d_model)
        self.dropout = nn.Dropout(params.dropout)
        self.head = nn.Linear(params.d_model, shape.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = split_mask(x)
        tokens = self.embed(features) + sinusoidal_positions(x.shape[1], self.params.d_model, x.device)
        encoded = self.encoder(self.dropout(tokens), src_key_padding_mask=mask <= 0)
        return self.head(masked_mean(self.norm(encoded), mask))
