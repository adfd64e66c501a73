"""Input channels beyond the target: covariates, calendar features and the history mask.

A model's input is ``(batch, lookback, channels)``: channel 0 is the scaled target,
then one channel per covariate (scaled per series, on the training part only, like the
target), then a sin/cos pair per calendar feature, then, with ``prepare.pad_history``,
the mask: 1 on a series' real points, 0 on the zero padding before its first point.
Prepare and serving both build the channels here, so a registered model sees exactly
what it was trained on.

Covariates are past-observed: only the history window carries them, so a forecast
never needs their future values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqpipe.data.scaling import Scalers, fit_scalers


def _cycle(position: pd.Series, period: pd.Series | float) -> np.ndarray:
    return (np.asarray(position, dtype=np.float64) / np.asarray(period, dtype=np.float64)) % 1.0


# Where in its cycle each timestamp falls, as a fraction in [0, 1); week 53 wraps onto week 1.
CALENDAR = {
    "minute_of_hour": lambda t: _cycle(t.dt.minute, 60),
    "hour_of_day": lambda t: _cycle(t.dt.hour + t.dt.minute / 60, 24),
    "day_of_week": lambda t: _cycle(t.dt.dayofweek, 7),
    "day_of_month": lambda t: _cycle(t.dt.day - 1, t.dt.days_in_month),
    "day_of_year": lambda t: _cycle(t.dt.dayofyear - 1, np.where(t.dt.is_leap_year, 366, 365)),
    "week_of_year": lambda t: _cycle(t.dt.isocalendar().week.astype(np.int64) - 1, 52),
    "month_of_year": lambda t: _cycle(t.dt.month - 1, 12),
    "quarter_of_year": lambda t: _cycle(t.dt.quarter - 1, 4),
}


# The mask channel's name in ``Features.names`` (a covariate cannot take it: see ``__post_init__``).
MASK_CHANNEL = "mask"


@dataclass(frozen=True)
class Features:
    """Which extra channels a model reads, in channel order after the target."""

    covariates: tuple[str, ...] = ()
    calendar: tuple[str, ...] = ()
    # Timestamps are stored in UTC; calendar positions are read on the source's local clock,
    # or a day stamped at local midnight east of Greenwich would fall on the previous weekday.
    timezone: str = "UTC"
    mask: bool = False  # histories are zero-padded to the lookback; the last channel marks the real points

    def __post_init__(self) -> None:
        unknown = sorted(set(self.calendar) - set(CALENDAR))
        if unknown:
            raise ValueError(f"unknown calendar features {unknown}; known: {list(CALENDAR)}")
        if self.mask and MASK_CHANNEL in self.covariates:
            raise ValueError(f"a covariate named '{MASK_CHANNEL}' would share its name with the history mask "
                             "(prepare.pad_history): rename the column")

    @property
    def channels(self) -> int:
        return 1 + len(self.covariates) + 2 * len(self.calendar) + int(self.mask)

    @property
    def names(self) -> list[str]:
        pairs = [f"{name}_{part}" for name in self.calendar for part in ("sin", "cos")]
        return ["value", *self.covariates, *pairs, *([MASK_CHANNEL] if self.mask else [])]

    def to_dict(self) -> dict:
        """Plain data for meta.json and the registered model's config; ``mask`` only when set.

        Without a mask the dict is what it was before masks existed, so those files and
        registered configs do not change.
        """
        data = {"covariates": list(self.covariates), "calendar_features": list(self.calendar),
                "timezone": self.timezone}
        return {**data, "mask": True} if self.mask else data

    @classmethod
    def from_dict(cls, data: dict | None) -> Features:
        """Read ``to_dict``'s keys; files and models from before covariates (or masks) have none."""
        data = data or {}
        return cls(tuple(data.get("covariates") or ()), tuple(data.get("calendar_features") or ()),
                   data.get("timezone") or "UTC", bool(data.get("mask", False)))


def calendar_channels(timestamps: pd.Series, names: tuple[str, ...], timezone: str = "UTC") -> np.ndarray:
    """``(rows, 2 x len(names))``: sin and cos of each (UTC) timestamp's position in each named cycle."""
    index = pd.DatetimeIndex(timestamps)
    if names and timezone != "UTC":
        index = index.tz_localize("UTC").tz_convert(timezone).tz_localize(None)
    stamps = pd.Series(index)
    columns = []
    for name in names:
        angle = 2 * np.pi * CALENDAR[name](stamps)
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1) if columns else np.empty((len(stamps), 0))


def fit_covariate_scalers(frame: pd.DataFrame, covariates: tuple[str, ...], codes: np.ndarray, series_ids: np.ndarray,
                          train_mask: np.ndarray, method: str) -> dict[str, Scalers]:
    """One scaler table per covariate, fitted per series on the training rows, like the target's."""
    return {name: fit_scalers(frame[name].to_numpy(np.float64), codes, series_ids, train_mask, method)
            for name in covariates}


def exogenous_channels(frame: pd.DataFrame, features: Features, scalers: dict[str, Scalers],
                       positions: np.ndarray) -> np.ndarray:
    """The channels after the target for each (real) row of ``frame``: ``(rows, channels - 1)``.

    ``positions`` is each row's index into the scaler tables (one per row). The mask, when
    the features have one, is 1 here: padding rows are added by whoever pads (all zeros).
    """
    scaled = [scalers[name].transform(frame[name].to_numpy(np.float64), positions) for name in features.covariates]
    covariates = np.stack(scaled, axis=1) if scaled else np.empty((len(frame), 0))
    calendar = calendar_channels(frame["timestamp"], features.calendar, features.timezone)
    mask = np.ones((len(frame), int(features.mask)))
    return np.concatenate([covariates, calendar, mask], axis=1)


COVARIATE_COLUMN = "covariate"


def covariate_scaler_table(scalers: dict[str, Scalers]) -> pd.DataFrame:
    """All covariates' scalers as one long table (``covariate`` names each), for Parquet."""
    return pd.concat([table.to_frame().assign(**{COVARIATE_COLUMN: name}) for name, table in scalers.items()],
                     ignore_index=True)


def covariate_scalers_from(table: pd.DataFrame) -> dict[str, Scalers]:
    return {str(name): Scalers.from_frame(group.drop(columns=COVARIATE_COLUMN))
            for name, group in table.groupby(COVARIATE_COLUMN, sort=False)}
