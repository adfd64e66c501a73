"""File outputs that never leave a half-written result where a good one stood.

Every step writes into a temporary sibling and renames it into place, so a crash or
a failed check leaves the previous output (and whatever reads it) untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# mkstemp / mkdtemp create private (0600 / 0700) entries; outputs get the usual modes.
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()
KEPT_ACROSS_SWAP = (".gitignore",)


@contextlib.contextmanager
def staging_file(folder: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh hidden file path in ``folder``; it is removed unless the caller renamed it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".staging.", suffix=suffix, dir=folder)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``target``; rename it over ``target`` on success."""
    with staging_file(target.parent, suffix=target.suffix) as tmp:
        yield tmp
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``target`` as a whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staging.chmod(DIR_MODE)
    try:
        yield staging
        # A folder may hold version-control files (DVC writes a .gitignore beside the
        # outputs it tracks): they belong to the folder, not to this step's output.
        for kept in KEPT_ACROSS_SWAP:
            if (target / kept).is_file() and not (staging / kept).exists():
                shutil.copy2(target / kept, staging / kept)
        retired = target.with_name(f".{target.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(path: Path, payload: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write CSV or Parquet by the file's suffix."""
    if path.suffix.lower() == ".parquet":
        return write_parquet(frame, path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of the file's bytes: the same hash DVC records for a single-file output."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_md5(folder: Path) -> str:
    """One hash for a folder's content: the MD5 of its files' relative paths and MD5s."""
    digest = hashlib.md5()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\t{md5_file(path)}\n".encode())
    return digest.hexdigest()
