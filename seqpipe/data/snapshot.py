"""Immutable raw snapshots: each ingest is stored under its content hash and never rewritten.

``data/raw/manifest.json`` names the latest snapshot. A later bad ingest adds a new
snapshot beside the good ones; the good ones stay byte for byte as they were.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from seqpipe.errors import SourceError
from seqpipe.io import md5_file, staging_file, read_json, write_json

MANIFEST = "manifest.json"
SNAPSHOTS = "snapshots"


@dataclass(frozen=True)
class Manifest:
    snapshot: str  # path relative to the raw folder
    md5: str  # the file's MD5, as DVC records it
    source: str
    rows: int
    series: int  # distinct series, or sequences for classification
    time_min: str  # the first and last timestamp, or step
    time_max: str

    def snapshot_path(self, raw_dir: Path) -> Path:
        return raw_dir / self.snapshot


def write_snapshot(frame: pd.DataFrame, raw_dir: Path, source: str, ids: str = "series_id",
                   order: str = "timestamp") -> Manifest:
    """Store ``frame`` under its content hash; ``ids`` names what ``series`` counts, ``order`` what the range spans."""
    snapshots = raw_dir / SNAPSHOTS
    snapshots.mkdir(parents=True, exist_ok=True)
    # The name is the content's hash, known only once written: stage, hash, then rename.
    with staging_file(snapshots, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)
        md5 = md5_file(tmp)
        final = snapshots / f"{md5}.parquet"
        if not final.exists():
            os.replace(tmp, final)
    manifest = Manifest(
        snapshot=f"{SNAPSHOTS}/{final.name}",
        md5=md5,
        source=source,
        rows=len(frame),
        series=int(frame[ids].nunique()),
        time_min=str(frame[order].min()),
        time_max=str(frame[order].max()),
    )
    write_json(raw_dir / MANIFEST, asdict(manifest))
    return manifest


def read_manifest(raw_dir: Path) -> Manifest:
    path = raw_dir / MANIFEST
    if not path.is_file():
        raise SourceError(f"{path}: no raw snapshot yet; run `seqpipe ingest` first")
    return Manifest(**read_json(path))


def read_snapshot(raw_dir: Path) -> tuple[pd.DataFrame, Manifest]:
    manifest = read_manifest(raw_dir)
    return pd.read_parquet(manifest.snapshot_path(raw_dir)), manifest
