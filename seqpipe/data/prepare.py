"""Time-ordered split, per-series scaling and sliding windows, all vectorised.

Per series of length n: the last ``horizon`` points are test, the ``horizon`` before
them validation, the rest training. Training windows have their whole target inside
the training part; validation and test get one window each, ending at their origin.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from seqpipe.data.catalog import SeriesSpec
from seqpipe.data.scaling import Scalers, fit_scalers
from seqpipe.io import read_json

WINDOWS_FILE = "windows.npz"
SCALERS_FILE = "scalers.parquet"
SERIES_FILE = "series.parquet"
META_FILE = "meta.json"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Windows:
    """Scaled model inputs ``x`` (n, lookback, 1) and targets ``y`` (n, horizon); ``series`` indexes scalers."""

    x: np.ndarray
    y: np.ndarray
    series: np.ndarray


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
    view = sliding_window_view(scaled, lookback + horizon)
    block = view[starts].astype(np.float32)
    return Windows(x=block[:, :lookback, None].copy(), y=block[:, lookback:].copy(), series=codes[starts].astype(np.int64))


def prepare_frame(frame: pd.DataFrame, spec: SeriesSpec, scaler: str, stride: int = 1) -> PreparedData:
    lookback, horizon = spec.lookback, spec.horizon
    codes, ids, offsets, lengths = _layout(frame)
    position = np.arange(len(frame)) - offsets[codes]
    length = lengths[codes]
    train_end = length - 2 * horizon
    split = np.select([position >= length - horizon, position >= train_end], ["test", "val"], "train")

    values = frame["value"].to_numpy(np.float64)
    scalers = fit_scalers(values, codes, ids, split == "train", scaler)
    scaled = (values - scalers.loc[codes]) / scalers.scale[codes]

    is_train_start = (position <= train_end - lookback - horizon) & (position % stride == 0)
    train = _windows(scaled, np.flatnonzero(is_train_start), codes, lookback, horizon)
    val = _windows(scaled, offsets + lengths - 2 * horizon - lookback, codes, lookback, horizon)
    test = _windows(scaled, offsets + lengths - horizon - lookback, codes, lookback, horizon)

    annotated = frame.assign(split=pd.Categorical(split, categories=SPLITS))
    return PreparedData(spec=spec, scalers=scalers, train=train, val=val, test=test, frame=annotated)


def save_prepared(prepared: PreparedData, folder: Path, dataset: str) -> dict:
    """Write the prepared data into ``folder`` (a fresh staging folder); return its metadata."""
    arrays = {}
    for name in SPLITS:
        windows: Windows = getattr(prepared, name)
        arrays |= {f"{name}_x": windows.x, f"{name}_y": windows.y, f"{name}_series": windows.series}
    np.savez(folder / WINDOWS_FILE, **arrays)
    prepared.scalers.to_frame().to_parquet(folder / SCALERS_FILE, index=False)
    prepared.frame.to_parquet(folder / SERIES_FILE, index=False)
    meta = {
        "spec": asdict(prepared.spec),
        "dataset": dataset,
        "scaler": prepared.scalers.method,
        "series": len(prepared.scalers.series_ids),
        "windows": {name: len(getattr(prepared, name).y) for name in SPLITS},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def load_prepared(folder: Path) -> PreparedData:
    spec = SeriesSpec(**read_json(folder / META_FILE)["spec"])
    with np.load(folder / WINDOWS_FILE) as arrays:
        splits = {
            name: Windows(x=arrays[f"{name}_x"], y=arrays[f"{name}_y"], series=arrays[f"{name}_series"])
            for name in SPLITS
        }
    return PreparedData(
        spec=spec,
        scalers=Scalers.from_frame(pd.read_parquet(folder / SCALERS_FILE)),
        frame=pd.read_parquet(folder / SERIES_FILE),
        **splits,
    )
