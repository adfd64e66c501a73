"""Transformer encoder forecaster with patched history (PatchTST, Nie et al. 2023).

The normalised history is cut into overlapping patches; each patch becomes one token,
so attention runs over a few dozen tokens instead of every time step and each token
carries local shape. A Transformer encoder mixes the tokens and a flatten head maps
all of them to the horizon.
"""

from __future__ import annotations

import torch
from torch import nn

from seqpipe.hyperparams import TransformerParams
from seqpipe.models.base import WindowNormalizedForecaster


class TransformerForecaster(WindowNormalizedForecaster):
    arch = "transformer"
    Params = TransformerParams

    def __init__(self, shape, params: TransformerParams) -> None:
        super().__init__(shape, params)
        if params.patch_len < 1 or params.stride < 1:
            raise ValueError("transformer: patch_len and stride must be >= 1")
        # One conf serves datasets with short lookbacks too (yearly data: 4 steps), so a
        # patch never outgrows the history and never skips steps.
        self.patch_len = min(params.patch_len, shape.lookback)
        self.stride = min(params.stride, self.patch_len)
        # PatchTST pads the end by one stride so the last steps start a patch of their own.
        self.num_patches = (shape.lookback + self.stride - self.patch_len) // self.stride + 1
        self.embed = nn.Linear(self.patch_len * shape.channels, params.d_model)
        self.position = nn.Parameter(torch.zeros(1, self.num_patches, params.d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            params.d_model, params.num_heads, params.feedforward, params.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, params.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(params.d_model)
        self.head = nn.Linear(self.num_patches * params.d_model, shape.horizon)
        self.dropout = nn.Dropout(params.dropout)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, lookback, channels)`` to ``(batch, patches, patch_len * channels)``."""
        padded = torch.cat([x, x[:, -1:].expand(-1, self.stride, -1)], dim=1)
        windows = padded.unfold(1, self.patch_len, self.stride)
        return windows.flatten(2)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.dropout(self.embed(self.patches(x)) + self.position)
        encoded = self.norm(self.encoder(tokens))
        return self.head(encoded.flatten(1))
