"""Ingest, validate and prepare: from the source to ``data/raw``, ``data/validated`` and ``data/prepared``."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd

from seqpipe.config import PipelineConfig, SourceConfig
from seqpipe.data.catalog import SeriesSpec, series_spec
from seqpipe.data.features import Features
from seqpipe.data.prepare import prepare_frame, save_prepared
from seqpipe.data.snapshot import Manifest, read_snapshot, write_snapshot
from seqpipe.data.sources import read_source
from seqpipe.data.missing import fill_missing
from seqpipe.data.frequency import infer_frequency, is_calendar
from seqpipe.data.validation import Rules, ValidationReport, quarantine_candidates, validate_frame
from seqpipe.layout import VALIDATED_FILE, Layout
from seqpipe.errors import ConfigError, DataValidationError
from seqpipe.io import atomic_dir, read_json, write_json
from seqpipe.tasks import task_step

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
DOCS_DIR = "data_docs"


# -- ingest -------------------------------------------------------------------------------------

@task_step
def ingest(cfg: PipelineConfig, source: SourceConfig | None = None) -> Manifest:
    """Read the source into the canonical frame and store it as an immutable raw snapshot."""
    frame, origin = read_source(source or cfg.data.source, cfg.root)
    manifest = write_snapshot(frame, Layout.of(cfg).raw, origin)
    logger.info(f"ingested {manifest.rows} rows, {manifest.series} series from {origin} -> {manifest.snapshot}")
    return manifest


# -- validate -----------------------------------------------------------------------------------

def validation_rules(cfg: PipelineConfig) -> Rules:
    spec, rules = series_spec(cfg.data), cfg.validation
    return Rules(
        min_length=rules.min_length or spec.min_length(cfg.prepare.pad_history),
        allowed_missing_ratio=rules.allowed_missing_ratio,
        max_gap_ratio=rules.max_gap_ratio,
        value_min=rules.value_min,
        value_max=rules.value_max,
        min_rows=rules.min_rows,
        max_rows=rules.max_rows,
        freq=spec.freq,
        covariates=tuple(cfg.data.source.columns.covariates),
    )


@task_step
def validate(cfg: PipelineConfig) -> ValidationReport:
    """Run the GX suites on the latest snapshot; only data that passes reaches ``data/validated``.

    With ``validation.policy: quarantine``, series that broke a per-series rule are set
    aside under ``data/quarantine/<snapshot md5>/`` and the rest goes on, provided at
    least ``min_retained_share`` of the series remain.
    """
    layout = Layout.of(cfg)
    frame, manifest = read_snapshot(layout.raw)
    run_reports = layout.reports / manifest.md5
    shutil.rmtree(run_reports, ignore_errors=True)
    report = validate_frame(frame, dataset=manifest.md5, source=manifest.source, rules=validation_rules(cfg),
                            docs_dir=run_reports / DOCS_DIR)
    listed = cfg.validation.max_offending_listed
    where = str(manifest.snapshot_path(layout.raw))
    kept = frame
    if not report.success:
        write_json(run_reports / REPORT_FILE, report.to_dict())
        offending = quarantine_candidates(report) if cfg.validation.policy == "quarantine" else None
        if offending is None:
            raise DataValidationError(report.failure_message(where, listed))
        kept = frame[~frame["series_id"].isin(offending)]
        share = kept["series_id"].nunique() / max(report.series, 1)
        if share < cfg.validation.min_retained_share:
            raise DataValidationError(
                report.failure_message(where, listed) + f"\nquarantine would keep only {share:.1%} of the series, "
                f"below validation.min_retained_share = {cfg.validation.min_retained_share:.0%}")
        _quarantine(layout, manifest.md5, frame[frame["series_id"].isin(offending)], report, listed)
        report = replace(report, quarantined=sorted(offending))
    write_json(run_reports / REPORT_FILE, report.to_dict())
    with atomic_dir(layout.validated) as staging:
        kept.to_parquet(staging / VALIDATED_FILE, index=False)
        write_json(staging / REPORT_FILE, report.to_dict())
    verdict = "passed" if report.success else f"passed after quarantining {len(report.quarantined)} series"
    logger.info(f"validation {verdict}: {len(report.checks)} expectations on {report.rows} rows, {report.series} series"
                f" (report and Data Docs in {run_reports})")
    return report


def _quarantine(layout: Layout, dataset: str, rows: pd.DataFrame, report: ValidationReport, listed: int) -> None:
    """Keep the set-aside series with the reasons, so they can be inspected and fixed."""
    reasons: dict[str, list[str]] = {}
    for check in report.failed:
        for series in check.offending_series:
            reasons.setdefault(series, []).append(f"{check.expectation}({check.target})")
    with atomic_dir(layout.quarantine / dataset) as staging:
        rows.to_parquet(staging / VALIDATED_FILE, index=False)
        write_json(staging / "reasons.json", reasons)
    logger.warning("\n".join([f"quarantined {len(reasons)} series to {layout.quarantine / dataset}:",
                               *(f"  - {check.describe(listed)}" for check in report.failed)]))


def read_validation(cfg: PipelineConfig) -> dict:
    return read_json(Layout.of(cfg).validated / REPORT_FILE)


# -- prepare ------------------------------------------------------------------------------------

def input_features(cfg: PipelineConfig) -> Features:
    """The configured channels beside the target: covariates, calendar features, then the mask of padded histories."""
    source, calendar = cfg.data.source, tuple(cfg.prepare.calendar_features)
    # The zone matters only to calendar features: without them, it must not tell two preparations apart.
    return Features(tuple(source.columns.covariates), calendar, source.timezone if calendar else "UTC",
                    cfg.prepare.pad_history)


def _with_frequency(spec: SeriesSpec, frame: pd.DataFrame) -> SeriesSpec:
    """Calendar data needs a frequency to date its forecasts: configured, or inferred here."""
    if spec.freq or not is_calendar(frame):
        return spec
    inferred = infer_frequency(frame)
    if inferred is None:
        raise ConfigError("could not infer the time frequency from the longest series; set data.freq (e.g. 'MS', 'D', 'h')")
    return replace(spec, freq=inferred)


def _filled(cfg: PipelineConfig, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The frame with ``prepare.fill`` applied, and the series it still leaves with missing values."""
    frame = fill_missing(frame, cfg.prepare.fill, cfg.prepare.fill_limit)
    return frame, frame.loc[frame["value"].isna(), "series_id"].unique()


@task_step
def prepare(cfg: PipelineConfig) -> dict:
    """Split by time, scale per series on training data, cut windows; write ``data/prepared``."""
    layout = Layout.of(cfg)
    frame, unfilled = _filled(cfg, pd.read_parquet(layout.validated / VALIDATED_FILE))
    if len(unfilled):
        raise DataValidationError(
            f"{layout.validated / VALIDATED_FILE}: {len(unfilled)} series still have missing values after "
            f"prepare.fill = {cfg.prepare.fill!r} (limit {cfg.prepare.fill_limit}): "
            f"{list(unfilled[:cfg.validation.max_offending_listed])}")
    report = read_validation(cfg)
    spec = _with_frequency(series_spec(cfg.data), frame)
    prepared = prepare_frame(frame, spec, cfg.prepare.scaler, cfg.prepare.window_stride, input_features(cfg),
                             cfg.prepare.non_negative)
    with atomic_dir(layout.prepared) as staging:
        meta = save_prepared(prepared, staging, dataset=report["dataset"])
    logger.info(f"prepared {meta['series']} series: windows {meta['windows']}, scaler {meta['scaler']}")
    return meta
