"""Deep ensemble of sequence classifiers (Lakshminarayanan, Pritzel and Blundell 2017).

M members of one classifier architecture, each initialised from its own seed and each
trained on its own cross-entropy (the ensemble's objective is their sum) with its own
optimizer, so every member trains exactly as its architecture does alone, its gradient
clipped on its own. The prediction is the mean of the members' class probabilities;
``forward`` returns its log, so a softmax of it gives that mean and the inherited loss,
the validation loss early stopping follows, is the ensemble's own cross-entropy. How
far the members disagree (``member_probabilities``) is the ensemble's uncertainty.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from seqpipe.hyperparams import CLASSIFIER_MEMBER_ARCHS, DeepEnsembleClassifierParams
from seqpipe.models.base import EpochBatches, OptimizerStep, TrainableModel
from seqpipe.models.classifiers.base import SequenceClassifier
from seqpipe.models.classifiers.shape import ClassifierShape

# Member seeds are drawn from the global generator, which the training seed sets.
MAX_SEED = 2**31 - 1


class DeepEnsembleClassifier(SequenceClassifier):
    arch = "deep_ensemble_classifier"
    Params = DeepEnsembleClassifierParams
    # The architectures it may hold: those reading the same kind of steps (numeric frames; text has its own).
    member_archs: ClassVar[frozenset[str]] = CLASSIFIER_MEMBER_ARCHS

    def __init__(self, shape: ClassifierShape, params: DeepEnsembleClassifierParams) -> None:
        super().__init__(shape, params)
        from seqpipe.models.classifiers import CLASSIFIERS, build_classifier  # the catalog imports this module

        member_cls = CLASSIFIERS.get(params.member_arch)
        if member_cls is None or params.member_arch not in self.member_archs or not is_member_architecture(member_cls):
            usable = sorted(name for name, cls in CLASSIFIERS.items()
                            if name in self.member_archs and is_member_architecture(cls))
            raise ValueError(f"{self.arch}: member_arch '{params.member_arch}' cannot be a member; "
                             f"use one of {usable}")
        if params.members < 1:
            raise ValueError(f"{self.arch}: needs members >= 1")
        members = []
        for seed in torch.randint(0, MAX_SEED, (params.members,)).tolist():
            # Members are built on the CPU: seed only its generator and leave CUDA's alone.
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                members.append(build_classifier(params.member_arch, shape, params.member_params))
        self.members = nn.ModuleList(members)

    def set_class_weights(self, weights: torch.Tensor) -> None:
        super().set_class_weights(weights)
        for member in self.members:
            member.set_class_weights(weights)

    def pretrain(self, x: torch.Tensor, y: torch.Tensor, batches: EpochBatches) -> None:
        for member in self.members:
            member.pretrain(x, y, batches)

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.AdamW(m.parameters(), lr=learning_rate, weight_decay=weight_decay) for m in self.members]

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer], step: OptimizerStep
    ) -> torch.Tensor:
        total = x.new_zeros(())
        for member, optimizer in zip(self.members, optimizers, strict=True):
            loss = member.loss(x, y)
            step(loss, optimizer)
            total = total + loss.detach()
        # Logged as the members' mean, on the scale of the validation loss (one model's cross-entropy).
        return total / len(self.members)

    def member_log_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's log class probabilities ``(batch, members, classes)``."""
        return torch.stack([nn.functional.log_softmax(m(x).float(), dim=-1) for m in self.members], dim=1)

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's class probabilities ``(batch, members, classes)``: their spread is the disagreement."""
        return self.member_log_probabilities(x).exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # log(mean(p)) in log space, which keeps tiny probabilities from underflowing to log(0).
        return torch.logsumexp(self.member_log_probabilities(x), dim=1) - math.log(len(self.members))


def is_member_architecture(cls: type[SequenceClassifier]) -> bool:
    """Trained through ``loss`` with one optimizer (its own pre-training allowed): no ensembles of ensembles."""
    return (
        not issubclass(cls, DeepEnsembleClassifier)
        and cls.training_step is TrainableModel.training_step
        and cls.configure_optimizers is TrainableModel.configure_optimizers
    )
