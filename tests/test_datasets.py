"""MLflow's conventions for data: the snapshot as a dataset input on the pipeline run, the experiment's kind.

Everything is read back through a fresh MlflowClient of the project's SQLite store, as
MLflow's UI would read it.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import make_series
from seqpipe import steps
from seqpipe.data.snapshot import read_manifest
from seqpipe.errors import DataValidationError
from seqpipe.steps.runs import record_dataset
from seqpipe.tracking.datasets import (
    EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, SPLITS, dataset_name, log_snapshot_inputs,
)
from seqpipe.tracking.store import connect, tracking_uri


def _client(cfg) -> MlflowClient:
    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _inputs(cfg, run_id: str) -> dict[str, tuple]:
    """context -> (dataset, input tags) of a run, as stored."""
    found = {}
    for dataset_input in _client(cfg).get_run(run_id).inputs.dataset_inputs:
        tags = {t.key: t.value for t in dataset_input.tags}
        found[tags["mlflow.data.context"]] = (dataset_input.dataset, tags)
    return found


def test_the_pipeline_run_shows_the_snapshot_as_dataset_inputs_of_the_three_splits(cfg):
    for step in (steps.ingest, steps.validate, steps.prepare):
        step(cfg)
    manifest = read_manifest(steps.Layout.of(cfg).raw)
    run_id = steps.start_pipeline_run(cfg)
    steps.record_validation(cfg, run_id)
    steps.record_validation(cfg, run_id)  # a retried task logs again: no error, no duplicate

    inputs = _inputs(cfg, run_id)
    assert sorted(inputs) == sorted(SPLITS)
    assert len(_client(cfg).get_run(run_id).inputs.dataset_inputs) == 3
    for context, (dataset, _) in inputs.items():
        assert dataset.name == f"sales-{context}"
        assert dataset.digest == manifest.md5  # the snapshot's MD5, as in the lineage tags and DVC
        assert dataset.source_type == "local"
        assert json.loads(dataset.source) == {"uri": manifest.source}
        columns = {c["name"]: c["type"] for c in json.loads(dataset.schema)["mlflow_colspec"]}
        assert columns == {"series_id": "string", "timestamp": "datetime", "value": "double"}
        profile = json.loads(dataset.profile)
        assert profile["rows"] == manifest.rows == 480 and profile["series"] == 8 and profile["split"] == context
    run = _client(cfg).get_run(run_id)
    assert run.data.tags["seqpipe.dataset_md5"] == manifest.md5  # the tags stay beside the inputs

    experiment = _client(cfg).get_experiment_by_name(cfg.tracking.experiment)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_a_training_run_logs_the_same_dataset_with_its_own_context(cfg):
    steps.ingest(cfg)
    steps.validate(cfg)
    client, experiment_id = connect(cfg)
    parent = steps.start_pipeline_run(cfg)
    steps.record_validation(cfg, parent)
    child = client.create_run(experiment_id, run_name="lstm").info.run_id
    record_dataset(cfg, child, contexts=("training",))
    (dataset, _), = _inputs(cfg, child).values()
    assert (dataset.name, dataset.digest) == ("sales-training", read_manifest(steps.Layout.of(cfg).raw).md5)
    # One dataset record in the experiment, shared by both runs: MLflow's UI links them.
    parent_training = _inputs(cfg, parent)["training"][0]
    assert parent_training == dataset


def test_a_rejected_snapshot_is_shown_as_rejected_not_as_training_data(cfg, project):
    frame = make_series()
    path = project / "input" / "dup.csv"
    pd.concat([frame, frame.head(1)]).to_csv(path, index=False)
    steps.ingest(cfg, cfg.data.source.model_copy(update={"path": str(path)}))
    run_id = steps.start_pipeline_run(cfg)
    with pytest.raises(DataValidationError):
        steps.validate(cfg)
    steps.record_validation(cfg, run_id)
    inputs = _inputs(cfg, run_id)
    assert list(inputs) == ["rejected"]
    assert inputs["rejected"][0].name == "dup-rejected"


def test_before_validation_no_dataset_is_claimed(cfg):
    steps.ingest(cfg)
    run_id = steps.start_pipeline_run(cfg)
    record_dataset(cfg, run_id)
    assert _client(cfg).get_run(run_id).inputs.dataset_inputs == []


def test_an_existing_experiment_gets_the_kind_and_a_chosen_kind_stays(cfg):
    client = _client(cfg)
    old = client.create_experiment(cfg.tracking.experiment)
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    connect(cfg)
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND

    chosen = client.create_experiment("genai", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    connect(cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"experiment": "genai"})}))
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_logging_the_same_inputs_twice_keeps_one_link_per_context(cfg):
    client, experiment_id = connect(cfg)
    run_id = client.create_run(experiment_id).info.run_id
    for _ in range(2):
        log_snapshot_inputs(client, run_id, "sales", "0" * 32, "/data/sales.csv", profile={"rows": 1})
    assert len(client.get_run(run_id).inputs.dataset_inputs) == 3


@pytest.mark.parametrize("origin, name", [
    ("builtin:tourism-monthly", "tourism-monthly"),
    ("sql:postgresql://user:***@host/db", "sql"),
    ("/project/input/sales.csv", "sales"),
    ("/project/input/sales.csv.gz", "sales"),
    ("input/*.parquet (3 files)", "input"),
    ("data/incoming (2 files)", "incoming"),
])
def test_dataset_names_come_from_the_source(origin, name):
    assert dataset_name(origin) == name


def test_datasets_command_lists_each_tasks_built_ins():
    from typer.testing import CliRunner

    from seqpipe.cli import app

    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    forecast, _, classify = result.output.partition("task: classify")
    assert "tourism-monthly" in forecast and "spoken-digits" not in forecast
    assert all(name in classify for name in ("spoken-digits", "rotten-tomatoes", "reuters-r8"))
