"""AutoETS and AutoTheta behind the one estimator interface: scored, registered, gated and served like any model."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from statsforecast import StatsForecast
from statsforecast.models import AutoETS

import seqpipe.steps as steps
from seqpipe.config import load_config
from seqpipe.data.prepare import load_prepared
from seqpipe.estimators import load_estimator
from seqpipe.estimators.statistical import FITTED_FORECASTS
from seqpipe.evaluation.forecast import forecast_history
from seqpipe.tracking import registry
from seqpipe.tracking.store import mlflow_uris, tracking_uri
from tests.conftest import (
    HORIZON, invoke_served, make_series, mlflow_model_server, run_cli, train_all, write_config,
)

def _direct_auto_ets(values: np.ndarray, season: int, horizon: int) -> np.ndarray:
    frame = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(values)), "y": values})
    return StatsForecast(models=[AutoETS(season_length=season)], freq=1).forecast(df=frame, h=horizon)["AutoETS"].to_numpy()


def _client(cfg) -> MlflowClient:
    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One project: a torch model registered and promoted first, then AutoETS, AutoTheta and the LSTM trained."""
    root = tmp_path_factory.mktemp("classical")
    (root / "input").mkdir()
    make_series().to_csv(root / "input" / "sales.csv", index=False)
    conf = write_config(root, models=["lstm", "seasonal_naive", "auto_ets", "auto_theta"])
    for arch in ("auto_ets", "auto_theta"):
        (conf / "models" / f"{arch}.yaml").write_text(f"arch: {arch}\n")
    cfg = load_config(conf)
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    # Production is a torch model first: the classical challenger is gated against it.
    lstm_conf = root / "conf-lstm"
    lstm_conf.mkdir()
    (lstm_conf / "models").mkdir()
    (lstm_conf / "models" / "lstm.yaml").write_text((conf / "models" / "lstm.yaml").read_text())
    pipeline = (conf / "pipeline.yaml").read_text().replace("- seasonal_naive\n", "").replace(
        "- auto_ets\n", "").replace("- auto_theta\n", "")
    (lstm_conf / "pipeline.yaml").write_text(pipeline)
    lstm_cfg = load_config(lstm_conf)
    steps.evaluate(lstm_cfg)
    steps.promote(lstm_cfg, steps.register(lstm_cfg), "a torch model serves first")
    board = steps.evaluate(cfg)
    return cfg, board


def test_classical_references_fit_each_series_on_train_and_validation(trained):
    cfg, board = trained
    assert set(board["model"]) == {"lstm", "seasonal_naive", "auto_ets", "auto_theta"}
    assert np.isfinite(board[["mase", "smape", "mape"]].to_numpy()).all()
    # The kept forecast is AutoETS fitted on exactly the train + validation rows of each series.
    prepared = load_prepared(steps.Layout.of(cfg).prepared)
    first = prepared.scalers.series_ids[0]
    rows = prepared.frame[(prepared.frame["series_id"] == first) & (prepared.frame["split"] != "test")]
    direct = _direct_auto_ets(rows["value"].to_numpy(), prepared.spec.season, prepared.spec.horizon)
    stored = np.load(steps.Layout.of(cfg).models / "auto_ets" / FITTED_FORECASTS)
    np.testing.assert_allclose(stored[0], direct, rtol=1e-9)
    forecasts = pd.read_parquet(steps.Layout.of(cfg).evaluation / "forecasts.parquet")
    np.testing.assert_allclose(forecasts.loc[forecasts["model"] == "auto_ets", "forecast"].to_numpy(), stored.ravel())


def test_a_saved_local_model_refits_on_a_new_history(trained):
    cfg, _ = trained
    model = load_estimator(steps.Layout.of(cfg).models / "auto_ets")
    history = make_series(series=2, length=48, seed=3).rename(
        columns={"store": "series_id", "month": "timestamp", "sales": "value"})
    prepared = load_prepared(steps.Layout.of(cfg).prepared)
    history["timestamp"] = pd.to_datetime(history["timestamp"], utc=True)
    served = forecast_history(model, prepared.scalers, history, HORIZON, "MS")
    for series_id, rows in history.groupby("series_id"):
        expected = _direct_auto_ets(rows["value"].to_numpy(), prepared.spec.season, HORIZON)
        np.testing.assert_allclose(served.loc[served["series_id"] == series_id, "mean"].to_numpy(), expected, rtol=1e-9)


