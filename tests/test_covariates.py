"""Covariates and calendar features: from the source column to the served forecast.

The generated sales react to a promotion six months earlier (``promo``, random per
month), so the covariate's history says exactly what the horizon's promotion effect
will be, while the sales history alone cannot: a model that reads the covariate must
forecast far better than the same model without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import HORIZON, LOOKBACK, SEASON, train_all, write_config
from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.data.catalog import SeriesSpec
from seqpipe.data.features import CALENDAR, Features, calendar_channels
from seqpipe.data.prepare import load_prepared, prepare_frame
from seqpipe.data.snapshot import read_snapshot
from seqpipe.errors import ConfigError, PredictionError
from seqpipe.estimators.neural import NeuralEstimator, predict_scaled
from seqpipe.evaluation.forecast import forecast_history
from seqpipe.models import ProblemShape, build_model
from seqpipe.training import TrainSettings, fit, seed_everything

PROMO_EFFECT, PROMO_SHARE = 20.0, 0.3
COLUMNS = {"series_id": "store", "timestamp": "month", "value": "sales", "covariates": ["promo", "price"]}
SPEC = SeriesSpec(horizon=HORIZON, season=SEASON, lookback=LOOKBACK, freq="MS")


def promo_series(series: int = 8, length: int = 60, seed: int = 0) -> pd.DataFrame:
    """Monthly sales: level, season, and +20 six months (one horizon) after each promotion."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(series):
        t = np.arange(length)
        promo = (rng.random(length) < PROMO_SHARE).astype(np.int64)
        earlier = np.r_[np.zeros(HORIZON), promo[:-HORIZON]]
        sales = 100 + 5 * i + 10 * np.sin(2 * np.pi * t / SEASON + i) + PROMO_EFFECT * earlier + rng.normal(0, 1, length)
        frames.append(pd.DataFrame({
            "store": f"s{i:02d}",
            "month": pd.date_range("2015-01-01", periods=length, freq="MS").strftime("%Y-%m-%d"),
            "sales": sales.round(3),
            "promo": promo,
            "price": (9.99 + rng.normal(0, 0.5, length)).round(2),
        }))
    return pd.concat(frames, ignore_index=True)


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    renamed = frame.rename(columns={"store": "series_id", "month": "timestamp", "sales": "value"})
    return renamed.assign(timestamp=pd.to_datetime(renamed["timestamp"]), promo=renamed["promo"].astype(float))


@pytest.fixture
def covariate_project(tmp_path: Path) -> Path:
    (tmp_path / "input").mkdir()
    promo_series().to_csv(tmp_path / "input" / "sales.csv", index=False)
    write_config(tmp_path, data={"source": {"kind": "csv", "path": "input/sales.csv", "columns": COLUMNS},
                                 "horizon": HORIZON, "season": SEASON, "lookback": LOOKBACK},
                 prepare={"scaler": "standard", "calendar_features": ["month_of_year"]})
    return tmp_path


# -- config ------------------------------------------------------------------------------------

def _load_with(root: Path, **sections):
    write_config(root, **sections)
    return load_config(root / "conf")


