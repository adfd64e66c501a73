"""A classifier network of ``seqpipe.models.classifiers`` as an estimator: fitted by the one loop, saved as a state dict."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqpipe.estimators.classification import ClassifierEstimator, ClassifyFitData, SequenceBatch
from seqpipe.estimators.interface import FitOptions
from seqpipe.models.classifiers import SequenceClassifier, build_classifier
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.models.persistence import load_model, save_model
from seqpipe.training import FitResult, TrainSettings, fit

# Sequences per forward pass at predict time: bounds memory on long padded batches.
PREDICT_BATCH = 1024


@torch.no_grad()
def predict_probabilities(network: SequenceClassifier, batch: SequenceBatch) -> np.ndarray:
    """Softmax of the network's logits ``(n, classes)``, float64, on whichever device it sits."""
    network.eval()
    device = next(network.parameters(), next(network.buffers(), torch.empty(0))).device
    chunks = []
    for start in range(0, len(batch), PREDICT_BATCH):
        lengths = batch.lengths[start:start + PREDICT_BATCH]
        # Every classifier ignores padding, so a chunk is cut to its own longest sequence.
        chunk = SequenceBatch(batch.x[start:start + PREDICT_BATCH, : max(int(lengths.max()), 1)], lengths)
        logits = network(torch.from_numpy(chunk.masked()).to(device))
        chunks.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, network.shape.classes))


class NeuralClassifierEstimator(ClassifierEstimator):
    def __init__(self, network: SequenceClassifier) -> None:
        super().__init__(network.shape, network.params)
        self.network = network
        self.arch = network.arch

    @classmethod
    def build(cls, arch: str, shape: ClassifierShape, params: Any) -> NeuralClassifierEstimator:
        return cls(build_classifier(arch, shape, params))

    @property
    def trainable(self) -> bool:
        return self.network.trainable

    def describe(self) -> dict[str, Any]:
        return {**asdict(self.params), "parameters": sum(p.numel() for p in self.network.parameters())}

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        if data.class_weights is not None:
            self.network.set_class_weights(torch.as_tensor(np.asarray(data.class_weights, dtype=np.float32)))
        # The loop casts every array to float32: the labels travel as floats, the loss reads them back as ints.
        result = fit(self.network, (data.train.masked(), data.train_labels.astype(np.float32)),
                     (data.val.masked(), data.val_labels.astype(np.float32)), settings, name=options.name,
                     on_epoch=options.on_epoch, checkpoint=options.checkpoint, signature=options.signature)
        # Saved and scored on the CPU, wherever it trained.
        self.network.cpu()
        return result

    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        return predict_probabilities(self.network, batch)

    def save(self, folder: Path) -> None:
        save_model(self.network.cpu(), folder)

    @classmethod
    def load(cls, folder: Path) -> NeuralClassifierEstimator:
        network = load_model(folder)
        if not isinstance(network, SequenceClassifier):
            raise ValueError(f"{folder}: '{network.arch}' is not a sequence classifier")
        return cls(network)
