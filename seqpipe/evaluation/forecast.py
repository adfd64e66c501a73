"""Forecast from a history frame with any estimator: what the registered model serves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqpipe.data.domain import bounded
from seqpipe.data.features import Features, exogenous_channels
from seqpipe.data.scaling import Scalers
from seqpipe.errors import PredictionError
from seqpipe.estimators import Estimator, ForecastInputs


def future_timestamps(last: pd.Series, steps: int, freq: str | None) -> np.ndarray:
    """``steps`` timestamps after each series' last one: integer steps, or calendar periods of ``freq``."""
    if pd.api.types.is_integer_dtype(last):
        return (last.to_numpy()[:, None] + np.arange(1, steps + 1)).ravel()
    if not freq:
        raise PredictionError("calendar timestamps need a frequency: set data.freq in the config the model was trained with")
    offset = pd.tseries.frequencies.to_offset(freq)
    return np.concatenate([pd.date_range(stamp, periods=steps + 1, freq=offset)[1:].to_numpy() for stamp in last])


@dataclass(frozen=True)
class QuantileSettings:
    """Which quantiles a sampling model reports, from how many samples, drawn with which seed."""

    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    samples: int = 200
    seed: int = 0


def quantile_column(level: float) -> str:
    return f"q{level:g}"


def _history_inputs(frame: pd.DataFrame, rows: np.ndarray, real: np.ndarray, ids: np.ndarray, position: np.ndarray,
                    scalers: Scalers, features: Features, covariate_scalers: dict[str, Scalers],
                    max_listed: int) -> np.ndarray:
    """The model's input ``(series, lookback, channels)`` from the rows ``(series, lookback)`` of each series' last points.

    ``real`` is False on the positions before a series' first point (a padded model's
    short histories): they are zeros in every channel, the mask included, as prepare pads.
    """
    values = np.where(real, frame["value"].to_numpy(np.float64)[rows], 0.0)
    broken = ids[~np.isfinite(values).all(axis=1)]
    if len(broken):
        raise PredictionError(f"{len(broken)} series have missing or non-finite values in their last {rows.shape[1]} "
                              f"points: {list(broken[:max_listed])}")
    scaled = np.where(real, scalers.transform(values, position), 0.0)[:, :, None]
    if features.channels == 1:
        return scaled
    window = frame.iloc[rows.ravel()]
    for name in features.covariates:
        numbers = pd.to_numeric(window[name], errors="coerce").to_numpy(np.float64).reshape(rows.shape)
        numbers = np.where(real, numbers, 0.0)
        broken = ids[~np.isfinite(numbers).all(axis=1)]
        if len(broken):
            raise PredictionError(f"covariate '{name}': {len(broken)} series have missing, non-numeric or non-finite "
                                  f"values in their last {rows.shape[1]} points: {list(broken[:max_listed])}")
        window = window.assign(**{name: numbers.ravel()})
    if features.calendar and not pd.api.types.is_datetime64_any_dtype(window["timestamp"]):
        raise PredictionError(f"the model reads calendar features {list(features.calendar)}: the history needs "
                              "calendar timestamps, not integer steps")
    exogenous = exogenous_channels(window, features, covariate_scalers, np.repeat(position, rows.shape[1]))
    return np.concatenate([scaled, exogenous.reshape(*rows.shape, -1) * real[:, :, None]], axis=2)


def forecast_history(model: Estimator, scalers: Scalers, history: pd.DataFrame, horizon: int, freq: str | None,
                     max_listed: int = 10, sampling: QuantileSettings | None = None,
                     features: Features = Features(), covariate_scalers: dict[str, Scalers] | None = None,
                     lower_bound: float | None = None) -> pd.DataFrame:
    """Forecast ``horizon`` steps after the end of each series in a canonical history frame.

    The history carries the covariates of ``features`` as columns, observed at every one of
    its points; calendar features come from its timestamps. A model that can sample also
    reports the quantiles of ``sampling`` (columns ``q0.1``, ...). Forecasts and samples
    below ``lower_bound`` (the data's domain, recorded when the model was registered) are
    raised to it. A series shorter than the lookback is zero-padded before its first point,
    with the mask channel saying so, when the model reads a mask (``prepare.pad_history``),
    and refused otherwise.
    """
    if model.shape.channels != features.channels or model.shape.masked != features.mask:
        raise PredictionError(f"the model reads {model.shape.channels} input channels"
                              f"{' with a history mask' if model.shape.masked else ''} but was registered with "
                              f"{features.names}: register it again")
    missing = [c for c in ("series_id", "timestamp", "value") if c not in history.columns]
    if missing:
        raise PredictionError(f"history is missing columns {missing}; it needs series_id, timestamp, value")
    absent = [c for c in features.covariates if c not in history.columns]
    if absent:
        raise PredictionError(f"history is missing covariate columns {absent}: the model was trained with covariates "
                              f"{list(features.covariates)} and needs each of them at every history point")
    if history.empty:
        raise PredictionError("history has no rows: each series to forecast needs at least one point")
    if not 0 < horizon <= model.shape.horizon:
        raise PredictionError(f"horizon {horizon} is outside 1..{model.shape.horizon}, the horizon this model was trained for")
    frame = history.assign(series_id=history["series_id"].astype(str)).sort_values(["series_id", "timestamp"], kind="stable")
    ids, starts, lengths = np.unique(frame["series_id"].to_numpy(dtype=object), return_index=True, return_counts=True)

    position = scalers.index_of(ids)
    unknown = ids[position < 0]
    if len(unknown):
        raise PredictionError(f"{len(unknown)} series the model was not trained on: {list(unknown[:max_listed])}")
    lookback = model.shape.lookback
    short = ids[lengths < lookback]
    if len(short) and not model.shape.masked:
        raise PredictionError(f"{len(short)} series have fewer than {lookback} points of history: {list(short[:max_listed])}")

    rows = (starts + lengths - lookback)[:, None] + np.arange(lookback)
    real = rows >= starts[:, None]  # all True unless the model pads short histories
    rows = np.maximum(rows, starts[:, None])  # padded positions read the series' first row, then are zeroed
    windows = _history_inputs(frame, rows, real, ids, position, scalers, features, covariate_scalers or {},
                              max_listed)
    histories = np.split(frame["value"].to_numpy(np.float64), starts[1:])
    inputs = ForecastInputs(windows, position, histories, scalers)
    forecast = bounded(model.forecast(inputs)[:, :horizon], lower_bound)
    last = frame["timestamp"].iloc[starts + lengths - 1].reset_index(drop=True)
    result = pd.DataFrame({
        "series_id": np.repeat(ids, horizon),
        "timestamp": future_timestamps(last, horizon, freq),
        "step": np.tile(np.arange(1, horizon + 1), len(ids)),
        "mean": forecast.ravel(),
    })
    if sampling and sampling.quantiles and model.probabilistic:
        samples = bounded(model.sample(inputs, sampling.samples, sampling.seed), lower_bound)
        levels = np.quantile(samples[:, :, :horizon], sampling.quantiles, axis=1)
        for level, values in zip(sampling.quantiles, levels):
            result[quantile_column(level)] = values.ravel()
    return result
