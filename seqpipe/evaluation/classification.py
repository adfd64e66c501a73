"""Scores of a sequence classifier's probabilities, per-class reports and the leaderboard.

Every score reads the probabilities ``(n, classes)`` a classifier returns and the true
class indices; the predicted class is the most probable one (the lowest index on a tie,
as ``np.argmax`` breaks it). Numpy only, so scoring a few thousand test sequences, or a
bootstrap resample of them, costs microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Probabilities are clipped here before the log: a confident wrong answer then costs
# -log(1e-15) ~ 34.5 nats instead of infinity, so one such sequence cannot hide every other.
PROBABILITY_EPSILON = 1e-15

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "macro_f1": True,
    "log_loss": False,
    "brier": False,
    "ece": False,
}

# A board's columns may name a score with the split it was taken on: "val_macro_f1".
SPLIT_PREFIXES = ("val_", "test_")

Scorer = Callable[[np.ndarray, np.ndarray], float]


def higher_is_better(metric: str) -> bool:
    """The direction of a score, named alone ("macro_f1") or as a split's column ("test_macro_f1")."""
    for prefix in SPLIT_PREFIXES:
        if metric.startswith(prefix) and metric[len(prefix):] in HIGHER_IS_BETTER:
            return HIGHER_IS_BETTER[metric[len(prefix):]]
    try:
        return HIGHER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown classification metric '{metric}'; known: {sorted(HIGHER_IS_BETTER)}, "
                         f"each also with a prefix of {list(SPLIT_PREFIXES)}") from None


