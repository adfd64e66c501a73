"""The classification examples' DVC pipelines: the repository's declaration seen from each folder, and `dvc repro`
of a sequence example and a text example."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

import pytest
import yaml

from conftest import REPO, copy_project_code, write_config
from test_classify_pipeline import CSV_SOURCE, make_sequences, write_classify_config
from test_classify_text import SOURCE as TEXT_SOURCE
from test_classify_text import make_texts
from test_dvc import _dvc, _run

from seqpipe.config import FORECAST_SECTIONS

EXAMPLE = PurePosixPath("examples/spoken-digits")
TEXT_EXAMPLE = PurePosixPath("examples/rotten-tomatoes")
# Seen from the example's folder, the repository's code lies two levels up.
UP = "../../"


def _stages(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["stages"]


def _body(stage: dict) -> dict:
    return stage["do"] if "foreach" in stage else stage


def _param_keys(body: dict) -> list[tuple[str, str | None]]:
    keys = []
    for entry in body.get("params", []):
        for file, listed in entry.items():
            keys += [(file, None)] if listed is None else [(file, key) for key in listed]
    return keys


@pytest.mark.parametrize("example_dir", sorted(p.parent.name for p in (REPO / "examples").glob("*/dvc.yaml")))
def test_each_example_declares_what_the_repository_declares(example_dir: str):
    repository = _stages(REPO / "dvc.yaml")
    example = _stages(REPO / "examples" / example_dir / "dvc.yaml")
    # Backtesting and choosing on backtest folds are forecasting's alone, and so is what they write.
    assert set(example) == set(repository) - {"backtest", "select"}
    for name, stage in example.items():
        mine, theirs = _body(stage), _body(repository[name])
        assert mine["cmd"] == theirs["cmd"], name
        assert [d.removeprefix(UP) for d in mine["deps"]] == [d for d in theirs["deps"] if not d.startswith("data/selection/")], name
        assert all(d.startswith(UP) for d in mine["deps"] if not d.startswith("data/")), name
        forecasting_only = [(f, k) for f, k in _param_keys(theirs)
                            if k is not None and k.split(".")[0] in FORECAST_SECTIONS]
        assert _param_keys(mine) == [p for p in _param_keys(theirs) if p not in forecasting_only], name


def _sequences(project: Path) -> tuple[dict, dict]:
    make_sequences(per_class=16, seed=0).to_csv(project / "input" / "frames.csv", index=False)
    return CSV_SOURCE, {"majority": {"arch": "majority", "params": {}},
                        "gru": {"arch": "gru_classifier", "params": {"hidden_size": 8, "num_layers": 1, "dropout": 0.0}}}


def _texts(project: Path) -> tuple[dict, dict]:
    make_texts(per_class=40, seed=0).to_csv(project / "input" / "reviews.csv", index=False)
    return TEXT_SOURCE, {"majority": {"arch": "majority", "params": {}},
                         "gru": {"arch": "text_gru", "params": {"embedding_dim": 8, "hidden_size": 8}}}


@pytest.mark.slow
@pytest.mark.parametrize("example, data", [(EXAMPLE, _sequences), (TEXT_EXAMPLE, _texts)], ids=["sequences", "texts"])
def test_dvc_repro_runs_the_classification_stages(tmp_path: Path, example: PurePosixPath, data):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project_code(repo)
    write_config(repo)  # DVC reads every dvc.yaml of the repository: the forecasting one's vars too
    project = repo / example
    (project / "input").mkdir(parents=True)
    shutil.copy(REPO / example / "dvc.yaml", project / "dvc.yaml")
    source, models = data(project)
    write_classify_config(project, source, models)
    _run("git", "init", "-q", cwd=repo)
    _run("git", "config", "user.email", "t@t", cwd=repo)
    _run("git", "config", "user.name", "t", cwd=repo)
    _dvc("init", "-q", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-qm", "project", cwd=repo)

    declaration = str(example / "dvc.yaml")
    first = _dvc("repro", declaration, cwd=repo)
    for stage in ("ingest", "validate", "prepare", "train@majority", "train@gru", "evaluate"):
        assert f"Running stage '{example}/dvc.yaml:{stage}'" in first.stdout or f"Running stage '{stage}'" in first.stdout
    metrics = json.loads((project / "data" / "evaluation" / "metrics.json").read_text())
    assert set(metrics) == {"majority", "gru"}
    assert metrics["gru"]["test_accuracy"] > metrics["majority"]["test_accuracy"]

    again = _dvc("repro", declaration, cwd=repo)
    assert "Running stage" not in again.stdout
