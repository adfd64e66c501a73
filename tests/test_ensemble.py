"""The ensemble: members of any kind over several lookbacks and seeds, fitted in the one loop, combined per step."""

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

import seqpipe.estimators.neural as neural
from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.errors import ConfigError
from seqpipe.estimators import FitData, FitOptions, ForecastInputs, build_estimator, load_estimator
from seqpipe.training import TrainSettings, seed_everything
from seqpipe.tracking.store import connect, mlflow_uris
from tests.conftest import HORIZON, train_all
from tests.test_models import SHAPE, _seasonal_windows

SETTINGS = TrainSettings(max_epochs=4, batch_size=64, learning_rate=3e-3, patience=10, progress=False)
PARAMS = {"members": [{"arch": "dlinear", "params": {"moving_average": 5}},
                      {"arch": "dlinear", "params": {"moving_average": 5, "loss": "mae"}},
                      {"arch": "seasonal_naive"}],
          "lookbacks": [12, 24], "seeds": 1, "combine": "median"}


class _Identity:
    def inverse(self, scaled, positions):
        return scaled


def _data() -> FitData:
    return FitData(_seasonal_windows(512, 1), _seasonal_windows(128, 2), [])


def _inputs() -> ForecastInputs:
    x, _ = _seasonal_windows(64, 3)
    return ForecastInputs(x, np.arange(len(x)), [np.empty(0)] * len(x), _Identity())


def _fitted(checkpoint=None):
    seed_everything(5, num_threads=1)
    ensemble = build_estimator("ensemble", SHAPE, PARAMS)
    ensemble.fit(_data(), SETTINGS, FitOptions(name="ensemble", checkpoint=checkpoint, signature={"arch": "ensemble"}))
    return ensemble


@pytest.fixture(scope="module")
def fitted():
    return _fitted()


def test_members_are_every_spec_lookback_and_copy_and_the_forecast_is_their_median(fitted):
    assert [(p.arch, p.lookback) for p in fitted.plans] == [
        ("dlinear", 12), ("dlinear", 24), ("dlinear", 12), ("dlinear", 24), ("seasonal_naive", 12), ("seasonal_naive", 24)]
    assert [m.shape.lookback for m in fitted.members] == [12, 24, 12, 24, 12, 24]
    inputs = _inputs()
    each = [m.forecast(ForecastInputs(inputs.windows[:, -p.lookback:], inputs.series, inputs.histories, inputs.scalers))
            for p, m in zip(fitted.plans, fitted.members)]
    np.testing.assert_array_equal(fitted.forecast(inputs), np.median(np.stack(each), axis=0))
    # The members learned the season: the combination is far better than the naive forecast.
    _, y = _seasonal_windows(64, 3)
    naive = np.repeat(inputs.windows[:, -1:, 0], SHAPE.horizon, axis=1)
    assert ((fitted.forecast(inputs) - y) ** 2).mean() < 0.1 * ((naive - y) ** 2).mean()


def test_save_load_round_trip_forecasts_identically_and_the_same_seed_refits_identically(fitted, tmp_path):
    fitted.save(tmp_path / "ensemble")
    loaded = load_estimator(tmp_path / "ensemble")
    np.testing.assert_array_equal(loaded.forecast(_inputs()), fitted.forecast(_inputs()))
    assert sorted(p.name for p in (tmp_path / "ensemble" / "members").iterdir())[0] == "00-dlinear-lookback12-copy0"
    np.testing.assert_array_equal(_fitted().forecast(_inputs()), fitted.forecast(_inputs()))


