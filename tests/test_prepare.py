import numpy as np
import pytest
import pandas as pd

from conftest import HORIZON, LENGTH, LOOKBACK, SERIES
from seqpipe import steps
from seqpipe.data.catalog import SeriesSpec
from seqpipe.data.prepare import load_prepared, prepare_frame
from seqpipe.errors import DataValidationError


def _canonical(lengths=(40, 50)):
    rows = [pd.DataFrame({"series_id": f"s{i}", "timestamp": np.arange(n), "value": np.arange(n, dtype=float) * (i + 1)})
            for i, n in enumerate(lengths)]
    return pd.concat(rows, ignore_index=True)


def test_split_is_by_time_and_windows_hold_the_right_points():
    spec = SeriesSpec(horizon=5, season=1, lookback=8, freq=None)
    prepared = prepare_frame(_canonical(), spec, "standard")
    splits = prepared.frame.groupby("series_id")["split"].apply(list)
    assert splits["s0"][-5:] == ["test"] * 5 and splits["s0"][-10:-5] == ["val"] * 5
    assert splits["s0"][:30] == ["train"] * 30
    # Training targets stay inside the training part: 30 - 8 - 5 + 1 windows for s0, 40 - 13 + 1 for s1.
    assert len(prepared.train.y) == 18 + 28
    scalers = prepared.scalers
    restored = prepared.test.y * scalers.scale[prepared.test.series, None] + scalers.loc[prepared.test.series, None]
    np.testing.assert_allclose(restored[0], np.arange(35, 40), rtol=1e-6)
    np.testing.assert_allclose(restored[1], np.arange(45, 50) * 2, rtol=1e-6)


def test_scalers_see_only_training_data():
    spec = SeriesSpec(horizon=5, season=1, lookback=8, freq=None)
    frame = _canonical()
    changed = frame.copy()
    changed.loc[changed.groupby("series_id").cumcount(ascending=False) < 10, "value"] = 1e6
    a, b = prepare_frame(frame, spec, "standard"), prepare_frame(changed, spec, "standard")
    np.testing.assert_array_equal(a.scalers.loc, b.scalers.loc)
    np.testing.assert_array_equal(a.scalers.scale, b.scalers.scale)
    np.testing.assert_array_equal(a.train.x, b.train.x)


def test_prepare_step_infers_calendar_frequency_and_writes_files(cfg):
    steps.ingest(cfg)
    steps.validate(cfg)
    meta = steps.prepare(cfg)
    assert meta["spec"]["freq"] == "MS"
    prepared = load_prepared(cfg.data_dir / "prepared")
    assert prepared.val.x.shape == (SERIES, LOOKBACK, 1) and prepared.test.y.shape == (SERIES, HORIZON)
    assert len(prepared.train.y) == SERIES * (LENGTH - 2 * HORIZON - LOOKBACK - HORIZON + 1)


@pytest.mark.parametrize("method", ["standard", "minmax", "robust", "meanabs"])
def test_every_scaler_round_trips_and_sees_only_training_rows(method):
    from seqpipe.data.scaling import fit_scalers

    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(50, 10, 30), rng.normal(-3, 0.1, 20), np.full(10, 7.0)])
    codes = np.repeat([0, 1, 2], [30, 20, 10])
    train = np.ones(60, dtype=bool)
    train[25:30] = False
    scalers = fit_scalers(values, codes, np.array(["a", "b", "c"], dtype=object), train, method)
    scaled = scalers.transform(values, codes)
    np.testing.assert_allclose(scalers.inverse(scaled, codes), values, rtol=1e-12, atol=1e-12)
    assert np.isfinite(scaled).all()  # the flat series "c" must not divide by zero
    changed = values.copy()
    changed[25:30] = 1e9
    again = fit_scalers(changed, codes, np.array(["a", "b", "c"], dtype=object), train, method)
    np.testing.assert_array_equal(again.loc, scalers.loc)
    np.testing.assert_array_equal(again.scale, scalers.scale)


def test_series_too_short_for_its_windows_are_refused_by_name():
    spec = SeriesSpec(horizon=5, season=1, lookback=8, freq=None)
    # 17 points: one short of lookback + 2 x horizon, so the validation window would start in s0.
    with pytest.raises(DataValidationError, match=r"1 series are shorter than lookback \+ 2 x horizon = 18 points "
                                                  r"\(lookback 8, horizon 5, prepare\.pad_history: false \(true needs "
                                                  r"only 2 x horizon \+ 1 = 11\)\).*\['s1'\]"):
        prepare_frame(_canonical(lengths=(40, 17)), spec, "standard")
    assert len(prepare_frame(_canonical(lengths=(40, 18)), spec, "standard").val) == 2


def test_a_low_validation_min_length_does_not_let_short_series_into_prepare(project):
    from conftest import make_series, write_config
    from seqpipe.config import load_config

    frame = make_series()
    frame = frame[~((frame["store"] == "s02") & (frame.groupby("store").cumcount() >= LOOKBACK + 2 * HORIZON - 1))]
    frame.to_csv(project / "input" / "sales.csv", index=False)
    write_config(project, validation={"min_length": 10})
    cfg = load_config(project / "conf")
    steps.ingest(cfg)
    steps.validate(cfg)
    with pytest.raises(DataValidationError, match=r"series are shorter than lookback \+ 2 x horizon.*\['s02'\]"):
        steps.prepare(cfg)
    assert not (cfg.data_dir / "prepared").exists()
