"""Plots a reviewer looks at in the MLflow UI."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HISTORY_HORIZONS_SHOWN = 3


def sample_series(series_ids: list[str], count: int) -> list[str]:
    """Evenly spaced ids, so the sample is stable across runs and not just the first few."""
    ordered = sorted(series_ids)
    picks = np.linspace(0, len(ordered) - 1, num=min(count, len(ordered))).round().astype(int)
    return [ordered[i] for i in dict.fromkeys(picks)]


def plot_forecast_vs_actual(series: pd.DataFrame, forecasts: pd.DataFrame, series_ids: list[str], horizon: int, path: Path) -> Path:
    """``series``: canonical rows with ``split``; ``forecasts``: series_id, timestamp, model, forecast."""
    fig, axes = plt.subplots(len(series_ids), 1, figsize=(10, 2.6 * len(series_ids)), squeeze=False)
    for ax, series_id in zip(axes[:, 0], series_ids):
        rows = series[series["series_id"] == series_id].tail(horizon * (HISTORY_HORIZONS_SHOWN + 1))
        history, actual = rows[rows["split"] != "test"], rows[rows["split"] == "test"]
        ax.plot(history["timestamp"], history["value"], color="black", linewidth=1, label="history")
        ax.plot(actual["timestamp"], actual["value"], color="black", linewidth=2, label="actual")
        for model, part in forecasts[forecasts["series_id"] == series_id].groupby("model", sort=True):
            ax.plot(part["timestamp"], part["forecast"], linewidth=1.4, linestyle="--", label=model)
        ax.set_title(f"series {series_id}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=4)
    fig.suptitle("Test-split forecast vs actual")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
