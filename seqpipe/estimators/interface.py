"""The one interface the steps use for every model, a network or a classical reference.

An estimator is fitted on ``FitData`` and forecasts from ``ForecastInputs``: plain arrays
that carry both views of the same series, the scaled history windows a network reads
and each series' whole history in original units that a local statistical model refits
on. Forecasts come back in original units, so the steps score, register and serve every
estimator alike without asking what kind it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from seqpipe.models.base import ProblemShape
from seqpipe.training import EpochLog, FitResult, TrainSettings


class Unscaler(Protocol):
    """Maps scaled values back to original units, one scaler-table row per leading index."""

    def inverse(self, scaled: np.ndarray, positions: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FitData:
    train: tuple[np.ndarray, np.ndarray]  # scaled windows: x (n, lookback, channels), y (n, horizon)
    val: tuple[np.ndarray, np.ndarray]
    histories: Sequence[np.ndarray]  # each series' points before the test window, original units, scaler order


@dataclass(frozen=True)
class ForecastInputs:
    """What to forecast from: one row per forecast, ``horizon`` steps after its history ends."""

    windows: np.ndarray  # (n, lookback, channels), scaled
    series: np.ndarray  # each row's position in the scaler table
    histories: Sequence[np.ndarray]  # each row's whole history (target only), original units
    scalers: Unscaler

    def __len__(self) -> int:
        return len(self.windows)


@dataclass(frozen=True)
class FitOptions:
    """What the caller lends a fit: a label for its log lines, resumable checkpoints, an epoch callback."""

    name: str = "model"
    checkpoint: Path | None = None
    signature: dict[str, Any] | None = None
    on_epoch: Callable[[EpochLog], None] | None = None


class Estimator(ABC):
    arch: str
    # Packages a served model of this kind needs besides seqpipe's own.
    requirements: ClassVar[tuple[str, ...]] = ()

    def __init__(self, shape: ProblemShape, params: Any) -> None:
        self.shape = shape
        self.params = params

    @property
    @abstractmethod
    def trainable(self) -> bool:
        """Whether fitting runs the training loop (and is worth watching with system metrics)."""

    @property
    def probabilistic(self) -> bool:
        return False

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The params to log with a training run: every hyper-parameter, and the size of what is fitted."""

    @abstractmethod
    def fit(self, data: FitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult: ...

    @abstractmethod
    def forecast(self, inputs: ForecastInputs) -> np.ndarray:
        """Point forecasts ``(rows, horizon)`` in original units."""

    def sample(self, inputs: ForecastInputs, num_samples: int, seed: int) -> np.ndarray:
        """Samples ``(rows, num_samples, horizon)`` in original units, repeatable for a seed."""
        raise NotImplementedError(f"{self.arch} does not sample forecasts")

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write what ``load`` needs into ``folder``: JSON and arrays or a state dict, never a pickle."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> Estimator: ...
