"""The time step of a canonical frame: integer steps, or a calendar frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset


def is_calendar(frame: pd.DataFrame) -> bool:
    return pd.api.types.is_datetime64_any_dtype(frame["timestamp"])


SERIES_CONSULTED = 5


def infer_frequency(frame: pd.DataFrame) -> str | None:
    """The calendar frequency most of the longest series agree on (None when none is regular).

    Several series are asked because one broken series (a duplicate, a stray stamp) has
    no regular frequency and must not decide for the rest.
    """
    lengths = frame.groupby("series_id", sort=False)["timestamp"].size().nlargest(SERIES_CONSULTED)
    votes = []
    for series_id in lengths.index:
        stamps = pd.DatetimeIndex(frame.loc[frame["series_id"] == series_id, "timestamp"]).unique().sort_values()
        votes.append(pd.infer_freq(stamps) if len(stamps) >= 3 else None)
    found = pd.Series([v for v in votes if v is not None])
    return str(found.mode().iloc[0]) if len(found) else None


def on_grid(timestamps: pd.Series, freq: str | None) -> np.ndarray:
    """Whether each timestamp lies on the frequency's grid (integer steps always do)."""
    if not is_calendar(timestamps.to_frame("timestamp")):
        return np.ones(len(timestamps), dtype=bool)
    offset = to_offset(freq)
    index = pd.DatetimeIndex(timestamps)
    # Forward then back one period returns a stamp to itself only when it is on the grid.
    return ((index + offset) - offset == index)


def expected_next(timestamps: pd.Series, freq: str | None) -> np.ndarray:
    """Where the next observation of each row falls on a regular grid."""
    if not is_calendar(timestamps.to_frame("timestamp")):
        return timestamps.to_numpy() + 1
    return (pd.DatetimeIndex(timestamps) + to_offset(freq)).to_numpy()
