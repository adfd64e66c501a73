"""Prepared data as the estimators read it: fit data and the validation and test splits' forecast inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqpipe.data.prepare import PreparedData, Windows
from seqpipe.data.scaling import Scalers
from seqpipe.estimators.interface import FitData, ForecastInputs


def series_histories(frame: pd.DataFrame, series_ids: np.ndarray) -> list[np.ndarray]:
    """Each series' values in ``frame`` (sorted by series, then time), in the order of ``series_ids``."""
    grouped = frame.groupby("series_id", sort=False, observed=True)["value"]
    by_id = {str(key): rows.to_numpy(np.float64) for key, rows in grouped}
    return [by_id.get(str(series), np.empty(0)) for series in series_ids]


def histories_before_test(prepared: PreparedData) -> list[np.ndarray]:
    frame = prepared.frame
    return series_histories(frame[frame["split"] != "test"], prepared.scalers.series_ids)


def histories_before_validation(prepared: PreparedData) -> list[np.ndarray]:
    frame = prepared.frame
    return series_histories(frame[frame["split"] == "train"], prepared.scalers.series_ids)


def fit_data(prepared: PreparedData) -> FitData:
    return FitData((prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y),
                   histories_before_test(prepared))


def window_inputs(windows: Windows, scalers: Scalers, histories: list[np.ndarray]) -> ForecastInputs:
    """Forecast inputs of ``windows``, each row paired with its series' history."""
    return ForecastInputs(windows.x, windows.series, [histories[i] for i in windows.series], scalers)


def test_inputs(prepared: PreparedData) -> ForecastInputs:
    """One row per series: its last window before the test split, and all its points before it."""
    return window_inputs(prepared.test, prepared.scalers, histories_before_test(prepared))


def validation_inputs(prepared: PreparedData) -> ForecastInputs:
    """One row per series: its last window before the validation split, and its training points.

    What the champion is chosen on: nothing of the test split is in it.
    """
    return window_inputs(prepared.val, prepared.scalers, histories_before_validation(prepared))
