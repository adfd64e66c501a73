"""The time step of a canonical frame: integer steps, or a calendar frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick


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


def on_grid(frame: pd.DataFrame, freq: str | None) -> np.ndarray:
    """Whether each row's timestamp lies on its series' grid (integer steps always do)."""
    if not is_calendar(frame) or freq is None:
        return np.ones(len(frame), dtype=bool)
    offset = to_offset(freq)
    index = pd.DatetimeIndex(frame["timestamp"])
    if isinstance(offset, Tick):
        # Fixed-length steps (days, hours) have no calendar anchor: each series' first
        # stamp sets its grid, so a local-midnight series that crosses DST leaves it.
        first = frame.groupby("series_id", sort=False)["timestamp"].transform("first")
        return ((index - pd.DatetimeIndex(first)) % pd.Timedelta(offset) == pd.Timedelta(0))
    # Anchored periods (month starts, quarters): forward then back one period returns
    # a stamp to itself only when it is on the grid.
    return (index + offset) - offset == index


def expected_next(timestamps: pd.Series, freq: str | None) -> np.ndarray:
    """Where the next observation of each row falls on a regular grid."""
    if not is_calendar(timestamps.to_frame("timestamp")):
        return timestamps.to_numpy() + 1
    if freq is None:
        # No grid to step along: no step can be called a gap.
        return np.full(len(timestamps), np.datetime64("NaT"), dtype="datetime64[ns]")
    return (pd.DatetimeIndex(timestamps) + to_offset(freq)).to_numpy()
