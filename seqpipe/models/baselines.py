"""Baselines every neural model is judged against; they have no trainable parameters."""

from __future__ import annotations

import torch

from seqpipe.models.base import Forecaster, history_weights


class Naive(Forecaster):
    """Repeat the last observed value (always a real point: padding precedes a series, never ends it)."""

    arch = "naive"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1, 0:1].expand(-1, self.shape.horizon)


class SeasonalNaive(Forecaster):
    """Repeat the last observed season; on a padded history with less than a season of real points, the last value."""

    arch = "seasonal_naive"

    def __init__(self, shape, params) -> None:
        super().__init__(shape, params)
        if shape.lookback < shape.season:
            raise ValueError(f"seasonal_naive needs lookback >= season ({shape.lookback} < {shape.season})")
        steps = torch.arange(shape.horizon) % shape.season
        self.register_buffer("source_index", shape.lookback - shape.season + steps, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seasonal = x[:, self.source_index, 0]
        weights = history_weights(x, self.shape)
        if weights is None:
            return seasonal
        short = weights.sum(dim=1, keepdim=True) < self.shape.season
        return torch.where(short, x[:, -1:, 0].expand_as(seasonal), seasonal)
