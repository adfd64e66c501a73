"""The pipeline run's MLflow bookkeeping: open and close it, attach validation and the dataset, find it again by its key."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

from seqpipe.config import PipelineConfig
from seqpipe.data.prepare import META_FILE
from seqpipe.data.snapshot import read_manifest
from seqpipe.hashing import short_digest
from seqpipe.layout import Layout
from seqpipe.io import read_json
from seqpipe.tracking.datasets import REJECTED, SPLITS, dataset_name, log_snapshot_inputs, parquet_schema
from seqpipe.tracking.lineage import TAG_PREFIX, git_state, lineage_tags
from seqpipe.tracking.runs import create_run, finish_run
from seqpipe.tracking.store import connect
from seqpipe.steps.data import DOCS_DIR, REPORT_FILE, read_validation

log = logging.getLogger(__name__)

PIPELINE_KEY_TAG = TAG_PREFIX + "pipeline_key"


def _lineage(cfg: PipelineConfig, flow_run_id: str | None) -> dict[str, str]:
    manifest = read_manifest(Layout.of(cfg).raw)
    report = read_validation(cfg)
    return lineage_tags(cfg, dataset_md5=manifest.md5, source=manifest.source,
                        validation=_verdict(report), flow_run_id=flow_run_id)


def start_pipeline_run(cfg: PipelineConfig, flow_run_id: str | None = None) -> str:
    """Open the parent MLflow run of one pipeline run; log the config and the code version."""
    client, experiment_id = connect(cfg)
    tags = {TAG_PREFIX + k: v for k, v in git_state(cfg.root).items()}
    tags |= {TAG_PREFIX + "config_hash": cfg.fingerprint(), TAG_PREFIX + "prefect_flow_run_id": flow_run_id or "none"}
    run_id = create_run(client, experiment_id, "pipeline", tags)
    client.log_dict(run_id, cfg.model_dump(mode="json", exclude={"root", "conf_dir"}), "config/pipeline.json")
    return run_id


def record_validation(cfg: PipelineConfig, run_id: str, flow_run_id: str | None = None) -> None:
    """Attach the latest snapshot's hash, validation report and Data Docs to a run, passed or failed.

    The snapshot also becomes the run's MLflow dataset inputs (``record_dataset``).
    """
    layout = Layout.of(cfg)
    manifest = read_manifest(layout.raw)
    reports = layout.reports / manifest.md5
    if not (reports / REPORT_FILE).is_file():
        return
    report = read_json(reports / REPORT_FILE)
    client, _ = connect(cfg)
    tags = lineage_tags(cfg, dataset_md5=manifest.md5, source=manifest.source,
                        validation=_verdict(report), flow_run_id=flow_run_id)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.log_artifact(run_id, str(reports / REPORT_FILE), "validation")
    if (reports / DOCS_DIR).is_dir():
        client.log_artifacts(run_id, str(reports / DOCS_DIR), "validation/data_docs")
    record_dataset(cfg, run_id)


def record_dataset(cfg: PipelineConfig, run_id: str, contexts: Iterable[str] | None = None) -> None:
    """Log the latest snapshot as the run's MLflow dataset inputs, so MLflow's UI shows what data it saw.

    The digest is the snapshot's MD5 (as in ``seqpipe.dataset_md5`` and DVC), the name
    the source's (``tourism-monthly``, ``sales``), one input per context: ``contexts``,
    or by default the three splits when validation let the snapshot through and
    ``rejected`` when it did not (nothing before it was validated). Only metadata is
    logged: columns, rows, series and time range, all properties of the snapshot itself
    (MLflow keeps one record per name and digest for the whole experiment); the verdict
    stays in the run's tags. Logging it again is a no-op.
    """
    layout = Layout.of(cfg)
    manifest = read_manifest(layout.raw)
    report_path = layout.reports / manifest.md5 / REPORT_FILE
    report = read_json(report_path) if report_path.is_file() else None
    if contexts is None:
        if report is None:
            return
        contexts = (REJECTED,) if _verdict(report) == "failed" else SPLITS
    snapshot = manifest.snapshot_path(layout.raw)
    profile = {"rows": manifest.rows, "series": manifest.series, "time_min": manifest.time_min,
               "time_max": manifest.time_max, "snapshot": manifest.snapshot}
    client, _ = connect(cfg)
    log_snapshot_inputs(client, run_id, dataset_name(manifest.source), manifest.md5, manifest.source,
                        schema=parquet_schema(snapshot) if snapshot.is_file() else None,
                        profile=profile, contexts=contexts)


def _verdict(report: dict) -> str:
    if report["success"]:
        return "passed"
    # Classification has no quarantine: its reports hold no such list.
    return f"quarantined {len(report['quarantined'])} series" if report.get("quarantined") else "failed"


def finish_pipeline_run(cfg: PipelineConfig, run_id: str, succeeded: bool) -> None:
    client, _ = connect(cfg)
    finish_run(client, run_id, succeeded)


def pipeline_key(cfg: PipelineConfig) -> str:
    """What makes two training processes parts of the same pipeline run."""
    payload = {
        "dataset": read_json(Layout.of(cfg).prepared / META_FILE)["dataset"],
        "config": cfg.fingerprint(),
        "code": git_state(cfg.root)["git_commit"],
    }
    return short_digest(payload)


def pipeline_run_for(cfg: PipelineConfig) -> str:
    client, experiment_id = connect(cfg)
    key = pipeline_key(cfg)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    if found:
        return found[0].info.run_id
    run_id = start_pipeline_run(cfg)
    client.set_tag(run_id, PIPELINE_KEY_TAG, key)
    record_validation(cfg, run_id)
    return run_id


def record_decision(cfg: PipelineConfig, run_id: str, decision: str, reason: str) -> None:
    """Keep a scheduled run's decision (skip, retrain) on its MLflow run, beside the data it saw."""
    client, _ = connect(cfg)
    client.set_tag(run_id, TAG_PREFIX + "decision", decision)
    client.set_tag(run_id, TAG_PREFIX + "decision_reason", reason)
    log.info("decision: %s (%s)", decision, reason)


@contextlib.contextmanager
def pipeline_run_of_data(cfg: PipelineConfig) -> Iterator[str]:
    """The pipeline run of this data, config and code (opened if none is), finished as the block ends."""
    run_id = pipeline_run_for(cfg)
    try:
        yield run_id
    except BaseException:
        finish_pipeline_run(cfg, run_id, succeeded=False)
        raise
    finish_pipeline_run(cfg, run_id, succeeded=True)