@pytest.mark.parametrize("sections, message", [
    ({"data": {"source": {"kind": "csv", "path": "x.csv", "columns": {**COLUMNS, "covariates": ["sales"]}}}},
     "covariates ['sales'] repeat a mapped column"),
    ({"data": {"source": {"kind": "csv", "path": "x.csv", "columns": {**COLUMNS, "covariates": ["split"]}}}},
     "covariates ['split'] repeat a mapped column or a reserved name"),
    ({"data": {"source": {"kind": "builtin", "name": "m1-monthly", "columns": COLUMNS}}},
     "covariates needs a long-layout csv, parquet or sql source"),
    ({"prepare": {"calendar_features": ["fortnight_of_year"]}}, "prepare.calendar_features.0"),
    ({"prepare": {"calendar_features": ["day_of_week", "day_of_week"]}}, "lists ['day_of_week'] more than once"),
])
def test_config_refuses_unusable_covariates_and_calendar_features(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _load_with(tmp_path, **sections)


def test_the_config_vocabulary_is_the_one_prepare_computes():
    from typing import get_args

    from seqpipe.config import CalendarFeature

    assert set(get_args(CalendarFeature)) == set(CALENDAR)


# -- ingest, validate, prepare -----------------------------------------------------------------

def test_ingest_carries_covariates_as_numbers_and_validation_checks_them(covariate_project):
    cfg = load_config(covariate_project / "conf")
    steps.ingest(cfg)
    frame, _ = read_snapshot(cfg.data_dir / "raw")
    assert list(frame.columns) == ["series_id", "timestamp", "value", "promo", "price"]
    assert frame["promo"].dtype == np.float64 and set(frame["promo"]) == {0.0, 1.0}
    report = steps.validate(cfg)
    covariate_checks = [c for c in report.checks if c.target in ("promo", "price")]
    assert report.success and len(covariate_checks) == 8


def test_prepare_builds_target_covariate_and_calendar_channels_and_round_trips(covariate_project):
    cfg = load_config(covariate_project / "conf")
    steps.ingest(cfg)
    steps.validate(cfg)
    meta = steps.prepare(cfg)
    assert meta["features"]["covariates"] == ["promo", "price"]
    assert meta["features"]["calendar_features"] == ["month_of_year"]
    prepared = load_prepared(cfg.data_dir / "prepared")
    assert prepared.features.names == ["value", "promo", "price", "month_of_year_sin", "month_of_year_cos"]
    assert prepared.train.values.shape == (len(prepared.frame), 5)  # series-sized: windows are not stored
    assert prepared.val.x.shape == (8, LOOKBACK, 5) and prepared.test.y.shape == (8, HORIZON)

    # The target channel and the targets are those of a preparation without features.
    frame = prepared.frame.drop(columns="split")
    plain = prepare_frame(frame, SPEC, "standard")
    np.testing.assert_array_equal(prepared.train.x[:, :, 0], plain.train.x[:, :, 0])
    np.testing.assert_array_equal(prepared.train.y, plain.train.y)

    # promo is standardised per series with statistics of the training rows only.
    first = prepared.frame[prepared.frame["series_id"] == "s00"]
    train_promo = first.loc[first["split"] == "train", "promo"]
    expected = (first["promo"].to_numpy()[:LOOKBACK] - train_promo.mean()) / train_promo.std(ddof=0)
    np.testing.assert_allclose(prepared.train.x[0, :, 1], expected, rtol=1e-6)
    assert prepared.covariate_scalers["promo"].loc[0] == pytest.approx(train_promo.mean())

    # month_of_year: the history of the first window starts in January 2015.
    months = np.arange(LOOKBACK) / 12
    np.testing.assert_allclose(prepared.train.x[0, :, 3], np.sin(2 * np.pi * months), atol=1e-6)
    np.testing.assert_allclose(prepared.train.x[0, :, 4], np.cos(2 * np.pi * months), atol=1e-6)

    again = prepare_frame(frame, SPEC, "standard", features=prepared.features)
    np.testing.assert_array_equal(again.test.x, prepared.test.x)


def test_calendar_features_read_the_source_clock_and_cover_the_vocabulary():
    # Local midnight in Berlin is 23:00 UTC the day before: the weekday is the local one.
    local_midnights = pd.Series(pd.to_datetime(["2024-03-03 23:00", "2024-06-30 22:00"]))  # Mon 4 Mar, Mon 1 Jul
    monday = calendar_channels(local_midnights, ("day_of_week",), "Europe/Berlin")
    np.testing.assert_allclose(monday, [[0.0, 1.0], [0.0, 1.0]], atol=1e-12)
    utc = calendar_channels(local_midnights, ("day_of_week",))
    assert not np.allclose(utc, monday)
    stamps = pd.Series(pd.date_range("2023-12-25", periods=400, freq="13h"))
    every = calendar_channels(stamps, tuple(CALENDAR))
    assert every.shape == (400, 2 * len(CALENDAR)) and np.isfinite(every).all()
    np.testing.assert_allclose(every[:, 0::2] ** 2 + every[:, 1::2] ** 2, 1.0)


def test_calendar_features_on_integer_steps_are_a_config_error():
    frame = canonical(promo_series(series=2)).assign(timestamp=lambda f: f.groupby("series_id").cumcount())
    with pytest.raises(ConfigError, match=r"prepare.calendar_features \['month_of_year'\] need calendar timestamps"):
        prepare_frame(frame, SPEC, "standard", features=Features(calendar=("month_of_year",)))


def test_a_covariate_the_validated_data_lacks_is_a_config_error():
    frame = canonical(promo_series(series=2)).drop(columns="price")
    with pytest.raises(ConfigError, match=r"covariates \['price'\] .* are not in the validated data"):
        prepare_frame(frame, SPEC, "standard", features=Features(covariates=("promo", "price")))


# -- the covariate carries real signal ---------------------------------------------------------

def _fit(arch: str, params: dict, features: Features, frame: pd.DataFrame):
    prepared = prepare_frame(frame, SPEC, "standard", features=features)
    seed_everything(0, num_threads=1)
    model = build_model(arch, ProblemShape(LOOKBACK, HORIZON, SEASON, features.channels), params)
    settings = TrainSettings(max_epochs=20, batch_size=32, learning_rate=3e-3, patience=20, progress=False)
    fit(model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y), settings, name=arch)
    return model


