"""Greedy contrastive-divergence pre-training of a stack of RBMs, as both deep belief networks use it.

Each RBM's weights and hidden biases are an ``nn.Linear`` the fine-tuned network reuses;
its visible biases are kept beside it. The first RBM has Gaussian visible units (on
inputs of unit variance), the ones above are Bernoulli-Bernoulli on the hidden
probabilities of the layer below (Hinton, Osindero and Teh 2006; Hinton 2012's guide).
"""

from __future__ import annotations

import torch
from torch import nn

from seqpipe.models.base import EpochBatches


def contrastive_divergence(layer: nn.Linear, visible_bias: torch.Tensor, visible: torch.Tensor, cd_steps: int,
                           learning_rate: float, gaussian: bool) -> torch.Tensor:
    """One CD-k update of one RBM on a batch, in place; returns its reconstruction error."""
    positive = torch.sigmoid(layer(visible))
    reconstruction, negative = visible, positive
    for _ in range(cd_steps):
        down = nn.functional.linear(torch.bernoulli(negative), layer.weight.t(), visible_bias)
        # Mean-field reconstructions (Hinton's guide): sampling them only adds noise.
        reconstruction = down if gaussian else torch.sigmoid(down)
        negative = torch.sigmoid(layer(reconstruction))
    rate = learning_rate / len(visible)
    layer.weight += rate * (positive.t() @ visible - negative.t() @ reconstruction)
    layer.bias += rate * (positive - negative).sum(0)
    visible_bias += rate * (visible - reconstruction).sum(0)
    return ((visible - reconstruction) ** 2).mean()


@torch.no_grad()
def pretrain_stack(layers: nn.ModuleList, visible_biases: nn.ParameterList, data: torch.Tensor, epochs: int,
                   cd_steps: int, learning_rate: float, batches: EpochBatches) -> None:
    """Pre-train each RBM for ``epochs`` on the hidden probabilities of the one below, the first on ``data``."""
    for index, layer in enumerate(layers):
        for _ in range(epochs):
            for batch in batches():
                contrastive_divergence(layer, visible_biases[index], data[batch], cd_steps, learning_rate,
                                       gaussian=index == 0)
        data = torch.sigmoid(layer(data))
