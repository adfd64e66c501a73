"""Folders carried between machines through MLflow's artifact store.

A training worker on another machine shares no disk with the pipeline that sent it
work; both reach the tracking server. The pipeline run carries the prepared data out,
each training run carries its model folder back, and a folder is only fetched when the
copy here differs (by content) from the one wanted.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from seqpipe.io import atomic_dir, folder_md5


def publish_folder(client: MlflowClient, run_id: str, folder: Path, artifact_path: str) -> str:
    """Log ``folder``'s files under ``artifact_path`` of the run; returns the folder's content hash."""
    client.log_artifacts(run_id, str(folder), artifact_path)
    return folder_md5(folder)


def fetch_folder(client: MlflowClient, run_id: str, artifact_path: str, target: Path, expected_md5: str) -> bool:
    """Make ``target`` hold the run's ``artifact_path`` with content ``expected_md5``; True if it was downloaded.

    The download lands in a staging folder and replaces ``target`` only once its hash
    checks out, so an interrupted transfer never leaves a half-copied folder behind.
    """
    if target.is_dir() and folder_md5(target) == expected_md5:
        return False
    with tempfile.TemporaryDirectory(prefix="seqpipe-fetch-") as scratch:
        downloaded = Path(client.download_artifacts(run_id, artifact_path, scratch))
        got = folder_md5(downloaded)
        if got != expected_md5:
            raise OSError(f"run {run_id} artifact '{artifact_path}' has content {got}, expected {expected_md5}")
        with atomic_dir(target) as staging:
            shutil.copytree(downloaded, staging, dirs_exist_ok=True)
    return True
