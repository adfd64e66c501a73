"""The production profile on real servers: MLflow and Prefect on PostgreSQL, a process worker, deployments.

`seqpipe up` starts both servers from the project's config (fresh databases per test
module, free ports); training fans out to the `train-model` deployment on a work pool
that a real `seqpipe worker` polls. Without PostgreSQL these tests skip, unless
SEQPIPE_REQUIRE_POSTGRES=1 (CI sets it) turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, copy_project_code, make_series, run_cli, write_config
from processes import group_members, kill_group

pytestmark = pytest.mark.slow

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
# Heartbeats every 30 s (Prefect's minimum); a run silent for 60 s is marked Crashed.
HEARTBEAT_SECONDS, HEARTBEAT_TIMEOUT = 30, 60


def _postgres_or_skip() -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(f"{POSTGRES}/postgres")
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except SQLAlchemyError as exc:
        reason = f"no PostgreSQL at {POSTGRES}: {str(exc).splitlines()[0]}"
        if os.environ.get("SEQPIPE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (SEQPIPE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)


def _drop_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """A project wired to its own servers; runs the seqpipe CLI and workers against them."""

    def __init__(self, root: Path, env: dict[str, str], mlflow_url: str, prefect_url: str) -> None:
        self.root, self.env, self.mlflow_url, self.prefect_url = root, env, mlflow_url, prefect_url

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_cli(*args, "--conf", str(self.root / "conf"), cwd=self.root, env={**self.env, **(env or {})})

    def start_worker(self, pool: str = "gpu") -> subprocess.Popen:
        log_path = self.root / f"worker-{time.monotonic_ns()}.log"
        process = subprocess.Popen([sys.executable, "-m", "seqpipe.cli", "worker", "--pool", pool,
                                    "--conf", str(self.root / "conf")],
                                   cwd=self.root, env={**os.environ, **self.env}, stdout=log_path.open("w"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log_path  # type: ignore[attr-defined]
        return process

    def cli_with_worker(self, *args: str) -> tuple[subprocess.CompletedProcess, subprocess.Popen]:
        """Run a command while a fresh worker polls the gpu pool; the result and the (stopped) worker."""
        worker = self.start_worker()
        try:
            return self.cli(*args), worker
        finally:
            _stop(worker)

    def prefect(self, coroutine_factory):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def run():
            async with get_client() as client:
                return await coroutine_factory(client)

        # Prefect reads its settings once per process; the environment alone would not redirect it.
        with temporary_settings(updates={PREFECT_API_URL: self.prefect_url}):
            return asyncio.run(run())


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(process: subprocess.Popen) -> None:
    """Stop the process and everything it started; a worker left polling would take the next test's runs."""
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _group_alive(process.pid) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.2)
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _postgres_or_skip()
    root = tmp_path_factory.mktemp("production")
    (root / "input").mkdir()
    make_series().to_csv(root / "input" / "sales.csv", index=False)
    tag = uuid.uuid4().hex[:8]
    databases = [f"seqpipe_test_{tag}_mlflow", f"seqpipe_test_{tag}_prefect"]
    mlflow_port, prefect_port = _free_port(), _free_port()
    servers = {"mlflow_port": mlflow_port, "prefect_port": prefect_port,
               "mlflow_backend_store_uri": f"{POSTGRES}/{databases[0]}",
               "prefect_database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{databases[1]}"}
    write_config(root, servers=servers, orchestration={"retries": 0, "heartbeat_seconds": HEARTBEAT_SECONDS,
                                                       "heartbeat_timeout": HEARTBEAT_TIMEOUT})
    copy_project_code(root)
    shutil.copy(REPO / "prefect.yaml", root / "prefect.yaml")
    shutil.copytree(REPO / "conf" / "profiles", root / "conf" / "profiles")
    # The profiles name the default ports; this project's servers listen on free ones.
    mlflow_url, prefect_url = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{prefect_port}/api"
    overlay = {"tracking": {"tracking_uri": mlflow_url, "artifact_root": None},
               "orchestration": {"prefect_api_url": prefect_url}}
    (root / "conf" / "profiles" / "production.yaml").write_text(yaml.safe_dump(overlay))
    # Workers poll every second instead of every 10: the tests wait on them.
    env = {"SEQPIPE_PROFILE": "production,workers", "PREFECT_HOME": str(root / ".prefect-home"),
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    stack = Stack(root, env, mlflow_url, prefect_url)
    up = stack.cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        deployed = stack.cli("deploy")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield stack
    finally:
        down = stack.cli("down")
        assert down.returncode == 0, down.stderr
        for name in databases:
            _drop_database(name)


def _client(stack: Stack) -> MlflowClient:
    """A client of the stack's MLflow server for tracking and registry alike (no process-wide URI decides)."""
    return MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)


