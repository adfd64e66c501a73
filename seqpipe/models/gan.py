"""Conditional GAN forecaster (in the spirit of ForGAN, Koochali et al. 2019).

The generator is recurrent: a GRU reads the history and a dense head maps its state
plus a noise vector to the whole future. The discriminator judges history and future
together. Known stabilisers: spectral normalisation of the discriminator (Miyato et al.
2018) and one-sided label smoothing (Salimans et al. 2016).

The generator's supervised term is the energy score of several samples per history
(Gneiting and Raftery 2007; as in engression, Shen and Meinshausen 2023), not an L2
error per sample: L2 on each sample pulls every sample onto the conditional mean and
collapses the intervals, while the energy score is a proper scoring rule, lowest for
the true predictive distribution, so it anchors the samples' centre and keeps their
spread. Samples over noise are the predictive distribution; the point forecast is their
mean over a fixed set of noise draws, so it is deterministic.

Unconditioned use: a share of each batch trains with the history replaced by a learned
null context (and hidden from the discriminator), as in classifier-free guidance (Ho and
Salimans 2022). The same generator then draws futures from no history at all, which
``synthesize`` chains into whole synthetic series.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from seqpipe.hyperparams import GANParams
from seqpipe.models.base import Forecaster, OptimizerStep, normalized_windows
from seqpipe.models.revin import to_target_units, to_window_units, window_stats

# Seed of the point forecast's fixed noise draws; any value, but never the global RNG's.
POINT_NOISE_SEED = 0
# Standard slope for the discriminator's leaky ReLUs (Radford et al. 2016).
LEAKY_SLOPE = 0.2
ADAM_BETA2 = 0.999
# Inside the energy score's norms: the gradient of a norm at zero is undefined.
NORM_EPS = 1e-8


def energy_score(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean energy score of samples ``(batch, k, horizon)`` against targets ``(batch, horizon)``."""
    def norm(difference: torch.Tensor) -> torch.Tensor:
        return (difference.pow(2).sum(-1) + NORM_EPS).sqrt()

    k = samples.shape[1]
    accuracy = norm(samples - target[:, None]).mean(1)
    pairs = norm(samples[:, :, None] - samples[:, None]).sum((1, 2)) - k * NORM_EPS**0.5
    return (accuracy - pairs / (2 * k * (k - 1))).mean()


