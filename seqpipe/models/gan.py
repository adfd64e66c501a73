"""Conditional GAN forecaster (in the spirit of ForGAN, Koochali et al. 2019).

The generator is recurrent: a GRU reads the history and a dense head maps its state
plus a noise vector to the whole future. The discriminator judges history and future
together. Known stabilisers: spectral normalisation of the discriminator (Miyato et al.
2018), one-sided label smoothing (Salimans et al. 2016) and a supervised L2 term on the
generator (as in conditional GAN forecasters, e.g. Wu et al. 2020), which also anchors
the samples' centre. Samples over noise are the predictive distribution; the point
forecast is their mean over a fixed set of noise draws, so it is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from seqpipe.models.base import Forecaster, OptimizerStep
from seqpipe.models.revin import to_target_units, to_window_units, window_stats

# Seed of the point forecast's fixed noise draws; any value, but never the global RNG's.
POINT_NOISE_SEED = 0
# Standard slope for the discriminator's leaky ReLUs (Radford et al. 2016).
LEAKY_SLOPE = 0.2
ADAM_BETA2 = 0.999


@dataclass(frozen=True)
class GANParams:
    hidden_size: int = 64
    noise_size: int = 8
    discriminator_size: int = 64
    adversarial_weight: float = 0.1
    supervised_weight: float = 1.0
    # One-sided label smoothing: the target for real pairs.
    real_label: float = 0.9
    discriminator_lr_scale: float = 1.0
    adam_beta1: float = 0.5
    point_samples: int = 32


class GANForecaster(Forecaster):
    arch = "gan"
    Params = GANParams

    def __init__(self, shape, params: GANParams) -> None:
        super().__init__(shape, params)
        hidden, width = params.hidden_size, params.discriminator_size
        self.encoder = nn.GRU(shape.channels, hidden, batch_first=True)
        self.generator = nn.Sequential(
            nn.Linear(hidden + params.noise_size, hidden), nn.GELU(), nn.Linear(hidden, shape.horizon)
        )
        self.discriminator = nn.Sequential(
            spectral_norm(nn.Linear(shape.lookback + shape.horizon, width)), nn.LeakyReLU(LEAKY_SLOPE),
            spectral_norm(nn.Linear(width, width)), nn.LeakyReLU(LEAKY_SLOPE),
            spectral_norm(nn.Linear(width, 1)),
        )
        noise = torch.randn(params.point_samples, params.noise_size,
                            generator=torch.Generator().manual_seed(POINT_NOISE_SEED))
        self.register_buffer("point_noise", noise, persistent=False)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.generator.parameters()]

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        betas = (self.params.adam_beta1, ADAM_BETA2)
        return [
            torch.optim.AdamW(self.generator_parameters(), lr=learning_rate, weight_decay=weight_decay, betas=betas),
            torch.optim.AdamW(self.discriminator.parameters(), lr=learning_rate * self.params.discriminator_lr_scale,
                              weight_decay=weight_decay, betas=betas),
        ]

    def context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        level, spread = window_stats(x)
        normalised = (x - level) / spread
        encoded, _ = self.encoder(normalised)
        return encoded[:, -1], normalised[:, :, 0], level, spread

    def generate(self, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Futures in window units for noise ``(batch, samples, noise)``: ``(batch, samples, horizon)``."""
        context = context[:, None].expand(-1, noise.shape[1], -1)
        return self.generator(torch.cat([context, noise], dim=-1))

    def judge(self, history: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """Discriminator logits for (history, future) pairs in window units."""
        # In fp32 even under bf16 autocast: spectral norm's power iteration mixes an
        # autocast matrix-vector product with fp32 singular vectors, and it is cheap.
        with torch.autocast(device_type=history.device.type, enabled=False):
            return self.discriminator(torch.cat([history, future], dim=1).float())

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer], step: OptimizerStep
    ) -> torch.Tensor:
        generator_optimizer, discriminator_optimizer = optimizers
        context, history, level, spread = self.context(x)
        real = to_window_units(y, level, spread)
        fake = self.generate(context, torch.randn(len(x), 1, self.params.noise_size, device=x.device))[:, 0]

        # Real and fake in one pass: spectral norm's power iteration then runs once per step.
        scores = self.judge(torch.cat([history, history]), torch.cat([real, fake.detach()]))
        targets = torch.cat([torch.full_like(scores[: len(x)], self.params.real_label),
                             torch.zeros_like(scores[len(x):])])
        step(nn.functional.binary_cross_entropy_with_logits(scores, targets), discriminator_optimizer)

        fooled = self.judge(history, fake)
        adversarial = nn.functional.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        supervised = nn.functional.mse_loss(fake, real)
        step(self.params.adversarial_weight * adversarial + self.params.supervised_weight * supervised,
             generator_optimizer)
        # Logged as the training loss: comparable across epochs, unlike the adversarial game.
        return supervised

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context, _, level, spread = self.context(x)
        noise = self.point_noise[None].expand(len(x), -1, -1)
        return to_target_units(self.generate(context, noise).mean(1), level, spread)

    def sample(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        context, _, level, spread = self.context(x)
        noise = torch.randn(len(x), num_samples, self.params.noise_size, device=x.device)
        return to_target_units(self.generate(context, noise), level, spread)
