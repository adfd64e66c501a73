"""Conditional variational autoencoder forecaster (Sohn, Lee and Yan 2015).

A GRU encodes the history into a context; during training a posterior network reads
the context and the true future and proposes a latent, and the decoder maps context
and latent to a Gaussian over the future. Training maximises the ELBO (Gaussian
log-likelihood minus ``beta`` times the KL to a standard normal prior). Forecasting
draws latents from the prior: the samples are the predictive distribution and the
point forecast is the decoder's mean at the prior mean, which is deterministic.
"""

from __future__ import annotations

import torch
from torch import nn

from seqpipe.hyperparams import CVAEParams
from seqpipe.models.base import Forecaster, normalized_windows
from seqpipe.models.revin import to_target_units, to_window_units

# Bounds on the decoder's log-variance in window units: below, the likelihood can blow
# up on a near-perfect fit; above, the decoder could explain everything as noise.
MIN_LOG_VAR, MAX_LOG_VAR = -10.0, 5.0


class CVAEForecaster(Forecaster):
    arch = "cvae"
    Params = CVAEParams

    def __init__(self, shape, params: CVAEParams) -> None:
        super().__init__(shape, params)
        hidden, latent, horizon = params.hidden_size, params.latent_size, shape.horizon
        self.encoder = nn.GRU(shape.channels, hidden, batch_first=True)
        self.posterior = nn.Sequential(nn.Linear(hidden + horizon, hidden), nn.GELU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(hidden + latent, hidden), nn.GELU(), nn.Linear(hidden, 2 * horizon))

    def context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        normalised, level, spread = normalized_windows(x, self.shape)
        encoded, _ = self.encoder(normalised)
        return encoded[:, -1], level, spread

    def decode(self, context: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the future in window units, for latents ``(..., latent)``."""
        context = context.view(context.shape[0], *([1] * (z.dim() - 2)), -1).expand(*z.shape[:-1], -1)
        mean, log_var = self.decoder(torch.cat([context, z], dim=-1)).chunk(2, dim=-1)
        return mean, log_var.clamp(MIN_LOG_VAR, MAX_LOG_VAR)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per forecast step, in window units."""
        context, level, spread = self.context(x)
        future = to_window_units(y, level, spread)
        z_mean, z_log_var = self.posterior(torch.cat([context, future], dim=-1)).chunk(2, dim=-1)
        # Validation scores the posterior mean, so early stopping is not steered by noise.
        z = z_mean + torch.randn_like(z_mean) * (0.5 * z_log_var).exp() if self.training else z_mean
        mean, log_var = self.decode(context, z)
        nll = 0.5 * (log_var + (future - mean) ** 2 / log_var.exp()).sum(-1)
        kl = 0.5 * (z_mean**2 + z_log_var.exp() - 1.0 - z_log_var).sum(-1)
        return (nll + self.params.beta * kl).mean() / self.shape.horizon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context, level, spread = self.context(x)
        mean, _ = self.decode(context, context.new_zeros(len(x), self.params.latent_size))
        return to_target_units(mean, level, spread)

    def sample(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Forecast samples ``(batch, num_samples, horizon)``: prior latents plus observation noise."""
        context, level, spread = self.context(x)
        z = context.new_empty(len(x), num_samples, self.params.latent_size).normal_()
        mean, log_var = self.decode(context, z)
        return to_target_units(mean + torch.randn_like(mean) * (0.5 * log_var).exp(), level, spread)
