"""Prefect tasks around the step functions: retries for transient failures, content-keyed caching.

A cached step is keyed on ``seqpipe.fingerprint.step_inputs``: the content of the files
it reads, the config that shapes it and the code that computes it, never on in-memory
objects; what those are, its stage in dvc.yaml declares, so DVC reruns it for the same changes.
The cache is kept under ``orchestration.cache_dir`` in the project, so it survives
across flow runs with or without a Prefect server. A cache hit is only trusted while
the step's output files are as the cached run left them; otherwise the step reruns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.tasks import exponential_backoff

from seqpipe import fingerprint, steps
from seqpipe.config import PipelineConfig
from seqpipe.errors import ConfigError, DataValidationError, PredictionError, SourceError

# Bad data, bad config and bad requests fail the same way on every try.
PERMANENT_ERRORS = (ConfigError, SourceError, DataValidationError, PredictionError)
CACHED = "Cached"

logger = logging.getLogger(__name__)


@dataclass
class StepInputs(CachePolicy):
    """Cache key: the digest of the inputs the step's dvc.yaml stage declares (None, i.e. no caching, when unknown)."""

    step: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        cfg: PipelineConfig = inputs["cfg"]
        return fingerprint.step_inputs(cfg, self.step, inputs.get("name"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Produced:
    """A step's return value and the digest of the files it left, stored together in the cache."""

    value: Any
    outputs: str | None


def is_transient(task: Task, task_run: Any, state: Any) -> bool:
    """Retry what a rerun might fix (a server that was down, a full disk freed); not bad input."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except Exception:  # noqa: BLE001 - anything else may pass on the next try
        return True
    return False


def _produced(cfg: PipelineConfig, step: str, value: Any, name: str | None = None) -> Produced:
    return Produced(value, fingerprint.step_outputs(cfg, step, name))  # type: ignore[arg-type]


@task(name="ingest", task_run_name="ingest", cache_policy=NO_CACHE, log_prints=True)
def ingest_task(cfg: PipelineConfig) -> Produced:
    return _produced(cfg, "ingest", steps.ingest(cfg))


@task(name="validate", task_run_name="validate", cache_policy=NO_CACHE, log_prints=True)
def validate_task(cfg: PipelineConfig) -> Produced:
    return _produced(cfg, "validate", steps.validate(cfg))


@task(name="prepare", task_run_name="prepare", cache_policy=NO_CACHE, log_prints=True)
def prepare_task(cfg: PipelineConfig) -> Produced:
    return _produced(cfg, "prepare", steps.prepare(cfg))


@task(name="train", task_run_name="train-{name}", cache_policy=NO_CACHE, log_prints=True)
def train_task(cfg: PipelineConfig, name: str, parent_run_id: str, flow_run_id: str | None = None) -> Produced:
    # The parent and flow run ids label the MLflow run; the cache key leaves them out.
    return _produced(cfg, "train", steps.train(cfg, name, parent_run_id, flow_run_id), name)


STEP_TASKS: dict[str, Task] = {"ingest": ingest_task, "validate": validate_task, "prepare": prepare_task,
                               "train": train_task}


def _options(cfg: PipelineConfig, step: str) -> dict[str, Any]:
    settings = cfg.orchestration
    retry = {"retries": settings.retries, "retry_condition_fn": is_transient,
             "retry_delay_seconds": exponential_backoff(settings.retry_delay) if settings.retries else 0}
    if not settings.cache:
        return {**retry, "cache_policy": NO_CACHE}
    cache = cfg.path(settings.cache_dir)
    return {**retry, "cache_policy": StepInputs(step=step).configure(key_storage=cache / "keys"),
            "persist_result": True, "result_storage": cache / "results"}


def run_step(cfg: PipelineConfig, step: str, **kwargs: Any) -> tuple[Any, bool]:
    """Run one cached step as a Prefect task; returns its value and whether the cache answered."""
    configured = STEP_TASKS[step].with_options(**_options(cfg, step))
    state = configured(cfg, return_state=True, **kwargs)
    produced: Produced = state.result()
    cached = state.name == CACHED
    if cached and produced.outputs != fingerprint.step_outputs(cfg, step, kwargs.get("name")):  # type: ignore[arg-type]
        logger.warning(f"{step}: the cached run's output files changed on disk since; running it again")
        state = configured.with_options(refresh_cache=True)(cfg, return_state=True, **kwargs)
        produced, cached = state.result(), False
    return produced.value, cached


def plain_task(name: str, fn: Callable[..., Any], cfg: PipelineConfig) -> Task:
    """A step that always runs (evaluate, register, gate: cheap, and they read the registry's present)."""
    settings = cfg.orchestration
    return task(fn, name=name, task_run_name=name, cache_policy=NO_CACHE, log_prints=True, retries=settings.retries,
                retry_condition_fn=is_transient,
                retry_delay_seconds=exponential_backoff(settings.retry_delay) if settings.retries else 0)
