"""Deep belief network forecaster (Hinton, Osindero and Teh 2006; Hinton 2012's guide).

A stack of restricted Boltzmann machines is pre-trained greedily, one layer at a time,
with contrastive divergence (CD-k): the first has Gaussian visible units on the
normalised history window (unit variance, which per-window normalisation makes true on
average), the ones above are Bernoulli-Bernoulli on the hidden probabilities of the
layer below. The pre-trained weights then initialise a sigmoid feed-forward network
with a linear forecasting head, fine-tuned on the forecasting loss in the shared loop.
"""

from __future__ import annotations

import torch
from torch import nn

from seqpipe.hyperparams import DBNParams
from seqpipe.models.base import EpochBatches, WindowNormalizedForecaster, normalized_windows
from seqpipe.models.rbm import pretrain_stack


class DBNForecaster(WindowNormalizedForecaster):
    arch = "dbn"
    Params = DBNParams

    def __init__(self, shape, params: DBNParams) -> None:
        super().__init__(shape, params)
        if not params.hidden_sizes or params.cd_steps < 1:
            raise ValueError("dbn: needs at least one hidden layer and cd_steps >= 1")
        sizes = [shape.lookback * shape.channels, *params.hidden_sizes]
        # Each RBM's weights and hidden biases are a Linear layer the fine-tuned network reuses.
        self.layers = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))
        # Visible biases matter only to pre-training; fine-tuning leaves them untouched.
        self.visible_biases = nn.ParameterList(nn.Parameter(torch.zeros(size)) for size in sizes[:-1])
        self.head = nn.Linear(sizes[-1], shape.horizon)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        hidden = x.flatten(1)
        for layer in self.layers:
            hidden = torch.sigmoid(layer(hidden))
        return self.head(hidden)

    @torch.no_grad()
    def pretrain(self, x: torch.Tensor, y: torch.Tensor, batches: EpochBatches) -> None:
        data = normalized_windows(x, self.shape)[0].flatten(1)
        pretrain_stack(self.layers, self.visible_biases, data, self.params.pretrain_epochs, self.params.cd_steps,
                       self.params.pretrain_learning_rate, batches)