def _check_labels(labels: np.ndarray, classes: int, what: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{what} must be one class index per sequence, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{what} must lie in [0, {classes}), found {labels.min()}..{labels.max()}")
    return labels.astype(np.int64, copy=False)


def _check_probabilities(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (sequences, classes), got shape {probabilities.shape}")
    if len(probabilities) == 0:
        raise ValueError("there are no sequences to score")
    if len(labels) != len(probabilities):
        raise ValueError(f"{len(labels)} labels but {len(probabilities)} rows of probabilities")
    if not np.isfinite(probabilities).all():
        raise ValueError("probabilities hold missing or non-finite values")
    return _check_labels(labels, probabilities.shape[1]), probabilities


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """The most probable class of each row (the lowest index on a tie)."""
    return np.asarray(probabilities).argmax(axis=1)


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    labels, probabilities = _check_probabilities(labels, probabilities)
    return float((predicted_classes(probabilities) == labels).mean())


def _per_class(labels: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of each class; a ratio with nothing to divide by is 0 (sklearn's zero_division=0)."""
    matrix = confusion_matrix(labels, predicted, classes)
    hits = np.diag(matrix).astype(np.float64)
    support, named = matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(named > 0, hits / named, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "named": named}


def macro_f1(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The unweighted mean F1 over the classes that occur in the truth or in the predictions.

    A class no test sequence has and no prediction names is left out (sklearn's
    ``f1_score(average="macro")`` without ``labels`` does the same): it is no evidence for
    or against the model, and counting it as 0 would make the score depend on the label
    set instead of the predictions. A class that is present but never predicted, or
    predicted but never present, counts as 0.
    """
    labels, probabilities = _check_probabilities(labels, probabilities)
    report = _per_class(labels, predicted_classes(probabilities), probabilities.shape[1])
    seen = (report["support"] > 0) | (report["named"] > 0)
    return float(report["f1"][seen].mean())


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log probability of the true class, in nats, clipped at ``PROBABILITY_EPSILON``."""
    labels, probabilities = _check_probabilities(labels, probabilities)
    true = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(true, PROBABILITY_EPSILON, 1.0)).mean())


def brier(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Multi-class Brier score: the mean over sequences of the squared error summed over classes (0 to 2)."""
    labels, probabilities = _check_probabilities(labels, probabilities)
    errors = probabilities.copy()
    errors[np.arange(len(labels)), labels] -= 1.0
    return float((errors**2).sum(axis=1).mean())


def ece(labels: np.ndarray, probabilities: np.ndarray, calibration_bins: int) -> float:
    """Expected calibration error of the top probability.

    Equal-width bins ``(i / bins, (i + 1) / bins]`` of each sequence's top probability
    (the first bin also takes 0); each bin's gap between its accuracy and its mean top
    probability is weighted by its share of the sequences.
    """
    if calibration_bins < 1:
        raise ValueError(f"calibration_bins must be at least 1, got {calibration_bins}")
    labels, probabilities = _check_probabilities(labels, probabilities)
    confidence = probabilities.max(axis=1)
    correct = (predicted_classes(probabilities) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidence * calibration_bins).astype(np.int64) - 1, 0, calibration_bins - 1)
    counts = np.bincount(bins, minlength=calibration_bins)
    gap = np.bincount(bins, weights=correct, minlength=calibration_bins) - np.bincount(
        bins, weights=confidence, minlength=calibration_bins)
    # Each bin's |accuracy - confidence| x its share is |sum of (correct - confidence)| / n.
    return float(np.abs(gap[counts > 0]).sum() / len(labels))


# The scores that read only labels and probabilities; ece also needs its bins.
_SCORES: dict[str, Scorer] = {"accuracy": accuracy, "macro_f1": macro_f1, "log_loss": log_loss, "brier": brier}


@dataclass(frozen=True)
class MetricScorer:
    """One named score as ``scorer(labels, probabilities)``, knowing its direction: what a bootstrap resamples."""

    metric: str
    calibration_bins: int

    def __post_init__(self) -> None:
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown classification metric '{self.metric}'; known: {sorted(HIGHER_IS_BETTER)}")

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]

    def __call__(self, labels: np.ndarray, probabilities: np.ndarray) -> float:
        if self.metric == "ece":
            return ece(labels, probabilities, self.calibration_bins)
        return _SCORES[self.metric](labels, probabilities)


def metric_scorer(metric: str, calibration_bins: int) -> MetricScorer:
    """The one score ``metric`` names; computing only it keeps a bootstrap's thousands of resamples cheap."""
    return MetricScorer(metric, calibration_bins)


def classification_scores(labels: np.ndarray, probabilities: np.ndarray, calibration_bins: int) -> dict[str, float]:
    """Every score of ``HIGHER_IS_BETTER`` for one model's test probabilities."""
    return {metric: metric_scorer(metric, calibration_bins)(labels, probabilities) for metric in HIGHER_IS_BETTER}



def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Counts ``(k, k)``: rows are the true classes, columns the predicted ones."""
    labels, predicted = _check_labels(labels, k), _check_labels(predicted, k, "predicted classes")
    if len(labels) != len(predicted):
        raise ValueError(f"{len(labels)} labels but {len(predicted)} predicted classes")
    return np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def per_class_report(labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per class, in the given order: class, precision, recall, f1, support (true sequences)."""
    report = _per_class(labels, predicted, len(classes))
    return pd.DataFrame({
        "class": list(classes),
        "precision": report["precision"],
        "recall": report["recall"],
        "f1": report["f1"],
        "support": report["support"].astype(np.int64),
    })


def predictive_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy of each row in nats (0 log 0 = 0): 0 for a certain prediction, log(classes) for a uniform one."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0)
    return -terms.sum(axis=1)


def classification_leaderboard(rows: dict[str, dict[str, float]], metric: str) -> pd.DataFrame:
    """One row per model (rank, model, its scores), best first by ``metric``; ties go to the name's order.

    ``metric`` is a score's name or a split's column of it ("val_macro_f1").
    """
    higher = higher_is_better(metric)
    missing = sorted(name for name, scores in rows.items() if metric not in scores)
    if missing:
        raise ValueError(f"models {missing} have no '{metric}' score to rank by")
    board = pd.DataFrame([{"model": name, **scores} for name, scores in rows.items()])
    if board.empty:
        return pd.DataFrame(columns=["rank", "model", metric])
    # Negating a higher-is-better score lets one ascending sort rank by score, then by name.
    board["_key"] = -board[metric] if higher else board[metric]
    board = board.sort_values(["_key", "model"], kind="stable").drop(columns="_key").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board
