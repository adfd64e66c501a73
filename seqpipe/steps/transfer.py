"""Training elsewhere: prepared data and trained models carried between machines through the tracking store."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from seqpipe.config import PipelineConfig
from seqpipe.io import write_json
from seqpipe.layout import Layout
from seqpipe.tracking.exchange import fetch_folder, publish_folder
from seqpipe.tracking.store import connect

log = logging.getLogger(__name__)

# Artifact paths that carry folders between machines (see seqpipe.tracking.exchange).
MODEL_FILES = "model_files"
PREPARED_FILES = "inputs/prepared"
# Where each training flow run leaves its summary in the pipeline run, for a pipeline on another machine.
TRAINING_SUMMARIES = "training"


def publish_prepared(cfg: PipelineConfig, run_id: str) -> str:
    """Put ``data/prepared`` in the pipeline run, for training workers that share no disk with it."""
    client, _ = connect(cfg)
    return publish_folder(client, run_id, Layout.of(cfg).prepared, PREPARED_FILES)


def fetch_prepared(cfg: PipelineConfig, run_id: str, prepared_md5: str) -> None:
    """Make ``data/prepared`` the pipeline run's (no transfer when it already is)."""
    client, _ = connect(cfg)
    if fetch_folder(client, run_id, PREPARED_FILES, Layout.of(cfg).prepared, prepared_md5):
        log.info("fetched prepared data %s from MLflow run %s", prepared_md5, run_id)


def fetch_trained(cfg: PipelineConfig, summary: dict) -> None:
    """Bring a model trained elsewhere (``summary`` as ``train`` returned it) into ``data/models``."""
    client, _ = connect(cfg)
    layout = Layout.of(cfg)
    name = summary["name"]
    if fetch_folder(client, summary["run_id"], MODEL_FILES, layout.models / name, summary["model_md5"]):
        log.info("fetched %s from MLflow run %s", name, summary["run_id"])
    write_json(layout.runs / f"{name}.json", summary)


def publish_training_summary(cfg: PipelineConfig, parent_run_id: str, summary: dict) -> None:
    """Leave ``summary`` (as ``train`` returned it) in the pipeline run as ``training/<name>.json``."""
    client, _ = connect(cfg)
    client.log_dict(parent_run_id, summary, f"{TRAINING_SUMMARIES}/{summary['name']}.json")


def fetch_training_summary(cfg: PipelineConfig, parent_run_id: str, name: str) -> dict:
    """The summary a training flow run left in the pipeline run for model ``name``."""
    client, _ = connect(cfg)
    with tempfile.TemporaryDirectory() as scratch:
        path = client.download_artifacts(parent_run_id, f"{TRAINING_SUMMARIES}/{name}.json", scratch)
        return json.loads(Path(path).read_text())
