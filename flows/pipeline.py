"""The retraining flow: ingest -> validate -> prepare [-> select] -> train x N -> evaluate [-> backtest] -> register -> gate.

Tasks only call ``seqpipe.steps``; data moves between them as files under ``data/``.
Run it in-process with ``seqpipe run`` (Prefect needs no server for that), or serve it
on its cron schedule with ``seqpipe serve`` / ``prefect deploy`` (see prefect.yaml).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.schedules import Cron

from flows.tasks import plain_task, run_step
from flows.training import train_models
from seqpipe import steps
from seqpipe.config import PipelineConfig, load_config
from seqpipe.locking import project_lock

FLOW_NAME = "seqpipe-retrain"

logger = logging.getLogger(__name__)


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


def _cached_step(timer: StepTimer, cfg: PipelineConfig, step: str) -> Any:
    started = time.perf_counter()
    try:
        value, cached = run_step(cfg, step)
    finally:
        timer.seconds[step] = time.perf_counter() - started
    if cached:
        timer.seconds[f"{step} (cached)"] = timer.seconds.pop(step)
    return value


def run_pipeline(cfg: PipelineConfig, flow_run_id: str | None, scheduled: bool = False) -> dict[str, Any]:
    timer = StepTimer()
    parent = timer.run("open MLflow run", steps.start_pipeline_run, cfg, flow_run_id)
    succeeded, result = False, {"mlflow_run_id": parent}
    try:
        manifest = _cached_step(timer, cfg, "ingest")
        result["dataset_md5"] = manifest.md5
        stop = timer.run("compare with production", steps.retraining_decision, cfg, parent, manifest.md5, scheduled)
        if stop:
            steps.record_validation(cfg, parent, flow_run_id)
            succeeded = True
            return {**result, "skipped": stop}
        try:
            report = _cached_step(timer, cfg, "validate")
        finally:
            # A rejected batch is worth seeing in MLflow too: why this run never trained.
            steps.record_validation(cfg, parent, flow_run_id)
        _cached_step(timer, cfg, "prepare")
        if cfg.evaluation.selection.method == "backtest":
            # Before training: a fold plan the data cannot meet fails before any model is fitted.
            timer.run("select", plain_task("select", steps.select, cfg), cfg, parent)
        trained = timer.run(f"train {len(cfg.models)} models ({cfg.orchestration.mode})", train_models,
                            cfg, [spec.name for spec in cfg.models], parent)
        board = timer.run("evaluate", plain_task("evaluate", steps.evaluate, cfg), cfg, parent)
        if cfg.evaluation.backtest.folds:
            timer.run("backtest", plain_task("backtest", steps.backtest, cfg), cfg, parent)
        version = timer.run("register", plain_task("register", steps.register, cfg), cfg)
        decision = timer.run("gate", plain_task("gate", steps.gate, cfg), cfg)
        succeeded = True
    finally:
        steps.finish_pipeline_run(cfg, parent, succeeded)
        logger.info(f"\nstep timings (MLflow run {parent}):\n{timer.table()}")
    reused = [t["name"] for t in trained if t.get("cached")]
    logger.info(f"\nregistered version {version}; gate: {decision['action']}"
                + (f"; reused unchanged models: {', '.join(reused)}" if reused else "") +
                f"\nleaderboard ({steps.leaderboard_title(cfg)}; full table in data/evaluation/):\n{steps.leaderboard_markdown(cfg)}")
    return {
        **result,
        "skipped": None,
        "validation_passed": report.success,
        "models": [t["name"] for t in trained],
        "cached_models": reused,
        "best_model": str(board.iloc[0]["model"]),
        "registered_version": version,
        "gate": decision,
        "seconds": timer.seconds,
    }


@flow(name=FLOW_NAME, log_prints=True)
def retrain(conf_dir: str = "conf", scheduled: bool = False) -> dict[str, Any]:
    """Retrain every configured model, register the best as challenger, and gate its promotion.

    ``scheduled`` runs (the cron deployment) stop after ingest when the data is the one
    production was trained on (``schedule.skip_unchanged``).
    """
    cfg = load_config(conf_dir)
    # One run at a time per data folder; `seqpipe run` holds it already, a deployment's run takes it here.
    with project_lock(cfg, f"flow {FLOW_NAME} (flow run {flow_run.id})"):
        return run_pipeline(cfg, str(flow_run.id) if flow_run.id else None, scheduled)


def serve(cfg: PipelineConfig, conf_dir: str) -> None:
    """Serve the retraining flow on the configured cron schedule (needs a Prefect server)."""
    retrain.serve(
        name="retrain",
        schedules=[Cron(cfg.schedule.cron, timezone=cfg.schedule.timezone)],
        parameters={"conf_dir": conf_dir, "scheduled": True},
        tags=["seqpipe", "retrain"],
    )
