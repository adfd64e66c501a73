"""Per-series scalers, fitted on the training part only.

The same statistics travel with the registered model, so serving scales a history
exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCALERS = ("standard", "minmax", "robust", "meanabs")


@dataclass(frozen=True)
class Scalers:
    method: str
    series_ids: np.ndarray  # sorted, aligned with loc and scale
    loc: np.ndarray
    scale: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"series_id": self.series_ids, "loc": self.loc, "scale": self.scale}).assign(
            method=self.method
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Scalers:
        methods = frame["method"].unique()
        if len(methods) != 1:
            raise ValueError(f"scaler table mixes methods {list(methods)}")
        ordered = frame.sort_values("series_id")
        return cls(
            method=str(methods[0]),
            series_ids=ordered["series_id"].to_numpy(dtype=object),
            loc=ordered["loc"].to_numpy(np.float64),
            scale=ordered["scale"].to_numpy(np.float64),
        )

    def _stats(self, positions: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        # One statistic per row; extra trailing axes (a window, a horizon) broadcast.
        shape = (-1,) + (1,) * (ndim - 1)
        return self.loc[positions].reshape(shape), self.scale[positions].reshape(shape)

    def transform(self, values: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Scale rows of ``values`` with the scalers at ``positions`` (one per row)."""
        loc, scale = self._stats(positions, np.ndim(values))
        return (values - loc) / scale

    def inverse(self, scaled: np.ndarray, positions: np.ndarray) -> np.ndarray:
        loc, scale = self._stats(positions, np.ndim(scaled))
        return scaled * scale + loc

    def index_of(self, series_ids: np.ndarray) -> np.ndarray:
        """Positions of ``series_ids`` in this table; -1 for series it has never seen."""
        positions = np.searchsorted(self.series_ids, series_ids)
        positions = np.clip(positions, 0, len(self.series_ids) - 1)
        found = self.series_ids[positions] == series_ids
        return np.where(found, positions, -1)


def fit_scalers(values: np.ndarray, codes: np.ndarray, series_ids: np.ndarray, train_mask: np.ndarray, method: str) -> Scalers:
    """Fit one scaler per series code on the rows where ``train_mask`` holds."""
    # Missing values are skipped: pandas' group reductions ignore NaN.
    grouped = pd.Series(values[train_mask]).groupby(codes[train_mask], sort=True)
    if method == "standard":
        loc, scale = grouped.mean(), grouped.std(ddof=0)
    elif method == "minmax":
        loc = grouped.min()
        scale = grouped.max() - loc
    elif method == "robust":
        # Median and interquartile range: a few outliers in history do not set the scale.
        loc = grouped.median()
        scale = grouped.quantile(0.75) - grouped.quantile(0.25)
    elif method == "meanabs":
        scale = pd.Series(np.abs(values[train_mask])).groupby(codes[train_mask], sort=True).mean()
        loc = scale * 0.0
    else:
        raise ValueError(f"unknown scaler '{method}'; known: {SCALERS}")
    loc_arr = loc.reindex(range(len(series_ids))).to_numpy(np.float64)
    scale_arr = scale.reindex(range(len(series_ids))).to_numpy(np.float64)
    # A flat training part carries no scale: keep values centred but unscaled.
    scale_arr = np.where(np.isfinite(scale_arr) & (scale_arr > 0), scale_arr, 1.0)
    return Scalers(method=method, series_ids=np.asarray(series_ids, dtype=object), loc=loc_arr, scale=scale_arr)
