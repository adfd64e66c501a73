"""The pipeline steps: one plain function each, shared by the CLI, the Prefect flow and DVC.

Steps hand over data as files under ``data/`` (see ``Layout``), never as objects, so
any step can be rerun alone and DVC can hash what each one wrote. Every output is
written into a staging file or folder and swapped in only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import mlflow
from mlflow.exceptions import MlflowException

from seqpipe.config import PipelineConfig, SourceConfig
from seqpipe.data.catalog import SeriesSpec, series_spec
from seqpipe.data.drift import DriftReport, detect_drift
from seqpipe.data.features import Features
from seqpipe.data.prepare import (
    COVARIATE_SCALERS_FILE, META_FILE, SCALERS_FILE, PreparedData, load_prepared, prepare_frame, save_prepared,
)
from seqpipe.data.snapshot import SNAPSHOTS, Manifest, read_manifest, read_snapshot, write_snapshot
from seqpipe.data.sources import read_source, read_table
from seqpipe.data.missing import fill_missing
from seqpipe.data.frequency import infer_frequency, is_calendar
from seqpipe.data.validation import Rules, ValidationReport, quarantine_candidates, validate_frame
from seqpipe.layout import VALIDATED_FILE, Layout
from seqpipe.errors import ConfigError, DataValidationError, PredictionError, RegistryError, SeqpipeError
from seqpipe.evaluation import backtest as bt
from seqpipe.evaluation.classical import classical_forecast, is_classical
from seqpipe.evaluation.classical import parse_params as classical_params
from seqpipe.evaluation.forecast import QuantileSettings
from seqpipe.evaluation.gate import GateDecision, decide, diebold_mariano, step_losses
from seqpipe.evaluation.leaderboard import board_metrics, build_leaderboard, to_markdown
from seqpipe.evaluation.metrics import METRICS, score
from seqpipe.evaluation.plots import (
    plot_error_distribution,
    plot_forecast_vs_actual,
    plot_metric_by_model,
    sample_series,
)
from seqpipe.evaluation.scoring import ModelScores, score_forecaster, scoring_targets
from seqpipe.io import atomic_dir, folder_md5, read_json, write_json, write_table
from seqpipe.models import ProblemShape, build_model
from seqpipe.models.base import Forecaster
from seqpipe.models.persistence import SPEC_FILE, load_model, save_model
from seqpipe.tracking.lineage import (
    TAG_PREFIX,
    format_lineage,
    git_state,
    lineage_tags,
    reproduce_commands,
    version_lineage,
)
from seqpipe.tracking.registry import (
    CHALLENGER, PRODUCTION, ModelArtifacts, alias_history, alias_version, aliases_of, list_versions,
    log_and_register, model_uri,
)
from seqpipe.tracking.registry import promote as move_production
from seqpipe.tracking.registry import rollback as roll_back_production
from seqpipe.tracking.exchange import fetch_folder, publish_folder
from seqpipe.tracking.runs import active_run, create_run, finish_run, log_metrics, log_params
from seqpipe.tracking.store import connect
from seqpipe.training import FitResult, TrainSettings, fit, seed_everything

HISTORY_FILE = "history.json"
REPORT_FILE = "report.json"
PIPELINE_KEY_TAG = TAG_PREFIX + "pipeline_key"
PREPARED_TAG = TAG_PREFIX + "prepared_md5"
DOCS_DIR = "data_docs"
EVALUATION_ARTIFACTS = ("leaderboard.csv", "leaderboard.md", "metrics.json", "forecast_vs_actual.png",
                        "metric_by_model.png", "error_distribution.png")
BACKTEST_ARTIFACTS = ("folds.csv", "summary.csv", "summary.md", "metrics.json")
CLASSICAL_FORECASTS = "forecasts.npy"
# Artifact paths that carry folders between machines (see seqpipe.tracking.exchange).
MODEL_FILES = "model_files"
PREPARED_FILES = "inputs/prepared"
DRIFT_DIR = "drift"


# -- ingest -------------------------------------------------------------------------------------

def ingest(cfg: PipelineConfig, source: SourceConfig | None = None) -> Manifest:
    """Read the source into the canonical frame and store it as an immutable raw snapshot."""
    frame, origin = read_source(source or cfg.data.source, cfg.root)
    manifest = write_snapshot(frame, Layout.of(cfg).raw, origin)
    print(f"ingested {manifest.rows} rows, {manifest.series} series from {origin} -> {manifest.snapshot}")
    return manifest


# -- validate -----------------------------------------------------------------------------------

def validation_rules(cfg: PipelineConfig) -> Rules:
    spec, rules = series_spec(cfg.data), cfg.validation
    return Rules(
        min_length=rules.min_length or spec.lookback + 2 * spec.horizon,
        allowed_missing_ratio=rules.allowed_missing_ratio,
        max_gap_ratio=rules.max_gap_ratio,
        value_min=rules.value_min,
        value_max=rules.value_max,
        min_rows=rules.min_rows,
        max_rows=rules.max_rows,
        freq=spec.freq,
        covariates=tuple(cfg.data.source.columns.covariates),
    )


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
    print(f"validation {verdict}: {len(report.checks)} expectations on {report.rows} rows, {report.series} series"
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
    print(f"quarantined {len(reasons)} series to {layout.quarantine / dataset}:")
    for check in report.failed:
        print(f"  - {check.describe(listed)}")


def read_validation(cfg: PipelineConfig) -> dict:
    return read_json(Layout.of(cfg).validated / REPORT_FILE)


# -- prepare ------------------------------------------------------------------------------------

def input_features(cfg: PipelineConfig) -> Features:
    """The configured channels beside the target: covariates, then calendar features."""
    source, calendar = cfg.data.source, tuple(cfg.prepare.calendar_features)
    # The zone matters only to calendar features: without them, it must not tell two preparations apart.
    return Features(tuple(source.columns.covariates), calendar, source.timezone if calendar else "UTC")


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
    prepared = prepare_frame(frame, spec, cfg.prepare.scaler, cfg.prepare.window_stride, input_features(cfg))
    with atomic_dir(layout.prepared) as staging:
        meta = save_prepared(prepared, staging, dataset=report["dataset"])
    print(f"prepared {meta['series']} series: windows {meta['windows']}, scaler {meta['scaler']}")
    return meta


# -- MLflow runs --------------------------------------------------------------------------------

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
    """Attach the latest snapshot's hash, validation report and Data Docs to a run, passed or failed."""
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


