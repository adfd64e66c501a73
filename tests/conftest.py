"""Shared fixtures: a tiny but real project (conf/, a generated CSV) in a temp folder.

Everything runs for real: the MLflow store is SQLite in the temp folder, Prefect runs
against a temporary server, GX validates, torch trains (for a few seconds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from seqpipe.environment import LOGGERS, ConsoleHandler, apply_quiet_defaults

apply_quiet_defaults()  # the CLI's own defaults, also for the steps and flows the tests call in-process
# A tracking URI from the developer's shell must not redirect the tests' stores.
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]
SERIES, LENGTH, SEASON, HORIZON, LOOKBACK = 8, 60, 12, 6, 12


def make_series(series: int = SERIES, length: int = LENGTH, seed: int = 0) -> pd.DataFrame:
    """Monthly series with a strong yearly pattern, a trend and a little noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(series):
        t = np.arange(length)
        values = 100 + 10 * i + 0.3 * t + 20 * np.sin(2 * np.pi * t / SEASON + i) + rng.normal(0, 1, length)
        frames.append(pd.DataFrame({
            "store": f"s{i:02d}",
            "month": pd.date_range("2015-01-01", periods=length, freq="MS").strftime("%Y-%m-%d"),
            "sales": values.round(3),
        }))
    return pd.concat(frames, ignore_index=True)


def write_config(root: Path, source_path: str = "input/sales.csv", **overrides) -> Path:
    conf = root / "conf"
    (conf / "models").mkdir(parents=True, exist_ok=True)
    (conf / "models" / "seasonal_naive.yaml").write_text("arch: seasonal_naive\nparams: {}\n")
    (conf / "models" / "lstm.yaml").write_text(yaml.safe_dump(
        {"arch": "lstm", "params": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0}}))
    pipeline = {
        "task": "forecast",
        # dvc.yaml's stages list the classify section too (the cache key and DVC cover both tasks).
        "classify": {"source": {"kind": "builtin", "name": "spoken-digits"}},
        "data": {
            "source": {"kind": "csv", "path": source_path,
                       "columns": {"series_id": "store", "timestamp": "month", "value": "sales"}},
            "horizon": HORIZON, "season": SEASON, "lookback": LOOKBACK,
        },
        # dvc.yaml reads these sections as params, and DVC wants each one present.
        "validation": {"max_offending_listed": 10},
        "prepare": {"scaler": "standard"},
        "evaluation": {"metric": "mase"},
        "training": {"max_epochs": 3, "batch_size": 64, "patience": 3, "num_threads": 1, "seed": 7},
        "models": ["seasonal_naive", "lstm"],
        "model_overrides": {},
        "tracking": {"experiment": "tests", "registered_model": "tiny-forecaster", "system_metrics": False},
    }
    for key, value in overrides.items():
        pipeline[key] = {**pipeline.get(key, {}), **value} if isinstance(value, dict) else value
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return conf


def _mlflow_process_uris() -> dict[str, str | None]:
    """MLflow's process-wide URIs as set (None: never set, not the default MLflow would fall back to)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return {"mlflow.set_tracking_uri": tracking_utils._tracking_uri,
            "mlflow.set_registry_uri": registry_utils._registry_uri,
            **{name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}}


@pytest.fixture(autouse=True)
def no_mlflow_uri_left_behind():
    """Fail a test that leaves an MLflow URI set for the process (a later test's clients would read it)."""
    before = _mlflow_process_uris()
    yield
    after = _mlflow_process_uris()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    if changed:
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils

        # Put them back, so that the next test starts clean and only this one fails.
        mlflow.set_tracking_uri(before["mlflow.set_tracking_uri"])
        registry_utils._registry_uri = before["mlflow.set_registry_uri"]
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            if before[name] is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before[name]
        pytest.fail("MLflow URIs left changed for the process (before -> after): "
                    + ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items()), pytrace=False)


@pytest.fixture(autouse=True)
def _cli_logging_undone():
    """Undo an in-process CLI call's logging setup (its stdout handler, no propagation to the
    root logger), so that caplog in a later test still sees seqpipe's records."""
    yield
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
            logger.removeHandler(handler)
            logger.propagate = True


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root with conf/ and input/sales.csv; returns the root."""
    (tmp_path / "input").mkdir()
    make_series().to_csv(tmp_path / "input" / "sales.csv", index=False)
    write_config(tmp_path)
    return tmp_path


@pytest.fixture
def cfg(project: Path):
    from seqpipe.config import load_config

    return load_config(project / "conf")


def train_all(cfg) -> list[dict]:
    """Train every configured model under the pipeline run of this data, as one after another in-process.

    The product's fan-out is the flow's (``flows.training.train_models``); tests that only
    need trained models call the step directly, without a Prefect server.
    """
    from seqpipe import steps

    with steps.pipeline_run_of_data(cfg) as parent_run_id:
        return [steps.train(cfg, spec.name, parent_run_id) for spec in cfg.models]


SERVER_START_SECONDS = 120


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_model_server(model_uri: str, tracking_uri: str, folder: Path) -> Iterator[str]:
    """``mlflow models serve`` of ``model_uri`` on a free local port; yields its base URL, stops it after."""
    import time
    import urllib.error
    import urllib.request

    port = _free_port()
    log = (folder / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        # The server starts uvicorn from PATH, as in an activated environment.
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
             "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                raise AssertionError(f"mlflow models serve exited with {server.returncode}: "
                                     f"{(folder / 'serve.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}/ping did not answer within {SERVER_START_SECONDS} s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
        log.close()


def invoke_served(url: str, frame: pd.DataFrame) -> pd.DataFrame:
    """POST ``frame`` to a served model's /invocations; its predictions as a frame."""
    import json
    import urllib.request

    body = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return pd.DataFrame(json.loads(response.read())["predictions"])


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``seqpipe`` command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "seqpipe.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=600,
    )


def copy_project_code(destination: Path) -> None:
    """Copy what DVC stages depend on (code and DVC config) into a fresh project folder."""
    for folder in ("seqpipe", "flows"):
        shutil.copytree(REPO / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, destination / name)


def tree_digest(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a failed step changed nothing."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
