"""Faults of the machine and the services, not of the input: each names what broke and leaves good outputs as they were.

- a registered model's files damaged on disk after registration: ``predict`` refuses, production stays;
- the tracking server dying between ``register`` and ``gate``: the gate fails fast, nothing is promoted;
- the disk filling up while ``prepare`` writes: the earlier prepared data stays whole, no staging is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import _free_port, make_series, run_cli, train_all, tree_digest, write_config
from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.errors import STORAGE_FULL_EXIT_CODE
from seqpipe.tracking import registry
from seqpipe.tracking.store import tracking_uri

SERVER_START_SECONDS = 120


def _client(cfg) -> MlflowClient:
    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _prepared_project(root: Path, **config):
    (root / "input").mkdir(parents=True)
    make_series().to_csv(root / "input" / "sales.csv", index=False)
    cfg = load_config(write_config(root, **config))
    for step in (steps.ingest, steps.validate, steps.prepare):
        step(cfg)
    return cfg


def test_a_damaged_model_file_is_refused_by_predict_and_production_stays(tmp_path):
    cfg = _prepared_project(tmp_path, models=["seasonal_naive"])
    train_all(cfg)
    steps.evaluate(cfg)
    version = steps.register(cfg)
    steps.promote(cfg, version, "serves before the disk breaks")
    # The registered copy of the model, in the artifact store: a bad disk or a partial copy.
    registered = [p for p in (tmp_path / "mlflow" / "artifacts").rglob("model.json") if "artifacts/model" in str(p)]
    assert registered, "no registered model.json found in the artifact store"
    for spec in registered:
        spec.write_text('{"arch": "seasonal_naive", "shape": ')
    make_series(series=2).to_csv(tmp_path / "history.csv", index=False)

    result = run_cli("predict", "--model", "production", "--input", str(tmp_path / "history.csv"),
                     "--output", str(tmp_path / "forecast.csv"), "--conf", str(cfg.conf_dir), cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    assert "the registered model's files cannot be read" in result.stderr and "model" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "forecast.csv").exists()
    assert registry.alias_version(_client(cfg), cfg.tracking.registered_model, registry.PRODUCTION) == version


def _start_tracking_server(folder: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=folder, stdout=(folder / "server.log").open("a"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "the MLflow server did not start"
        time.sleep(0.5)


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


@pytest.mark.slow
def test_a_tracking_server_dying_between_register_and_gate_promotes_nothing(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    port = _free_port()
    server = _start_tracking_server(store, port)
    try:
        url = f"http://127.0.0.1:{port}"
        cfg = _prepared_project(tmp_path / "project", models=["seasonal_naive", "lstm"],
                                tracking={"tracking_uri": url, "artifact_root": None})
        train_all(cfg)
        # Production first: seasonal naive alone, registered and promoted by the gate.
        naive_conf = tmp_path / "project" / "conf-naive"
        naive_conf.mkdir()
        (naive_conf / "models").mkdir()
        (naive_conf / "models" / "seasonal_naive.yaml").write_text((cfg.conf_dir / "models" / "seasonal_naive.yaml").read_text())
        pipeline = yaml.safe_load((cfg.conf_dir / "pipeline.yaml").read_text())
        (naive_conf / "pipeline.yaml").write_text(yaml.safe_dump({**pipeline, "models": ["seasonal_naive"]}))
        naive_cfg = load_config(naive_conf)
        steps.evaluate(naive_cfg)
        production = steps.register(naive_cfg)
        steps.gate(naive_cfg)
        # The challenger: the LSTM alone, registered; then the server dies before the gate.
        lstm_conf = tmp_path / "project" / "conf-lstm"
        lstm_conf.mkdir()
        (lstm_conf / "models").mkdir()
        (lstm_conf / "models" / "lstm.yaml").write_text((cfg.conf_dir / "models" / "lstm.yaml").read_text())
        (lstm_conf / "pipeline.yaml").write_text(yaml.safe_dump({**pipeline, "models": ["lstm"]}))
        lstm_cfg = load_config(lstm_conf)
        steps.evaluate(lstm_cfg)
        challenger = steps.register(lstm_cfg)
    finally:
        _stop(server)

    started = time.monotonic()
    result = run_cli("gate", "--conf", str(lstm_conf), cwd=tmp_path / "project")
    assert time.monotonic() - started < 120
    assert result.returncode == 5, result.stderr
    assert f"cannot reach the MLflow tracking store at {url}" in result.stderr and "Traceback" not in result.stderr

    # What the server would answer once back: read from its backend store directly.
    backend = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=backend, registry_uri=backend)
    name = lstm_cfg.tracking.registered_model
    assert registry.alias_version(client, name, registry.PRODUCTION) == production
    assert registry.alias_version(client, name, registry.CHALLENGER) == challenger
    assert not any(key.startswith("seqpipe.gate.") for key in client.get_model_version(name, challenger).tags)


def test_a_full_disk_during_prepare_replaces_nothing_and_says_so(project):
    cfg = load_config(project / "conf")
    for step in (steps.ingest, steps.validate, steps.prepare):
        step(cfg)
    prepared = project / "data" / "prepared"
    before = tree_digest(prepared)
    # New data arrives; writing its prepared windows runs out of space half-way (the
    # scalers and values are already in staging when the windows' write fails).
    make_series(seed=1).to_csv(project / "input" / "sales.csv", index=False)
    steps.ingest(cfg)
    steps.validate(cfg)
    result = subprocess.run(
        [sys.executable, "-c",
         "import errno, os, sys, numpy\n"
         "def full(file, *args, **kwargs): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))\n"
         "numpy.savez = full\n"
         "from seqpipe.cli import main; sys.argv = ['seqpipe', 'prepare', '--conf', sys.argv[1]]; main()",
         str(cfg.conf_dir)], cwd=project, capture_output=True, text=True, timeout=300)
    assert result.returncode == STORAGE_FULL_EXIT_CODE, result.stderr
    assert "No space left on device while writing" in result.stderr and "earlier outputs are untouched" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(prepared) == before
    assert [p.name for p in prepared.parent.iterdir() if p.name.startswith(".prepared")] == []
