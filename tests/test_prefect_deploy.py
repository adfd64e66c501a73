"""`seqpipe deploy` creates the work pools, the deployments of prefect.yaml and the crash automation, from conf/."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_project_code, run_cli
from flows.deployment import CRASH_AUTOMATION, ensure_crash_automation
from seqpipe.config import load_config
from seqpipe.environment import quiet_environment

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def prefect_api(tmp_path):
    port = _free_port()
    env = {**quiet_environment(), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("the Prefect server did not come up")
                time.sleep(0.5)
        yield url, env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_deploy_uses_the_configured_cron_pools_and_heartbeat_timeout(project, prefect_api):
    url, env = prefect_api
    copy_project_code(project)
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    conf = project / "conf" / "pipeline.yaml"
    config = yaml.safe_load(conf.read_text())
    config["schedule"] = {"cron": "15 4 * * 2", "timezone": "Europe/Paris"}
    config["orchestration"] = {"retrain_pool": "retrain-pool", "work_pool": "gpu-pool", "heartbeat_timeout": 120}
    conf.write_text(yaml.safe_dump(config))
    env = {**env, "PREFECT_API_URL": url}
    deployed = run_cli("deploy", "--conf", str(project / "conf"), cwd=project, env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        async with get_client() as client:
            return (await client.read_deployment_by_name("seqpipe-retrain/retrain"),
                    await client.read_deployment_by_name("seqpipe-train-model/train-model"),
                    {pool.name: pool.type for pool in await client.read_work_pools()},
                    await client.read_automations_by_name(CRASH_AUTOMATION))

    # Prefect reads its settings once per process; the environment alone would not redirect it.
    with temporary_settings(updates={PREFECT_API_URL: url}):
        retrain, train, pools, automations = asyncio.run(read())
    [schedule] = retrain.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("15 4 * * 2", "Europe/Paris")
    assert retrain.parameters["scheduled"] is True
    assert (retrain.work_pool_name, train.work_pool_name) == ("retrain-pool", "gpu-pool")
    assert pools == {"retrain-pool": "process", "gpu-pool": "process"}  # deploy created both
    assert not train.schedules
    assert retrain.pull_steps[0]["flows.deploy_steps.enter_project"]["default"] == str(Path(project))

    # The automation that marks a seqpipe flow run without heartbeats Crashed, with the config's timeout.
    [automation] = automations
    trigger = automation.trigger
    assert automation.enabled
    assert (trigger.posture, trigger.threshold, trigger.within.total_seconds()) == ("Proactive", 1, 120)
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect == {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                              "prefect.flow-run.Crashed", "prefect.flow-run.Cancelled"}
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.match_related.model_dump()["prefect.resource.name"] == ["seqpipe-retrain", "seqpipe-train-model"]
    [action] = automation.actions
    assert (action.type, action.state) == ("change-flow-run-state", "CRASHED")
    # Deploying again with another timeout updates that one automation, by name; no twin.
    config["orchestration"]["heartbeat_timeout"] = 240
    conf.write_text(yaml.safe_dump(config))
    with temporary_settings(updates={PREFECT_API_URL: url}):
        assert ensure_crash_automation(load_config(project / "conf")) == "updated"
        *_, again = asyncio.run(read())
    assert [(a.id, a.trigger.within.total_seconds()) for a in again] == [(automation.id, 240)]
