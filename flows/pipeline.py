"""The retraining flow: ingest -> validate -> prepare -> train x N -> evaluate -> register -> gate.

Tasks only call ``seqpipe.steps``; data moves between them as files under ``data/``.
Run it in-process with ``seqpipe run`` (Prefect needs no server for that), or serve it
on its cron schedule with ``seqpipe serve`` / ``prefect deploy`` (see prefect.yaml).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.schedules import Cron

from seqpipe import steps
from seqpipe.config import PipelineConfig, load_config

FLOW_NAME = "seqpipe-retrain"


def _step_task(name: str, step: Callable[..., Any], run_name: str | None = None) -> Any:
    # Content-keyed caching comes with file-hash inputs; until then every run recomputes.
    return task(step, name=name, task_run_name=run_name or name, cache_policy=NO_CACHE, log_prints=True)


ingest_task = _step_task("ingest", steps.ingest)
validate_task = _step_task("validate", steps.validate)
prepare_task = _step_task("prepare", steps.prepare)
train_task = _step_task("train", steps.train, run_name="train-{name}")
evaluate_task = _step_task("evaluate", steps.evaluate)
register_task = _step_task("register", steps.register)
gate_task = _step_task("gate", steps.gate)


class StepTimer:
    """Wall time per step, printed as a table when the flow ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[label] = time.perf_counter() - started

    def table(self) -> str:
        total = sum(self.seconds.values())
        lines = [f"{'step':<24}{'seconds':>10}"] + [f"{k:<24}{v:>10.1f}" for k, v in self.seconds.items()]
        return "\n".join([*lines, f"{'total':<24}{total:>10.1f}"])


def run_pipeline(cfg: PipelineConfig, flow_run_id: str | None) -> dict[str, Any]:
    timer = StepTimer()
    parent = timer.run("open MLflow run", steps.start_pipeline_run, cfg, flow_run_id)
    succeeded = False
    try:
        manifest = timer.run("ingest", ingest_task, cfg)
        try:
            report = timer.run("validate", validate_task, cfg)
        finally:
            # A rejected batch is worth seeing in MLflow too: why this run never trained.
            steps.record_validation(cfg, parent, flow_run_id)
        timer.run("prepare", prepare_task, cfg)
        trained = [timer.run(f"train {spec.name}", train_task, cfg, spec.name, parent, flow_run_id) for spec in cfg.models]
        board = timer.run("evaluate", evaluate_task, cfg)
        version = timer.run("register", register_task, cfg)
        decision = timer.run("gate", gate_task, cfg)
        succeeded = True
    finally:
        steps.finish_pipeline_run(cfg, parent, succeeded)
        print(f"\nstep timings (MLflow run {parent}):\n{timer.table()}")
    print(f"\nregistered version {version}; gate: {decision['action']}\n"
          f"leaderboard ({cfg.evaluation.metric} ranks; full table in data/evaluation/):\n{steps.leaderboard_markdown(cfg)}")
    return {
        "mlflow_run_id": parent,
        "dataset_md5": manifest.md5,
        "validation_passed": report.success,
        "models": [t["name"] for t in trained],
        "best_model": str(board.iloc[0]["model"]),
        "registered_version": version,
        "gate": decision,
        "seconds": timer.seconds,
    }


@flow(name=FLOW_NAME, log_prints=True)
def retrain(conf_dir: str = "conf") -> dict[str, Any]:
    """Retrain every configured model, register the best as challenger, and gate its promotion."""
    cfg = load_config(conf_dir)
    return run_pipeline(cfg, str(flow_run.id) if flow_run.id else None)


def serve(cfg: PipelineConfig, conf_dir: str) -> None:
    """Serve the retraining flow on the configured cron schedule (needs a Prefect server)."""
    retrain.serve(
        name="retrain",
        schedules=[Cron(cfg.schedule.cron, timezone=cfg.schedule.timezone)],
        parameters={"conf_dir": conf_dir},
        tags=["seqpipe", "retrain"],
    )


def deploy_environment(cfg: PipelineConfig, conf_dir: str, work_pool: str) -> dict[str, str]:
    """The variables prefect.yaml reads, taken from the config."""
    return {
        "SEQPIPE_PROJECT_DIR": str(cfg.root),
        "SEQPIPE_CONF_DIR": conf_dir,
        "SEQPIPE_WORK_POOL": work_pool,
        "SEQPIPE_RETRAIN_CRON": cfg.schedule.cron,
        "SEQPIPE_RETRAIN_TIMEZONE": cfg.schedule.timezone,
    }