def _registered_versions(stack: Stack) -> dict[str, str]:
    """Version -> the training run it was registered from."""
    client = _client(stack)
    return {str(v.version): v.tags["seqpipe.training_run_id"]
            for v in client.search_model_versions("name = 'tiny-forecaster'")}


def _lstm_training_run(stack: Stack, run: subprocess.CompletedProcess) -> str:
    """The id of the LSTM training run under the pipeline run that ``seqpipe run`` reported."""
    match = re.search(r"step timings \(MLflow run (\w+)\)", run.stdout + run.stderr)
    assert match, f"the run printed no MLflow run id:\n{run.stdout[-2000:]}"
    client = _client(stack)
    experiment = client.get_experiment_by_name("tests")
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{match[1]}' and tags.`mlflow.runName` = 'lstm'")
    assert len(children) == 1, f"pipeline run {match[1]} has {len(children)} lstm training runs"
    return children[0].info.run_id


def _running_flow_runs(stack: Stack, flow_name: str) -> list:
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    async def read(client):
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))))

    return stack.prefect(read)


def _flow_run_pid(flow_run) -> int:
    """The process a worker started for the flow run, as Prefect recorded it ("pid", or "host:pid")."""
    assert flow_run.infrastructure_pid, f"flow run {flow_run.name} has no infrastructure_pid"
    return int(str(flow_run.infrastructure_pid).rsplit(":", 1)[-1])


def _wait_until_crashed(stack: Stack, flow_runs: list, killed_at: float, timeout: float) -> dict[str, float]:
    """Poll until each flow run is Crashed, at most ``timeout`` s after ``killed_at`` (epoch seconds).

    Seconds from the kill to each Crashed state, by flow run name.
    """
    from flows.deployment import CRASH_AUTOMATION
    from prefect.client.schemas.objects import StateType

    async def states(client):
        return {run.name: (await client.read_flow_run(run.id)).state for run in flow_runs}

    while True:
        current = stack.prefect(states)
        if all(state.type == StateType.CRASHED for state in current.values()):
            break
        waited = time.time() - killed_at
        assert waited < timeout, (
            f"{waited:.0f} s after the kill, the killed flow runs are {({n: s.name for n, s in current.items()})}, "
            f"not all Crashed: the automation '{CRASH_AUTOMATION}' should mark a run with no heartbeat for "
            f"{HEARTBEAT_TIMEOUT} s (orchestration.heartbeat_timeout) Crashed")
        time.sleep(2)
    for name, state in current.items():  # the automation's own message: not the worker, not a rerun
        assert CRASH_AUTOMATION in (state.message or ""), f"{name} was marked {state.name} by someone else: {state.message}"
    return {name: state.timestamp.timestamp() - killed_at for name, state in current.items()}


def test_pipeline_trains_on_a_worker_and_tracks_in_postgres(stack):
    ran, _ = stack.cli_with_worker("run")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "train 2 models (workers)" in ran.stdout + ran.stderr

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async def training_runs(client):
        return await client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["train-model"])))

    runs = stack.prefect(training_runs)
    assert {run.name for run in runs} == {"train-seasonal_naive", "train-lstm"}
    assert {run.state.name for run in runs} == {"Completed"}

    # Read back through MLflow's client from the server, whose backend store is PostgreSQL.
    client = _client(stack)
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.info.run_name == "pipeline"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"seasonal_naive", "lstm"}
    assert {r.info.status for r in children.values()} == {"FINISHED"}
    assert "val_loss" in children["lstm"].data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "evaluation")} >= {"evaluation/leaderboard.csv"}
    assert parent.data.tags["seqpipe.decision"] == "retrain"
    assert list(_registered_versions(stack)) == ["1"]


def test_cron_deployment_gets_runs_every_minute(stack):
    conf = yaml.safe_load((stack.root / "conf" / "pipeline.yaml").read_text())
    conf["schedule"] = {"cron": "* * * * *", "timezone": "UTC"}
    (stack.root / "conf" / "pipeline.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    deployed = stack.cli("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    async def scheduled(client):
        deployment = await client.read_deployment_by_name("seqpipe-retrain/retrain")
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))))
        return deployment, runs

    deadline = time.monotonic() + 90
    while True:
        deployment, runs = stack.prefect(scheduled)
        if len(runs) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert [s.schedule.cron for s in deployment.schedules] == ["* * * * *"]
    assert len(runs) >= 3, "the scheduler created fewer than 3 runs of the every-minute schedule"
    starts = sorted(run.expected_start_time for run in runs)
    assert all(start.second == 0 and start.microsecond == 0 for start in starts)
    assert all(later - earlier == timedelta(minutes=1) for earlier, later in zip(starts, starts[1:]))
    assert all(run.parameters["scheduled"] is True for run in runs)


