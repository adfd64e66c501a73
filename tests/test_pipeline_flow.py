"""The whole pipeline as a real Prefect flow run, then promote and predict through the CLI."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from conftest import HORIZON, SERIES, make_series, run_cli
from flows.pipeline import retrain
from seqpipe.tracking.store import tracking_uri

pytestmark = pytest.mark.slow


def _client(cfg) -> MlflowClient:
    """A client of the test project's store, for tracking and registry alike."""
    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_run_tracks_registers_and_serves(project, cfg, prefect_server):
    state = retrain(conf_dir=str(project / "conf"), return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()

    client = _client(cfg)
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
    client = _client(cfg)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    [run] = runs
    assert run.info.status == "FAILED"
    assert run.data.tags["seqpipe.validation"] == "failed"
    report = client.download_artifacts(run.info.run_id, "validation/report.json", str(project))
    assert '"expect_compound_columns_to_be_unique"' in open(report).read()
    assert not (project / "data" / "prepared").exists()


def _task_states(flow_run_id) -> dict[str, str]:
    """Task run name -> its state names (sorted), over a flow run and its subflow runs (one per model)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    async def read():
        async with get_client() as client:
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
            ids = [flow_run_id, *(child.id for child in children)]
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
            states: dict[str, list[str]] = {}
            for run in runs:
                states.setdefault(run.name, []).append(run.state.name)
            return {name: ",".join(sorted(found)) for name, found in states.items()}

    return asyncio.run(read())


def test_unchanged_rerun_hits_the_cache_and_retrains_only_what_changed(project, cfg, prefect_server):
    conf = str(project / "conf")
    first = retrain(conf_dir=conf, return_state=True)
    assert first.is_completed(), first.message
    assert first.result()["cached_models"] == []

    second = retrain(conf_dir=conf, return_state=True)
    assert second.is_completed(), second.message
    states = _task_states(second.state_details.flow_run_id)
    cached = {"ingest", "validate", "prepare", "train-seasonal_naive", "train-lstm"}
    assert {name: states[name] for name in cached} == dict.fromkeys(cached, "Cached")
    assert states["evaluate"] == states["register"] == "Completed"
    summary = second.result()
    assert summary["cached_models"] == ["seasonal_naive", "lstm"]
    assert summary["registered_version"] == first.result()["registered_version"]  # no duplicate version

    # One model's params change: only that model trains again.
    (project / "conf" / "models" / "lstm.yaml").write_text("arch: lstm\nparams: {hidden_size: 8, num_layers: 1, dropout: 0.0}\n")
    third = retrain(conf_dir=conf, return_state=True)
    states = _task_states(third.state_details.flow_run_id)
    assert states["train-lstm"] == "Completed" and states["train-seasonal_naive"] == "Cached"
    assert states["prepare"] == "Cached"

    # A cached step whose output files changed since is recomputed, not trusted.
    prepared = project / "data" / "prepared" / "meta.json"
    prepared.write_text(prepared.read_text() + " ")
    fourth = retrain(conf_dir=conf, return_state=True)
    states = _task_states(fourth.state_details.flow_run_id)
    assert states["ingest"] == states["validate"] == "Cached"
    assert states["prepare"] == "Cached,Completed"  # the hit was checked, then prepare ran again


def test_scheduled_run_skips_unchanged_data_and_reports_drift_on_new_data(project, cfg, prefect_server):
    conf = str(project / "conf")
    first = retrain(conf_dir=conf, scheduled=True, return_state=True)
    assert first.is_completed(), first.message
    assert first.result()["gate"]["action"] == "promoted"  # the first version becomes production

    unchanged = retrain(conf_dir=conf, scheduled=True, return_state=True).result()
    assert unchanged["skipped"] == "unchanged data"
    client = _client(cfg)
    run = client.get_run(unchanged["mlflow_run_id"])
    assert run.data.tags["seqpipe.decision"] == "skip"
    assert run.info.status == "FINISHED"
    assert not client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")

    # A year more of data, with half the stores' level shifted: retrain, and say which drifted.
    longer = make_series(length=72)
    shifted = longer["store"].isin(["s00", "s01", "s02", "s03"]) & (longer.index % 72 >= 60)
    longer.loc[shifted, "sales"] += 80
    longer.to_csv(project / "input" / "sales.csv", index=False)
    retrained = retrain(conf_dir=conf, scheduled=True, return_state=True).result()
    assert retrained["skipped"] is None and retrained["cached_models"] == []
    run = client.get_run(retrained["mlflow_run_id"])
    assert run.data.tags["seqpipe.decision"] == "retrain"
    assert "4 of 8 series drifted" in run.data.tags["seqpipe.decision_reason"]
    assert run.data.metrics["drift_series_drifted"] == 4
    assert {a.path for a in client.list_artifacts(run.info.run_id, "drift")} == {f"drift/{retrained['dataset_md5']}.json"}


def test_every_architecture_trains_in_one_flow_run_and_is_tracked(project, prefect_server):
    """The whole forecasting zoo, listed in one config, through the flow: a child run with test metrics each.

    The classifiers' zoo runs through the flow in test_classify_pipeline.py."""
    import yaml

    from conftest import write_config
    from seqpipe.config import load_config
    from seqpipe.estimators import architectures
    from seqpipe.estimators.catalog import task_of
    from test_zoo import ZOO

    small = {**ZOO, **{arch: ({"hidden_size": 8, "num_layers": 1, "dropout": 0.0}, 0) for arch in ("rnn", "lstm", "gru")}}
    names = sorted(arch for arch in architectures() if task_of(arch) == "forecast")
    for name in names:
        params = small.get(name, ({}, 0))[0]
        (project / "conf" / "models" / f"{name}.yaml").write_text(yaml.safe_dump({"arch": name, "params": params}))
    write_config(project, models=names, training={"max_epochs": 2})
    cfg = load_config(project / "conf")

    state = retrain(conf_dir=str(project / "conf"), return_state=True)
    assert state.is_completed(), state.message
    client = _client(cfg)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    parent_id = state.result()["mlflow_run_id"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id}
    assert set(children) == set(names)
    for name, run in children.items():
        assert run.info.status == "FINISHED", name
        assert run.data.params["arch"] == name
        assert {"test_mase", "test_smape", "test_mape"} <= set(run.data.metrics), name
    board = pd.read_csv(project / "data" / "evaluation" / "leaderboard.csv")
    assert set(board["model"]) == set(names) and board["mase"].notna().all()
