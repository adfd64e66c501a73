"""Deep belief network classifier (Hinton, Osindero and Teh 2006), on fixed-size resampled sequences.

A DBN reads a fixed number of inputs, so each sequence is first resampled to ``frames``
steps by linear interpolation over its real steps alone (padding never enters, and any
length works at predict time) and flattened. The inputs are standardised per unit with
the training set's statistics, which the Gaussian visible units of the first RBM assume
(unit variance). The RBM stack is pre-trained greedily with contrastive divergence, the
shared CD-k update (``seqpipe.models.rbm``), then fine-tuned as a sigmoid
network with a softmax head on the cross-entropy in the shared loop.
"""

from __future__ import annotations

import torch
from torch import nn

from seqpipe.hyperparams import DBNClassifierParams
from seqpipe.models.base import EpochBatches
from seqpipe.models.classifiers.base import SequenceClassifier, lengths_of, split_mask
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.models.rbm import pretrain_stack

# Floor of a visible unit's standard deviation: a constant input must not divide by zero.
MIN_STD = 1e-6


def resample(features: torch.Tensor, lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Each sequence's real steps linearly interpolated to ``frames`` evenly spaced points, first to last.

    ``features`` ``(batch, length, channels)``, ``lengths`` ``(batch,)``; returns
    ``(batch, frames, channels)``. A one-step sequence becomes that step repeated.
    """
    last = (lengths.to(features.device) - 1)[:, None]
    position = torch.linspace(0, 1, frames, device=features.device)[None, :] * last.to(features.dtype)
    lower = torch.minimum(position.floor().long(), last)
    upper = torch.minimum(lower + 1, last)
    weight = (position - lower.to(features.dtype)).unsqueeze(-1)

    def at(steps: torch.Tensor) -> torch.Tensor:
        return features.gather(1, steps.unsqueeze(-1).expand(-1, -1, features.shape[-1]))

    return at(lower) * (1 - weight) + at(upper) * weight


class DBNClassifier(SequenceClassifier):
    arch = "dbn_classifier"
    Params = DBNClassifierParams

    def __init__(self, shape: ClassifierShape, params: DBNClassifierParams) -> None:
        super().__init__(shape, params)
        if not params.hidden_sizes or params.cd_steps < 1 or params.frames < 2:
            raise ValueError("dbn_classifier: needs at least one hidden layer, cd_steps >= 1 and frames >= 2")
        sizes = [params.frames * shape.channels, *params.hidden_sizes]
        # The training set's statistics, set by pretrain; identity until then.
        self.register_buffer("input_mean", torch.zeros(sizes[0]))
        self.register_buffer("input_std", torch.ones(sizes[0]))
        # Each RBM's weights and hidden biases are a Linear layer the fine-tuned network reuses.
        self.layers = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))
        # Visible biases matter only to pre-training; fine-tuning leaves them untouched.
        self.visible_biases = nn.ParameterList(nn.Parameter(torch.zeros(size)) for size in sizes[:-1])
        self.head = nn.Linear(sizes[-1], shape.classes)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened resampled sequences ``(batch, frames * channels)``, before standardising."""
        features, mask = split_mask(x)
        return resample(features, lengths_of(mask), self.params.frames).flatten(1)

    def visible(self, x: torch.Tensor) -> torch.Tensor:
        return (self.frames(x) - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.visible(x)
        for layer in self.layers:
            hidden = torch.sigmoid(layer(hidden))
        return self.head(hidden)

    @torch.no_grad()
    def pretrain(self, x: torch.Tensor, y: torch.Tensor, batches: EpochBatches) -> None:
        frames = self.frames(x)
        self.input_mean.copy_(frames.mean(0))
        self.input_std.copy_(frames.std(0, correction=0).clamp(min=MIN_STD))
        pretrain_stack(self.layers, self.visible_biases, (frames - self.input_mean) / self.input_std,
                       self.params.pretrain_epochs, self.params.cd_steps, self.params.pretrain_learning_rate, batches)