def test_an_ensemble_killed_in_its_second_member_resumes_to_the_uninterrupted_result(fitted, tmp_path, monkeypatch):
    class Killed(Exception):
        pass

    original, calls = neural.fit, []

    def dies_in_the_second_members_second_epoch(*args, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            def on_epoch(log):
                if log.epoch == 2:
                    raise Killed
            kwargs["on_epoch"] = on_epoch
        return original(*args, **kwargs)

    checkpoint = tmp_path / "checkpoints" / "ensemble.pt"
    monkeypatch.setattr(neural, "fit", dies_in_the_second_members_second_epoch)
    with pytest.raises(Killed):
        _fitted(checkpoint)
    monkeypatch.setattr(neural, "fit", original)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["ensemble.member-00.pt", "ensemble.member-01.pt"]
    np.testing.assert_array_equal(_fitted(checkpoint).forecast(_inputs()), fitted.forecast(_inputs()))


GROUP = {"arch": "ensemble", "params": {"members": [{"arch": "dlinear", "params": {"moving_average": 5}},
                                                     {"arch": "dlinear", "params": {"moving_average": 5, "loss": "mae"}}],
                                         "combine": "mean"}}


def test_a_member_may_be_an_ensemble_whose_forecast_is_combined_first(tmp_path):
    seed_everything(5, num_threads=1)
    nested = build_estimator("ensemble", SHAPE, {"members": [GROUP, {"arch": "seasonal_naive"}, {"arch": "naive"}]})
    result = nested.fit(_data(), SETTINGS, FitOptions(name="nested"))
    assert [m.label for m in result.members[0].result.members] == ["00-dlinear-lookback24-copy0",
                                                                    "01-dlinear-lookback24-copy0"]
    group, seasonal, naive = nested.members
    inputs = _inputs()
    each = [m.forecast(inputs) for m in group.members]
    np.testing.assert_allclose(group.forecast(inputs), (each[0] + each[1]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(
        nested.forecast(inputs), np.median(np.stack([group.forecast(inputs), seasonal.forecast(inputs),
                                                     naive.forecast(inputs)]), axis=0))
    nested.save(tmp_path / "nested")
    np.testing.assert_array_equal(load_estimator(tmp_path / "nested").forecast(inputs), nested.forecast(inputs))


def test_member_specs_are_checked_at_load_naming_the_member(project):
    conf = project / "conf"
    for members, message in [
        ([{"arch": "lstm_classifier"}], r"members\[0\]\.arch: 'lstm_classifier' is not a forecaster an ensemble can hold"),
        ([{"arch": "dlinear", "params": {"moving_avg": 5}}], r"members\[0\]\.params\.moving_avg: Extra inputs"),
        ([{"arch": "dlinear", "parms": {}}], r"members\[0\]: a member is \{arch, params\}"),
        ([{"arch": "dlinear", "params": {"loss": "mape"}}], r"train on a percentage error"),
        ([{"arch": "ensemble", "params": {"members": [{"arch": "dlinear", "params": {"moving_avg": 5}}]}}],
         r"members\[0\]\.params\.members: .*members\[0\]\.params\.moving_avg: Extra inputs"),
    ]:
        (conf / "models" / "combo.yaml").write_text(yaml.safe_dump({"arch": "ensemble", "params": {"members": members}}))
        pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
        pipeline["models"] = ["combo"]
        (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
        with pytest.raises(ConfigError, match=message):
            load_config(conf)


def test_the_pipeline_trains_logs_registers_and_serves_an_ensemble_as_one_model(project):
    conf = project / "conf"
    # The third member is a group, an ensemble of its own, combined before the outer mean.
    (conf / "models" / "combo.yaml").write_text(yaml.safe_dump({"arch": "ensemble", "params": {
        "members": [{"arch": "dlinear", "params": {"moving_average": 5, "loss": "mase"}}, {"arch": "auto_theta"},
                    {"arch": "ensemble", "params": {"members": [{"arch": "naive"}]}}],
        "lookbacks": [6, 12], "combine": "mean"}}))
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = ["combo"]
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    cfg = load_config(conf)
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    board = steps.evaluate(cfg)
    version = steps.register(cfg)

    client, _ = connect(cfg)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    combo = next(r for r in runs if r.info.run_name == "combo")
    members = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == combo.info.run_id)
    assert members == ["combo/00-dlinear-lookback6-copy0", "combo/01-dlinear-lookback12-copy0",
                       "combo/02-auto_theta-lookback6-copy0", "combo/03-auto_theta-lookback12-copy0",
                       "combo/04-ensemble-lookback6-copy0", "combo/05-ensemble-lookback12-copy0"]
    group = next(r for r in runs if r.info.run_name == members[4])
    assert [r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == group.info.run_id] == [
        "combo/04-ensemble-lookback6-copy0/00-naive-lookback6-copy0"]
    dlinear = next(r for r in runs if r.info.run_name == members[0])
    assert dlinear.data.params["model.loss"] == "mase" and dlinear.data.metrics["epochs_run"] >= 1
    assert not list((cfg.data_dir / "checkpoints").glob("*.pt")) if (cfg.data_dir / "checkpoints").is_dir() else True

    forecasts = pd.read_parquet(cfg.data_dir / "evaluation" / "forecasts.parquet")
    history = pd.read_parquet(cfg.data_dir / "validated" / "series.parquet").groupby("series_id").head(60 - HORIZON)
    with mlflow_uris(client):
        served = mlflow.pyfunc.load_model(f"models:/tiny-forecaster/{version}").predict(history)
    np.testing.assert_allclose(served["mean"].to_numpy(), forecasts["forecast"].to_numpy(), rtol=1e-6)
    assert board.iloc[0]["model"] == "combo" and np.isfinite(board.iloc[0]["val_mase"])
