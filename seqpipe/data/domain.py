"""The data's domain: series that cannot go below zero, and forecasts kept inside it.

Arrivals, sales and counts are never negative, yet a network's forecast (or a sample of
it) can be. ``prepare`` decides a lower bound once, from the training values or from the
config, records it with the prepared data and the registered model, and every forecast,
interval, sample and synthetic series is clipped to it where it is made.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

NonNegative = Literal["auto", "always", "never"]


def lower_bound_of(train_values: np.ndarray, setting: NonNegative) -> float | None:
    """0.0 when the forecasts must stay non-negative, None when they may take any value.

    ``auto``: when no training value is negative; ``always`` / ``never``: as the config says.
    """
    if setting == "always":
        return 0.0
    if setting == "never":
        return None
    finite = train_values[np.isfinite(train_values)]
    return 0.0 if len(finite) and (finite >= 0).all() else None


def bounded(values: np.ndarray, lower_bound: float | None) -> np.ndarray:
    """``values`` raised to ``lower_bound`` where below it; unchanged without a bound."""
    return values if lower_bound is None else np.maximum(values, lower_bound)