@pytest.fixture(scope="module")
def registered(trained):
    cfg, board = trained
    version = steps.register(cfg)
    decision = steps.gate(cfg)
    return cfg, board, version, decision


def test_the_best_model_is_registered_whatever_its_kind(registered):
    cfg, board, version, _ = registered
    best = board.iloc[0]
    assert best["arch"] in {"auto_ets", "auto_theta"}, board  # trend and season: a local model wins here
    tags = _client(cfg).get_model_version(cfg.tracking.registered_model, version).tags
    assert tags["seqpipe.arch"] == best["arch"]
    # The registered pyfunc forecasts the test window exactly as evaluate scored it.
    prepared = load_prepared(steps.Layout.of(cfg).prepared)
    history = prepared.frame.loc[prepared.frame["split"] != "test", ["series_id", "timestamp", "value"]]
    with mlflow_uris(_client(cfg)):
        loaded = mlflow.pyfunc.load_model(registry.model_uri(cfg.tracking.registered_model, version))
    served = loaded.predict(history)
    scored = pd.read_parquet(steps.Layout.of(cfg).evaluation / "forecasts.parquet")
    np.testing.assert_allclose(served["mean"].to_numpy(),
                               scored.loc[scored["model"] == best["model"], "forecast"].to_numpy(), rtol=1e-9)


def test_the_gate_compares_a_classical_challenger_with_a_torch_production(registered):
    cfg, _, version, decision = registered
    assert decision["challenger"] == version
    assert decision["production"] is not None and decision["production"] != version
    assert decision["production_score"] is not None and decision["p_value"] is not None
    client = _client(cfg)
    production = client.get_model_version(cfg.tracking.registered_model, decision["production"])
    assert production.tags["seqpipe.arch"] == "lstm"


def test_seqpipe_predict_answers_with_the_classical_version(registered, tmp_path):
    cfg, _, version, _ = registered
    make_series(series=3).to_csv(tmp_path / "history.csv", index=False)
    result = run_cli("predict", "--model", version, "--input", str(tmp_path / "history.csv"),
                     "--output", str(tmp_path / "forecast.csv"), "--conf", str(cfg.conf_dir), cwd=cfg.root)
    assert result.returncode == 0, result.stderr
    forecast = pd.read_csv(tmp_path / "forecast.csv")
    assert len(forecast) == 3 * HORIZON and np.isfinite(forecast["mean"]).all()


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_classical_version(registered, tmp_path):
    cfg, _, version, _ = registered
    uri = registry.model_uri(cfg.tracking.registered_model, version)
    history = make_series(series=2).rename(columns={"store": "series_id", "month": "timestamp", "sales": "value"})
    with mlflow_model_server(uri, tracking_uri(cfg), tmp_path) as url:
        predictions = invoke_served(url, history)
    assert len(predictions) == 2 * HORIZON
    # Over HTTP it answers what the same version forecasts in-process: a refit on the posted history.
    with mlflow_uris(_client(cfg)):
        loaded = mlflow.pyfunc.load_model(uri)
    expected = loaded.predict(history.assign(timestamp=pd.to_datetime(history["timestamp"])))
    np.testing.assert_allclose(predictions["mean"].to_numpy(), expected["mean"].to_numpy(), rtol=1e-9)


def test_a_history_too_short_for_ets_falls_back_to_naive_or_fails_naming_the_setting():
    from seqpipe.errors import PredictionError
    from seqpipe.estimators import ForecastInputs, build_estimator
    from seqpipe.models import ProblemShape

    class Unscaled:
        def inverse(self, scaled, positions):
            return scaled

    rng = np.random.default_rng(0)
    histories = [np.array([5.0, 7.0, 6.0]), 100 + np.cumsum(rng.normal(0, 1, 40))]
    inputs = ForecastInputs(np.zeros((2, 4, 1)), np.arange(2), histories, Unscaled())
    forecast = build_estimator("auto_ets", ProblemShape(4, 4, 1), {}).forecast(inputs)
    np.testing.assert_array_equal(forecast[0], [6.0] * 4)  # the last value: ETS refuses three points
    assert np.isfinite(forecast[1]).all()
    with pytest.raises(PredictionError, match=r"auto_ets cannot fit one of 2 histories \(the shortest has 3 points\).*"
                                              r"params\.fallback: naive"):
        build_estimator("auto_ets", ProblemShape(4, 4, 1), {"fallback": "none"}).forecast(inputs)
