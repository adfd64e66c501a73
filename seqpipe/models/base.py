"""The interface every trainable network implements, and the forecaster built on it.

``TrainableModel`` holds the hooks the one loop in ``seqpipe.training`` drives: ``loss``
(the objective, and the validation loss), ``training_step`` (several optimizers, e.g. a
GAN), ``configure_optimizers`` and ``pretrain`` (unsupervised pre-training, e.g. a DBN).
A forecaster maps history windows ``(batch, lookback, channels)`` in scaled units to
forecasts ``(batch, horizon)``; a sequence classifier (``seqpipe.models.classifiers``)
maps padded sequences to class logits. Both run in the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from seqpipe.models.losses import point_loss
from seqpipe.models.revin import WINDOW_STATS, normalize, to_target_units

from seqpipe.hyperparams import NoParams, parse_as

# What the loop hands to ``training_step``: zero the optimizer's gradients, backpropagate
# the loss, clip and step, so device, precision and clipping stay the loop's business.
OptimizerStep = Callable[[torch.Tensor, torch.optim.Optimizer], None]
# What the loop hands to ``pretrain``: one epoch of shuffled batch indices, from the
# loop's seeded generator so pre-training is as reproducible as training.
EpochBatches = Callable[[], list[torch.Tensor]]


@dataclass(frozen=True)
class ProblemShape:
    lookback: int
    horizon: int
    season: int
    channels: int = 1
    # The last channel is a mask: 1 on real history points, 0 on the zero padding before a
    # series' first point (prepare.pad_history). Models saved before masks existed have none.
    masked: bool = False

    def __post_init__(self) -> None:
        if self.masked and self.channels < 2:
            raise ValueError(f"a masked problem needs the target and the mask channel, not {self.channels} channel(s)")


def history_weights(x: torch.Tensor, shape: ProblemShape) -> torch.Tensor | None:
    """Which history points are real, ``(batch, lookback)``: the mask channel, or None when every point is."""
    return x[:, :, -1] if shape.masked else None


def normalized_windows(x: torch.Tensor, shape: ProblemShape,
                       scaling: str = "revin") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows on their own level and spread (``seqpipe.models.revin``'s ``scaling``), and that level and spread.

    With a mask (``shape.masked``) the statistics are the real points' and the padded target
    points are 0.
    """
    weights = history_weights(x, shape)
    level, spread = WINDOW_STATS[scaling](x, weights)
    return normalize(x, level, spread, weights), level, spread


class TrainableModel(nn.Module):
    """A network the training loop fits: its params, its objective and how it steps."""

    arch: ClassVar[str]
    Params: ClassVar[type] = NoParams

    def __init__(self, shape: Any, params: Any) -> None:
        super().__init__()
        self.shape = shape
        self.params = params

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The objective of a batch; the loop also reads it as the validation loss."""
        raise NotImplementedError

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.AdamW(self.parameters(), lr=learning_rate, weight_decay=weight_decay)]

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer], step: OptimizerStep
    ) -> torch.Tensor:
        """One batch of training; returns the loss to log for it."""
        loss = self.loss(x, y)
        step(loss, optimizers[0])
        return loss

    def pretrain(self, x: torch.Tensor, y: torch.Tensor, batches: EpochBatches) -> None:
        """Called once, before the first epoch, with the whole training set on the device."""

    @classmethod
    def parse_params(cls, values: Any) -> Any:
        """The typed params from a mapping or an instance, naming unknown or mistyped keys.

        The config hands over instances it validated at load; tests and benchmarks hand
        over dicts, checked against the dataclass's resolved type hints (seqpipe.hyperparams).
        """
        return parse_as(cls.Params, values, cls.arch)


class Forecaster(TrainableModel):
    """Maps history windows ``(batch, lookback, channels)`` to forecasts ``(batch, horizon)``.

    Trained on the point loss its params name (``loss``: see ``seqpipe.models.losses``),
    MSE for those without one.
    """

    shape: ProblemShape

    @property
    def point_loss(self) -> str:
        return getattr(self.params, "loss", "mse")

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.point_loss_of(self(x), x, y)

    def point_loss_of(self, forecast: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This model's point loss of ``forecast`` for windows ``x`` and targets ``y`` (MASE reads the history)."""
        return point_loss(self.point_loss, forecast, y, x[:, :, 0], self.shape.season, history_weights(x, self.shape))


class WindowNormalizedForecaster(Forecaster):
    """A forecaster whose network sees each window on its own level and spread, its outputs mapped back.

    The per-window normalisation (``seqpipe.models.revin``) is applied here, once, around
    ``forward_normalized``, which subclasses implement on normalised windows. Which one is
    ``window_scaling``'s: RevIN unless a subclass says otherwise. With a mask
    (``shape.masked``) the statistics come from the real points alone and the padded
    target points reach the network as zeros, whatever (finite) values they held.
    """

    @property
    def window_scaling(self) -> str:
        """``"revin"`` (mean and standard deviation), ``"level"`` (mean absolute value) or ``"none"``."""
        return "revin"

    @property
    def normalizes_windows(self) -> bool:
        return self.window_scaling != "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.normalizes_windows:
            return self.forward_normalized(x)
        normalized, level, spread = normalized_windows(x, self.shape, self.window_scaling)
        return to_target_units(self.forward_normalized(normalized), level, spread)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
