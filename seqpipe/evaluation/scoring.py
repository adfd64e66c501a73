"""Score one estimator on the test split: point metrics for all, CRPS and coverage for samplers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from seqpipe.data.domain import bounded
from seqpipe.data.prepare import PreparedData
from seqpipe.estimators import Estimator, ForecastInputs
from seqpipe.evaluation.metrics import score, seasonal_scale
from seqpipe.evaluation.probabilistic import probabilistic_scores


class ForecastShapeError(ValueError):
    """A model's forecasts do not fit the split it is scored on (trained for another horizon or data)."""


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


def scoring_targets(prepared: PreparedData, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The actuals of ``split`` (test or val; series x horizon) and each series' MASE scale, both in scaler order.

    The scale comes from the training part only, whichever split is scored.
    """
    frame = prepared.frame
    ids = prepared.scalers.series_ids
    actual = frame.loc[frame["split"] == split, "value"].to_numpy(np.float64).reshape(len(ids), prepared.spec.horizon)
    scale = seasonal_scale(frame[frame["split"] == "train"], prepared.spec.season).reindex(ids).to_numpy()
    return actual, scale


def score_estimator(model: Estimator, inputs: ForecastInputs, actual: np.ndarray, scale: np.ndarray,
                    settings: SamplingSettings, lower_bound: float | None = None) -> ModelScores:
    """Point scores (and CRPS and coverage for samplers) of ``model``'s forecasts, clipped to ``lower_bound``.

    With a bound, ``clipped`` is each series' share of forecast points that fell below it
    and were raised to it: what the data's domain changed.
    """
    raw = model.forecast(inputs)
    if raw.shape != actual.shape:
        raise ForecastShapeError(f"forecasts of shape {raw.shape} do not fit the test split {actual.shape}")
    forecast = bounded(raw, lower_bound)
    scores = score(actual, forecast, scale)
    if lower_bound is not None:
        scores["clipped"] = (raw < lower_bound).mean(axis=1)
    if not model.probabilistic:
        return ModelScores(scores, forecast, None, None)
    samples = bounded(model.sample(inputs, settings.samples, settings.seed), lower_bound)
    scores |= probabilistic_scores(actual, samples, settings.coverage_levels)
    level = settings.coverage_levels[0] if settings.coverage_levels else None
    if level is None:
        return ModelScores(scores, forecast, None, None)
    lower, upper = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return ModelScores(scores, forecast, lower, upper)
