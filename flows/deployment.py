"""`seqpipe deploy` and `seqpipe worker`: the deployments of prefect.yaml and the workers that run them.

A flow run whose process dies (its worker killed, the machine gone) cannot report it,
so Prefect would show it Running forever. Every flow run sends a heartbeat event every
``orchestration.heartbeat_seconds`` (the workers' environment sets Prefect's frequency),
and `seqpipe deploy` creates an automation that marks a seqpipe flow run Crashed when
no heartbeat, and no final state, followed its last one within
``orchestration.heartbeat_timeout`` (Prefect's "zombie flow run" automation).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from flows.deploy_steps import PROJECT_ENV
from seqpipe.config import PipelineConfig

POOL_TYPE = "process"
# Prefect's setting for the interval of flow-run heartbeats (PREFECT_RUNNER_HEARTBEAT_FREQUENCY is its old name).
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
CRASH_AUTOMATION = "seqpipe: mark flow runs without a heartbeat Crashed"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
FINAL_EVENTS = ("prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed")

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


def crash_automation(cfg: PipelineConfig) -> AutomationCore:
    """The automation that marks a seqpipe flow run Crashed once its heartbeats stop.

    Each heartbeat opens a window of ``heartbeat_timeout`` for that flow run (``for_each``
    its resource id); the next heartbeat or a final state closes it. A window that ends
    empty (proactive posture) changes the run to Crashed. Only the runs of seqpipe's flows
    are watched, so another project's flows on the same server keep their own rules.
    """
    # Here, not at the top: `seqpipe worker` imports this module and should not load the steps.
    from flows.pipeline import FLOW_NAME
    from flows.training import TRAIN_FLOW_NAME

    timeout = cfg.orchestration.heartbeat_timeout
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description=(f"Marks a run of {FLOW_NAME} or {TRAIN_FLOW_NAME} Crashed when it sent no heartbeat for "
                     f"{timeout:g} s (orchestration.heartbeat_timeout); created by `seqpipe deploy`."),
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *FINAL_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": [FLOW_NAME, TRAIN_FLOW_NAME]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=timeout),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"no heartbeat for {timeout:g} s: the flow run's process is gone (a killed worker or machine); "
                    f"marked by the automation '{CRASH_AUTOMATION}'",
        )],
    )


def ensure_crash_automation(cfg: PipelineConfig) -> str:
    """Create the crash automation, or bring the one of that name up to the config; 'created' or 'updated'."""
    wanted = crash_automation(cfg)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(CRASH_AUTOMATION)
        if not existing:
            client.create_automation(wanted)
            logger.info(f"created automation '{CRASH_AUTOMATION}' (heartbeat timeout {wanted.trigger.within})")
            return "created"
        first, *twins = existing
        client.update_automation(first.id, wanted)
        for twin in twins:  # one automation of this name, whatever an earlier race left
            client.delete_automation(twin.id)
        logger.info(f"updated automation '{CRASH_AUTOMATION}' (heartbeat timeout {wanted.trigger.within})")
        return "updated"


def deploy(cfg: PipelineConfig, conf_dir: str) -> int:
    """Create the pools, the crash automation, then every deployment of prefect.yaml; the exit code of `prefect deploy`."""
    ensure_work_pools(cfg)
    ensure_crash_automation(cfg)
    env = {**os.environ, **deploy_environment(cfg, conf_dir)}
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
               "--prefect-file", str(cfg.root / "prefect.yaml")]
    return subprocess.run(command, cwd=cfg.root, env=env).returncode


def start_worker(cfg: PipelineConfig, pool: str, limit: int | None = None) -> None:
    """Become a process worker on ``pool``; its flow runs use this project's checkout.

    The process replaces itself with Prefect's worker, so a service manager's SIGTERM
    (or Ctrl-C) reaches the worker, not a wrapper that would leave it behind. Its flow
    runs send heartbeats as often as the crash automation expects them.
    """
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", POOL_TYPE]
    if limit:
        command += ["--limit", str(limit)]
    os.chdir(cfg.root)
    os.execve(sys.executable, command, {**os.environ, PROJECT_ENV: str(cfg.root),
                                        HEARTBEAT_ENV: str(cfg.orchestration.heartbeat_seconds)})
