"""Time-ordered split, per-series scaling and sliding windows, all vectorised.

Per series of length n: the last ``horizon`` points are test, the ``horizon`` before
them validation, the rest training. Training windows have their whole target inside
the training part; validation and test get one window each, ending at their origin.
Covariates are scaled like the target; they and calendar features (see ``features``)
become channels after it.

With ``prepare.pad_history`` (``Features.mask``), a window's history may reach up to
``lookback - 1`` points before its series' first point: those positions are zeros (in
scaled units, every channel) and the last channel, the mask, is 0 there and 1 on real
points. A series then needs only ``2 x horizon + 1`` points (one real point of history
before its validation window) instead of ``lookback + 2 x horizon``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from seqpipe.data import CANONICAL_COLUMNS
from seqpipe.data.catalog import SeriesSpec, length_rule, shortest_history, shortest_splittable
from seqpipe.data.domain import NonNegative, lower_bound_of
from seqpipe.data.features import (
    Features,
    covariate_scaler_table,
    covariate_scalers_from,
    exogenous_channels,
    fit_covariate_scalers,
)
from seqpipe.data.frequency import is_calendar
from seqpipe.data.scaling import Scalers, fit_scalers
from seqpipe.errors import ConfigError, DataValidationError
from seqpipe.io import read_json

WINDOWS_FILE = "windows.npz"
VALUES_FILE = "scaled.npy"
SCALERS_FILE = "scalers.parquet"
COVARIATE_SCALERS_FILE = "covariate_scalers.parquet"
SERIES_FILE = "series.parquet"
META_FILE = "meta.json"
SPLITS = ("train", "val", "test")
SERIES_LISTED = 10


@dataclass(frozen=True)
class Windows:
    """Windows over the scaled series, stored as start rows: ``x`` (n, lookback, channels), ``y`` (n, horizon).

    Storing starts instead of copies keeps prepared data the size of the series itself;
    ``x`` and ``y`` are gathered (vectorised) the first time they are used.
    """

    # Every series' scaled values, concatenated (float32): (rows,), or (rows, channels) target first;
    # padded (``Features.mask``), each series' rows follow ``lookback`` rows of zeros.
    values: np.ndarray
    starts: np.ndarray  # the row where each window begins
    series: np.ndarray  # each window's index into the scaler table
    lookback: int
    horizon: int

    def __len__(self) -> int:
        return len(self.starts)

    def _gather(self, values: np.ndarray, offset: int, width: int) -> np.ndarray:
        return np.asarray(values[self.starts[:, None] + (offset + np.arange(width))], dtype=np.float32)

    @cached_property
    def x(self) -> np.ndarray:
        x = self._gather(self.values, 0, self.lookback)
        return x[:, :, None] if x.ndim == 2 else x

    @cached_property
    def y(self) -> np.ndarray:
        target = self.values if self.values.ndim == 1 else self.values[:, 0]
        return self._gather(target, self.lookback, self.horizon)


@dataclass(frozen=True)
class PreparedData:
    spec: SeriesSpec
    scalers: Scalers
    train: Windows
    val: Windows
    test: Windows
    frame: pd.DataFrame  # canonical rows, covariates and ``split``, in original units
    features: Features = Features()
    covariate_scalers: dict[str, Scalers] = field(default_factory=dict)
    lower_bound: float | None = None  # forecasts are clipped to it (seqpipe.data.domain); None: unbounded


def _layout(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Series codes per row (frame is sorted by series), the unique ids, row offsets and lengths."""
    codes, ids = pd.factorize(frame["series_id"], sort=True)
    if len(codes) > 1 and (np.diff(codes) < 0).any():
        raise ValueError("the frame is not sorted by series_id; ingest writes canonical order")
    lengths = np.bincount(codes, minlength=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return codes, np.asarray(ids, dtype=object), offsets, lengths


def _windows(values: np.ndarray, starts: np.ndarray, series: np.ndarray, lookback: int, horizon: int) -> Windows:
    return Windows(values, starts.astype(np.int64), series.astype(np.int64), lookback, horizon)


def _check_inputs(frame: pd.DataFrame, features: Features) -> None:
    absent = [name for name in features.covariates if name not in frame.columns]
    if absent:
        raise ConfigError(f"covariates {absent} (data.source.columns.covariates) are not in the validated data: "
                          "run `seqpipe ingest` and `seqpipe validate` again")
    if features.calendar and not is_calendar(frame):
        raise ConfigError(f"prepare.calendar_features {list(features.calendar)} need calendar timestamps, but this "
                          "data has integer time steps (no dates); remove them, or give the source real dates")


def _check_lengths(ids: np.ndarray, lengths: np.ndarray, lookback: int, horizon: int, padded: bool) -> None:
    """Every series must afford its validation and test windows, or they would reach into its neighbour."""
    needed = shortest_splittable(lookback, horizon, padded)
    short = ids[lengths < needed]
    if len(short):
        more = f" and {len(short) - SERIES_LISTED} more" if len(short) > SERIES_LISTED else ""
        padding = ("prepare.pad_history: true (at least one real point of history)" if padded else
                   f"prepare.pad_history: false (true needs only {length_rule(True)} = "
                   f"{shortest_splittable(lookback, horizon, True)})")
        raise DataValidationError(
            f"{len(short)} series are shorter than {length_rule(padded)} = {needed} points (lookback {lookback}, "
            f"horizon {horizon}, {padding}), which prepare needs for a validation and a test window: "
            f"{list(short[:SERIES_LISTED])}{more}; validation.min_length lower than {needed} let them through")


def prepare_frame(frame: pd.DataFrame, spec: SeriesSpec, scaler: str, stride: int = 1,
                  features: Features = Features(), non_negative: NonNegative = "never") -> PreparedData:
    """Split, scale and window a canonical frame; ``features.mask`` pads short histories (module docstring)."""
    lookback, horizon, padded = spec.lookback, spec.horizon, features.mask
    _check_inputs(frame, features)
    frame = frame[[*CANONICAL_COLUMNS, *features.covariates]]
    codes, ids, offsets, lengths = _layout(frame)
    _check_lengths(ids, lengths, lookback, horizon, padded)
    position = np.arange(len(frame)) - offsets[codes]
    length = lengths[codes]
    train_end = length - 2 * horizon
    split = np.select([position >= length - horizon, position >= train_end], ["test", "val"], "train")

    values = frame["value"].to_numpy(np.float64)
    scalers = fit_scalers(values, codes, ids, split == "train", scaler)
    scaled = scalers.transform(values, codes).astype(np.float32)
    covariate_scalers = fit_covariate_scalers(frame, features.covariates, codes, ids, split == "train", scaler)
    if features.channels > 1:
        exogenous = exogenous_channels(frame, features, covariate_scalers, codes).astype(np.float32)
        scaled = np.column_stack([scaled, exogenous])

    # Where each real row sits in the windows' array: after its series' padding rows, if any.
    pad = lookback if padded else 0
    row = np.arange(len(frame)) + pad * (codes + 1)
    if pad:
        # Zeros in every channel, the mask included; real rows carry mask 1 (exogenous_channels).
        array = np.zeros((len(frame) + pad * len(ids), *scaled.shape[1:]), dtype=np.float32)
        array[row] = scaled
        scaled = array
    # A window is cut at the row of its target's first point; its history is the lookback before it.
    # Training windows: the whole target in the training part, enough real history, on the stride's grid
    # (counted from where an unpadded window would start, so padding only adds earlier windows).
    is_train_target = ((position >= shortest_history(lookback, padded)) & (position + horizon <= train_end)
                       & ((position - lookback) % stride == 0))
    train = _windows(scaled, row[is_train_target] - lookback, codes[is_train_target], lookback, horizon)
    series = np.arange(len(ids))
    first_row = offsets + pad * (series + 1)
    val = _windows(scaled, first_row + lengths - 2 * horizon - lookback, series, lookback, horizon)
    test = _windows(scaled, first_row + lengths - horizon - lookback, series, lookback, horizon)

    annotated = frame.assign(split=pd.Categorical(split, categories=SPLITS))
    return PreparedData(spec=spec, scalers=scalers, train=train, val=val, test=test, frame=annotated,
                        features=features, covariate_scalers=covariate_scalers,
                        lower_bound=lower_bound_of(values[split == "train"], non_negative))


def save_prepared(prepared: PreparedData, folder: Path, dataset: str) -> dict:
    """Write the prepared data into ``folder`` (a fresh staging folder); return its metadata.

    Without covariates, calendar features or padding the files are exactly those of a
    one-channel preparation: no ``features`` key, no covariate scaler table, a 1-D
    ``scaled.npy``. Padded, ``scaled.npy`` holds the padding rows and meta.json says ``padded``.
    """
    np.save(folder / VALUES_FILE, prepared.train.values)
    arrays = {}
    for name in SPLITS:
        windows: Windows = getattr(prepared, name)
        arrays |= {f"{name}_starts": windows.starts, f"{name}_series": windows.series}
    np.savez(folder / WINDOWS_FILE, **arrays)
    prepared.scalers.to_frame().to_parquet(folder / SCALERS_FILE, index=False)
    if prepared.covariate_scalers:
        covariate_scaler_table(prepared.covariate_scalers).to_parquet(folder / COVARIATE_SCALERS_FILE, index=False)
    prepared.frame.to_parquet(folder / SERIES_FILE, index=False)
    meta = {
        "spec": asdict(prepared.spec),
        "dataset": dataset,
        "scaler": prepared.scalers.method,
        "series": len(prepared.scalers.series_ids),
        "windows": {name: len(getattr(prepared, name)) for name in SPLITS},
    }
    if prepared.features.channels > 1:
        meta["features"] = prepared.features.to_dict()
    if prepared.lower_bound is not None:
        meta["lower_bound"] = prepared.lower_bound
    if prepared.features.mask:
        meta["padded"] = True
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def load_prepared(folder: Path) -> PreparedData:
    meta = read_json(folder / META_FILE)
    spec = SeriesSpec(**meta["spec"])
    values = np.load(folder / VALUES_FILE)
    with np.load(folder / WINDOWS_FILE) as arrays:
        splits = {
            name: Windows(values, arrays[f"{name}_starts"], arrays[f"{name}_series"], spec.lookback, spec.horizon)
            for name in SPLITS
        }
    covariates = folder / COVARIATE_SCALERS_FILE
    return PreparedData(
        spec=spec,
        scalers=Scalers.from_frame(pd.read_parquet(folder / SCALERS_FILE)),
        frame=pd.read_parquet(folder / SERIES_FILE),
        features=Features.from_dict(meta.get("features")),
        covariate_scalers=covariate_scalers_from(pd.read_parquet(covariates)) if covariates.is_file() else {},
        lower_bound=meta.get("lower_bound"),
        **splits,
    )
