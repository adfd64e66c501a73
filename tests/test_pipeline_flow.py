"""The whole pipeline as a real Prefect flow run, then promote and predict through the CLI."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from conftest import HORIZON, SERIES, make_series, run_cli
from flows.pipeline import retrain
from seqpipe.tracking.store import tracking_uri

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_run_tracks_registers_and_serves(project, cfg, prefect_server):
    state = retrain(conf_dir=str(project / "conf"), return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()

    client = MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_id == summary["mlflow_run_id"])
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["seqpipe.prefect_flow_run_id"] == str(state.state_details.flow_run_id)
    assert parent.data.tags["seqpipe.validation"] == "passed"
    assert set(children) == {"seasonal_naive", "lstm"}
    assert {r.info.status for r in children.values()} == {"FINISHED"}
    lstm = children["lstm"]
    assert lstm.data.params["arch"] == "lstm" and lstm.data.params["model.hidden_size"] == "16"
    assert {"test_mase", "test_smape", "test_mape", "best_val_loss"} <= set(lstm.data.metrics)
    assert len(client.get_metric_history(lstm.info.run_id, "val_loss")) >= 1
    assert lstm.data.tags["seqpipe.dataset_md5"] == summary["dataset_md5"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "evaluation")}
    assert "evaluation/forecast_vs_actual.png" in artifacts and "evaluation/leaderboard.csv" in artifacts
    docs = {a.path for a in client.list_artifacts(parent.info.run_id, "validation/data_docs")}
    assert "validation/data_docs/index.html" in docs

    name = "tiny-forecaster"
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) == summary["registered_version"] == "1"
    assert challenger.tags["seqpipe.model"] == summary["best_model"]

    promoted = run_cli("promote", "--version", "1", "--reason", "first model", "--conf", str(project / "conf"), cwd=project)
    assert promoted.returncode == 0, promoted.stderr
    assert str(client.get_model_version_by_alias(name, "production").version) == "1"

    history = project / "history.csv"
    make_series().to_csv(history, index=False)
    output = project / "forecast.csv"
    predicted = run_cli("predict", "--model", "production", "--input", str(history), "--output", str(output),
                        "--conf", str(project / "conf"), cwd=project)
    assert predicted.returncode == 0, predicted.stderr
    forecast = pd.read_csv(output, parse_dates=["timestamp"])
    assert len(forecast) == SERIES * HORIZON
    assert forecast.groupby("series_id")["timestamp"].min().eq(pd.Timestamp("2020-01-01")).all()
    assert forecast["mean"].notna().all()

    unknown = project / "unknown.csv"
    make_series(series=1).assign(store="nobody").to_csv(unknown, index=False)
    refused = run_cli("predict", "--input", str(unknown), "--output", str(project / "x.csv"),
                      "--conf", str(project / "conf"), cwd=project)
    assert refused.returncode != 0 and "series the model was not trained on: ['nobody']" in refused.stderr
    assert not (project / "x.csv").exists()


def test_failed_validation_fails_the_flow_run_and_the_mlflow_run(project, cfg, prefect_server):
    duplicated = project / "input" / "sales.csv"
    frame = make_series()
    pd.concat([frame, frame.iloc[[3]]]).to_csv(duplicated, index=False)
    state = retrain(conf_dir=str(project / "conf"), return_state=True)
    assert state.is_failed()
    client = MlflowClient(tracking_uri(cfg))
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    [run] = runs
    assert run.info.status == "FAILED"
    assert run.data.tags["seqpipe.validation"] == "failed"
    report = client.download_artifacts(run.info.run_id, "validation/report.json", str(project))
    assert '"expect_compound_columns_to_be_unique"' in open(report).read()
    assert not (project / "data" / "prepared").exists()
