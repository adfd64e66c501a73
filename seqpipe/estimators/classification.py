"""The one interface of every sequence classifier, a network or a reference (majority class, MiniRocket).

A classifier is fitted on ``ClassifyFitData`` and returns class probabilities for a
``SequenceBatch``: padded arrays of scaled features with each sequence's length. The
steps score, register and serve every classifier alike without asking what kind it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from seqpipe.estimators.interface import FitOptions
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.training import FitResult, TrainSettings


@dataclass(frozen=True)
class SequenceBatch:
    """Sequences of scaled features, zero-padded at the end to a common length."""

    x: np.ndarray  # (n, length, channels) float32, zeros after each sequence's end
    lengths: np.ndarray  # (n,) int64, each sequence's real steps, at least 1
    # A batch of texts also carries each text as its tokenizer normalised it, through the end of its last
    # kept token, for the models that read characters; None for numeric sequences.
    texts: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.x)

    def masked(self) -> np.ndarray:
        """``x`` with the mask as its last channel, ``(n, length, channels + 1)``: what a network reads."""
        steps = np.arange(self.x.shape[1])[None, :]
        mask = (steps < self.lengths[:, None]).astype(np.float32)[..., None]
        return np.concatenate([self.x.astype(np.float32), mask], axis=2)


@dataclass(frozen=True)
class ClassifyFitData:
    train: SequenceBatch
    train_labels: np.ndarray  # (n,) int64 class indices into the prepared class list
    val: SequenceBatch
    val_labels: np.ndarray
    class_weights: np.ndarray | None = None  # (classes,) loss weights, None: every class alike


def fitted_numbers(description: dict[str, Any]) -> int | None:
    """How many numbers a classifier fitted, read from its ``describe()``: a network's weights, a regression's
    coefficients, the majority class's class shares, an ensemble's members' together; None before a reference
    is fitted (its size follows from the training data)."""
    for key in ("parameters", "coefficients", "classes"):
        if key in description:
            return int(description[key])
    return None


class ClassifierEstimator(ABC):
    arch: str
    # Packages a served model of this kind needs besides seqpipe's own.
    requirements: ClassVar[tuple[str, ...]] = ()

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        self.shape = shape
        self.params = params

    @property
    @abstractmethod
    def trainable(self) -> bool:
        """Whether fitting runs the training loop (and is worth watching with system metrics)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The params to log with a training run: every hyper-parameter, and the size of what is fitted."""

    @abstractmethod
    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        """Fit on ``data.train``; networks stop early on ``data.val``'s loss, references may ignore it."""

    @abstractmethod
    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        """Class probabilities ``(n, classes)``, rows summing to 1, in the prepared class order."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write what ``load`` needs into ``folder`` (``model.json`` naming ``arch``, arrays or a state dict), never a pickle."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> ClassifierEstimator: ...