def _verdict(report: dict) -> str:
    if report["success"]:
        return "passed"
    return f"quarantined {len(report['quarantined'])} series" if report["quarantined"] else "failed"


def finish_pipeline_run(cfg: PipelineConfig, run_id: str, succeeded: bool) -> None:
    client, _ = connect(cfg)
    finish_run(client, run_id, succeeded)


# -- train --------------------------------------------------------------------------------------

def _settings(cfg: PipelineConfig) -> TrainSettings:
    return TrainSettings(**cfg.training.model_dump())


def train(cfg: PipelineConfig, name: str, parent_run_id: str, flow_run_id: str | None = None) -> dict:
    """Train one configured model in its own child run; write ``data/models/<name>/``."""
    spec_cfg = cfg.model(name)
    if is_classical(spec_cfg.arch):
        return _fit_classical(cfg, name, parent_run_id, flow_run_id)
    layout = Layout.of(cfg)
    # Build first: a mistyped hyper-parameter should fail before any data is loaded.
    model = _seeded_model(cfg, name)
    prepared = _load_prepared_for(cfg, layout)

    client, experiment_id = connect(cfg)
    tags = {**_lineage(cfg, flow_run_id), PREPARED_TAG: folder_md5(layout.prepared)}
    run_id = create_run(client, experiment_id, name, tags, parent_id=parent_run_id)
    try:
        log_params(client, run_id, {
            "arch": spec_cfg.arch, **{f"model.{k}": v for k, v in asdict(model.params).items()},
            **{f"training.{k}": v for k, v in cfg.training.model_dump().items()},
            **{f"data.{k}": v for k, v in asdict(prepared.spec).items()},
            "data.inputs": ",".join(prepared.features.names),
            "train_windows": len(prepared.train), "parameters": sum(p.numel() for p in model.parameters()),
        })
        checkpoint = layout.checkpoints / f"{name}.pt"
        with active_run(run_id, system_metrics=cfg.tracking.system_metrics and model.trainable):
            result = _fit_on(
                cfg, model, prepared, name, checkpoint=checkpoint,
                signature=_checkpoint_signature(cfg, name, prepared, layout),
                on_epoch=lambda e: log_metrics(client, run_id, {"train_loss": e.train_loss, "val_loss": e.val_loss,
                                                                "learning_rate": e.learning_rate}, step=e.epoch),
            )
        log_metrics(client, run_id, {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                                     "epochs_run": result.epochs_run, "train_seconds": result.seconds})
        # The model folder is a DVC output: only what data, code and config determine goes in
        # (no run ids, no wall times), so an identical rerun leaves it byte for byte the same.
        history = [{k: v for k, v in asdict(e).items() if k != "seconds"} for e in result.history]
        with atomic_dir(layout.models / name) as staging:
            save_model(model.cpu(), staging)
            (staging / HISTORY_FILE).write_text(json.dumps(history, indent=2) + "\n")
        summary = {"name": name, "arch": spec_cfg.arch, "run_id": run_id, "parent_run_id": parent_run_id,
                   "device": result.device, "best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                   "model_md5": publish_folder(client, run_id, layout.models / name, MODEL_FILES)}
        write_json(layout.runs / f"{name}.json", summary)
        # Only once the model is saved: until then a rerun should pick up where this one died.
        checkpoint.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other models' checkpoints may still be there
            checkpoint.parent.rmdir()
    except BaseException:
        finish_run(client, run_id, succeeded=False)
        raise
    finish_run(client, run_id, succeeded=True)
    return summary


def _seeded_model(cfg: PipelineConfig, name: str) -> Forecaster:
    """Seed every generator, then build the configured model: its initial weights follow from the seed."""
    spec_cfg, spec = cfg.model(name), series_spec(cfg.data)
    seed_everything(cfg.training.seed, cfg.training.num_threads)
    try:
        shape = ProblemShape(spec.lookback, spec.horizon, spec.season, input_features(cfg).channels)
        return build_model(spec_cfg.arch, shape, spec_cfg.params)
    except ValueError as exc:
        raise ConfigError(f"{cfg.model_file(name)}: {exc}") from None


def _fit_on(cfg: PipelineConfig, model: Forecaster, prepared: PreparedData, label: str, **options) -> FitResult:
    """Train on the training windows, stopping early on the validation window: the recipe train and backtest share."""
    return fit(model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y), _settings(cfg),
               name=label, **options)


def _classical_settings(cfg: PipelineConfig, name: str):
    try:
        return classical_params(cfg.model(name).arch, cfg.model(name).params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg.model_file(name)}: {exc}") from None


