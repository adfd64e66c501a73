"""Point-forecast training losses, computed in the scaled units the network works in.

``mse`` and ``mae`` are the usual errors. ``mape`` and ``smape`` are the competitions'
percentage errors: they equal the reported metrics only when the prepared scaling keeps
ratios (``prepare.scaler: meanabs`` divides each series by its training mean absolute
value and shifts nothing); the config refuses them with another scaler. ``mase`` divides
each window's mean absolute error by the mean absolute seasonal difference of the same
window's history (lag ``season``, or 1 when the lookback holds no full season), so it
is free of any per-series shift and scale and uses no point after the forecast origin.
On a padded history (``prepare.pad_history``) that scale is taken over its real points
alone, and "the lookback" is the real part of it.
"""

from __future__ import annotations

import torch
from torch import nn

POINT_LOSSES = ("mse", "mae", "mape", "smape", "mase")
# Below this a target (or an in-sample error) counts as zero: such points carry no
# percentage error, and such windows no seasonal-naive scale.
ZERO = 1e-8


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is not zero, else 0 (N-BEATS's divide_no_nan)."""
    usable = denominator.abs() > ZERO
    return torch.where(usable, numerator / torch.where(usable, denominator, torch.ones_like(denominator)),
                       torch.zeros_like(numerator))


def _real_pair_mean(history: torch.Tensor, weights: torch.Tensor, lag: int) -> torch.Tensor:
    """Mean absolute difference at ``lag`` over the pairs of real points of each history; 0 where there are none."""
    pairs = weights[:, lag:] * weights[:, :-lag]
    total = (pairs * (history[:, lag:] - history[:, :-lag]).abs()).sum(dim=1, keepdim=True)
    return total / pairs.sum(dim=1, keepdim=True).clamp_min(1.0)


def seasonal_naive_scale(history: torch.Tensor, season: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute seasonal difference of each history ``(batch, lookback)``: ``(batch, 1)``.

    ``weights`` (1 real, 0 padded, the same shape) restrict it to the real points, at lag 1
    for a window whose real points hold no full season.
    """
    lag = season if history.shape[1] > season else 1
    if weights is None:
        return (history[:, lag:] - history[:, :-lag]).abs().mean(dim=1, keepdim=True)
    real = weights.sum(dim=1, keepdim=True)
    return torch.where(real > season, _real_pair_mean(history, weights, lag), _real_pair_mean(history, weights, 1))


def point_loss(name: str, forecast: torch.Tensor, target: torch.Tensor, history: torch.Tensor,
               season: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The loss ``name`` of forecasts ``(batch, horizon)`` against targets.

    ``history`` is the windows' target channel; ``weights`` their mask when padded (only ``mase`` reads the history).
    """
    if name == "mse":
        return nn.functional.mse_loss(forecast, target)
    if name == "mae":
        return nn.functional.l1_loss(forecast, target)
    error = forecast - target
    if name == "mape":
        return _safe_ratio(error.abs(), target).mean()
    if name == "smape":
        return (2 * _safe_ratio(error.abs(), forecast.abs() + target.abs())).mean()
    if name == "mase":
        return _safe_ratio(error.abs(), seasonal_naive_scale(history, season, weights)).mean()
    raise ValueError(f"unknown point loss '{name}'; known: {POINT_LOSSES}")
