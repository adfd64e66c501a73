"""Deep ensemble (Lakshminarayanan, Pritzel and Blundell 2017).

M members of any point architecture in the catalog, each initialised from its own
seed and given a Gaussian head (mean from the member, variance from a small head on
the normalised window and that mean), each trained on the Gaussian negative
log-likelihood with its own optimizer, so clipping and Adam state never couple them.
The forecast distribution is the uniform mixture of the members' Gaussians: its mean
is the point forecast, samples draw a member and then from its Gaussian. Member specs
live in the params, member weights in the one state dict, so it saves like any model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seqpipe.models.base import Forecaster, OptimizerStep
from seqpipe.models.revin import to_target_units, to_window_units, window_stats

# Caps the log-variance in window units, so a wild early step cannot overflow exp.
MAX_LOG_VARIANCE = 10.0
# Member seeds are drawn from the global generator, which the training seed sets.
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class DeepEnsembleParams:
    members: int = 5
    member_arch: str = "gru"
    member_params: dict[str, Any] = field(default_factory=dict)
    # Variance floor in window units: keeps the likelihood finite on a perfect fit.
    min_variance: float = 1e-4
    # Starting variance in window units. The head moves its log-variance by about one
    # learning rate per step, so starting near a fitted model's error (rather than at
    # the window's own spread) saves thousands of steps of over-wide intervals.
    initial_variance: float = 0.01


class _GaussianMember(nn.Module):
    def __init__(self, point: Forecaster, shape, initial_variance: float) -> None:
        super().__init__()
        self.point = point
        self.log_variance = nn.Linear(shape.lookback * shape.channels + shape.horizon, shape.horizon)
        nn.init.constant_(self.log_variance.bias, math.log(initial_variance))

    def forward(self, x: torch.Tensor, level: torch.Tensor, spread: torch.Tensor, floor: float):
        """Mean and variance of the future in window units."""
        mean = to_window_units(self.point(x), level, spread)
        features = torch.cat([((x - level) / spread).flatten(1), mean], dim=1)
        return mean, self.log_variance(features).clamp(max=MAX_LOG_VARIANCE).exp() + floor


class DeepEnsembleForecaster(Forecaster):
    arch = "deep_ensemble"
    Params = DeepEnsembleParams

    def __init__(self, shape, params: DeepEnsembleParams) -> None:
        super().__init__(shape, params)
        from seqpipe.models import ARCHITECTURES, build_model  # the catalog imports this module

        member_cls = ARCHITECTURES.get(params.member_arch)
        if member_cls is None or not _is_point_architecture(member_cls):
            point = sorted(name for name, cls in ARCHITECTURES.items() if _is_point_architecture(cls))
            raise ValueError(f"deep_ensemble: member_arch '{params.member_arch}' is not a point architecture; use one of {point}")
        if params.members < 1 or params.initial_variance <= 0:
            raise ValueError("deep_ensemble: needs members >= 1 and initial_variance > 0")
        members = []
        for seed in torch.randint(0, MAX_SEED, (params.members,)).tolist():
            # Members are built on the CPU: seed only its generator and leave CUDA's alone.
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                point = build_model(params.member_arch, shape, params.member_params)
                if not point.trainable:
                    raise ValueError(f"deep_ensemble: member_arch '{params.member_arch}' has nothing to train")
                members.append(_GaussianMember(point, shape, params.initial_variance))
        self.members = nn.ModuleList(members)

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.AdamW(m.parameters(), lr=learning_rate, weight_decay=weight_decay) for m in self.members]

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer], step: OptimizerStep
    ) -> torch.Tensor:
        level, spread = window_stats(x)
        target = to_window_units(y, level, spread)
        total = x.new_zeros(())
        for member, optimizer in zip(self.members, optimizers):
            mean, variance = member(x, level, spread, self.params.min_variance)
            loss = nn.functional.gaussian_nll_loss(mean, target, variance, full=True)
            step(loss, optimizer)
            total = total + loss.detach()
        return total / len(self.members)

    def components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Members' means and variances ``(members, batch, horizon)`` in window units."""
        level, spread = window_stats(x)
        means, variances = zip(*(m(x, level, spread, self.params.min_variance) for m in self.members))
        return torch.stack(means), torch.stack(variances), level, spread

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the mixture per forecast step, in window units."""
        means, variances, level, spread = self.components(x)
        target = to_window_units(y, level, spread)
        log_density = -0.5 * (torch.log(2 * math.pi * variances) + (target - means) ** 2 / variances)
        return -(torch.logsumexp(log_density, dim=0) - math.log(len(self.members))).mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means, _, level, spread = self.components(x)
        return to_target_units(means.mean(0), level, spread)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's mean and variance per step, in scaled units."""
        means, variances, level, spread = self.components(x)
        mean = means.mean(0)
        variance = (variances + means**2).mean(0) - mean**2
        return to_target_units(mean, level, spread), variance * spread[:, :, :1].squeeze(-1) ** 2

    def sample(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        means, variances, level, spread = self.components(x)
        pick = torch.randint(len(self.members), (len(x), num_samples), device=x.device)
        rows = torch.arange(len(x), device=x.device)[:, None]
        mean, variance = means[pick, rows], variances[pick, rows]
        return to_target_units(mean + torch.randn_like(mean) * variance.sqrt(), level, spread)


def _is_point_architecture(cls: type[Forecaster]) -> bool:
    """Trained through ``loss`` alone: no samples, steps or pre-training of its own."""
    return (
        not hasattr(cls, "sample")
        and cls.training_step is Forecaster.training_step
        and cls.pretrain is Forecaster.pretrain
        and cls.configure_optimizers is Forecaster.configure_optimizers
    )
