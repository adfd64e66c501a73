"""Parent and child runs, addressed by id so any process (a Prefect task, a DVC stage) can log to them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from seqpipe.tracking.store import mlflow_uris

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


def create_run(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str], parent_id: str | None = None) -> str:
    tags = {**tags, MLFLOW_RUN_NAME: name}
    if parent_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_id
    return client.create_run(experiment_id, tags=tags, run_name=name).info.run_id


def finish_run(client: MlflowClient, run_id: str, succeeded: bool) -> None:
    status = RunStatus.to_string(RunStatus.FINISHED if succeeded else RunStatus.FAILED)
    client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def active_run(client: MlflowClient, run_id: str, system_metrics: bool = False) -> Iterator[None]:
    """Make an existing run of ``client``'s store the fluent active run (for APIs that need one), then leave it as it was.

    The whole block runs inside ``mlflow_uris(client)``: fluent calls in it, and the
    system-metrics thread started and stopped with the run, reach ``client``'s store,
    and no URI is left set afterwards. Resuming a run marks it RUNNING and ``end_run``
    would mark it FINISHED; the run's owner decides its final status, so the status it
    had before is written back.
    """
    status_before = client.get_run(run_id).info.status
    with mlflow_uris(client):
        mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
        try:
            yield
        finally:
            mlflow.end_run(status=status_before)


def log_params(client: MlflowClient, run_id: str, params: dict[str, object]) -> None:
    client.log_batch(run_id, params=[Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()])


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
