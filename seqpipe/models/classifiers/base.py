"""The one sequence classifier interface every classifier network implements.

A classifier reads a padded batch ``(batch, length, channels + 1)`` whose last channel is
the mask (1 on real steps, 0 on padding, which only ever follows a sequence's end) and
returns class logits ``(batch, classes)``. It is trained on cross-entropy, weighted per
class by a buffer the state dict carries, so a model trained with balanced weights saves
and resumes with them. Every classifier must give the same logits whatever padding
follows a sequence: a batch is padded to its longest member, at training and at predict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqpipe.models.base import TrainableModel
from seqpipe.models.classifiers.shape import ClassifierShape


def split_mask(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The features ``(batch, length, channels)`` and the mask ``(batch, length)`` of a padded batch."""
    return x[..., :-1], x[..., -1]


def lengths_of(mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's real steps (int64, at least 1: an empty row would leave nothing to pool)."""
    return mask.sum(1).round().long().clamp(min=1)


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``features`` ``(batch, length, width)`` over the real steps: ``(batch, width)``."""
    padding = mask.unsqueeze(-1) <= 0
    # Filled, not multiplied: whatever a network leaves on padded steps (even a NaN) must not count.
    return features.masked_fill(padding, 0.0).sum(1) / (~padding).sum(1).clamp(min=1).to(features.dtype)


def masked_max(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Maximum of ``features`` ``(batch, length, width)`` over the real steps: ``(batch, width)``."""
    return features.masked_fill(mask.unsqueeze(-1) <= 0, float("-inf")).amax(1)


class SequenceClassifier(TrainableModel):
    """Maps a padded, masked batch ``(batch, length, channels + 1)`` to logits ``(batch, classes)``."""

    shape: ClassifierShape

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        super().__init__(shape, params)
        self.register_buffer("class_weights", torch.ones(shape.classes))

    def set_class_weights(self, weights: torch.Tensor) -> None:
        """Weigh each class's cross-entropy, e.g. by its inverse training frequency; ``(classes,)``."""
        weights = torch.as_tensor(weights, dtype=self.class_weights.dtype)
        if weights.shape != self.class_weights.shape:
            raise ValueError(f"{self.arch}: class weights of shape {tuple(weights.shape)}, "
                             f"expected ({self.shape.classes},)")
        with torch.no_grad():
            self.class_weights.copy_(weights)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Weighted cross-entropy of the logits; ``y`` holds class indices as floats (the loop casts to float32)."""
        return nn.functional.cross_entropy(self(x).float(), y.long(), weight=self.class_weights)
