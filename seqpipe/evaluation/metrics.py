"""Point-forecast accuracy per series; arrays are (series, horizon) in original units."""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("mase", "smape", "mape", "mae", "rmse")


def smape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(np.abs(actual - forecast), denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return 200.0 * ratio.mean(axis=1)


def mape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(actual - forecast) / np.abs(actual)
    # Points with a zero actual have no percentage error; a series of zeros has no MAPE.
    ratio[~np.isfinite(ratio)] = np.nan
    return 100.0 * np.nanmean(ratio, axis=1)


def mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.abs(actual - forecast).mean(axis=1) / scale


def seasonal_scale(train: pd.DataFrame, season: int) -> pd.Series:
    """Mean absolute seasonal difference of each series' training part: MASE's denominator.

    Series too short for a seasonal lag fall back to lag 1; a flat history falls back to 1
    so that MASE stays finite (it then reads as a mean absolute error).
    """

    def scale_of(values: np.ndarray) -> float:
        lag = season if len(values) > season else 1
        diffs = np.abs(values[lag:] - values[:-lag])
        value = diffs.mean() if len(diffs) else np.nan
        return value if np.isfinite(value) and value > 0 else 1.0

    return train.groupby("series_id", sort=True)["value"].agg(lambda s: scale_of(s.to_numpy()))


def mae(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    return np.abs(actual - forecast).mean(axis=1)


def rmse(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    return np.sqrt(((actual - forecast) ** 2).mean(axis=1))


def score(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    return {"mase": mase(actual, forecast, scale), "smape": smape(actual, forecast), "mape": mape(actual, forecast),
            "mae": mae(actual, forecast), "rmse": rmse(actual, forecast)}
