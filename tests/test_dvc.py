"""dvc.yaml runs the same steps through the CLI; an unchanged second repro reruns nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_project_code, make_series, write_config

pytestmark = pytest.mark.slow


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Stage commands call `seqpipe`: the environment's bin folder goes first on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def test_repro_from_scratch_then_up_to_date_then_push(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project_code(repo)
    (repo / "input").mkdir()
    make_series().to_csv(repo / "input" / "sales.csv", index=False)
    write_config(repo)
    _run("git", "init", "-q", cwd=repo)
    _run(sys.executable, "-m", "dvc", "init", "-q", cwd=repo)
    _run(sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"), cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project", cwd=repo)

    first = _run(sys.executable, "-m", "dvc", "repro", cwd=repo)
    for stage in ("ingest", "validate", "prepare", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout
    assert (repo / "data" / "evaluation" / "metrics.json").is_file()
    assert (repo / "dvc.lock").is_file()

    second = _run(sys.executable, "-m", "dvc", "repro", cwd=repo)
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date." in second.stdout

    metrics = _run(sys.executable, "-m", "dvc", "metrics", "show", cwd=repo)
    assert "seasonal_naive" in metrics.stdout and "lstm" in metrics.stdout
    pushed = _run(sys.executable, "-m", "dvc", "push", cwd=repo)
    assert "pushed" in pushed.stdout
    assert any((tmp_path / "remote").rglob("*"))
