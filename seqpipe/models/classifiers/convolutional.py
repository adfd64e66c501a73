"""Temporal convolutional sequence classifier (after Bai, Kolter and Koltun 2018).

Residual blocks of two dilated, weight-normalised convolutions; dilations double per
block, so the receptive field grows exponentially with depth. A whole sequence is seen
at once, so the convolutions are centred rather than causal. Padding never leaks into
the features: padded steps are zeroed before every convolution, which then sees exactly
the zeros it would see past the end of an unpadded sequence, and the pooling (mean and
max over time) reads real steps only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from seqpipe.hyperparams import TCNClassifierParams
from seqpipe.models.classifiers.base import SequenceClassifier, masked_max, masked_mean
from seqpipe.models.classifiers.shape import ClassifierShape


class _CentredConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        reach = (kernel_size - 1) * dilation
        # An even kernel cannot centre: its extra step goes to the right.
        self.pad = (reach // 2, reach - reach // 2)
        self.conv = weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pad(x * mask, self.pad))


class _MaskedBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.first = _CentredConv(in_channels, out_channels, kernel_size, dilation)
        self.second = _CentredConv(out_channels, out_channels, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(batch, channels, length)``, ``mask`` ``(batch, 1, length)``."""
        hidden = self.dropout(torch.relu(self.first(x, mask)))
        hidden = self.dropout(torch.relu(self.second(hidden, mask)))
        return torch.relu(hidden + self.skip(x)) * mask


class TCNClassifier(SequenceClassifier):
    arch = "tcn_classifier"
    Params = TCNClassifierParams

    def __init__(self, shape: ClassifierShape, params: TCNClassifierParams) -> None:
        super().__init__(shape, params)
        # The mask rides along as an input channel: it tells a kernel at the edge which zeros are padding.
        widths = [shape.inputs] + [params.channels] * params.num_blocks
        self.blocks = nn.ModuleList(
            _MaskedBlock(widths[i], widths[i + 1], params.kernel_size, 2**i, params.dropout)
            for i in range(params.num_blocks)
        )
        self.head = nn.Linear(2 * params.channels, shape.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x[..., -1]
        hidden, gate = x.transpose(1, 2), mask.unsqueeze(1)
        for block in self.blocks:
            hidden = block(hidden, gate)
        steps = hidden.transpose(1, 2)
        return self.head(torch.cat([masked_mean(steps, mask), masked_max(steps, mask)], dim=1))
