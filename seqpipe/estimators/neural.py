"""A network of ``seqpipe.models`` as an estimator: fitted by the one training loop, saved as a state dict."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqpipe.estimators.interface import Estimator, FitData, FitOptions, ForecastInputs
from seqpipe.models import build_model
from seqpipe.models.base import Forecaster, ProblemShape
from seqpipe.models.persistence import load_model, save_model
from seqpipe.training import FitResult, TrainSettings, fit

log = logging.getLogger(__name__)

PREDICT_BATCH = 4096
SAMPLE_BATCH = 1024


def _chunks(x: np.ndarray, size: int) -> list[np.ndarray]:
    return np.array_split(x, max(1, int(np.ceil(len(x) / size))))


@torch.no_grad()
def predict_scaled(model: Forecaster, x: np.ndarray) -> np.ndarray:
    """The network's forecasts of windows ``x``, in scaled units, on whichever device it sits."""
    model.eval()
    device = next(model.parameters(), next(model.buffers(), torch.empty(0))).device
    outputs = [model(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)).float().cpu().numpy()
               for chunk in _chunks(x, PREDICT_BATCH)]
    return np.concatenate(outputs).astype(np.float64)


@torch.no_grad()
def sample_scaled(model: Forecaster, x: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """Samples ``(windows, samples, horizon)`` in scaled units, repeatable for a given seed.

    The global torch generator is forked so that evaluating never shifts what training draws.
    """
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        chunks = [model.sample(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)), num_samples)
                  .float().numpy().astype(np.float64) for chunk in _chunks(x, SAMPLE_BATCH)]
    return np.concatenate(chunks)


class NeuralEstimator(Estimator):
    def __init__(self, network: Forecaster) -> None:
        super().__init__(network.shape, network.params)
        self.network = network
        self.arch = network.arch

    @classmethod
    def build(cls, arch: str, shape: ProblemShape, params: Any) -> NeuralEstimator:
        return cls(build_model(arch, shape, params))

    @property
    def trainable(self) -> bool:
        return self.network.trainable

    @property
    def probabilistic(self) -> bool:
        return callable(getattr(self.network, "sample", None))

    def describe(self) -> dict[str, Any]:
        return {**asdict(self.params), "parameters": sum(p.numel() for p in self.network.parameters())}

    def fit(self, data: FitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        result = fit(self.network, data.train, data.val, settings, name=options.name, on_epoch=options.on_epoch,
                     checkpoint=options.checkpoint, signature=options.signature)
        # Saved and scored on the CPU, wherever it trained.
        self.network.cpu()
        return result

    def forecast(self, inputs: ForecastInputs) -> np.ndarray:
        return inputs.scalers.inverse(predict_scaled(self.network, inputs.windows), inputs.series)

    def sample(self, inputs: ForecastInputs, num_samples: int, seed: int) -> np.ndarray:
        if not self.probabilistic:
            return super().sample(inputs, num_samples, seed)
        return inputs.scalers.inverse(sample_scaled(self.network, inputs.windows, num_samples, seed), inputs.series)

    def save(self, folder: Path) -> None:
        save_model(self.network.cpu(), folder)

    @classmethod
    def load(cls, folder: Path) -> NeuralEstimator:
        return cls(load_model(folder))