def _held_out_mae(model, features: Features, frame: pd.DataFrame) -> float:
    """Mean absolute error in sales units over every window of series the model never saw."""
    prepared = prepare_frame(frame, SPEC, "standard", features=features)
    windows = prepared.train
    forecast = prepared.scalers.inverse(predict_scaled(model, windows.x), windows.series)
    actual = prepared.scalers.inverse(windows.y.astype(np.float64), windows.series)
    return float(np.abs(forecast - actual).mean())


@pytest.mark.parametrize("arch, params", [
    ("dlinear", {"moving_average": 5}),
    ("lstm", {"hidden_size": 32, "num_layers": 1, "dropout": 0.0}),
])
def test_a_model_reading_the_covariate_beats_the_same_model_without_it(arch, params):
    train, unseen = canonical(promo_series(16, 96, seed=0)), canonical(promo_series(16, 96, seed=1))
    errors = {}
    for features in (Features(), Features(covariates=("promo",))):
        model = _fit(arch, params, features, train)
        errors[features.channels] = _held_out_mae(model, features, unseen)
    print(f"{arch}: held-out MAE without promo {errors[1]:.2f}, with promo {errors[2]:.2f}")
    # Without the covariate the promotion effect is a coin flip: about 2 x 0.3 x 0.7 x 20 = 8.4.
    assert errors[1] > 0.7 * 2 * PROMO_SHARE * (1 - PROMO_SHARE) * PROMO_EFFECT
    assert errors[2] < 0.5 * errors[1]


def test_a_weekly_calendar_feature_tells_apart_windows_the_values_cannot():
    """Three weekdays look alike; only the calendar says whether the weekend comes next."""
    def daily(seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        frames = []
        for i in range(8):
            stamps = pd.date_range("2021-01-04", periods=150, freq="D") + pd.Timedelta(days=int(rng.integers(0, 7)))
            weekend = (stamps.dayofweek >= 5).astype(float)
            frames.append(pd.DataFrame({"series_id": f"d{i}", "timestamp": stamps,
                                        "value": 50 + 3 * i + 10 * weekend + rng.normal(0, 1, len(stamps))}))
        return pd.concat(frames, ignore_index=True)

    spec = SeriesSpec(horizon=2, season=7, lookback=3, freq="D")
    errors = {}
    for features in (Features(), Features(calendar=("day_of_week",))):
        prepared = prepare_frame(daily(0), spec, "standard", features=features)
        seed_everything(0, num_threads=1)
        model = build_model("lstm", ProblemShape(3, 2, 7, features.channels),
                            {"hidden_size": 32, "num_layers": 1, "dropout": 0.0})
        fit(model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y),
            TrainSettings(max_epochs=20, batch_size=32, learning_rate=3e-3, patience=20, progress=False), name="lstm")
        unseen = prepare_frame(daily(1), spec, "standard", features=features).train
        forecast = predict_scaled(model, unseen.x)
        errors[features.channels] = float(np.abs(forecast - unseen.y).mean())
    print(f"lstm: held-out MAE (scaled units) without day_of_week {errors[1]:.3f}, with {errors[3]:.3f}")
    assert errors[3] < 0.75 * errors[1]


