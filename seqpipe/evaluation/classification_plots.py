"""A classifier's plots and tables for the MLflow UI: the confusion matrix and the leaderboard's bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from seqpipe.evaluation.classification import higher_is_better
from seqpipe.evaluation.plots import _save, plt

# A cell's count is written in white once its shade passes this share of the largest count.
DARK_CELL_SHARE = 0.5
CELL_INCHES = 0.55


def _check_matrix(matrix: np.ndarray, classes: list[str]) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"a confusion matrix of {len(classes)} classes must be ({len(classes)}, {len(classes)}), "
                         f"got {matrix.shape}")
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Counts as a heat map, true classes down, predicted across, each cell annotated with its count."""
    matrix = _check_matrix(matrix, classes)
    size = max(4.0, CELL_INCHES * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=classes, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = DARK_CELL_SHARE * matrix.max() if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        ax.text(column, row, str(int(count)), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")
    ax.set_title(title)
    return _save(fig, path)


def plot_metric_by_model(board: pd.DataFrame, metric: str, path: Path) -> Path:
    """One bar per model of ``board`` (columns model and ``metric``), the best at the top.

    ``metric`` is a score's name or a split's column of it ("test_macro_f1").
    """
    higher = higher_is_better(metric)
    # barh draws the first row at the bottom, so the best model goes last.
    ordered = board.sort_values(metric, ascending=higher)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ordered) + 1.5))
    ax.barh(ordered["model"], ordered[metric], color="tab:blue")
    for y, value in enumerate(ordered[metric]):
        ax.text(value, y, f" {value:.3f}", va="center", fontsize=8)
    ax.set_xlabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.set_title(f"{metric} by model")
    return _save(fig, path)


def write_confusion_csv(matrix: np.ndarray, classes: list[str], path: Path) -> Path:
    """The counts as CSV: a ``true`` column naming each row's class, then one column per predicted class."""
    matrix = _check_matrix(matrix, classes)
    table = pd.DataFrame(matrix, columns=list(classes))
    table.insert(0, "true", list(classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path
