"""Connect to the configured MLflow store; with no server, a SQLite file inside the project."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils

from seqpipe.config import PipelineConfig
from seqpipe.errors import RegistryError

SQLITE_PREFIX = "sqlite:///"


URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass
class _Scope:
    """Who holds MLflow's process-wide URIs now, and what to put back when the last one leaves."""

    uris: tuple[str, str] | None = None
    holders: Counter = field(default_factory=Counter)  # thread id -> open scopes of that thread
    saved: tuple[str | None, str | None, dict[str, str | None]] | None = None


_SCOPE = _Scope()
_SCOPE_CHANGED = threading.Condition()


def _uris_of(target: str | MlflowClient) -> tuple[str, str]:
    if isinstance(target, MlflowClient):
        # MlflowClient keeps its registry URI only privately; seqpipe's clients use one URI for both.
        return target.tracking_uri, getattr(target, "_registry_uri", None) or target.tracking_uri
    return target, target


def _process_uris() -> tuple[str | None, str | None, dict[str, str | None]]:
    """The URIs set with mlflow.set_*_uri (None: never set) and the two variables, as they are now."""
    return (tracking_utils._tracking_uri, registry_utils._registry_uri,
            {name: os.environ.get(name) for name in URI_VARIABLES})


def _restore_variables(variables: dict[str, str | None]) -> None:
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def mlflow_uris(target: str | MlflowClient) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.pyfunc``, ``mlflow.start_run``, ...) at ``target`` for this block.

    ``target`` is a store URI or a client (its tracking and registry URIs). MLflow keeps
    these URIs process-wide, so they are set only for the block and put back afterwards
    exactly as they were, including MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI in
    os.environ: ``set_tracking_uri`` exports the variable, which would send every
    ``seqpipe`` (or ``dvc repro``) started later from this process, and every later
    ``connect``, to this store. Code outside a block (``MlflowClient`` built elsewhere in
    the process, a test that runs next) sees no trace of it.

    Blocks for the same URIs nest and overlap across threads (training threads share
    one store); the last one to leave restores. A thread asking for other URIs waits
    until the others are done, since MLflow has one slot for them; asking for other URIs
    inside one's own block is a RuntimeError rather than a deadlock.
    """
    uris = _uris_of(target)
    me = threading.get_ident()
    with _SCOPE_CHANGED:
        while _SCOPE.holders and _SCOPE.uris != uris:
            if _SCOPE.holders[me]:
                raise RuntimeError(f"MLflow URIs {uris} requested inside a block that uses {_SCOPE.uris}")
            _SCOPE_CHANGED.wait()
        if not _SCOPE.holders:
            _SCOPE.saved = _process_uris()
            _SCOPE.uris = uris
            mlflow.set_tracking_uri(uris[0])
            mlflow.set_registry_uri(uris[1])
            _restore_variables(_SCOPE.saved[2])  # set, not exported
        _SCOPE.holders[me] += 1
    try:
        yield
    finally:
        with _SCOPE_CHANGED:
            _SCOPE.holders[me] -= 1
            if not _SCOPE.holders[me]:
                del _SCOPE.holders[me]
            if not _SCOPE.holders:
                tracking, registry, variables = _SCOPE.saved
                # set_tracking_uri also resets MLflow's tracer, which caches the tracking URI.
                mlflow.set_tracking_uri(tracking)
                registry_utils._registry_uri = registry  # set_registry_uri(None) would leave it set
                _restore_variables(variables)
                _SCOPE.uris = _SCOPE.saved = None
                _SCOPE_CHANGED.notify_all()


def tracking_uri(cfg: PipelineConfig) -> str:
    """MLFLOW_TRACKING_URI wins, as MLflow users expect; a relative SQLite path is under the project."""
    # Only the user sets this variable: mlflow_uris keeps MLflow from exporting it.
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
    """A client of the configured store (tracking and registry) and the experiment id.

    Nothing process-wide is set: MLflow's fluent API reaches the store only inside
    ``mlflow_uris(client)``. The first request doubles as a reachability check: a store that cannot be reached
    fails here, before any step has logged or registered anything.
    """
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        _limit_http_retries(cfg)
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
