"""Per-window normalisation shared by the neural forecasters: RevIN, or level scaling.

Series drift far from the training-part statistics by the forecast origin, so each
window's target (channel 0) is put on its own level and spread before the network sees
it, and forecasts are mapped back with those statistics. Further channels pass
unchanged: covariates are already scaled per series, calendar features are bounded, and
normalising them per window would erase what they say in absolute terms (that a promotion
is on, which month it is).

Two ways to take the statistics:

- ``window_stats``, RevIN (Kim et al. 2022): subtract the target's mean over the window,
  divide by its standard deviation. Forecasts move and stretch with the history.
- ``level_stats``, the default of N-BEATS and N-HiTS (``seqpipe.models.nbeats``): divide
  by the mean absolute target over the window, shift nothing. Forecasts stretch with the
  history (scale-equivariant) but do not move with it. It is meant for positive series
  scaled by ``prepare.scaler: meanabs`` (value / mean |value|), whose windows keep their
  sign and sit near 1. On ``standard``-scaled data (the default scaler), windows can be
  negative or straddle zero: it stays finite there (the mean is clamped at ``WINDOW_EPS``),
  but a window near zero is stretched by a large factor.

Both take optional ``weights`` ``(batch, lookback)``, the mask of a padded history
(``prepare.pad_history``): 1 on real points, 0 on padding. The statistics are then the
real points' alone, and ``normalize`` sets the padded target points to 0 afterwards, so
what a network reads of the target does not depend on what the padding held.
"""

from __future__ import annotations

import torch

# Keeps a flat window from dividing by zero; small against any scaled series' spread.
WINDOW_EPS = 1e-5


def _real_points(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights shaped ``(batch, lookback, 1)`` and their count per window ``(batch, 1, 1)``, at least 1."""
    weights = weights[:, :, None]
    return weights, weights.sum(dim=1, keepdim=True).clamp_min(1.0)


def window_stats(x: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Level and spread per window, shaped ``(batch, 1, channels)``: the target's, then 0 and 1 for the rest.

    With ``weights``, the mean and the (unbiased) standard deviation of the real points;
    a window of one real point has no spread and takes ``WINDOW_EPS``.
    """
    target = x[:, :, :1]
    if weights is None:
        level, spread = target.mean(dim=1, keepdim=True), target.std(dim=1, keepdim=True).clamp_min(WINDOW_EPS)
    else:
        weights, count = _real_points(weights)
        level = (weights * target).sum(dim=1, keepdim=True) / count
        variance = (weights * (target - level) ** 2).sum(dim=1, keepdim=True) / (count - 1).clamp_min(1.0)
        spread = variance.sqrt().clamp_min(WINDOW_EPS)
    others = x.shape[-1] - 1
    if others == 0:
        return level, spread
    return (torch.cat([level, level.new_zeros(len(x), 1, others)], dim=-1),
            torch.cat([spread, spread.new_ones(len(x), 1, others)], dim=-1))


def level_stats(x: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The shape of ``window_stats``'s pair: level 0, spread the target's mean absolute value (1 for the other channels).

    With ``weights``, the mean absolute value of the real points.
    """
    if weights is None:
        spread = x[:, :, :1].abs().mean(dim=1, keepdim=True)
    else:
        weights, count = _real_points(weights)
        spread = (weights * x[:, :, :1].abs()).sum(dim=1, keepdim=True) / count
    spread = spread.clamp_min(WINDOW_EPS)
    others = x.shape[-1] - 1
    return x.new_zeros(len(x), 1, x.shape[-1]), torch.cat([spread, spread.new_ones(len(x), 1, others)], dim=-1)


# Per-window statistics by the name a model's ``window_scaling`` gives ("none" takes none).
WINDOW_STATS = {"revin": window_stats, "level": level_stats}


def normalize(x: torch.Tensor, level: torch.Tensor, spread: torch.Tensor,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Windows on their own level and spread; with ``weights``, padded target points are 0 (the other channels are already)."""
    normalized = (x - level) / spread
    if weights is None:
        return normalized
    return torch.cat([normalized[:, :, :1] * weights[:, :, None], normalized[:, :, 1:]], dim=-1)


def to_window_units(y: torch.Tensor, level: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Map a target ``(batch, horizon)`` onto the window's normalised scale."""
    return (y - level[:, :, 0]) / spread[:, :, 0]


def to_target_units(y: torch.Tensor, level: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Map forecasts ``(batch, ..., horizon)`` in window units back to scaled units."""
    shape = (-1,) + (1,) * (y.dim() - 1)
    return y * spread[:, 0, 0].reshape(shape) + level[:, 0, 0].reshape(shape)
