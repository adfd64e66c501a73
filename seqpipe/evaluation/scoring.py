"""Score one forecaster on the test windows: point metrics for all, CRPS and coverage for samplers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from seqpipe.data.prepare import PreparedData, Windows
from seqpipe.data.scaling import Scalers
from seqpipe.evaluation.forecast import predict_scaled
from seqpipe.evaluation.metrics import score, seasonal_scale
from seqpipe.evaluation.probabilistic import is_probabilistic, probabilistic_scores, sample_forecasts
from seqpipe.models.base import Forecaster


class SamplingSettings(Protocol):
    samples: int
    coverage_levels: list[float]
    seed: int


@dataclass(frozen=True)
class ModelScores:
    scores: dict[str, np.ndarray]  # one value per series for each metric
    forecast: np.ndarray  # (series, horizon), original units
    lower: np.ndarray | None  # the first coverage level's interval, for plots
    upper: np.ndarray | None


def scoring_targets(prepared: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """The test actuals (series x horizon) and each series' MASE scale, both in scaler order."""
    frame = prepared.frame
    ids = prepared.scalers.series_ids
    actual = frame.loc[frame["split"] == "test", "value"].to_numpy(np.float64).reshape(len(ids), prepared.spec.horizon)
    scale = seasonal_scale(frame[frame["split"] == "train"], prepared.spec.season).reindex(ids).to_numpy()
    return actual, scale


def score_forecaster(model: Forecaster, windows: Windows, scalers: Scalers, actual: np.ndarray, scale: np.ndarray,
                     settings: SamplingSettings) -> ModelScores:
    forecast = scalers.inverse(predict_scaled(model, windows.x), windows.series)
    scores = score(actual, forecast, scale)
    if not is_probabilistic(model):
        return ModelScores(scores, forecast, None, None)
    samples = sample_forecasts(model, windows.x, windows.series, scalers, settings.samples, settings.seed)
    scores |= probabilistic_scores(actual, samples, settings.coverage_levels)
    level = settings.coverage_levels[0] if settings.coverage_levels else None
    if level is None:
        return ModelScores(scores, forecast, None, None)
    lower, upper = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return ModelScores(scores, forecast, lower, upper)
