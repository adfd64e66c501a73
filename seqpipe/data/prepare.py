"""Time-ordered split, per-series scaling and sliding windows, all vectorised.

Per series of length n: the last ``horizon`` points are test, the ``horizon`` before
them validation, the rest training. Training windows have their whole target inside
the training part; validation and test get one window each, ending at their origin.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from seqpipe.data.catalog import SeriesSpec
from seqpipe.data.scaling import Scalers, fit_scalers
from seqpipe.io import read_json

WINDOWS_FILE = "windows.npz"
VALUES_FILE = "scaled.npy"
SCALERS_FILE = "scalers.parquet"
SERIES_FILE = "series.parquet"
META_FILE = "meta.json"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Windows:
    """Windows over the scaled series, stored as start rows: ``x`` (n, lookback, 1), ``y`` (n, horizon).

    Storing starts instead of copies keeps prepared data the size of the series itself;
    ``x`` and ``y`` are gathered (vectorised) the first time they are used.
    """

    values: np.ndarray  # every series' scaled values, concatenated (float32)
    starts: np.ndarray  # the row where each window begins
    series: np.ndarray  # each window's index into the scaler table
    lookback: int
    horizon: int

    def __len__(self) -> int:
        return len(self.starts)

    def _gather(self, offset: int, width: int) -> np.ndarray:
        return np.asarray(self.values[self.starts[:, None] + (offset + np.arange(width))], dtype=np.float32)

    @cached_property
    def x(self) -> np.ndarray:
        return self._gather(0, self.lookback)[:, :, None]

    @cached_property
    def y(self) -> np.ndarray:
        return self._gather(self.lookback, self.horizon)


@dataclass(frozen=True)
class PreparedData:
    spec: SeriesSpec
    scalers: Scalers
    train: Windows
    val: Windows
    test: Windows
    frame: pd.DataFrame  # canonical rows plus ``split``, in original units


def _layout(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Series codes per row (frame is sorted by series), the unique ids, row offsets and lengths."""
    codes, ids = pd.factorize(frame["series_id"], sort=True)
    if len(codes) > 1 and (np.diff(codes) < 0).any():
        raise ValueError("the frame is not sorted by series_id; ingest writes canonical order")
    lengths = np.bincount(codes, minlength=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return codes, np.asarray(ids, dtype=object), offsets, lengths


def _windows(scaled: np.ndarray, starts: np.ndarray, codes: np.ndarray, lookback: int, horizon: int) -> Windows:
    return Windows(scaled, starts.astype(np.int64), codes[starts].astype(np.int64), lookback, horizon)


def prepare_frame(frame: pd.DataFrame, spec: SeriesSpec, scaler: str, stride: int = 1) -> PreparedData:
    lookback, horizon = spec.lookback, spec.horizon
    codes, ids, offsets, lengths = _layout(frame)
    position = np.arange(len(frame)) - offsets[codes]
    length = lengths[codes]
    train_end = length - 2 * horizon
    split = np.select([position >= length - horizon, position >= train_end], ["test", "val"], "train")

    values = frame["value"].to_numpy(np.float64)
    scalers = fit_scalers(values, codes, ids, split == "train", scaler)
    scaled = scalers.transform(values, codes).astype(np.float32)

    is_train_start = (position <= train_end - lookback - horizon) & (position % stride == 0)
    train = _windows(scaled, np.flatnonzero(is_train_start), codes, lookback, horizon)
    val = _windows(scaled, offsets + lengths - 2 * horizon - lookback, codes, lookback, horizon)
    test = _windows(scaled, offsets + lengths - horizon - lookback, codes, lookback, horizon)

    annotated = frame.assign(split=pd.Categorical(split, categories=SPLITS))
    return PreparedData(spec=spec, scalers=scalers, train=train, val=val, test=test, frame=annotated)


def save_prepared(prepared: PreparedData, folder: Path, dataset: str) -> dict:
    """Write the prepared data into ``folder`` (a fresh staging folder); return its metadata."""
    np.save(folder / VALUES_FILE, prepared.train.values)
    arrays = {}
    for name in SPLITS:
        windows: Windows = getattr(prepared, name)
        arrays |= {f"{name}_starts": windows.starts, f"{name}_series": windows.series}
    np.savez(folder / WINDOWS_FILE, **arrays)
    prepared.scalers.to_frame().to_parquet(folder / SCALERS_FILE, index=False)
    prepared.frame.to_parquet(folder / SERIES_FILE, index=False)
    meta = {
        "spec": asdict(prepared.spec),
        "dataset": dataset,
        "scaler": prepared.scalers.method,
        "series": len(prepared.scalers.series_ids),
        "windows": {name: len(getattr(prepared, name)) for name in SPLITS},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def load_prepared(folder: Path) -> PreparedData:
    spec = SeriesSpec(**read_json(folder / META_FILE)["spec"])
    values = np.load(folder / VALUES_FILE)
    with np.load(folder / WINDOWS_FILE) as arrays:
        splits = {
            name: Windows(values, arrays[f"{name}_starts"], arrays[f"{name}_series"], spec.lookback, spec.horizon)
            for name in SPLITS
        }
    return PreparedData(
        spec=spec,
        scalers=Scalers.from_frame(pd.read_parquet(folder / SCALERS_FILE)),
        frame=pd.read_parquet(folder / SERIES_FILE),
        **splits,
    )
