"""Each architecture trains in its own flow run: in this process, or on a work pool's workers.

This is the one fan-out over models: the pipeline flow and ``seqpipe train`` both call
``train_models``. In ``local`` mode it calls ``train_model`` as a subflow per model (several
at once when ``orchestration.concurrency`` allows). In ``workers`` mode it starts one run
of the ``train-model`` deployment per model on ``orchestration.work_pool`` and waits:
the prepared data travels in the pipeline's MLflow run, each model comes back in its
training run and its summary as a file in the pipeline run, so a worker needs the code
and the tracking server, not this disk.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

from flows.tasks import run_step
from seqpipe import steps
from seqpipe.config import PipelineConfig, load_config
from seqpipe.errors import ConfigError

TRAIN_FLOW_NAME = "seqpipe-train-model"
POLL_SECONDS = 2.0

logger = logging.getLogger(__name__)


@flow(name=TRAIN_FLOW_NAME, flow_run_name="train-{name}", log_prints=True)
def train_model(name: str, parent_run_id: str, config: dict[str, Any] | None = None, conf_dir: str = "conf",
                prepared_md5: str | None = None) -> dict[str, Any]:
    """Train one model into ``data/models/<name>`` under the pipeline's MLflow run.

    ``config`` is the pipeline's config as sent by the parent flow (None: load ``conf_dir``);
    ``prepared_md5`` asks for the pipeline's prepared data, fetched when this machine lacks it.
    """
    cfg = PipelineConfig.from_payload(config, conf_dir) if config else load_config(conf_dir)
    if prepared_md5:
        steps.fetch_prepared(cfg, parent_run_id, prepared_md5)
    summary, cached = run_step(cfg, "train", name=name, parent_run_id=parent_run_id,
                               flow_run_id=str(flow_run.id) if flow_run.id else None)
    if cached:
        logger.info(f"[{name}] inputs unchanged: reusing the model of MLflow run {summary['run_id']}")
    result = {**summary, "cached": cached}
    # A pipeline on another machine reads it back from there; on this one it is the return value.
    steps.publish_training_summary(cfg, parent_run_id, result)
    return result


def train_in_process(cfg: PipelineConfig, names: list[str], parent_run_id: str) -> list[dict[str, Any]]:
    shared = {"parent_run_id": parent_run_id, "config": cfg.payload(), "conf_dir": str(cfg.conf_dir)}
    if (cfg.orchestration.concurrency or 1) == 1:
        return [train_model(name=name, **shared) for name in names]
    # Each thread gets its own copy of the context, so each subflow knows its parent flow run.
    with ThreadPoolExecutor(cfg.orchestration.concurrency) as pool:
        futures = [pool.submit(contextvars.copy_context().run, train_model, name=name, **shared) for name in names]
        return [future.result() for future in futures]


def _wait(flow_run_ids: dict[str, Any], timeout: float | None, pool: str) -> dict[str, Any]:
    """Poll the training flow runs until each is final; their states by model name."""
    deadline = None if timeout is None else time.monotonic() + timeout
    finals: dict[str, Any] = {}
    with get_client(sync_client=True) as client:
        while len(finals) < len(flow_run_ids):
            for name, run_id in flow_run_ids.items():
                if name not in finals:
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_final():
                        finals[name] = state
            if len(finals) < len(flow_run_ids):
                if deadline is not None and time.monotonic() > deadline:
                    waiting = sorted(set(flow_run_ids) - set(finals))
                    raise TimeoutError(f"training flow runs for {waiting} did not finish within "
                                       f"orchestration.training_timeout = {timeout}s; is a worker polling "
                                       f"pool '{pool}' (`seqpipe worker --pool {pool}`)?")
                time.sleep(POLL_SECONDS)
    return finals


def train_on_workers(cfg: PipelineConfig, names: list[str], parent_run_id: str) -> list[dict[str, Any]]:
    settings = cfg.orchestration
    shared = {"parent_run_id": parent_run_id, "config": cfg.payload(),
              "prepared_md5": steps.publish_prepared(cfg, parent_run_id)}
    started = {}
    for name in names:
        try:
            # The key makes a retried pipeline task find its runs instead of queueing twins.
            run = run_deployment(settings.training_deployment, timeout=0, tags=["seqpipe", "train", name],
                                 idempotency_key=f"{parent_run_id}:{name}",
                                 parameters={"name": name, **shared})
        except ObjectNotFound:
            raise ConfigError(f"orchestration.mode is 'workers' but the Prefect server has no deployment "
                              f"'{settings.training_deployment}': run `seqpipe deploy`, then start a worker with "
                              f"`seqpipe worker --pool {settings.work_pool}`") from None
        logger.info(f"[{name}] training flow run {run.name} ({run.id}) queued on work pool '{settings.work_pool}'")
        started[name] = run.id
    finals = _wait(started, settings.training_timeout, settings.work_pool)
    failed = {name: state.name for name, state in finals.items() if not state.is_completed()}
    if failed:
        raise RuntimeError(f"training flow runs did not complete: {failed} (see them in the Prefect UI)")
    summaries = [steps.fetch_training_summary(cfg, parent_run_id, name) for name in names]
    for summary in summaries:
        steps.fetch_trained(cfg, summary)
    return summaries


def train_models(cfg: PipelineConfig, names: list[str], parent_run_id: str) -> list[dict[str, Any]]:
    """Train ``names`` as the configured orchestration mode says; their summaries, in order."""
    if cfg.orchestration.mode == "workers":
        return train_on_workers(cfg, names, parent_run_id)
    return train_in_process(cfg, names, parent_run_id)
