"""Scheduled retraining: the data production was trained on, and drift against it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import pandas as pd

from seqpipe.config import PipelineConfig
from seqpipe.data.catalog import series_spec
from seqpipe.data.drift import DriftReport, detect_drift
from seqpipe.data.snapshot import SNAPSHOTS, read_snapshot
from seqpipe.layout import Layout
from seqpipe.steps.runs import record_decision
from seqpipe.io import write_json
from seqpipe.tracking.lineage import TAG_PREFIX
from seqpipe.tracking.registry import PRODUCTION, alias_version
from seqpipe.tracking.runs import log_metrics
from seqpipe.tracking.store import connect
from seqpipe.tasks import task_step

DRIFT_DIR = "drift"

logger = logging.getLogger(__name__)


def production_dataset(cfg: PipelineConfig) -> str | None:
    """The raw snapshot hash the ``production`` version was trained on; None without production."""
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    version = alias_version(client, name, PRODUCTION)
    if version is None:
        return None
    return client.get_model_version(name, version).tags.get(TAG_PREFIX + "dataset_md5")


@task_step
def check_drift(cfg: PipelineConfig, reference_md5: str, run_id: str | None = None) -> DriftReport | None:
    """Compare the latest snapshot with ``reference_md5``'s, series by series; log it to ``run_id``.

    Snapshots are content-addressed and never deleted, so the reference is on disk
    wherever it was ingested; elsewhere `dvc pull` brings it (the report says so).
    """
    snapshots = drift_snapshots(cfg, reference_md5)
    if snapshots is None:
        return None
    reference, current, current_md5 = snapshots
    report = detect_drift(reference, current, cfg.drift, reference_md5, current_md5,
                          season=series_spec(cfg.data).season)
    publish_drift(cfg, report, current_md5, run_id)
    return report


class DriftSummary(Protocol):
    """What the drift reports of every task share, and what is written and logged of them."""

    # Properties, not attributes: the reports are frozen dataclasses.
    @property
    def tested(self) -> int: ...

    @property
    def drifted(self) -> int: ...

    @property
    def drifted_share(self) -> float: ...

    @property
    def mean_psi(self) -> float: ...

    def summary(self) -> str: ...

    def to_dict(self) -> dict: ...


def drift_snapshots(cfg: PipelineConfig, reference_md5: str) -> tuple[pd.DataFrame, pd.DataFrame, str] | None:
    """The reference snapshot, the latest one and its hash; None (with a warning) when the reference is not here."""
    layout = Layout.of(cfg)
    current, manifest = read_snapshot(layout.raw)
    reference_path = layout.raw / SNAPSHOTS / f"{reference_md5}.parquet"
    if not reference_path.is_file():
        logger.warning(f"drift: production's snapshot {reference_path} is not here (`dvc pull` fetches it); not checked")
        return None
    return pd.read_parquet(reference_path), current, manifest.md5


def publish_drift(cfg: PipelineConfig, report: DriftSummary, current_md5: str, run_id: str | None) -> Path:
    """Write ``report`` under the drift reports, log its summary, and attach it and its counts to ``run_id``."""
    path = write_json(Layout.of(cfg).reports.parent / DRIFT_DIR / f"{current_md5}.json", report.to_dict())
    logger.info(report.summary())
    if run_id:
        client, _ = connect(cfg)
        client.log_artifact(run_id, str(path), "drift")
        log_metrics(client, run_id, {"drift_series_tested": report.tested, "drift_series_drifted": report.drifted,
                                     "drift_share": report.drifted_share, "drift_mean_psi": report.mean_psi})
    return path


def retraining_decision(cfg: PipelineConfig, run_id: str, dataset_md5: str, scheduled: bool) -> str | None:
    """Compare the new snapshot with production's and record the decision on ``run_id``; the reason to stop, if any.

    A scheduled run stops on the data production was trained on (``schedule.skip_unchanged``);
    one that was asked for retrains anyway; new data is checked for drift first.
    """
    reference = production_dataset(cfg)
    if reference is None:
        record_decision(cfg, run_id, "retrain", "no production model yet")
        return None
    if reference == dataset_md5:
        if scheduled and cfg.schedule.skip_unchanged:
            record_decision(cfg, run_id, "skip", f"data {dataset_md5} is what production was trained on")
            return "unchanged data"
        record_decision(cfg, run_id, "retrain", "data unchanged, but retraining was asked for")
        return None
    drift = check_drift(cfg, reference, run_id)
    reason = f"new data {dataset_md5} (production: {reference})" + (f"; {drift.summary()}" if drift else "")
    record_decision(cfg, run_id, "retrain", reason)
    return None