class GANForecaster(Forecaster):
    arch = "gan"
    Params = GANParams

    def __init__(self, shape, params: GANParams) -> None:
        super().__init__(shape, params)
        if params.energy_samples < 2 or not 0 <= params.unconditional_share < 1:
            raise ValueError("gan: needs energy_samples >= 2 and 0 <= unconditional_share < 1")
        hidden, width = params.hidden_size, params.discriminator_size
        self.encoder = nn.GRU(shape.channels, hidden, batch_first=True)
        self.null_context = nn.Parameter(torch.zeros(hidden))
        self.generator = nn.Sequential(
            nn.Linear(hidden + params.noise_size, hidden), nn.GELU(), nn.Linear(hidden, shape.horizon)
        )
        # The last input says whether the history is shown, so a hidden history (zeros)
        # is never confused with a flat one (also zeros once normalised).
        self.discriminator = nn.Sequential(
            spectral_norm(nn.Linear(shape.lookback + shape.horizon + 1, width)), nn.LeakyReLU(LEAKY_SLOPE),
            spectral_norm(nn.Linear(width, width)), nn.LeakyReLU(LEAKY_SLOPE),
            spectral_norm(nn.Linear(width, 1)),
        )
        noise = torch.randn(params.point_samples, params.noise_size,
                            generator=torch.Generator().manual_seed(POINT_NOISE_SEED))
        self.register_buffer("point_noise", noise, persistent=False)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), self.null_context, *self.generator.parameters()]

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        betas = (self.params.adam_beta1, ADAM_BETA2)
        return [
            torch.optim.AdamW(self.generator_parameters(), lr=learning_rate, weight_decay=weight_decay, betas=betas),
            torch.optim.AdamW(self.discriminator.parameters(), lr=learning_rate * self.params.discriminator_lr_scale,
                              weight_decay=weight_decay, betas=betas),
        ]

    def context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        normalised, level, spread = normalized_windows(x, self.shape)
        encoded, _ = self.encoder(normalised)
        return encoded[:, -1], normalised[:, :, 0], level, spread

    def generate(self, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Futures in window units for noise ``(batch, samples, noise)``: ``(batch, samples, horizon)``."""
        context = context[:, None].expand(-1, noise.shape[1], -1)
        return self.generator(torch.cat([context, noise], dim=-1))

    def judge(self, history: torch.Tensor, future: torch.Tensor, shown: torch.Tensor) -> torch.Tensor:
        """Discriminator logits for (history, future) pairs in window units; ``shown`` is 1 or 0 per row."""
        # In fp32 even under bf16 autocast: spectral norm's power iteration mixes an
        # autocast matrix-vector product with fp32 singular vectors, and it is cheap.
        with torch.autocast(device_type=history.device.type, enabled=False):
            return self.discriminator(torch.cat([history * shown, future, shown], dim=1).float())

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer], step: OptimizerStep
    ) -> torch.Tensor:
        generator_optimizer, discriminator_optimizer = optimizers
        context, history, level, spread = self.context(x)
        shown = (torch.rand(len(x), 1, device=x.device) >= self.params.unconditional_share).to(context.dtype)
        context = shown * context + (1 - shown) * self.null_context
        real = to_window_units(y, level, spread)
        noise = torch.randn(len(x), self.params.energy_samples, self.params.noise_size, device=x.device)
        samples = self.generate(context, noise)
        fake = samples[:, 0]

        # Real and fake in one pass: spectral norm's power iteration then runs once per step.
        scores = self.judge(torch.cat([history, history]), torch.cat([real, fake.detach()]), torch.cat([shown, shown]))
        targets = torch.cat([torch.full_like(scores[: len(x)], self.params.real_label),
                             torch.zeros_like(scores[len(x):])])
        step(nn.functional.binary_cross_entropy_with_logits(scores, targets), discriminator_optimizer)

        fooled = self.judge(history, fake, shown)
        adversarial = nn.functional.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        # In scaled units: in window units a window of tiny spread (4-point yearly windows)
        # makes its target huge and the score would be about those windows alone.
        supervised = energy_score(to_target_units(samples, level, spread), y)
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

    @torch.no_grad()
    def synthesize(self, num_series: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """Series ``(num_series, length)`` drawn from no history, in window units of their start.

        The first ``horizon`` points come from the null context; each next block is a
        forecast from the last ``lookback`` points generated so far (fewer at the start:
        the GRU reads any length), with fresh noise, so the series carries the season
        and dynamics the generator learned. Needs a model of the target alone.
        """
        if self.shape.channels != 1:
            raise ValueError("gan: synthesize needs a model trained on the target alone (no covariates, "
                             f"calendar features or history mask); this one reads {self.shape.channels} channels")
        self.eval()
        device = self.null_context.device

        def noise() -> torch.Tensor:
            return torch.randn(num_series, 1, self.params.noise_size, generator=generator).to(device)

        series = self.generate(self.null_context.expand(num_series, -1), noise())[:, 0]
        while series.shape[1] < length:
            history = series[:, -self.shape.lookback:, None]
            if history.shape[1] < 2:
                # One point has no spread: take it as the level and unit spread.
                level, spread = history, torch.ones_like(history)
            else:
                level, spread = window_stats(history)
            encoded, _ = self.encoder((history - level) / spread)
            block = to_target_units(self.generate(encoded[:, -1], noise())[:, 0], level, spread)
            series = torch.cat([series, block], dim=1)
        return series[:, :length]
