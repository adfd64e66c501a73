"""Connect to the configured MLflow store; with no server, a SQLite file inside the project."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqpipe.config import PipelineConfig
from seqpipe.errors import RegistryError

SQLITE_PREFIX = "sqlite:///"


URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _point_mlflow_at(uri: str) -> None:
    """Set MLflow's process-wide URIs without exporting them to child processes.

    ``set_tracking_uri`` and ``set_registry_uri`` also write their variables into
    os.environ: every ``seqpipe`` (or ``dvc repro``) started afterwards from this process
    would then log into this config's store instead of its own.
    """
    exported = {name: os.environ.get(name) for name in URI_VARIABLES}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in exported.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def tracking_uri(cfg: PipelineConfig) -> str:
    """MLFLOW_TRACKING_URI wins, as MLflow users expect; a relative SQLite path is under the project."""
    # Only the user sets this variable: _point_mlflow_at keeps MLflow from exporting it.
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.tracking_uri
    if uri.startswith(SQLITE_PREFIX) and not uri.startswith(SQLITE_PREFIX + "/"):
        db = cfg.path(uri[len(SQLITE_PREFIX):])
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"{SQLITE_PREFIX}{db}"
    return uri


def artifact_location(cfg: PipelineConfig) -> str | None:
    """Where a new experiment keeps artifacts; None lets a tracking server choose (and proxy them)."""
    if cfg.tracking.artifact_root is None:
        return None
    root = Path(cfg.tracking.artifact_root)
    if "://" in cfg.tracking.artifact_root:
        return cfg.tracking.artifact_root
    return cfg.path(root).resolve().as_uri()


def _limit_http_retries(cfg: PipelineConfig) -> None:
    """Bound how long MLflow retries a tracking server; values the user exported win."""
    for variable, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": cfg.tracking.http_max_retries,
                            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": cfg.tracking.http_backoff_factor,
                            "MLFLOW_HTTP_REQUEST_TIMEOUT": cfg.tracking.http_timeout}.items():
        os.environ.setdefault(variable, str(value))


def connect(cfg: PipelineConfig) -> tuple[MlflowClient, str]:
    """Point MLflow at the configured store and return a client and the experiment id.

    The first request doubles as a reachability check: a store that cannot be reached
    fails here, before any step has logged or registered anything.
    """
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        _limit_http_retries(cfg)
    _point_mlflow_at(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        from seqpipe.tracking.datasets import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, mark_model_training

        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        if experiment is not None:
            mark_model_training(client, experiment)  # so MLflow's UI opens on the runs, not the GenAI overview
            return client, experiment.experiment_id
        return client, client.create_experiment(cfg.tracking.experiment, artifact_location=artifact_location(cfg),
                                                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
    except (MlflowException, OSError) as exc:
        # requests' ConnectionError is an OSError; MLflow wraps exhausted retries in MlflowException.
        message = getattr(exc, "message", None) or str(exc)
        raise RegistryError(f"cannot reach the MLflow tracking store at {uri} "
                            f"(tracking.tracking_uri or MLFLOW_TRACKING_URI): {message.splitlines()[0][:300]}") from None
