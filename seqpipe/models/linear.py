"""DLinear (Zeng et al. 2023): series decomposition plus one linear map per component.

A moving average splits the history into trend and remainder; each component gets a
linear map from lookback to horizon and the forecast is their sum. The target is
channel 0; further channels (covariates, calendar features) add one more linear map
from all their history points to the horizon, so their effect on the target is learned
rather than forecast channel by channel as the paper does for multivariate series.
"""

from __future__ import annotations

import torch
from torch import nn

from seqpipe.hyperparams import DLinearParams
from seqpipe.models.base import WindowNormalizedForecaster


class DLinearForecaster(WindowNormalizedForecaster):
    arch = "dlinear"
    Params = DLinearParams

    def __init__(self, shape, params: DLinearParams) -> None:
        super().__init__(shape, params)
        if params.moving_average < 1 or params.moving_average % 2 == 0:
            raise ValueError(f"dlinear: moving_average must be a positive odd number, got {params.moving_average}")
        self.trend = nn.Linear(shape.lookback, shape.horizon)
        self.remainder = nn.Linear(shape.lookback, shape.horizon)
        others = shape.channels - 1
        self.exogenous = nn.Linear(shape.lookback * others, shape.horizon) if others else None

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trend and remainder of ``(batch, channels, lookback)``."""
        half = (self.params.moving_average - 1) // 2
        # Repeating the edge values keeps the trend defined at both ends of the window.
        padded = torch.cat([x[..., :1].expand(-1, -1, half), x, x[..., -1:].expand(-1, -1, half)], dim=-1)
        trend = nn.functional.avg_pool1d(padded, self.params.moving_average, stride=1)
        return trend, x - trend

    @property
    def window_scaling(self) -> str:
        return "revin" if self.params.revin else "none"

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        trend, remainder = self.decompose(x[:, :, :1].transpose(1, 2))
        forecast = (self.trend(trend) + self.remainder(remainder))[:, 0]
        if self.exogenous is not None:
            forecast = forecast + self.exogenous(x[:, :, 1:].flatten(1))
        return forecast
