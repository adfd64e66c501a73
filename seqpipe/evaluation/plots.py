"""Plots a reviewer looks at in the MLflow UI."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HISTORY_HORIZONS_SHOWN = 3
DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


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
            line, = ax.plot(part["timestamp"], part["forecast"], linewidth=1.4, linestyle="--", label=model)
            if "lower" in part and part["lower"].notna().all():
                ax.fill_between(part["timestamp"], part["lower"], part["upper"], color=line.get_color(), alpha=0.15)
        ax.set_title(f"series {series_id}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=4)
    fig.suptitle("Test-split forecast vs actual")
    return _save(fig, path)


def plot_metric_by_model(board: pd.DataFrame, metric: str, path: Path) -> Path:
    ordered = board.sort_values(metric, ascending=False)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ordered) + 1.5))
    ax.barh(ordered["model"], ordered[metric], color="tab:blue")
    for y, value in enumerate(ordered[metric]):
        ax.text(value, y, f" {value:.3f}", va="center", fontsize=8)
    ax.set_xlabel(f"test {metric} (lower is better)")
    ax.set_title(f"{metric} by model")
    return _save(fig, path)


def plot_error_distribution(per_series: pd.DataFrame, metric: str, path: Path) -> Path:
    """One box per model of its per-series errors: a good mean can hide a long tail."""
    models = sorted(per_series["model"].unique())
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(models) + 1.5))
    ax.boxplot([per_series.loc[per_series["model"] == m, metric].dropna() for m in models], vert=False,
               tick_labels=models, showfliers=True)
    ax.set_xlabel(f"per-series test {metric}")
    ax.set_title(f"distribution of {metric} across series")
    return _save(fig, path)
