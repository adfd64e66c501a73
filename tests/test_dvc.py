"""dvc.yaml runs the same steps through the CLI: repro, up to date, push/pull, experiments, plots."""

import json
import os
import shutil
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


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "dvc", *args, cwd=cwd)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvc")
    repo = root / "repo"
    repo.mkdir()
    copy_project_code(repo)
    (repo / "input").mkdir()
    make_series().to_csv(repo / "input" / "sales.csv", index=False)
    write_config(repo)
    _run("git", "init", "-q", cwd=repo)
    _run("git", "config", "user.email", "t@t", cwd=repo)
    _run("git", "config", "user.name", "t", cwd=repo)
    _dvc("init", "-q", cwd=repo)
    _dvc("remote", "add", "-d", "local", str(root / "remote"), cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-qm", "project", cwd=repo)
    return repo


def test_repro_from_scratch_then_up_to_date(repo):
    first = _dvc("repro", cwd=repo)
    for stage in ("ingest", "validate", "prepare", "train@seasonal_naive", "train@lstm", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout
    metrics = json.loads((repo / "data" / "evaluation" / "metrics.json").read_text())
    assert set(metrics) == {"seasonal_naive", "lstm"}

    second = _dvc("repro", cwd=repo)
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date." in second.stdout
    shown = _dvc("metrics", "show", "--json", cwd=repo)
    assert '"lstm"' in shown.stdout and '"mase"' in shown.stdout
    _run("git", "add", "-A", cwd=repo)
    _run("git", "add", "-f", "data/evaluation/metrics.json", cwd=repo)
    _run("git", "commit", "-qm", "first result", cwd=repo)


def test_forced_rerun_gives_identical_metrics_and_weights(repo):
    metrics = (repo / "data" / "evaluation" / "metrics.json").read_bytes()
    weights = (repo / "data" / "models" / "lstm" / "weights.pt").read_bytes()
    _dvc("repro", "--force", "--single-item", "train@lstm", cwd=repo)
    _dvc("repro", cwd=repo)
    assert (repo / "data" / "models" / "lstm" / "weights.pt").read_bytes() == weights
    assert (repo / "data" / "evaluation" / "metrics.json").read_bytes() == metrics


def test_push_then_pull_restores_every_output(repo):
    pushed = _dvc("push", cwd=repo)
    assert "pushed" in pushed.stdout
    before = (repo / "data" / "models" / "lstm" / "weights.pt").read_bytes()
    shutil.rmtree(repo / ".dvc" / "cache")
    for output in ("data/models/lstm", "data/models/seasonal_naive", "data/prepared"):
        shutil.rmtree(repo / output)
    _dvc("pull", cwd=repo)
    assert (repo / "data" / "models" / "lstm" / "weights.pt").read_bytes() == before
    assert (repo / "data" / "prepared" / "scaled.npy").is_file()
    status = _dvc("status", cwd=repo)
    assert "Data and pipelines are up to date." in status.stdout


def test_prefect_run_matches_dvc_repro_exactly(repo):
    metrics = (repo / "data" / "evaluation" / "metrics.json").read_bytes()
    _run(sys.executable, "-m", "seqpipe.cli", "run", cwd=repo)
    assert (repo / "data" / "evaluation" / "metrics.json").read_bytes() == metrics
    # Every output is byte-identical, so DVC sees nothing to redo.
    assert "Data and pipelines are up to date." in _dvc("status", cwd=repo).stdout


def test_lineage_of_a_promoted_version_and_its_reproduction(repo):
    _run(sys.executable, "-m", "seqpipe.cli", "promote", "--version", "1", "--reason", "lineage test", cwd=repo)
    shown = _run(sys.executable, "-m", "seqpipe.cli", "lineage", "production", cwd=repo).stdout
    manifest = json.loads((repo / "data" / "raw" / "manifest.json").read_text())
    commit = _run("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    assert f"raw snapshot    md5 {manifest['md5']}" in shown
    assert "validation      passed" in shown, shown
    assert f"git {commit}, config hash" in shown, shown
    assert "training run    " in shown and "Prefect flow run " in shown and "Prefect flow run none" not in shown
    assert "promote production None -> 1 by " in shown and "lineage test" in shown

    reproduced = _run(sys.executable, "-m", "seqpipe.cli", "reproduce", "1", "--run", cwd=repo)
    assert "git worktree add --detach" in reproduced.stdout and commit in reproduced.stdout
    assert "reproduced: recorded" in reproduced.stdout


def test_experiment_with_a_changed_parameter(repo):
    ran = _dvc("exp", "run", "-n", "small-lstm", "-S", "conf/models/lstm.yaml:params.hidden_size=4", cwd=repo)
    assert "Running stage 'train@lstm'" in ran.stdout
    assert "Running stage 'train@seasonal_naive'" not in ran.stdout  # only the changed model retrains
    shown = _dvc("exp", "show", "--json", cwd=repo)
    assert "small-lstm" in shown.stdout and "hidden_size" in shown.stdout
    diff = _dvc("metrics", "diff", "--json", cwd=repo)
    assert "lstm.mase" in diff.stdout


def test_plots_render(repo):
    rendered = _dvc("plots", "show", "-o", "plots", cwd=repo)
    html = (repo / "plots" / "index.html").read_text()
    assert "forecast_vs_actual" in html and "leaderboard.csv" in html, rendered.stdout
