"""`seqpipe deploy` and `seqpipe worker`: the deployments of prefect.yaml and the workers that run them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound

from flows.deploy_steps import PROJECT_ENV
from seqpipe.config import PipelineConfig

POOL_TYPE = "process"

logger = logging.getLogger(__name__)


def deploy_environment(cfg: PipelineConfig, conf_dir: str) -> dict[str, str]:
    """The variables prefect.yaml reads, taken from the config."""
    return {
        PROJECT_ENV: str(cfg.root),
        "SEQPIPE_CONF_DIR": conf_dir,
        "SEQPIPE_RETRAIN_POOL": cfg.orchestration.retrain_pool,
        "SEQPIPE_TRAIN_POOL": cfg.orchestration.work_pool,
        "SEQPIPE_RETRAIN_CRON": cfg.schedule.cron,
        "SEQPIPE_RETRAIN_TIMEZONE": cfg.schedule.timezone,
    }


def ensure_work_pools(cfg: PipelineConfig) -> list[str]:
    """Create the retraining and training work pools (process type) that do not exist yet."""
    created = []
    with get_client(sync_client=True) as client:
        for pool in dict.fromkeys([cfg.orchestration.retrain_pool, cfg.orchestration.work_pool]):
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=pool, type=POOL_TYPE))
                created.append(pool)
                logger.info(f"created work pool '{pool}' ({POOL_TYPE})")
    return created


def deploy(cfg: PipelineConfig, conf_dir: str) -> int:
    """Create the pools, then every deployment of prefect.yaml; the exit code of `prefect deploy`."""
    ensure_work_pools(cfg)
    env = {**os.environ, **deploy_environment(cfg, conf_dir)}
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
               "--prefect-file", str(cfg.root / "prefect.yaml")]
    return subprocess.run(command, cwd=cfg.root, env=env).returncode


def start_worker(cfg: PipelineConfig, pool: str, limit: int | None = None) -> None:
    """Become a process worker on ``pool``; its flow runs use this project's checkout.

    The process replaces itself with Prefect's worker, so a service manager's SIGTERM
    (or Ctrl-C) reaches the worker, not a wrapper that would leave it behind.
    """
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", POOL_TYPE]
    if limit:
        command += ["--limit", str(limit)]
    os.chdir(cfg.root)
    os.execve(sys.executable, command, {**os.environ, PROJECT_ENV: str(cfg.root)})
