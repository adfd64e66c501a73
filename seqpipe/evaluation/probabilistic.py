"""Scores of probabilistic forecasts from samples: CRPS and the coverage of central intervals."""

from __future__ import annotations

import numpy as np


def crps(actual: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Mean CRPS per series from samples: E|X - y| - E|X - X'| / 2 (Gneiting and Raftery 2007).

    E|X - X'| comes from the sorted samples in O(S log S) instead of all S^2 pairs.
    """
    count = samples.shape[1]
    spread_to_actual = np.abs(samples - actual[:, None, :]).mean(axis=1)
    ordered = np.sort(samples, axis=1)
    weights = (2 * np.arange(1, count + 1) - count - 1)[None, :, None]
    pairwise = 2.0 * (weights * ordered).sum(axis=1) / count**2
    return (spread_to_actual - 0.5 * pairwise).mean(axis=1)


def coverage(actual: np.ndarray, samples: np.ndarray, level: float) -> np.ndarray:
    """Share of points per series inside the central ``level`` interval of the samples."""
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return ((actual >= low) & (actual <= high)).mean(axis=1)


def probabilistic_scores(actual: np.ndarray, samples: np.ndarray, levels: list[float]) -> dict[str, np.ndarray]:
    scores = {"crps": crps(actual, samples)}
    for level in levels:
        scores[f"coverage_{round(level * 100)}"] = coverage(actual, samples, level)
    return scores
