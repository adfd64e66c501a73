"""`seqpipe deploy` creates the work pools and the deployments of prefect.yaml, cron and pools taken from conf/."""

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


def test_deploy_uses_the_configured_cron(project, prefect_api):
    url, env = prefect_api
    copy_project_code(project)
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    conf = project / "conf" / "pipeline.yaml"
    config = yaml.safe_load(conf.read_text())
    config["schedule"] = {"cron": "15 4 * * 2", "timezone": "Europe/Paris"}
    config["orchestration"] = {"retrain_pool": "retrain-pool", "work_pool": "gpu-pool"}
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
                    {pool.name: pool.type for pool in await client.read_work_pools()})

    # Prefect reads its settings once per process; the environment alone would not redirect it.
    with temporary_settings(updates={PREFECT_API_URL: url}):
        retrain, train, pools = asyncio.run(read())
    [schedule] = retrain.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("15 4 * * 2", "Europe/Paris")
    assert retrain.parameters["scheduled"] is True
    assert (retrain.work_pool_name, train.work_pool_name) == ("retrain-pool", "gpu-pool")
    assert pools == {"retrain-pool": "process", "gpu-pool": "process"}  # deploy created both
    assert not train.schedules
    assert retrain.pull_steps[0]["flows.deploy_steps.enter_project"]["default"] == str(Path(project))