def test_killed_worker_rerun_completes_without_duplicate_versions(stack):
    conf = yaml.safe_load((stack.root / "conf" / "pipeline.yaml").read_text())
    # Slow enough to be killed in the middle: many epochs that do not stop early.
    conf["training"] = {**conf["training"], "max_epochs": 300, "patience": 300}
    conf["models"] = ["lstm"]  # the model that is killed is the one registered
    conf["schedule"] = {"cron": "0 3 * * 1", "timezone": "UTC"}
    (stack.root / "conf" / "pipeline.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    before = _registered_versions(stack)
    checkpoint = stack.root / "data" / "checkpoints" / "lstm.pt"

    worker = stack.start_worker()
    pipeline = subprocess.Popen([sys.executable, "-m", "seqpipe.cli", "run", "--conf", str(stack.root / "conf")],
                                cwd=stack.root, env={**os.environ, **stack.env}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file():
            assert time.monotonic() < deadline, "training never wrote a checkpoint"
            assert pipeline.poll() is None, "the pipeline ended before the worker could be killed"
            time.sleep(0.5)
        # The process that trains is the flow run's, which Prefect's process worker starts in a
        # session of its own: killing the worker's process group alone would leave it training.
        from flows.pipeline import FLOW_NAME
        from flows.training import TRAIN_FLOW_NAME

        [training_run] = _running_flow_runs(stack, TRAIN_FLOW_NAME)
        [pipeline_run] = _running_flow_runs(stack, FLOW_NAME)
        training_pid = _flow_run_pid(training_run)
        assert training_pid in {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}, \
            f"flow run {training_run.name}'s process {training_pid} is not the worker's"
        training_group = os.getpgid(training_pid)
        training = group_members(training_group)
        print(f"worker: pid {worker.pid}, session {os.getsid(worker.pid)}; flow run {training_run.name}: "
              f"pid {training_pid}, group {training_group}, session {os.getsid(training_pid)}, "
              f"{len(training)} processes")
        killed_at = time.time()
        # The worker first, so that it cannot report its flow run's death; then the training
        # itself, mid-epoch, and the pipeline that waited for it. Each is gone before the rerun.
        kill_group(worker.pid, "the worker")
        kill_group(training_group, f"flow run {training_run.name} (pid {training_pid})", members=training)
        kill_group(pipeline.pid, "the pipeline")
    finally:
        for process in (worker, pipeline):  # after a failed assertion above; gone already otherwise
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert checkpoint.is_file()

    rerun, worker = stack.cli_with_worker("run")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "[lstm] resuming from" in worker.log_path.read_text()  # not from scratch
    assert not checkpoint.exists()  # the resumed training finished and cleaned up
    after = _registered_versions(stack)
    # Exactly one new version, registered from the rerun's own LSTM training run (not the
    # killed one); no duplicates; the earlier versions untouched.
    new = {version: run for version, run in after.items() if version not in before}
    context = f"before {before}, after {after}\n{rerun.stdout[-2000:]}\n{rerun.stderr[-4000:]}"
    assert list(new.values()) == [_lstm_training_run(stack, rerun)], context
    assert len(set(after.values())) == len(after), context
    assert {version: after.get(version) for version in before} == before, context
    # Registering again (a retried step) finds the version the run already has.
    again = stack.cli("register")
    assert again.returncode == 0, again.stderr
    assert _registered_versions(stack) == after

    # The killed flow runs sent no more heartbeats: the automation `seqpipe deploy` created marks
    # them Crashed (Prefect evaluates proactive triggers every 5 s), not Running forever.
    polled_from = time.time()
    delays = _wait_until_crashed(stack, [training_run, pipeline_run], killed_at,
                                 timeout=HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT + 60)
    print(f"killed flow runs marked Crashed {({n: round(d) for n, d in delays.items()})} s after the kill "
          f"(heartbeat {HEARTBEAT_SECONDS} s, timeout {HEARTBEAT_TIMEOUT} s); "
          f"the test waited {time.time() - polled_from:.0f} s for it after the rerun")