def _classical_forecasts(cfg: PipelineConfig, name: str, params, prepared: PreparedData) -> np.ndarray:
    """Fit a classical reference on each series' training and validation part; its test forecasts."""
    return classical_forecast(cfg.model(name).arch, params, prepared.frame, prepared.scalers.series_ids,
                              prepared.spec.horizon, prepared.spec.season)


def _load_prepared_for(cfg: PipelineConfig, layout: Layout) -> PreparedData:
    spec = series_spec(cfg.data)
    prepared = load_prepared(layout.prepared)
    made_for = (prepared.spec.lookback, prepared.spec.horizon, prepared.spec.season)
    if made_for != (spec.lookback, spec.horizon, spec.season):
        raise ConfigError(f"{layout.prepared} was prepared for (lookback, horizon, season) = {made_for}, "
                          f"the config now says {(spec.lookback, spec.horizon, spec.season)}: run `seqpipe prepare` again")
    if prepared.features != input_features(cfg):
        raise ConfigError(f"{layout.prepared} was prepared with inputs {prepared.features.to_dict()}, the config now "
                          f"asks for {input_features(cfg).to_dict()}: run `seqpipe prepare` again")
    return prepared


def _fit_classical(cfg: PipelineConfig, name: str, parent_run_id: str, flow_run_id: str | None) -> dict:
    """Fit a classical reference per series on train + validation; write its test forecasts.

    Nothing here is a torch model: ``data/models/<name>/`` holds the forecasts that
    ``evaluate`` scores, and ``register`` passes over it.
    """
    spec_cfg = cfg.model(name)
    params = _classical_settings(cfg, name)
    layout = Layout.of(cfg)
    prepared = _load_prepared_for(cfg, layout)
    client, experiment_id = connect(cfg)
    run_id = create_run(client, experiment_id, name, _lineage(cfg, flow_run_id), parent_id=parent_run_id)
    try:
        log_params(client, run_id, {"arch": spec_cfg.arch, "fitted_on": "train+val",
                                    **{f"model.{k}": v for k, v in asdict(params).items()},
                                    **{f"data.{k}": v for k, v in asdict(prepared.spec).items()}})
        started = time.perf_counter()
        forecast = _classical_forecasts(cfg, name, params, prepared)
        seconds = time.perf_counter() - started
        log_metrics(client, run_id, {"fit_seconds": seconds})
        with atomic_dir(layout.models / name) as staging:
            np.save(staging / CLASSICAL_FORECASTS, forecast)
        summary = {"name": name, "arch": spec_cfg.arch, "run_id": run_id, "parent_run_id": parent_run_id,
                   "device": "cpu", "fitted_on": "train+val",
                   "model_md5": publish_folder(client, run_id, layout.models / name, MODEL_FILES)}
        write_json(layout.runs / f"{name}.json", summary)
    except BaseException:
        finish_run(client, run_id, succeeded=False)
        raise
    finish_run(client, run_id, succeeded=True)
    print(f"[{name}] fitted {len(forecast)} series in {seconds:.1f}s")
    return summary


def _checkpoint_signature(cfg: PipelineConfig, name: str, prepared: PreparedData, layout: Layout) -> dict:
    """What a checkpoint must have been trained on to be resumed; anything else starts afresh."""
    # Progress printing and thread count change nothing about the weights.
    training = cfg.training.model_dump(mode="json", exclude={"progress", "num_threads"})
    spec = cfg.model(name).model_dump(mode="json")
    payload = json.dumps({"training": training, "model": spec}, sort_keys=True)
    return {"config": hashlib.sha256(payload.encode()).hexdigest()[:16], "arch": spec["arch"],
            "shape": [prepared.spec.lookback, prepared.spec.horizon, prepared.spec.season],
            "inputs": prepared.features.names,
            "dataset": read_json(layout.prepared / META_FILE)["dataset"], "train_windows": len(prepared.train)}


def train_all(cfg: PipelineConfig, parent_run_id: str | None = None, names: list[str] | None = None) -> list[dict]:
    """Train the configured models (or ``names``); without a parent run, attach to this data's.

    Run as separate processes (DVC runs one stage per model), the models of one pipeline
    still meet under one parent run: it is found by the data, config and code it trains on.
    """
    parent_run_id = parent_run_id or pipeline_run_for(cfg)
    selected = names or [spec.name for spec in cfg.models]
    try:
        summaries = [train(cfg, name, parent_run_id) for name in selected]
    except BaseException:
        finish_pipeline_run(cfg, parent_run_id, succeeded=False)
        raise
    finish_pipeline_run(cfg, parent_run_id, succeeded=True)
    return summaries