# -- serving -----------------------------------------------------------------------------------

def test_forecast_history_builds_the_training_channels_and_names_a_missing_covariate():
    frame = canonical(promo_series())
    features = Features(covariates=("promo", "price"), calendar=("month_of_year",))
    prepared = prepare_frame(frame, SPEC, "standard", features=features)
    torch.manual_seed(0)
    model = build_model("dlinear", ProblemShape(LOOKBACK, HORIZON, SEASON, features.channels), {}).eval()
    history = prepared.frame.loc[prepared.frame["split"] != "test"].drop(columns="split")
    served = forecast_history(NeuralEstimator(model), prepared.scalers, history, HORIZON, "MS", features=features,
                              covariate_scalers=prepared.covariate_scalers)
    direct = prepared.scalers.inverse(predict_scaled(model, prepared.test.x), prepared.test.series)
    np.testing.assert_allclose(served["mean"].to_numpy().reshape(-1, HORIZON), direct, rtol=1e-6)

    with pytest.raises(PredictionError, match=r"history is missing covariate columns \['price'\]"):
        forecast_history(NeuralEstimator(model), prepared.scalers, history.drop(columns="price"), HORIZON, "MS", features=features,
                         covariate_scalers=prepared.covariate_scalers)
    broken = history.assign(promo=history["promo"].astype(object))
    broken.loc[broken.index[-1], "promo"] = "yes"
    with pytest.raises(PredictionError, match=r"covariate 'promo': 1 series have missing, non-numeric"):
        forecast_history(NeuralEstimator(model), prepared.scalers, broken, HORIZON, "MS", features=features,
                         covariate_scalers=prepared.covariate_scalers)
    with pytest.raises(PredictionError, match="reads 5 input channels but was registered with"):
        forecast_history(NeuralEstimator(model), prepared.scalers, history, HORIZON, "MS")


@pytest.mark.slow
def test_pipeline_with_covariates_trains_registers_and_predicts(covariate_project, tmp_path):
    conf = covariate_project / "conf"
    (conf / "models" / "dlinear.yaml").write_text(yaml.safe_dump({"arch": "dlinear", "params": {"moving_average": 5}}))
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = ["dlinear"]
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    cfg = load_config(conf)
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    board = steps.evaluate(cfg)
    steps.register(cfg)
    # The gate forecasts the test split through the registered pyfunc, from a history frame:
    # the same score as evaluate's, from prepared windows, shows both build the same channels.
    decision = steps.gate(cfg)
    assert decision["action"] == "promoted"
    assert decision["challenger_score"] == pytest.approx(float(board.loc[0, "mase"]), rel=1e-5)

    history = promo_series().groupby("store").head(48)
    source, output = tmp_path / "history.csv", tmp_path / "forecast.csv"
    history.to_csv(source, index=False)
    forecast = steps.predict(cfg, "production", source, output)
    assert len(forecast) == 8 * HORIZON and np.isfinite(forecast["mean"]).all()
    assert pd.to_datetime(forecast["timestamp"]).min() == pd.Timestamp("2019-01-01")

    history.drop(columns="promo").to_csv(source, index=False)
    output.unlink()
    reads = r"history.csv: missing columns \['promo'\] that models:/tiny-forecaster@production reads"
    with pytest.raises(PredictionError, match=reads):
        steps.predict(cfg, "production", source, output)
    assert not output.exists()
