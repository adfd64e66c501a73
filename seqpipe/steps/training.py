"""Train one configured model into ``data/models/<name>``, in its own MLflow child run.

The fan-out over models (one after another, in threads, or on a work pool) belongs to
the caller: ``flows.training`` for the pipeline and the CLI, one DVC stage per model.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from seqpipe.config import ModelSpec, PipelineConfig
from seqpipe.data.catalog import series_spec
from seqpipe.data.prepare import META_FILE, PreparedData, load_prepared
from seqpipe.errors import ConfigError
from seqpipe.estimators import FitOptions
from seqpipe.training import FitResult, MemberFit
from seqpipe.hashing import short_digest
from seqpipe.hyperparams import NOT_IN_WEIGHTS
from seqpipe.io import atomic_dir, folder_md5, read_json, write_json
from seqpipe.layout import Layout
from seqpipe.steps.data import input_features
from seqpipe.steps.fitting import fit_estimator, model_training, seeded_estimator
from seqpipe.steps.runs import _lineage, record_dataset
from seqpipe.steps.transfer import MODEL_FILES
from seqpipe.tasks import task_step
from seqpipe.tracking.exchange import publish_folder
from seqpipe.tracking.lineage import TAG_PREFIX
from seqpipe.tracking.runs import active_run, create_run, finish_run, log_metrics, log_params
from seqpipe.tracking.store import connect

HISTORY_FILE = "history.json"
PREPARED_TAG = TAG_PREFIX + "prepared_md5"


@dataclass(frozen=True)
class TrainingJob:
    """One model ready to fit on its task's prepared data: what the shared training step needs of a task."""

    estimator: Any  # an Estimator or a ClassifierEstimator: describe, fit (through ``fit``), save, trainable
    data_params: dict[str, Any]  # what the data looked like, logged as the run's params
    signature: dict[str, Any]  # what a checkpoint must have been trained on to be resumed
    fit: Callable[[FitOptions], FitResult]


@task_step
def training_job(cfg: PipelineConfig, spec: ModelSpec, layout: Layout) -> TrainingJob:
    """A forecaster and the prepared windows it fits on."""
    # Build first: a mistyped hyper-parameter should fail before any data is loaded.
    estimator = seeded_estimator(cfg, spec)
    prepared = load_prepared_for(cfg, layout)
    return TrainingJob(
        estimator=estimator,
        data_params={**{f"data.{k}": v for k, v in asdict(prepared.spec).items()},
                     "data.inputs": ",".join(prepared.features.names), "train_windows": len(prepared.train)},
        signature=_checkpoint_signature(cfg, spec, prepared, layout),
        fit=lambda options: fit_estimator(cfg, spec, estimator, prepared, options),
    )


