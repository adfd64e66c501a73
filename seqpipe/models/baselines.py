"""Baselines every neural model is judged against; they have no trainable parameters."""

from __future__ import annotations

import torch

from seqpipe.models.base import Forecaster


class Naive(Forecaster):
    """Repeat the last observed value."""

    arch = "naive"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1, 0:1].expand(-1, self.shape.horizon)


class SeasonalNaive(Forecaster):
    """Repeat the last observed season."""

    arch = "seasonal_naive"

    def __init__(self, shape, params) -> None:
        super().__init__(shape, params)
        if shape.lookback < shape.season:
            raise ValueError(f"seasonal_naive needs lookback >= season ({shape.lookback} < {shape.season})")
        steps = torch.arange(shape.horizon) % shape.season
        self.register_buffer("source_index", shape.lookback - shape.season + steps, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.source_index, 0]
