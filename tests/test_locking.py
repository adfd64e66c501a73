"""One run at a time per data folder (a real file lock, real processes, real `seqpipe run`s), and a busy machine.

A second run waits for the first up to ``orchestration.lock_timeout``, then fails naming
the holder (pid, host, start), with exit code 7 and nothing written; a lock whose holder
was killed is taken over, and the takeover is logged; nested holds in one process (the
flow's steps, its threads) share one. Prefect's temporary server gets the configured time to
start, and a run whose server does not start says which setting to raise.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli, write_config
from seqpipe.errors import ProjectLockedError
from seqpipe.locking import HOLDER_FILE, held, project_lock, read_holder

# A process that takes the lock, says so, and holds it until its stdin closes (or it is killed).
HOLDER = """
import sys
from seqpipe.config import load_config
from seqpipe.locking import project_lock
with project_lock(load_config(sys.argv[1]), "test holder"):
    print("held", flush=True)
    sys.stdin.read()
"""


def _holder(conf: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(conf)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds} s")
        time.sleep(0.1)


def test_nested_holds_and_threads_share_the_process_lock(cfg):
    with project_lock(cfg, "outer"):
        assert held(cfg) and read_holder(cfg.data_dir)["command"] == "outer"
        entered = []

        def step_in_a_thread():  # a Prefect task or a training subflow in another thread
            with project_lock(cfg, "inner", timeout=0):
                entered.append(read_holder(cfg.data_dir)["command"])

        worker = threading.Thread(target=step_in_a_thread)
        worker.start()
        worker.join(timeout=10)
        with project_lock(cfg, "nested", timeout=0):
            pass
        assert entered == ["outer"] and held(cfg)
    assert not held(cfg) and read_holder(cfg.data_dir) is None


def test_a_second_holder_waits_then_fails_naming_the_first(cfg):
    holder = _holder(cfg.conf_dir)
    try:
        record = read_holder(cfg.data_dir)
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
        started = time.monotonic()
        with pytest.raises(ProjectLockedError) as refused:
            with project_lock(cfg, "second", timeout=0.5):
                raise AssertionError("entered a held lock")
        assert time.monotonic() - started >= 0.5
        message = str(refused.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}, started {record['started']} (test holder)" in message
        assert "orchestration.lock_timeout" in message and "nothing was written" in message
        assert refused.value.exit_code == 7

        # A patient one gets it as soon as the first lets go.
        threading.Timer(1.0, holder.stdin.close).start()
        with project_lock(cfg, "patient", timeout=60):
            assert read_holder(cfg.data_dir)["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_taken_over_and_said_so(cfg, caplog):
    holder = _holder(cfg.conf_dir)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    left = read_holder(cfg.data_dir)
    assert left["pid"] == holder.pid  # the holder file outlives the process; the kernel freed the lock
    with caplog.at_level(logging.WARNING, logger="seqpipe.locking"):
        with project_lock(cfg, "after the kill", timeout=5):
            assert read_holder(cfg.data_dir)["pid"] == os.getpid()
    assert f"the run that held it (pid {holder.pid} on host {socket.gethostname()}" in caplog.text
    assert "its process is gone" in caplog.text
    assert read_holder(cfg.data_dir) is None


def test_a_stale_holder_file_naming_a_dead_pid_is_taken_over(cfg, caplog):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    (cfg.data_dir / HOLDER_FILE).write_text(json.dumps(
        {"pid": dead, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00", "command": "seqpipe run"}))
    with caplog.at_level(logging.WARNING, logger="seqpipe.locking"):
        with project_lock(cfg, "next run", timeout=0):
            pass
    assert f"pid {dead} on host {socket.gethostname()}, started 2020-01-01T00:00:00+00:00 (seqpipe run)" in caplog.text


def _versions(project: Path) -> list:
    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client, sorted(client.search_model_versions("name = 'tiny-forecaster'"), key=lambda v: int(v.version))


def test_two_runs_at_once_one_completes_the_other_refuses_and_a_patient_step_waits(project):
    conf = write_config(project, training={"max_epochs": 1, "batch_size": 64, "num_threads": 1, "seed": 7})
    (conf / "profiles").mkdir()
    (conf / "profiles" / "impatient.yaml").write_text("orchestration:\n  lock_timeout: 1\n")
    first = subprocess.Popen([sys.executable, "-m", "seqpipe.cli", "run"], cwd=project, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: read_holder(project / "data") is not None or first.poll() is not None, 120,
                  "the first run took no lock")
        holder = read_holder(project / "data")
        assert holder["pid"] == first.pid and holder["command"] == "seqpipe run"
        # A step waiting its turn (as a `dvc repro` stage would), then the impatient second run.
        patient = subprocess.Popen([sys.executable, "-m", "seqpipe.cli", "ingest"], cwd=project, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        patient_lines: list[str] = []
        reader = threading.Thread(target=lambda: patient_lines.extend(patient.stdout), daemon=True)
        reader.start()
        second = run_cli("--profile", "impatient", "run", cwd=project)
        assert first.poll() is None, "the first run ended before the second was refused: nothing was tested"
        assert second.returncode == 7, second.stdout + second.stderr
        assert (f"error: {project / 'data'} is in use by another seqpipe run: pid {first.pid} on host "
                f"{socket.gethostname()}, started {holder['started']} (seqpipe run)") in second.stderr
        assert "nothing was written" in second.stderr and "Traceback" not in second.stderr
        assert "temporary server" not in second.stdout + second.stderr  # refused before Prefect started
        _wait_for(lambda: any("is in use by another seqpipe run" in line for line in patient_lines)
                  or first.poll() is not None, 120, "the patient step never said it waits")
        assert first.poll() is None, "the first run ended before the patient step asked for the lock"
        first_out, _ = first.communicate(timeout=300)
        assert first.returncode == 0, first_out[-3000:]
        assert patient.wait(timeout=120) == 0, "".join(patient_lines)[-3000:]
        reader.join(timeout=10)
        waited = next(line for line in patient_lines if "is in use by another seqpipe run" in line)
        assert f"pid {first.pid} on host {socket.gethostname()}" in waited and "waiting up to 600 s" in waited
    finally:
        for process in (first, locals().get("patient")):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    # One complete, consistent result: one registered version, of the leaderboard's best model,
    # trained on the snapshot ingested; one pipeline run in MLflow, finished; the lock is free.
    client, versions = _versions(project)
    assert [str(v.version) for v in versions] == ["1"]
    board = pd.read_csv(project / "data" / "evaluation" / "leaderboard.csv")
    assert versions[0].tags["seqpipe.model"] == board.iloc[0]["model"]
    training_run = client.get_run(versions[0].run_id)
    manifest = json.loads((project / "data" / "raw" / "manifest.json").read_text())
    assert training_run.data.tags["seqpipe.dataset_md5"] == manifest["md5"]
    experiment = client.get_experiment_by_name("tests")
    pipelines = client.search_runs([experiment.experiment_id], "attributes.run_name = 'pipeline'")
    assert [run.info.status for run in pipelines] == ["FINISHED"]
    assert read_holder(project / "data") is None


def test_prefect_gets_the_configured_startup_time_and_a_clear_message_when_it_is_not_enough(project, monkeypatch):
    from seqpipe import cli

    monkeypatch.delenv(cli.EPHEMERAL_TIMEOUT_ENV, raising=False)
    write_config(project, orchestration={"ephemeral_startup_timeout": 45})
    cli._config(project / "conf")  # what every command does before Prefect is imported
    assert os.environ[cli.EPHEMERAL_TIMEOUT_ENV] == "45"

    # No time at all: the temporary server cannot answer; the run says so, and which setting to raise.
    result = run_cli("run", cwd=project, env={cli.EPHEMERAL_TIMEOUT_ENV: "0"})
    assert result.returncode == 8, result.stdout + result.stderr
    assert "error: Prefect's temporary API server did not answer within 0 s, so nothing ran" in result.stderr
    assert "orchestration.ephemeral_startup_timeout" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data" / "raw").exists() and read_holder(project / "data") is None
