"""Short histories, padded and masked (prepare.pad_history): from the length rule to the served forecast."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import HORIZON, LOOKBACK, make_series, train_all, write_config
from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.data.catalog import SeriesSpec, shortest_splittable
from seqpipe.data.features import Features
from seqpipe.data.prepare import load_prepared, prepare_frame, save_prepared
from seqpipe.errors import DataValidationError, PredictionError
from seqpipe.estimators import build_estimator
from seqpipe.estimators.inputs import fit_data
from seqpipe.estimators import inputs as estimator_inputs
from seqpipe.evaluation.forecast import forecast_history
from seqpipe.models import ProblemShape, build_model
from seqpipe.models.losses import seasonal_naive_scale
from seqpipe.models.persistence import SPEC_FILE, load_model, save_model
from seqpipe.models.revin import level_stats, window_stats
from seqpipe.training import TrainSettings

SETTINGS = TrainSettings(max_epochs=2, batch_size=16, patience=2, num_threads=1, progress=False, device="cpu")
TINY_NBEATS = {"stack_types": ["generic", "generic"], "layers": 2, "layer_width": 16, "window_scaling": "level"}


def _canonical(lengths: tuple[int, ...]) -> pd.DataFrame:
    """Series whose values name their series and position (1000 x series + position + 1), so windows can be read back."""
    rows = [pd.DataFrame({"series_id": f"s{i}", "timestamp": np.arange(n), "value": 1000.0 * i + np.arange(n) + 1})
            for i, n in enumerate(lengths)]
    return pd.concat(rows, ignore_index=True)


def _masked(shape: ProblemShape) -> ProblemShape:
    return ProblemShape(shape.lookback, shape.horizon, shape.season, shape.channels + 1, masked=True)


# -- the length rule ---------------------------------------------------------------------------------

def test_a_padded_series_needs_one_real_point_before_its_validation_window(project):
    assert shortest_splittable(12, 6) == 24 and shortest_splittable(12, 6, padded=True) == 13
    spec = SeriesSpec(horizon=6, season=12, lookback=12, freq=None)
    assert spec.min_length() == 24 and spec.min_length(padded=True) == 13
    write_config(project, prepare={"scaler": "standard", "pad_history": True})
    assert steps.validation_rules(load_config(project / "conf")).min_length == 2 * HORIZON + 1
    write_config(project, prepare={"scaler": "standard"})
    assert steps.validation_rules(load_config(project / "conf")).min_length == LOOKBACK + 2 * HORIZON

    lengths = (40, 2 * 5 + 1)
    with pytest.raises(DataValidationError, match=r"shorter than lookback \+ 2 x horizon = 18 points .*"
                                                  r"prepare\.pad_history: false \(true needs only 2 x horizon \+ 1 = 11"):
        prepare_frame(_canonical(lengths), SeriesSpec(5, 1, 8, None), "standard")
    with pytest.raises(DataValidationError, match=r"shorter than 2 x horizon \+ 1 = 11 points .*prepare\.pad_history: "
                                                  r"true.*\['s1'\]"):
        prepare_frame(_canonical((40, 10)), SeriesSpec(5, 1, 8, None), "standard", features=Features(mask=True))
    assert len(prepare_frame(_canonical(lengths), SeriesSpec(5, 1, 8, None), "standard",
                             features=Features(mask=True)).val) == 2


# -- prepared windows --------------------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 3])
def test_the_mask_is_zero_exactly_on_the_positions_before_a_series(stride):
    lookback, horizon = 8, 3
    lengths = (7, 12, 30)  # the shortest has one real point before validation, the longest needs no padding
    frame = _canonical(lengths)
    prepared = prepare_frame(frame, SeriesSpec(horizon, 1, lookback, None), "standard", stride,
                             Features(mask=True))
    assert prepared.features.names == ["value", "mask"]
    scalers = prepared.scalers
    targets_seen: dict[int, list[int]] = {i: [] for i in range(len(lengths))}
    for name in ("train", "val", "test"):
        windows = getattr(prepared, name)
        x, y = windows.x, windows.y
        assert x.shape[1:] == (lookback, 2) and set(np.unique(x[:, :, 1])) <= {0.0, 1.0}
        for k, series in enumerate(windows.series):
            # The target's first value says where the window's origin is: 1000 x series + its position + 1.
            values = scalers.inverse(y[k], np.full(horizon, series))
            first = int(round(values[0] - 1000 * series - 1))
            np.testing.assert_allclose(values, 1000 * series + np.arange(first, first + horizon) + 1, atol=1e-3)
            targets_seen[series].append((name, first))
            history = np.arange(first - lookback, first)  # positions in the series; negative ones are padding
            np.testing.assert_array_equal(x[k, :, 1], (history >= 0).astype(np.float32))
            np.testing.assert_array_equal(x[k, history < 0], 0.0)
            real = scalers.inverse(x[k, history >= 0, 0], np.full((history >= 0).sum(), series))
            np.testing.assert_allclose(real, 1000 * series + history[history >= 0] + 1, atol=1e-3)
    for series, n in enumerate(lengths):
        train_end = n - 2 * horizon
        expected = [q for q in range(1, train_end - horizon + 1) if (q - lookback) % stride == 0]
        assert [q for name, q in targets_seen[series] if name == "train"] == expected
        assert [q for name, q in targets_seen[series] if name != "train"] == [train_end, n - horizon]


def test_without_padding_the_prepared_files_are_the_one_channel_ones(tmp_path):
    """pad_history false: meta.json, scaled.npy and windows.npz as an independent construction of the unpadded rule."""
    lookback, horizon, stride = 8, 3, 2
    lengths = (14, 20, 31)
    frame = _canonical(lengths)
    prepared = prepare_frame(frame, SeriesSpec(horizon, 1, lookback, None), "standard", stride)
    meta = save_prepared(prepared, tmp_path, dataset="d")
    assert set(meta) == {"spec", "dataset", "scaler", "series", "windows"}
    assert json.loads((tmp_path / "meta.json").read_text()) == meta

    starts, series, scaled, offset = {"train": [], "val": [], "test": []}, {"train": [], "val": [], "test": []}, [], 0
    for i, n in enumerate(lengths):
        values = frame.loc[frame["series_id"] == f"s{i}", "value"].to_numpy()
        train = values[: n - 2 * horizon]
        scaled.append((values - train.mean()) / train.std())
        for p in range(0, n - 2 * horizon - lookback - horizon + 1, stride):
            starts["train"].append(offset + p)
            series["train"].append(i)
        for name, origin in (("val", n - 2 * horizon), ("test", n - horizon)):
            starts[name].append(offset + origin - lookback)
            series[name].append(i)
        offset += n
    saved = np.load(tmp_path / "scaled.npy")
    assert saved.ndim == 1 and saved.dtype == np.float32
    np.testing.assert_allclose(saved, np.concatenate(scaled), rtol=1e-5, atol=1e-5)
    with np.load(tmp_path / "windows.npz") as arrays:
        assert sorted(arrays) == sorted(f"{s}_{k}" for s in starts for k in ("starts", "series"))
        for name in starts:
            np.testing.assert_array_equal(arrays[f"{name}_starts"], starts[name])
            np.testing.assert_array_equal(arrays[f"{name}_series"], series[name])
            assert arrays[f"{name}_starts"].dtype == np.int64

    # Padding adds a mask channel and earlier windows, and keeps every unpadded window as it was.
    padded = prepare_frame(frame, SeriesSpec(horizon, 1, lookback, None), "standard", stride, Features(mask=True))
    assert save_prepared(padded, tmp_path, dataset="d")["padded"] is True
    assert load_prepared(tmp_path).features == Features(mask=True)
    whole = padded.train.x[:, :, 1].all(axis=1)
    np.testing.assert_array_equal(padded.train.x[whole, :, 0], prepared.train.x[:, :, 0])
    np.testing.assert_array_equal(padded.train.y[whole], prepared.train.y)
    for name in ("val", "test"):
        np.testing.assert_array_equal(getattr(padded, name).x[:, :, 0], getattr(prepared, name).x[:, :, 0])


def test_the_mask_round_trips_and_old_files_read_none():
    features = Features(("promo",), ("month_of_year",), "UTC", mask=True)
    assert features.channels == 5 and features.names[-1] == "mask"
    assert Features.from_dict(features.to_dict()) == features
    assert "mask" not in Features(("promo",)).to_dict()
    assert Features.from_dict({"covariates": ["promo"], "calendar_features": []}) == Features(("promo",))
    with pytest.raises(ValueError, match="share its name with the history mask"):
        Features(("mask",), mask=True)


# -- models on masked windows ------------------------------------------------------------------------

def test_masked_window_statistics_are_those_of_the_real_points():
    torch.manual_seed(0)
    lookback, real = 10, 4
    x = torch.randn(3, lookback, 2) * 5 + 3
    x[:, :, 1] = (torch.arange(lookback) >= lookback - real).float()
    weights = x[:, :, 1]
    for stats in (window_stats, level_stats):
        level, spread = stats(x, weights)
        alone = stats(x[:, lookback - real:])
        torch.testing.assert_close(level, alone[0])
        torch.testing.assert_close(spread, alone[1])
    # Every point real: the weighted statistics are the unweighted ones.
    for stats in (window_stats, level_stats):
        torch.testing.assert_close(stats(x, torch.ones(3, lookback)), stats(x))


@pytest.mark.parametrize("arch,params", [
    ("dlinear", {"moving_average": 3}),
    ("lstm", {"hidden_size": 8, "num_layers": 1, "dropout": 0.0}),
    ("nbeats", TINY_NBEATS),
    ("nbeats", {**TINY_NBEATS, "window_scaling": "revin"}),
    ("cvae", {"hidden_size": 8, "latent_size": 2}),
])
def test_what_padding_held_does_not_change_a_masked_forecast(arch, params):
    shape = _masked(ProblemShape(lookback=12, horizon=4, season=4))
    torch.manual_seed(1)
    model = build_model(arch, shape, params).eval()
    x = torch.randn(5, 12, 2)
    real = torch.tensor([12, 7, 3, 1, 5])
    x[:, :, 1] = (torch.arange(12)[None] >= 12 - real[:, None]).float()
    x[:, :, 0] = torch.where(x[:, :, 1] > 0, x[:, :, 0], torch.zeros(()))
    junk = x.clone()
    junk[:, :, 0] = torch.where(x[:, :, 1] > 0, x[:, :, 0], torch.full((), 50.0))
    with torch.no_grad():
        torch.testing.assert_close(model(junk), model(x))
        assert torch.isfinite(model(x)).all()


def test_seasonal_naive_takes_the_last_real_season_or_the_last_real_value():
    season, lookback, horizon = 4, 8, 6
    x = torch.arange(1.0, lookback + 1).repeat(3, 1)[:, :, None]
    unmasked = build_model("seasonal_naive", ProblemShape(lookback, horizon, season), {})
    expected = torch.tensor([5.0, 6, 7, 8, 5, 6])
    torch.testing.assert_close(unmasked(x), expected.repeat(3, 1))
    mask = (torch.arange(lookback)[None] >= lookback - torch.tensor([[8], [4], [3]])).float()
    masked = build_model("seasonal_naive", _masked(ProblemShape(lookback, horizon, season)), {})
    forecast = masked(torch.cat([x * mask[:, :, None], mask[:, :, None]], dim=2))
    torch.testing.assert_close(forecast[:2], expected.repeat(2, 1))  # a whole season of real points
    torch.testing.assert_close(forecast[2], torch.full((horizon,), 8.0))  # 3 real points: the last one


def test_the_mase_scale_of_a_padded_window_reads_its_real_points():
    history = torch.tensor([[0.0, 0.0, 0.0, 1.0, 3.0, 2.0, 6.0]])
    weights = (history != 0).float()
    # Lag 2 over real points 1, 3, 2, 6: |2 - 1|, |6 - 3|; without the mask the padding would count.
    torch.testing.assert_close(seasonal_naive_scale(history, 2, weights), torch.tensor([[2.0]]))
    torch.testing.assert_close(seasonal_naive_scale(history[:, 3:], 2), torch.tensor([[2.0]]))
    # Fewer real points than a season: lag 1, as an unpadded window that short would.
    torch.testing.assert_close(seasonal_naive_scale(history, 5, weights), seasonal_naive_scale(history[:, 3:], 5))


def test_a_model_json_without_masked_still_loads(tmp_path):
    model = build_model("dlinear", ProblemShape(8, 3, 1), {"moving_average": 3})
    save_model(model, tmp_path)
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    assert spec["shape"]["masked"] is False
    del spec["shape"]["masked"]
    (tmp_path / SPEC_FILE).write_text(json.dumps(spec))
    assert load_model(tmp_path).shape == ProblemShape(8, 3, 1)
    with pytest.raises(ValueError, match="masked problem needs the target and the mask channel"):
        ProblemShape(8, 3, 1, channels=1, masked=True)


# -- fit and forecast ------------------------------------------------------------------------------------

def test_a_lookback_longer_than_every_history_trains_and_forecasts():
    horizon = 2
    lookback = 3 * horizon
    frame = _canonical((2 * horizon + 3,) * 6)  # 3 points before validation, a lookback of 6
    prepared = prepare_frame(frame, SeriesSpec(horizon, 1, lookback, None), "standard", features=Features(mask=True))
    assert len(prepared.train) == 6 and (prepared.val.x[:, :, 1].sum(axis=1) == 3).all()
    for arch, params in (("dlinear", {"moving_average": 3}), ("nbeats", TINY_NBEATS)):
        torch.manual_seed(0)
        estimator = build_estimator(arch, ProblemShape(lookback, horizon, 1, 2, masked=True), params)
        estimator.fit(fit_data(prepared), SETTINGS)
        forecast = estimator.forecast(estimator_inputs.test_inputs(prepared))
        assert forecast.shape == (6, horizon) and np.isfinite(forecast).all()


def test_forecast_history_pads_for_a_masked_model_and_refuses_otherwise():
    lookback, horizon = 8, 3
    frame = _canonical((7, 30))
    spec = SeriesSpec(horizon, 1, lookback, None)
    prepared = prepare_frame(frame, spec, "standard", features=Features(mask=True))
    torch.manual_seed(0)
    estimator = build_estimator("dlinear", ProblemShape(lookback, horizon, 1, 2, masked=True), {"moving_average": 3})
    estimator.fit(fit_data(prepared), SETTINGS)
    history = prepared.frame.loc[prepared.frame["split"] != "test", ["series_id", "timestamp", "value"]]
    served = forecast_history(estimator, prepared.scalers, history, horizon, None, features=Features(mask=True))
    # The padded window served is the one prepare cut: the same forecasts as evaluate's.
    np.testing.assert_allclose(served["mean"].to_numpy().reshape(2, horizon),
                               estimator.forecast(estimator_inputs.test_inputs(prepared)), rtol=1e-5)
    one_point = history.groupby("series_id").tail(1)
    assert np.isfinite(forecast_history(estimator, prepared.scalers, one_point, horizon, None,
                                        features=Features(mask=True))["mean"]).all()
    with pytest.raises(PredictionError, match="history has no rows"):
        forecast_history(estimator, prepared.scalers, history.iloc[:0], horizon, None, features=Features(mask=True))

    unpadded = prepare_frame(_canonical((30, 30)), spec, "standard")
    plain = build_estimator("dlinear", ProblemShape(lookback, horizon, 1), {"moving_average": 3})
    short = unpadded.frame.groupby("series_id").tail(lookback - 1)[["series_id", "timestamp", "value"]]
    with pytest.raises(PredictionError, match=r"2 series have fewer than 8 points of history: \['s0', 's1'\]"):
        forecast_history(plain, unpadded.scalers, short, horizon, None)
    with pytest.raises(PredictionError, match="with a history mask but was registered with"):
        forecast_history(estimator, prepared.scalers, history, horizon, None, features=Features(("promo",)))


# -- the pipeline ----------------------------------------------------------------------------------

def test_short_series_are_prepared_trained_scored_and_served(project):
    import mlflow

    from seqpipe.tracking.store import connect, mlflow_uris

    # s02 keeps 2 x horizon + 3 points, s05 the minimum, 2 x horizon + 1: both shorter than lookback + 2 x horizon.
    frame = make_series()
    position = frame.groupby("store").cumcount()
    frame = frame[~(((frame["store"] == "s02") & (position >= 2 * HORIZON + 3))
                    | ((frame["store"] == "s05") & (position >= 2 * HORIZON + 1)))]
    frame.to_csv(project / "input" / "sales.csv", index=False)
    conf = write_config(project, prepare={"scaler": "standard", "pad_history": True},
                        models=["dlinear", "nbeats"])  # the champion served below is a masked network
    (conf / "models" / "dlinear.yaml").write_text(yaml.safe_dump({"arch": "dlinear", "params": {"moving_average": 5}}))
    (conf / "models" / "nbeats.yaml").write_text(yaml.safe_dump({"arch": "nbeats", "params": TINY_NBEATS}))
    cfg = load_config(conf)
    steps.ingest(cfg)
    assert steps.validate(cfg).success
    meta = steps.prepare(cfg)
    assert meta["padded"] is True and meta["features"]["mask"] is True and meta["series"] == 8
    train_all(cfg)
    for name in ("dlinear", "nbeats"):
        spec = json.loads((cfg.data_dir / "models" / name / SPEC_FILE).read_text())
        assert spec["shape"]["masked"] is True and spec["shape"]["channels"] == 2
    board = steps.evaluate(cfg)
    assert set(board["model"]) == {"dlinear", "nbeats"}
    per_series = pd.read_parquet(cfg.data_dir / "evaluation" / "per_series.parquet")
    assert (per_series.groupby("model")["series_id"].nunique() == 8).all()
    assert np.isfinite(per_series[["mase", "val_mase"]].to_numpy()).all()

    version = steps.register(cfg)
    client, _ = connect(cfg)
    champion = client.get_model_version(cfg.tracking.registered_model, version).tags["seqpipe.model"]
    with mlflow_uris(client):
        model = mlflow.pyfunc.load_model(f"models:/{cfg.tracking.registered_model}/{version}")
    prepared = load_prepared(cfg.data_dir / "prepared")
    history = prepared.frame.loc[prepared.frame["split"] != "test", ["series_id", "timestamp", "value"]]
    served = model.predict(history.reset_index(drop=True))
    forecasts = pd.read_parquet(cfg.data_dir / "evaluation" / "forecasts.parquet")
    expected = forecasts[forecasts["model"] == champion]
    np.testing.assert_allclose(served["mean"].to_numpy(), expected["forecast"].to_numpy(), rtol=1e-4)
    # A history shorter than the lookback, and shorter than the model ever saw: padded too.
    few = history[history["series_id"] == "s02"].tail(LOOKBACK // 3)
    assert np.isfinite(model.predict(few.reset_index(drop=True))["mean"]).all()