def pipeline_key(cfg: PipelineConfig) -> str:
    """What makes two training processes parts of the same pipeline run."""
    payload = {
        "dataset": read_json(Layout.of(cfg).prepared / META_FILE)["dataset"],
        "config": cfg.fingerprint(),
        "code": git_state(cfg.root)["git_commit"],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


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


# -- training elsewhere: folders carried through the tracking store -------------------------------

def publish_prepared(cfg: PipelineConfig, run_id: str) -> str:
    """Put ``data/prepared`` in the pipeline run, for training workers that share no disk with it."""
    client, _ = connect(cfg)
    return publish_folder(client, run_id, Layout.of(cfg).prepared, PREPARED_FILES)


def fetch_prepared(cfg: PipelineConfig, run_id: str, prepared_md5: str) -> None:
    """Make ``data/prepared`` the pipeline run's (no transfer when it already is)."""
    client, _ = connect(cfg)
    if fetch_folder(client, run_id, PREPARED_FILES, Layout.of(cfg).prepared, prepared_md5):
        print(f"fetched prepared data {prepared_md5} from MLflow run {run_id}")


def fetch_trained(cfg: PipelineConfig, summary: dict) -> None:
    """Bring a model trained elsewhere (``summary`` as ``train`` returned it) into ``data/models``."""
    client, _ = connect(cfg)
    layout = Layout.of(cfg)
    name = summary["name"]
    if fetch_folder(client, summary["run_id"], MODEL_FILES, layout.models / name, summary["model_md5"]):
        print(f"fetched {name} from MLflow run {summary['run_id']}")
    write_json(layout.runs / f"{name}.json", summary)


# -- scheduled retraining: skip unchanged data, report drift ------------------------------------

def production_dataset(cfg: PipelineConfig) -> str | None:
    """The raw snapshot hash the ``production`` version was trained on; None without production."""
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    version = alias_version(client, name, PRODUCTION)
    if version is None:
        return None
    return client.get_model_version(name, version).tags.get(TAG_PREFIX + "dataset_md5")


def check_drift(cfg: PipelineConfig, reference_md5: str, run_id: str | None = None) -> DriftReport | None:
    """Compare the latest snapshot with ``reference_md5``'s, series by series; log it to ``run_id``.

    Snapshots are content-addressed and never deleted, so the reference is on disk
    wherever it was ingested; elsewhere `dvc pull` brings it (the report says so).
    """
    layout = Layout.of(cfg)
    current, manifest = read_snapshot(layout.raw)
    reference_path = layout.raw / SNAPSHOTS / f"{reference_md5}.parquet"
    if not reference_path.is_file():
        print(f"drift: production's snapshot {reference_path} is not here (`dvc pull` fetches it); not checked")
        return None
    report = detect_drift(pd.read_parquet(reference_path), current, cfg.drift, reference_md5, manifest.md5,
                          season=series_spec(cfg.data).season)
    path = write_json(layout.reports.parent / DRIFT_DIR / f"{manifest.md5}.json", report.to_dict())
    print(report.summary())
    if run_id:
        client, _ = connect(cfg)
        client.log_artifact(run_id, str(path), "drift")
        log_metrics(client, run_id, {"drift_series_tested": report.tested, "drift_series_drifted": report.drifted,
                                     "drift_share": report.drifted_share, "drift_mean_psi": report.mean_psi})
    return report


def record_decision(cfg: PipelineConfig, run_id: str, decision: str, reason: str) -> None:
    """Keep a scheduled run's decision (skip, retrain) on its MLflow run, beside the data it saw."""
    client, _ = connect(cfg)
    client.set_tag(run_id, TAG_PREFIX + "decision", decision)
    client.set_tag(run_id, TAG_PREFIX + "decision_reason", reason)
    print(f"decision: {decision} ({reason})")


# -- evaluate -----------------------------------------------------------------------------------

def evaluate(cfg: PipelineConfig, parent_run_id: str | None = None) -> pd.DataFrame:
    """Score every trained model on the test split; write the leaderboard, forecasts and a plot.

    The leaderboard goes to ``parent_run_id`` when given (a pipeline run that reused
    models trained by an earlier one), else to the pipeline run that trained the best model.
    """
    layout = Layout.of(cfg)
    prepared = load_prepared(layout.prepared)
    horizon = prepared.spec.horizon
    frame = prepared.frame
    ids = prepared.scalers.series_ids
    test_rows = frame[frame["split"] == "test"]
    actual, scale = scoring_targets(prepared)

    runs, per_series, forecasts = {}, [], []
    for spec in cfg.models:
        model_dir = layout.models / spec.name
        if not ((model_dir / SPEC_FILE).is_file() or (model_dir / CLASSICAL_FORECASTS).is_file()):
            raise ConfigError(f"{model_dir}: model '{spec.name}' has not been trained; run `seqpipe train` first")
        record = training_record(cfg, spec.name)
        if record:
            runs[spec.name] = record
        if is_classical(spec.arch):
            forecast = np.load(model_dir / CLASSICAL_FORECASTS)
            if forecast.shape != actual.shape:
                raise ConfigError(f"{model_dir}: forecasts of shape {forecast.shape} do not fit the test split "
                                  f"{actual.shape}; run `seqpipe train` again")
            scored = ModelScores(score(actual, forecast, scale), forecast, None, None)
        else:
            scored = score_forecaster(load_model(model_dir), prepared.test, prepared.scalers, actual, scale,
                                      cfg.evaluation)
        per_series.append(pd.DataFrame({"model": spec.name, "arch": spec.arch, "series_id": ids, **scored.scores}))
        forecasts.append(test_rows[["series_id", "timestamp"]].assign(
            model=spec.name, forecast=scored.forecast.ravel(), actual=actual.ravel(),
            lower=np.nan if scored.lower is None else scored.lower.ravel(),
            upper=np.nan if scored.upper is None else scored.upper.ravel()))
    per_series_frame = pd.concat(per_series, ignore_index=True)
    forecast_frame = pd.concat(forecasts, ignore_index=True)
    board = build_leaderboard(per_series_frame, cfg.evaluation.metric)
    markdown = to_markdown(board)

    with atomic_dir(layout.evaluation) as staging:
        board.to_csv(staging / "leaderboard.csv", index=False)
        (staging / "leaderboard.md").write_text(markdown)
        (staging / "metrics.json").write_text(json.dumps(board_metrics(board), indent=2, sort_keys=True) + "\n")
        per_series_frame.to_parquet(staging / "per_series.parquet", index=False)
        forecast_frame.to_parquet(staging / "forecasts.parquet", index=False)
        shown = sample_series(list(ids), cfg.evaluation.plot_series)
        plot_forecast_vs_actual(frame, forecast_frame, shown, horizon, staging / "forecast_vs_actual.png")
        plot_metric_by_model(board, cfg.evaluation.metric, staging / "metric_by_model.png")
        plot_error_distribution(per_series_frame, cfg.evaluation.metric, staging / "error_distribution.png")

    if runs:
        _log_evaluation(cfg, board, runs, parent_run_id)
    else:
        print("no MLflow training runs recorded for these models here (pulled from a DVC remote?): "
              "the leaderboard is written to data/evaluation only")
    print(f"\nLeaderboard (test split, {len(ids)} series, horizon {horizon}, ranked by {cfg.evaluation.metric}):\n{markdown}")
    return board


def leaderboard_markdown(cfg: PipelineConfig) -> str:
    return (Layout.of(cfg).evaluation / "leaderboard.md").read_text()


def training_record(cfg: PipelineConfig, name: str) -> dict | None:
    """The MLflow runs that trained the model now in ``data/models/<name>``, if it was trained here."""
    layout = Layout.of(cfg)
    path = layout.runs / f"{name}.json"
    if not path.is_file():
        return None
    record = read_json(path)
    return record if record.get("model_md5") == folder_md5(layout.models / name) else None


def _log_evaluation(cfg: PipelineConfig, board: pd.DataFrame, runs: dict[str, dict], parent: str | None) -> None:
    layout = Layout.of(cfg)
    client, _ = connect(cfg)
    for model, scores in board_metrics(board).items():
        if model in runs:
            log_metrics(client, runs[model]["run_id"], {f"test_{m}": v for m, v in scores.items()})
    best = board.iloc[0]
    parent = parent or (runs.get(best["model"]) or next(iter(runs.values())))["parent_run_id"]
    for artifact in EVALUATION_ARTIFACTS:
        client.log_artifact(parent, str(layout.evaluation / artifact), "evaluation")
    log_metrics(client, parent, {f"best_test_{m}": float(best[m]) for m in METRICS})
    client.set_tag(parent, "seqpipe.best_model", best["model"])


# -- backtest -----------------------------------------------------------------------------------

def backtest(cfg: PipelineConfig, parent_run_id: str | None = None, write_when_off: bool = False) -> pd.DataFrame:
    """Refit and score the models at ``evaluation.backtest.folds`` forecast origins; write ``data/backtest``.

    Fold 1 is the regular test window, each next fold's origin ``step`` points earlier
    (see ``seqpipe.evaluation.backtest``). Returns the summary: per model, the mean and
    standard deviation of every score over the folds. With ``folds: 0`` it does nothing
    and returns an empty summary, so callers may call it unconditionally;
    ``write_when_off`` then writes the outputs empty, for a DVC stage that declares them.
    Fold models are neither saved nor registered; the results go to the parent MLflow run.
    """
    settings, layout = cfg.evaluation.backtest, Layout.of(cfg)
    if settings.folds == 0:
        off, summary = bt.empty_result()
        if write_when_off:
            _write_backtest(layout.backtest, off, summary, "The backtest is off (evaluation.backtest.folds = 0).\n")
        print("backtest off: set evaluation.backtest.folds to run one")
        return summary
    # Folds start from the validated rows, before any fill: a gap just before a fold's origin
    # must not be interpolated from points after it.
    if not (layout.validated / VALIDATED_FILE).is_file():
        raise ConfigError(f"{layout.validated}: no validated data to backtest on; run `seqpipe validate` first")
    frame = pd.read_parquet(layout.validated / VALIDATED_FILE)
    spec = _with_frequency(series_spec(cfg.data), frame)
    step = settings.step or spec.horizon
    models = cfg.backtest_models()
    for model_spec in models:  # a mistyped hyper-parameter fails before any fold is fitted
        if is_classical(model_spec.arch):
            _classical_settings(cfg, model_spec.name)
        else:
            _seeded_model(cfg, model_spec.name)
    try:
        plans = bt.plan_folds(frame.groupby("series_id", sort=True).size(), spec, settings.folds, step)
    except ValueError as exc:
        raise ConfigError(f"{cfg.conf_dir / 'pipeline.yaml'}: {exc}") from None

    connect(cfg)  # an unreachable store fails here, before hours of fitting
    parent, owned = parent_run_id or _evaluated_parent(cfg), False
    if parent is None:
        parent, owned = pipeline_run_for(cfg), True
    try:
        result = bt.run_folds(
            frame, plans, [(m.name, m.arch) for m in models],
            prepare=lambda rows, fold: _prepare_fold(cfg, rows, spec, fold),
            fit_and_score=lambda name, fold_data, fold: _refit_and_score(cfg, name, fold_data, f"{name} fold {fold}"),
        )
        summary = bt.summarize(result.folds, cfg.evaluation.metric)
        markdown = to_markdown(summary)
        header = (f"Rolling-origin backtest: {settings.folds} folds, origin {step} points earlier per fold, "
                  f"horizon {spec.horizon}; mean and standard deviation over folds.\n\n")
        _write_backtest(layout.backtest, result, summary, header + markdown)
        _log_backtest(cfg, parent, summary, step)
    except BaseException:
        if owned:
            finish_pipeline_run(cfg, parent, succeeded=False)
        raise
    if owned:
        finish_pipeline_run(cfg, parent, succeeded=True)
    print(f"\nBacktest ({settings.folds} folds, step {step}, ranked by mean {cfg.evaluation.metric}):\n{markdown}")
    return summary


def _prepare_fold(cfg: PipelineConfig, rows: pd.DataFrame, spec: SeriesSpec, fold: int) -> PreparedData:
    """What ``prepare`` makes of a fold's rows; series its fill cannot complete sit this fold out."""
    filled, unfilled = _filled(cfg, rows)
    if len(unfilled):
        print(f"[backtest] fold {fold}: {len(unfilled)} series end in missing values that prepare.fill = "
              f"{cfg.prepare.fill!r} cannot fill without later points; left out of this fold")
        filled = filled[~filled["series_id"].isin(unfilled)].reset_index(drop=True)
    if filled.empty:
        raise DataValidationError(f"backtest fold {fold}: no series is complete after prepare.fill; "
                                  "lower evaluation.backtest.folds or step")
    return prepare_frame(filled, spec, cfg.prepare.scaler, cfg.prepare.window_stride, input_features(cfg))


def _refit_and_score(cfg: PipelineConfig, name: str, prepared: PreparedData, label: str) -> ModelScores:
    """Fit one configured model afresh on ``prepared`` and score its test window: nothing saved, no run."""
    actual, scale = scoring_targets(prepared)
    if is_classical(cfg.model(name).arch):
        forecast = _classical_forecasts(cfg, name, _classical_settings(cfg, name), prepared)
        return ModelScores(score(actual, forecast, scale), forecast, None, None)
    model = _seeded_model(cfg, name)
    _fit_on(cfg, model, prepared, label)
    # Scored on the CPU, as evaluate scores the saved models.
    return score_forecaster(model.cpu(), prepared.test, prepared.scalers, actual, scale, cfg.evaluation)


def _write_backtest(folder: Path, result: bt.BacktestResult, summary: pd.DataFrame, markdown: str) -> None:
    with atomic_dir(folder) as staging:
        result.folds.to_csv(staging / "folds.csv", index=False)
        result.forecasts.to_parquet(staging / "forecasts.parquet", index=False)
        summary.to_csv(staging / "summary.csv", index=False)
        (staging / "summary.md").write_text(markdown)
        (staging / "metrics.json").write_text(json.dumps(bt.summary_metrics(summary), indent=2, sort_keys=True) + "\n")


def _evaluated_parent(cfg: PipelineConfig) -> str | None:
    """The pipeline run the current models were trained in (and evaluate logged to), if trained here."""
    for spec in cfg.models:
        record = training_record(cfg, spec.name)
        if record:
            return record["parent_run_id"]
    return None


def _log_backtest(cfg: PipelineConfig, parent: str, summary: pd.DataFrame, step: int) -> None:
    layout = Layout.of(cfg)
    client, _ = connect(cfg)
    for artifact in BACKTEST_ARTIFACTS:
        client.log_artifact(parent, str(layout.backtest / artifact), "backtest")
    log_metrics(client, parent, {f"backtest_{model}_{name}": value
                                 for model, scores in bt.summary_metrics(summary).items()
                                 for name, value in scores.items()})
    client.set_tag(parent, "seqpipe.backtest.folds", str(cfg.evaluation.backtest.folds))
    client.set_tag(parent, "seqpipe.backtest.step", str(step))


# -- register / promote / predict ----------------------------------------------------------------

def register(cfg: PipelineConfig) -> str:
    """Register the best registrable model as a new model version with the alias ``challenger``.

    Classical references rank on the leaderboard but are not torch forecasters, so the
    best model below them is registered instead, and the log says so. Retrying is safe:
    the winner's training run keeps the version it already has.
    """
    client, _ = connect(cfg)  # an unreachable store fails here, before anything is logged
    layout = Layout.of(cfg)
    board = pd.read_csv(layout.evaluation / "leaderboard.csv")
    registrable = board[~board["arch"].map(is_classical)]
    if registrable.empty:
        raise RegistryError(f"{layout.evaluation / 'leaderboard.csv'} lists only classical references, "
                            "which cannot be registered: configure at least one neural or baseline model")
    best = registrable.iloc[0]
    top = board.iloc[0]
    if top["model"] != best["model"]:
        print(f"note: {top['model']} (classical, test {cfg.evaluation.metric} {top[cfg.evaluation.metric]:.4f}) tops "
              f"the leaderboard but cannot be registered; registering {best['model']} (rank {best['rank']})")
    run = training_record(cfg, best["model"])
    if run is None:
        raise RegistryError(f"no MLflow training run is recorded here for the model now in {layout.models / best['model']}; "
                            f"train it here (`seqpipe train --model {best['model']}`) before registering it")
    prepared = load_prepared(layout.prepared)
    example_ids = prepared.scalers.series_ids[:2]
    example = (prepared.frame[prepared.frame["series_id"].isin(example_ids)]
               .groupby("series_id").tail(prepared.spec.lookback)[_history_columns(prepared)]
               .reset_index(drop=True))
    # The version inherits the lineage its training run recorded, not today's files.
    trained_from = {k: v for k, v in client.get_run(run["run_id"]).data.tags.items() if k.startswith(TAG_PREFIX)}
    tags = {**trained_from, "seqpipe.model": best["model"], "seqpipe.arch": best["arch"],
            "seqpipe.pipeline_run_id": run["parent_run_id"], "seqpipe.training_run_id": run["run_id"],
            **{f"seqpipe.test_{m}": f"{best[m]:.6f}" for m in METRICS}}
    with tempfile.TemporaryDirectory() as scratch:
        config = write_json(Path(scratch) / "pipeline.json", cfg.model_dump(mode="json", exclude={"root", "conf_dir"}))
        version = log_and_register(
            client, run["run_id"], cfg.tracking.registered_model,
            ModelArtifacts(layout.models / best["model"], layout.prepared / SCALERS_FILE, prepared.spec.freq,
                           example, QuantileSettings(tuple(cfg.serving.quantiles), cfg.serving.samples, cfg.serving.seed),
                           config, prepared.features,
                           layout.prepared / COVARIATE_SCALERS_FILE if prepared.covariate_scalers else None),
            tags,
        )
    print(f"registered {cfg.tracking.registered_model} version {version} ({best['model']}, "
          f"test {cfg.evaluation.metric} {best[cfg.evaluation.metric]:.4f}) with alias 'challenger'")
    return version


def _history_columns(prepared: PreparedData) -> list[str]:
    """What a history frame for the prepared data's models holds: the canonical columns and the covariates."""
    return ["series_id", "timestamp", "value", *prepared.features.covariates]


def _test_split(cfg: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The history before the test split, the test actuals (series x step) and each series' MASE scale."""
    folder = Layout.of(cfg).prepared
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no prepared data to compare versions on; run `seqpipe prepare` first")
    prepared = load_prepared(folder)
    frame = prepared.frame
    history = frame.loc[frame["split"] != "test", _history_columns(prepared)].reset_index(drop=True)
    values, scale = scoring_targets(prepared)
    ids = pd.Index(prepared.scalers.series_ids, name="series_id")
    actual = pd.DataFrame(values, index=ids, columns=pd.RangeIndex(1, prepared.spec.horizon + 1, name="step"))
    return history, actual, pd.Series(scale, index=ids)


def _forecast_version(cfg: PipelineConfig, version: str, history: pd.DataFrame, actual: pd.DataFrame) -> np.ndarray:
    """Forecasts of a registered version for the test split, aligned with ``actual``."""
    uri = model_uri(cfg.tracking.registered_model, version)
    try:
        forecast = mlflow.pyfunc.load_model(uri).predict(history, params={"horizon": actual.shape[1]})
    except (MlflowException, SeqpipeError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise RegistryError(f"{uri} cannot forecast the current test split: {message}") from None
    table = forecast.pivot(index="series_id", columns="step", values="mean")
    return table.reindex(index=actual.index, columns=actual.columns).to_numpy(np.float64)


def _gate_tags(decision: GateDecision, production: str | None, loss: str, action: str) -> dict[str, str]:
    def number(value: float | None) -> str:
        return "none" if value is None else f"{value:.6g}"

    test = decision.test
    return {
        "seqpipe.gate.passed": str(decision.promote).lower(),
        "seqpipe.gate.action": action,
        "seqpipe.gate.reason": decision.reason,
        "seqpipe.gate.metric": decision.metric,
        "seqpipe.gate.challenger_score": number(decision.challenger_score),
        "seqpipe.gate.production_score": number(decision.production_score),
        "seqpipe.gate.production_version": str(production),
        "seqpipe.gate.p_value": number(test.p_value if test else None),
        "seqpipe.gate.dm_statistic": number(test.statistic if test else None),
        "seqpipe.gate.loss": loss,
        "seqpipe.gate.at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def gate(cfg: PipelineConfig) -> dict:
    """Compare the challenger with production on the test split; promote it when it is clearly better.

    Both versions forecast the same history with their registered pyfunc, so the comparison
    covers exactly what would serve. The decision is kept as tags on the challenger.
    """
    client, _ = connect(cfg)
    name, settings, metric = cfg.tracking.registered_model, cfg.promotion, cfg.evaluation.metric
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"registered model '{name}' has no '{CHALLENGER}' version; run `seqpipe register` first")
    production = alias_version(client, name, PRODUCTION)
    if production == challenger:
        print(f"gate: version {challenger} is already '{PRODUCTION}'; nothing to decide")
        return {"challenger": challenger, "production": production, "passed": False, "action": "already production"}

    history, actual, scale = _test_split(cfg)
    values, scales = actual.to_numpy(np.float64), scale.to_numpy(np.float64)
    challenger_forecast = _forecast_version(cfg, challenger, history, actual)
    challenger_score = float(np.nanmean(score(values, challenger_forecast, scales)[metric]))
    production_score, test = None, None
    if production is not None:
        production_forecast = _forecast_version(cfg, production, history, actual)
        production_score = float(np.nanmean(score(values, production_forecast, scales)[metric]))
        test = diebold_mariano(step_losses(values, challenger_forecast, scales, settings.loss),
                               step_losses(values, production_forecast, scales, settings.loss))
    decision = decide(metric, challenger_score, production_score, test, settings.margin, settings.significance)

    action = "promoted" if decision.promote and settings.auto_promote else (
        "report only" if decision.promote else "kept production")
    tags = _gate_tags(decision, production, settings.loss, action)
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    p_value = "n/a" if test is None else f"{test.p_value:.4g}"
    print(f"gate: challenger v{challenger} {metric} {challenger_score:.4f} vs production "
          f"{'none' if production is None else f'v{production} {production_score:.4f}'}; DM p-value {p_value} "
          f"({settings.loss} loss) -> {'pass' if decision.promote else 'fail'}: {decision.reason}; {action}")
    if action == "promoted":
        promote(cfg, challenger, f"gate: {decision.reason}")
    return {"challenger": challenger, "production": production, "passed": decision.promote, "action": action,
            "metric": metric, "challenger_score": challenger_score, "production_score": production_score,
            "p_value": None if test is None else test.p_value, "reason": decision.reason}


def promote(cfg: PipelineConfig, version: str | None, reason: str, challenger: bool = False) -> dict:
    """Move ``production`` to ``version`` (or to the challenger); the move is kept in the registry."""
    if (version is None) == (not challenger):
        raise ConfigError("give exactly one of --version N and --challenger")
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    if challenger:
        version = alias_version(client, name, CHALLENGER)
        if version is None:
            raise RegistryError(f"registered model '{name}' has no '{CHALLENGER}' version")
    record = move_production(client, name, str(version), reason)
    print(f"production: version {record['from']} -> {record['to']} by {record['by']} at {record['at']} ({reason})")
    return record


def rollback(cfg: PipelineConfig, reason: str) -> dict:
    """Move ``production`` back to the version the current one replaced."""
    client, _ = connect(cfg)
    record = roll_back_production(client, cfg.tracking.registered_model, reason)
    print(f"production rolled back: version {record['from']} -> {record['to']} by {record['by']} "
          f"at {record['at']} ({reason})")
    return record


VERSION_COLUMNS = ("version", "aliases", "model", *(f"test_{m}" for m in METRICS), "gate", "created")


def versions(cfg: PipelineConfig) -> pd.DataFrame:
    """Every registered version with its aliases, test metrics, gate outcome and creation time."""
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    found = list_versions(client, name)
    if not found:
        print(f"registered model '{name}' has no versions yet; run `seqpipe register`")
        return pd.DataFrame(columns=list(VERSION_COLUMNS))
    aliases = aliases_of(client, name)
    rows = [{
        "version": int(v.version),
        "aliases": ",".join(aliases.get(str(v.version), [])) or "-",
        "model": v.tags.get("seqpipe.model", "?"),
        **{f"test_{m}": float(v.tags[f"seqpipe.test_{m}"]) if f"seqpipe.test_{m}" in v.tags else np.nan for m in METRICS},
        "gate": v.tags.get("seqpipe.gate.action", "-"),
        "created": datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds"),
    } for v in found]
    table = pd.DataFrame(rows, columns=list(VERSION_COLUMNS))
    print(f"registered model '{name}':\n{to_markdown(table)}")
    return table


def predict(cfg: PipelineConfig, model: str, input_path: Path, output_path: Path, horizon: int | None = None) -> pd.DataFrame:
    """Forecast every series in ``input_path`` with a registered model; write ``output_path``."""

    source = cfg.data.source
    # The model, not today's config, knows which covariates it reads: every further column
    # is carried, and the model names any of its covariates the input lacks.
    columns = source.columns.model_copy(update={"covariates": []})
    history = read_table(input_path, columns, time_format=source.time_format, timezone=source.timezone,
                         keep_other_columns=True)
    connect(cfg)
    uri = model_uri(cfg.tracking.registered_model, model)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise RegistryError(f"cannot load {uri}: {exc.message}") from None
    schema = loaded.metadata.get_input_schema()
    if schema is not None:
        wanted = schema.input_names()
        absent = [c for c in wanted if c not in history.columns]
        if absent:
            raise PredictionError(f"{input_path}: missing columns {absent} that {uri} reads (covariates keep their "
                                  f"names); columns present: {list(map(str, history.columns))}")
        history = history[wanted]
    try:
        forecast = loaded.predict(history, params=None if horizon is None else {"horizon": horizon})
    except MlflowException as exc:
        raise PredictionError(f"{input_path}: {exc.message}") from None
    write_table(forecast, output_path)
    print(f"wrote {len(forecast)} forecasts for {forecast['series_id'].nunique()} series to {output_path} ({uri})")
    return forecast


# -- lineage / reproduce --------------------------------------------------------------------------

def lineage(cfg: PipelineConfig, reference: str = "production") -> dict:
    """The chain from source data to a registered version (``production``, ``challenger`` or a number)."""
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    chain = version_lineage(client, name, reference, alias_history(client, name))
    print(format_lineage(chain))
    return chain


def reproduce(cfg: PipelineConfig, reference: str, run: bool = False, workdir: Path | None = None) -> dict:
    """Print the commands that rebuild a version; with ``run``, execute them in a temporary worktree.

    The rebuild runs the version's own code (its commit, first on PYTHONPATH) with its own
    config, into the worktree's own MLflow store, then compares test metrics with the
    version's: on CPU they must be equal to the last digit recorded.
    """
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    chain = version_lineage(client, name, reference, alias_history(client, name))
    target = workdir or Path(tempfile.mkdtemp(prefix=f"seqpipe-v{chain['version']}-")) / "checkout"
    commands = reproduce_commands(chain, str(target))
    print("\n".join(commands))
    if not run:
        return {"commands": commands}
    if chain["git_dirty"] == "true":
        print("warning: the version was trained from a tree with uncommitted changes; they cannot be reproduced")
    env = {**os.environ, "PYTHONPATH": str(target) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run(["git", "worktree", "add", "--detach", str(target), chain["git_commit"]], cwd=cfg.root, check=True)
    try:
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=target, env=env, check=True)
        rebuilt = read_json(target / cfg.data.dir / "evaluation" / "metrics.json")[chain["training_run"]["name"]]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(target)], cwd=cfg.root, check=False)
    recorded = chain["test_metrics"]
    matches = {m: round(rebuilt[m], 6) == round(recorded[m], 6) for m in recorded}
    verdict = "reproduced" if all(matches.values()) else "NOT reproduced"
    print(f"{verdict}: recorded {recorded}, rebuilt { {m: round(rebuilt[m], 6) for m in recorded} }")
    return {"commands": commands, "recorded": recorded, "rebuilt": rebuilt, "reproduced": all(matches.values())}
