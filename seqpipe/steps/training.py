"""Train the configured models into ``data/models``, and carry folders between machines through MLflow."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict

import numpy as np

from seqpipe.config import PipelineConfig
from seqpipe.data.catalog import series_spec
from seqpipe.data.prepare import META_FILE, PreparedData, load_prepared
from seqpipe.layout import Layout
from seqpipe.errors import ConfigError
from seqpipe.evaluation.classical import classical_forecast, is_classical
from seqpipe.evaluation.classical import parse_params as classical_params
from seqpipe.io import atomic_dir, folder_md5, read_json, write_json
from seqpipe.models import ProblemShape, build_model
from seqpipe.models.base import Forecaster
from seqpipe.models.persistence import save_model
from seqpipe.tracking.lineage import TAG_PREFIX
from seqpipe.tracking.exchange import fetch_folder, publish_folder
from seqpipe.tracking.runs import active_run, create_run, finish_run, log_metrics, log_params
from seqpipe.tracking.store import connect
from seqpipe.training import FitResult, TrainSettings, fit, seed_everything
from seqpipe.steps.data import input_features
from seqpipe.steps.runs import _lineage, finish_pipeline_run, pipeline_run_for

HISTORY_FILE = "history.json"
PREPARED_TAG = TAG_PREFIX + "prepared_md5"
CLASSICAL_FORECASTS = "forecasts.npy"
# Artifact paths that carry folders between machines (see seqpipe.tracking.exchange).
MODEL_FILES = "model_files"
PREPARED_FILES = "inputs/prepared"


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
        with active_run(client, run_id, system_metrics=cfg.tracking.system_metrics and model.trainable):
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


def training_record(cfg: PipelineConfig, name: str) -> dict | None:
    """The MLflow runs that trained the model now in ``data/models/<name>``, if it was trained here."""
    layout = Layout.of(cfg)
    path = layout.runs / f"{name}.json"
    if not path.is_file():
        return None
    record = read_json(path)
    return record if record.get("model_md5") == folder_md5(layout.models / name) else None


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
