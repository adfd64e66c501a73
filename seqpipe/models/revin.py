"""Per-window normalisation (RevIN, Kim et al. 2022) shared by the neural forecasters.

Series drift far from the training-part statistics by the forecast origin, so each
window is put on its own level and spread before the network sees it, and forecasts
are mapped back with the target channel's (channel 0) statistics.
"""

from __future__ import annotations

import torch

# Keeps a flat window from dividing by zero; small against any scaled series' spread.
WINDOW_EPS = 1e-5


def window_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Level and spread of each window and channel, shaped ``(batch, 1, channels)``."""
    return x.mean(dim=1, keepdim=True), x.std(dim=1, keepdim=True).clamp_min(WINDOW_EPS)


def to_window_units(y: torch.Tensor, level: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Map a target ``(batch, horizon)`` onto the window's normalised scale."""
    return (y - level[:, :, 0]) / spread[:, :, 0]


def to_target_units(y: torch.Tensor, level: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Map forecasts ``(batch, ..., horizon)`` in window units back to scaled units."""
    shape = (-1,) + (1,) * (y.dim() - 1)
    return y * spread[:, 0, 0].reshape(shape) + level[:, 0, 0].reshape(shape)
