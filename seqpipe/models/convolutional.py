"""Temporal convolutional network (Bai, Kolter and Koltun 2018).

Residual blocks of two dilated causal convolutions (weight-normalised, ReLU, dropout);
dilations double per block, so the receptive field grows exponentially with depth.
A linear head maps the last time step's features to the whole horizon.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from seqpipe.hyperparams import TCNParams
from seqpipe.models.base import WindowNormalizedForecaster


class _CausalConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        # Padding only on the left: an output never sees a later input.
        self.left_pad = (kernel_size - 1) * dilation
        self.conv = weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pad(x, (self.left_pad, 0)))


class _TemporalBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _CausalConv(in_channels, out_channels, kernel_size, dilation), nn.ReLU(), nn.Dropout(dropout),
            _CausalConv(out_channels, out_channels, kernel_size, dilation), nn.ReLU(), nn.Dropout(dropout),
        )
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class TCNForecaster(WindowNormalizedForecaster):
    arch = "tcn"
    Params = TCNParams

    def __init__(self, shape, params: TCNParams) -> None:
        super().__init__(shape, params)
        widths = [shape.channels] + [params.channels] * params.num_blocks
        self.blocks = nn.Sequential(*(
            _TemporalBlock(widths[i], widths[i + 1], params.kernel_size, 2**i, params.dropout)
            for i in range(params.num_blocks)
        ))
        self.head = nn.Linear(params.channels, shape.horizon)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(x.transpose(1, 2))
        return self.head(features[:, :, -1])
