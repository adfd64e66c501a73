"""The pipeline steps: one plain function each, shared by the CLI, the Prefect flow and DVC.

Steps hand over data as files under ``data/`` (see ``Layout``), never as objects, so
any step can be rerun alone and DVC can hash what each one wrote. Every output is
written into a staging file or folder and swapped in only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

import mlflow
from mlflow.exceptions import MlflowException

from seqpipe.config import PipelineConfig, SourceConfig
from seqpipe.data.catalog import SeriesSpec, series_spec
from seqpipe.data.prepare import META_FILE, PreparedData, load_prepared, prepare_frame, save_prepared
from seqpipe.data.snapshot import Manifest, read_manifest, read_snapshot, write_snapshot
from seqpipe.data.sources import read_source, read_table
from seqpipe.data.missing import fill_missing
from seqpipe.data.frequency import infer_frequency, is_calendar
from seqpipe.data.validation import Rules, ValidationReport, quarantine_candidates, validate_frame
from seqpipe.errors import ConfigError, DataValidationError, PredictionError, RegistryError
from seqpipe.evaluation.classical import classical_forecast, is_classical
from seqpipe.evaluation.classical import parse_params as classical_params
from seqpipe.evaluation.forecast import inverse_scale, predict_scaled
from seqpipe.evaluation.leaderboard import build_leaderboard, to_markdown
from seqpipe.evaluation.metrics import METRICS, score, seasonal_scale
from seqpipe.evaluation.plots import plot_forecast_vs_actual, sample_series
from seqpipe.io import atomic_dir, read_json, write_json, write_table
from seqpipe.models import ProblemShape, build_model
from seqpipe.models.persistence import load_model, save_model
from seqpipe.tracking.lineage import TAG_PREFIX, git_state, lineage_tags
from seqpipe.tracking.registry import ModelArtifacts, log_and_register, model_uri
from seqpipe.tracking.registry import promote as move_production
from seqpipe.tracking.runs import active_run, create_run, finish_run, log_metrics, log_params
from seqpipe.tracking.store import connect
from seqpipe.training import TrainSettings, fit, seed_everything

RUN_FILE = "run.json"
HISTORY_FILE = "history.json"
REPORT_FILE = "report.json"
DOCS_DIR = "data_docs"
VALIDATED_FILE = "series.parquet"
CLASSICAL_FORECASTS = "forecasts.npy"


@dataclass(frozen=True)
class Layout:
    """Where each step writes, under the configured data folder."""
    raw: Path
    validated: Path
    quarantine: Path
    reports: Path
    prepared: Path
    models: Path
    evaluation: Path
    checkpoints: Path

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Layout:
        root = cfg.data_dir
        return cls(root / "raw", root / "validated", root / "quarantine", root / "reports" / "validation", root / "prepared",
                   root / "models", root / "evaluation", root / "checkpoints")


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

def _with_frequency(spec: SeriesSpec, frame: pd.DataFrame) -> SeriesSpec:
    """Calendar data needs a frequency to date its forecasts: configured, or inferred here."""
    if spec.freq or not is_calendar(frame):
        return spec
    inferred = infer_frequency(frame)
    if inferred is None:
        raise ConfigError("could not infer the time frequency from the longest series; set data.freq (e.g. 'MS', 'D', 'h')")
    return replace(spec, freq=inferred)


def prepare(cfg: PipelineConfig) -> dict:
    """Split by time, scale per series on training data, cut windows; write ``data/prepared``."""
    layout = Layout.of(cfg)
    frame = fill_missing(pd.read_parquet(layout.validated / VALIDATED_FILE), cfg.prepare.fill, cfg.prepare.fill_limit)
    unfilled = frame.loc[frame["value"].isna(), "series_id"].unique()
    if len(unfilled):
        raise DataValidationError(
            f"{layout.validated / VALIDATED_FILE}: {len(unfilled)} series still have missing values after "
            f"prepare.fill = {cfg.prepare.fill!r} (limit {cfg.prepare.fill_limit}): "
            f"{list(unfilled[:cfg.validation.max_offending_listed])}")
    report = read_validation(cfg)
    spec = _with_frequency(series_spec(cfg.data), frame)
    prepared = prepare_frame(frame, spec, cfg.prepare.scaler, cfg.prepare.window_stride)
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
    spec = series_spec(cfg.data)
    seed_everything(cfg.training.seed, cfg.training.num_threads)
    # Build first: a mistyped hyper-parameter should fail before any data is loaded.
    try:
        model = build_model(spec_cfg.arch, ProblemShape(spec.lookback, spec.horizon, spec.season), spec_cfg.params)
    except ValueError as exc:
        raise ConfigError(f"{cfg.model_file(name)}: {exc}") from None
    prepared = _load_prepared_for(cfg, layout)

    client, experiment_id = connect(cfg)
    run_id = create_run(client, experiment_id, name, _lineage(cfg, flow_run_id), parent_id=parent_run_id)
    try:
        log_params(client, run_id, {
            "arch": spec_cfg.arch, **{f"model.{k}": v for k, v in asdict(model.params).items()},
            **{f"training.{k}": v for k, v in cfg.training.model_dump().items()},
            **{f"data.{k}": v for k, v in asdict(prepared.spec).items()},
            "train_windows": len(prepared.train), "parameters": sum(p.numel() for p in model.parameters()),
        })
        checkpoint = layout.checkpoints / f"{name}.pt"
        with active_run(run_id, system_metrics=cfg.tracking.system_metrics and model.trainable):
            result = fit(
                model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y), _settings(cfg),
                name=name, checkpoint=checkpoint, signature=_checkpoint_signature(cfg, name, prepared, layout),
                on_epoch=lambda e: log_metrics(client, run_id, {"train_loss": e.train_loss, "val_loss": e.val_loss,
                                                                "learning_rate": e.learning_rate}, step=e.epoch),
            )
        log_metrics(client, run_id, {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                                     "epochs_run": result.epochs_run, "train_seconds": result.seconds})
        summary = {"name": name, "arch": spec_cfg.arch, "run_id": run_id, "parent_run_id": parent_run_id,
                   "device": result.device, "best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch}
        with atomic_dir(layout.models / name) as staging:
            save_model(model.cpu(), staging)
            (staging / RUN_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            (staging / HISTORY_FILE).write_text(json.dumps([asdict(e) for e in result.history], indent=2) + "\n")
        # Only once the model is saved: until then a rerun should pick up where this one died.
        checkpoint.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other models' checkpoints may still be there
            checkpoint.parent.rmdir()
    except BaseException:
        finish_run(client, run_id, succeeded=False)
        raise
    finish_run(client, run_id, succeeded=True)
    return summary


def _load_prepared_for(cfg: PipelineConfig, layout: Layout) -> PreparedData:
    spec = series_spec(cfg.data)
    prepared = load_prepared(layout.prepared)
    made_for = (prepared.spec.lookback, prepared.spec.horizon, prepared.spec.season)
    if made_for != (spec.lookback, spec.horizon, spec.season):
        raise ConfigError(f"{layout.prepared} was prepared for (lookback, horizon, season) = {made_for}, "
                          f"the config now says {(spec.lookback, spec.horizon, spec.season)}: run `seqpipe prepare` again")
    return prepared


def _fit_classical(cfg: PipelineConfig, name: str, parent_run_id: str, flow_run_id: str | None) -> dict:
    """Fit a classical reference per series on train + validation; write its test forecasts.

    Nothing here is a torch model: ``data/models/<name>/`` holds the forecasts that
    ``evaluate`` scores, and ``register`` passes over it.
    """
    spec_cfg = cfg.model(name)
    try:
        params = classical_params(spec_cfg.arch, spec_cfg.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg.model_file(name)}: {exc}") from None
    layout = Layout.of(cfg)
    prepared = _load_prepared_for(cfg, layout)
    client, experiment_id = connect(cfg)
    run_id = create_run(client, experiment_id, name, _lineage(cfg, flow_run_id), parent_id=parent_run_id)
    try:
        log_params(client, run_id, {"arch": spec_cfg.arch, "fitted_on": "train+val",
                                    **{f"model.{k}": v for k, v in asdict(params).items()},
                                    **{f"data.{k}": v for k, v in asdict(prepared.spec).items()}})
        started = time.perf_counter()
        forecast = classical_forecast(spec_cfg.arch, params, prepared.frame, prepared.scalers.series_ids,
                                      prepared.spec.horizon, prepared.spec.season)
        seconds = time.perf_counter() - started
        log_metrics(client, run_id, {"fit_seconds": seconds})
        summary = {"name": name, "arch": spec_cfg.arch, "run_id": run_id, "parent_run_id": parent_run_id,
                   "device": "cpu", "fitted_on": "train+val", "seconds": seconds}
        with atomic_dir(layout.models / name) as staging:
            np.save(staging / CLASSICAL_FORECASTS, forecast)
            (staging / RUN_FILE).write_text(json.dumps(summary, indent=2) + "\n")
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
            "dataset": read_json(layout.prepared / META_FILE)["dataset"], "train_windows": len(prepared.train)}


def train_all(cfg: PipelineConfig, parent_run_id: str | None = None) -> list[dict]:
    """Train every configured model; without a parent run (a DVC stage), open and close one."""
    own_run = parent_run_id is None
    if own_run:
        parent_run_id = start_pipeline_run(cfg)
        record_validation(cfg, parent_run_id)
    try:
        summaries = [train(cfg, spec.name, parent_run_id) for spec in cfg.models]
    except BaseException:
        if own_run:
            finish_pipeline_run(cfg, parent_run_id, succeeded=False)
        raise
    if own_run:
        finish_pipeline_run(cfg, parent_run_id, succeeded=True)
    return summaries


# -- evaluate -----------------------------------------------------------------------------------

def evaluate(cfg: PipelineConfig) -> pd.DataFrame:
    """Score every trained model on the test split; write the leaderboard, forecasts and a plot."""
    layout = Layout.of(cfg)
    prepared = load_prepared(layout.prepared)
    horizon = prepared.spec.horizon
    frame = prepared.frame
    ids = prepared.scalers.series_ids
    test_rows = frame[frame["split"] == "test"]
    actual = test_rows["value"].to_numpy(np.float64).reshape(len(ids), horizon)
    scale = seasonal_scale(frame[frame["split"] == "train"], prepared.spec.season).reindex(ids).to_numpy()

    runs, per_series, forecasts = {}, [], []
    for spec in cfg.models:
        model_dir = layout.models / spec.name
        if not (model_dir / RUN_FILE).is_file():
            raise ConfigError(f"{model_dir}: model '{spec.name}' has not been trained; run `seqpipe train` first")
        runs[spec.name] = read_json(model_dir / RUN_FILE)
        if is_classical(spec.arch):
            forecast = np.load(model_dir / CLASSICAL_FORECASTS)
            if forecast.shape != actual.shape:
                raise ConfigError(f"{model_dir}: forecasts of shape {forecast.shape} do not fit the test split "
                                  f"{actual.shape}; run `seqpipe train` again")
        else:
            model = load_model(model_dir)
            forecast = inverse_scale(predict_scaled(model, prepared.test.x), prepared.test.series, prepared.scalers)
        scores = score(actual, forecast, scale)
        per_series.append(pd.DataFrame({"model": spec.name, "arch": spec.arch, "series_id": ids, **scores}))
        forecasts.append(test_rows[["series_id", "timestamp"]].assign(model=spec.name, forecast=forecast.ravel(),
                                                                      actual=actual.ravel()))
    per_series_frame = pd.concat(per_series, ignore_index=True)
    forecast_frame = pd.concat(forecasts, ignore_index=True)
    board = build_leaderboard(per_series_frame, cfg.evaluation.metric)
    markdown = to_markdown(board)

    with atomic_dir(layout.evaluation) as staging:
        board.to_csv(staging / "leaderboard.csv", index=False)
        (staging / "leaderboard.md").write_text(markdown)
        metrics = {row.model: {m: float(getattr(row, m)) for m in METRICS} for row in board.itertuples()}
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        per_series_frame.to_parquet(staging / "per_series.parquet", index=False)
        forecast_frame.to_parquet(staging / "forecasts.parquet", index=False)
        shown = sample_series(list(ids), cfg.evaluation.plot_series)
        plot_forecast_vs_actual(frame, forecast_frame, shown, horizon, staging / "forecast_vs_actual.png")

    client, _ = connect(cfg)
    for row in board.itertuples():
        log_metrics(client, runs[row.model]["run_id"], {f"test_{m}": getattr(row, m) for m in METRICS})
    parent = runs[board.iloc[0]["model"]]["parent_run_id"]
    for artifact in ("leaderboard.csv", "leaderboard.md", "metrics.json", "forecast_vs_actual.png"):
        client.log_artifact(parent, str(layout.evaluation / artifact), "evaluation")
    best = board.iloc[0]
    log_metrics(client, parent, {f"best_test_{m}": float(best[m]) for m in METRICS})
    client.set_tag(parent, "seqpipe.best_model", best["model"])
    print(f"\nLeaderboard (test split, {len(ids)} series, horizon {horizon}, ranked by {cfg.evaluation.metric}):\n{markdown}")
    return board


# -- register / promote / predict ----------------------------------------------------------------

def register(cfg: PipelineConfig) -> str:
    """Register the best registrable model as a new model version with the alias ``challenger``.

    Classical references rank on the leaderboard but are not torch forecasters, so the
    best model below them is registered instead, and the log says so.
    """
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
    run = read_json(layout.models / best["model"] / RUN_FILE)
    prepared = load_prepared(layout.prepared)
    example_ids = prepared.scalers.series_ids[:2]
    example = (prepared.frame[prepared.frame["series_id"].isin(example_ids)]
               .groupby("series_id").tail(prepared.spec.lookback)[["series_id", "timestamp", "value"]]
               .reset_index(drop=True))
    tags = {**_lineage(cfg, None), "seqpipe.model": best["model"], "seqpipe.arch": best["arch"],
            "seqpipe.pipeline_run_id": run["parent_run_id"], "seqpipe.training_run_id": run["run_id"],
            **{f"seqpipe.test_{m}": f"{best[m]:.6f}" for m in METRICS}}
    client, _ = connect(cfg)
    version = log_and_register(
        client, run["run_id"], cfg.tracking.registered_model,
        ModelArtifacts(layout.models / best["model"], layout.prepared / "scalers.parquet", prepared.spec.freq, example),
        tags,
    )
    print(f"registered {cfg.tracking.registered_model} version {version} ({best['model']}, "
          f"test {cfg.evaluation.metric} {best[cfg.evaluation.metric]:.4f}) with alias 'challenger'")
    return version


def promote(cfg: PipelineConfig, version: str, reason: str) -> dict:
    client, _ = connect(cfg)
    record = move_production(client, cfg.tracking.registered_model, str(version), reason)
    print(f"production: version {record['from']} -> {record['to']} ({reason})")
    return record


def predict(cfg: PipelineConfig, model: str, input_path: Path, output_path: Path, horizon: int | None = None) -> pd.DataFrame:
    """Forecast every series in ``input_path`` with a registered model; write ``output_path``."""

    source = cfg.data.source
    history = read_table(input_path, source.columns, time_format=source.time_format, timezone=source.timezone)
    connect(cfg)
    uri = model_uri(cfg.tracking.registered_model, model)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise RegistryError(f"cannot load {uri}: {exc.message}") from None
    try:
        forecast = loaded.predict(history, params={"horizon": horizon} if horizon else None)
    except MlflowException as exc:
        raise PredictionError(f"{input_path}: {exc.message}") from None
    write_table(forecast, output_path)
    print(f"wrote {len(forecast)} forecasts for {forecast['series_id'].nunique()} series to {output_path} ({uri})")
    return forecast