def train(cfg: PipelineConfig, name: str, parent_run_id: str, flow_run_id: str | None = None) -> dict:
    """Train one configured model in its own child run; write ``data/models/<name>/`` and its run record.

    Every task trains through here; ``training_job`` is what differs.
    """
    spec = cfg.model(name)
    layout = Layout.of(cfg)
    job = training_job(cfg, spec, layout)
    estimator = job.estimator

    client, experiment_id = connect(cfg)
    tags = {**_lineage(cfg, flow_run_id), PREPARED_TAG: folder_md5(layout.prepared)}
    run_id = create_run(client, experiment_id, name, tags, parent_id=parent_run_id)
    try:
        # Networks fit on the training windows and stop on validation; local models fit on both.
        record_dataset(cfg, run_id, contexts=("training", "validation"))
        log_params(client, run_id, {
            "arch": spec.arch, **{f"model.{k}": v for k, v in estimator.describe().items()},
            **{f"training.{k}": v for k, v in model_training(cfg, spec).items()},
            **job.data_params,
        })
        checkpoint = layout.checkpoints / f"{name}.pt"
        options = FitOptions(
            name=name, checkpoint=checkpoint, signature=job.signature,
            on_epoch=lambda e: log_metrics(client, run_id, {"train_loss": e.train_loss, "val_loss": e.val_loss,
                                                            "learning_rate": e.learning_rate}, step=e.epoch),
        )
        with active_run(client, run_id, system_metrics=cfg.tracking.system_metrics and estimator.trainable):
            result = job.fit(options)
        for member in result.members:
            _log_member(client, experiment_id, tags, run_id, f"{name}/{member.label}", member)
        log_metrics(client, run_id, _fit_metrics(result))
        # The model folder is a DVC output: only what data, code and config determine goes in
        # (no run ids, no wall times), so an identical rerun leaves it byte for byte the same.
        history = [{k: v for k, v in asdict(e).items() if k != "seconds"} for e in result.history]
        with atomic_dir(layout.models / name) as staging:
            estimator.save(staging)
            (staging / HISTORY_FILE).write_text(json.dumps(history, indent=2) + "\n")
        summary = {"name": name, "arch": spec.arch, "run_id": run_id, "parent_run_id": parent_run_id,
                   "device": result.device, "best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                   "model_md5": publish_folder(client, run_id, layout.models / name, MODEL_FILES)}
        write_json(layout.runs / f"{name}.json", summary)
        # Only once the model is saved: until then a rerun should pick up where this one died.
        for finished in (checkpoint, *checkpoint.parent.glob(f"{checkpoint.stem}.member-*{checkpoint.suffix}")):
            finished.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other models' checkpoints may still be there
            checkpoint.parent.rmdir()
    except BaseException:
        finish_run(client, run_id, succeeded=False)
        raise
    finish_run(client, run_id, succeeded=True)
    return summary


def _log_member(client, experiment_id: str, tags: dict[str, str], parent_run_id: str, run_name: str,
                member: MemberFit) -> None:
    """An ensemble member's fit as a child run of the ensemble's: its params, epochs and best validation loss.

    A member that is itself an ensemble (a group combined first) has its own members as its children.
    """
    run_id = create_run(client, experiment_id, run_name, tags, parent_id=parent_run_id)
    log_params(client, run_id, {f"model.{k}": v for k, v in member.params.items()})
    for epoch in member.result.history:
        log_metrics(client, run_id, {"train_loss": epoch.train_loss, "val_loss": epoch.val_loss,
                                     "learning_rate": epoch.learning_rate}, step=epoch.epoch)
    log_metrics(client, run_id, _fit_metrics(member.result))
    for inner in member.result.members:
        _log_member(client, experiment_id, tags, run_id, f"{run_name}/{inner.label}", inner)
    finish_run(client, run_id, succeeded=True)


def _fit_metrics(result: FitResult) -> dict[str, float]:
    """What a fit measured; a local model (or an ensemble) has no validation loss or epochs of its own."""
    return {k: v for k, v in {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                              "epochs_run": result.epochs_run, "train_seconds": result.seconds}.items()
            if math.isfinite(v)}


def load_prepared_for(cfg: PipelineConfig, layout: Layout) -> PreparedData:
    """The prepared data, refused when it was prepared for another shape or other inputs than the config's."""
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


def _checkpoint_signature(cfg: PipelineConfig, spec: ModelSpec, prepared: PreparedData, layout: Layout) -> dict:
    """What a checkpoint must have been trained on to be resumed; anything else starts afresh."""
    training = {k: v for k, v in model_training(cfg, spec).items() if k not in NOT_IN_WEIGHTS}
    model = spec.model_dump(mode="json")
    return {"config": short_digest({"training": training, "model": model}), "arch": spec.arch,
            "shape": [prepared.spec.lookback, prepared.spec.horizon, prepared.spec.season],
            "inputs": prepared.features.names,
            "dataset": read_json(layout.prepared / META_FILE)["dataset"], "train_windows": len(prepared.train)}


def training_record(cfg: PipelineConfig, name: str) -> dict | None:
    """The MLflow runs that trained the model now in ``data/models/<name>``, if it was trained here."""
    layout = Layout.of(cfg)
    path = layout.runs / f"{name}.json"
    if not path.is_file():
        return None
    record = read_json(path)
    return record if record.get("model_md5") == folder_md5(layout.models / name) else None
