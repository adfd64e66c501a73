"""The rolling-origin backtest: fold origins, no look-ahead, summary from the folds, off by default, CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import HORIZON, LOOKBACK, make_series, run_cli, train_all, tree_digest, write_config
from seqpipe import steps
from seqpipe.config import BacktestConfig, load_config
from seqpipe.data.prepare import load_prepared, prepare_frame
from seqpipe.errors import ConfigError
from seqpipe.evaluation.backtest import fold_frame, plan_folds
from seqpipe.evaluation.metrics import METRICS
from seqpipe.tracking.store import connect

FOLDS = 3
# Splitting needs lookback + 2 x horizon = 24 points: s07 keeps them after folds 1 and 2 hold
# back 0 and 6 points, not after fold 3's 12.
SHORT, SHORT_LENGTH = "s07", 30
ORIGINS = ["2019-07-01", "2019-01-01", "2018-07-01"]  # 60 months from 2015-01: fold 1 forecasts from point 54


def _sales(perturb_from_end: int = 0) -> pd.DataFrame:
    """The fixture series with s07 starting late (so it ends with the others); optionally the last points x 10."""
    sales = make_series()
    sales = sales.drop(index=sales.index[sales["store"] == SHORT][:-SHORT_LENGTH]).reset_index(drop=True)
    if perturb_from_end:
        tail = sales.groupby("store").cumcount(ascending=False) < perturb_from_end
        sales.loc[tail, "sales"] *= 10
    return sales


def _project(root, sales: pd.DataFrame, **backtest):
    (root / "input").mkdir()
    sales.to_csv(root / "input" / "sales.csv", index=False)
    cfg = load_config(write_config(root, evaluation={"metric": "mase", "backtest": {"folds": FOLDS, **backtest}}))
    for step in (steps.ingest, steps.validate, steps.prepare):
        step(cfg)
    return cfg


@pytest.fixture(scope="module")
def backtested(tmp_path_factory):
    """Trained and evaluated as usual, then backtested; the MLflow runs counted before the backtest."""
    cfg = _project(tmp_path_factory.mktemp("backtest"), _sales())
    train_all(cfg)
    board = steps.evaluate(cfg)
    client, experiment_id = connect(cfg)
    runs_before = len(client.search_runs([experiment_id]))
    summary = steps.backtest(cfg)
    return cfg, board, summary, runs_before


def _folds(cfg) -> pd.DataFrame:
    return pd.read_csv(cfg.data_dir / "backtest" / "folds.csv")


def test_folds_move_the_origin_back_by_one_horizon_and_leave_out_short_series(backtested):
    cfg, board, _, _ = backtested
    folds = _folds(cfg)
    for model in ("seasonal_naive", "lstm"):
        rows = folds[folds["model"] == model].sort_values("fold")
        assert rows["fold"].tolist() == [1, 2, 3]
        assert rows["cut"].tolist() == [0, HORIZON, 2 * HORIZON]
        assert rows["origin"].tolist() == ORIGINS
        assert rows["series"].tolist() == [8, 8, 7] and rows["skipped"].tolist() == [0, 0, 1]

    # Fold 1 is the regular test window, fitted by the same code: evaluate's numbers again.
    first = folds[folds["fold"] == 1].set_index("model")[list(METRICS)]
    np.testing.assert_allclose(first.loc[board["model"]].to_numpy(), board[list(METRICS)].to_numpy(), rtol=1e-12)

    # Each fold forecasts the horizon from its origin, against the source's own values there.
    forecasts = pd.read_parquet(cfg.data_dir / "backtest" / "forecasts.parquet")
    source = _sales().assign(timestamp=lambda f: pd.to_datetime(f["month"])).rename(columns={"store": "series_id"})
    joined = forecasts.merge(source[["series_id", "timestamp", "sales"]], on=["series_id", "timestamp"], how="left")
    np.testing.assert_allclose(joined["actual"], joined["sales"])
    for fold, origin in enumerate(ORIGINS, start=1):
        part = joined[(joined["fold"] == fold) & (joined["model"] == "lstm")]
        expected = pd.date_range(origin, periods=HORIZON, freq="MS")
        assert part.groupby("series_id")["timestamp"].apply(list).map(lambda t: list(t) == list(expected)).all()
        assert (SHORT in set(part["series_id"])) == (fold < 3)
        assert np.isfinite(part["forecast"]).all()


def test_summary_is_the_mean_and_spread_of_the_folds_and_reaches_the_pipeline_run(backtested):
    cfg, _, summary, runs_before = backtested
    folds, written = _folds(cfg), pd.read_csv(cfg.data_dir / "backtest" / "summary.csv").set_index("model")
    metrics = json.loads((cfg.data_dir / "backtest" / "metrics.json").read_text())
    pd.testing.assert_frame_equal(summary.set_index("model"), written, check_dtype=False)
    assert set(written.index) == {"seasonal_naive", "lstm"} and (written["folds"] == FOLDS).all()
    for model, rows in folds.groupby("model"):
        for metric in METRICS:
            values = rows[metric].to_numpy()
            assert written.loc[model, f"{metric}_mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert written.loc[model, f"{metric}_std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
            assert metrics[model][f"{metric}_std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert written.loc[model, "mase_std"] > 0  # three different origins never score the same
    assert summary["model"].tolist() == written.sort_values("mase_mean").index.tolist()
    assert "| lstm " in (cfg.data_dir / "backtest" / "summary.md").read_text()

    client, experiment_id = connect(cfg)
    parent = json.loads((cfg.data_dir / "runs" / "lstm.json").read_text())["parent_run_id"]
    logged = client.get_run(parent).data
    assert logged.metrics["backtest_lstm_mase_mean"] == pytest.approx(written.loc["lstm", "mase_mean"])
    assert logged.metrics["backtest_seasonal_naive_mase_std"] == pytest.approx(written.loc["seasonal_naive", "mase_std"])
    assert logged.tags["seqpipe.backtest.folds"] == str(FOLDS) and logged.tags["seqpipe.backtest.step"] == str(HORIZON)
    artifacts = {a.path for a in client.list_artifacts(parent, "backtest")}
    assert artifacts == {f"backtest/{name}" for name in ("folds.csv", "summary.csv", "summary.md", "metrics.json")}
    # The fold models are fitted and dropped: no run of their own, nothing registered.
    assert len(client.search_runs([experiment_id])) == runs_before
    assert client.search_model_versions("name = 'tiny-forecaster'") == []


def test_a_fold_sees_nothing_at_or_after_its_test_window(backtested):
    cfg = backtested[0]
    spec = load_prepared(cfg.data_dir / "prepared").spec
    frame = pd.read_parquet(cfg.data_dir / "validated" / "series.parquet")
    lengths = frame.groupby("series_id").size()
    step = 4
    plans = plan_folds(lengths, spec, folds=4, step=step)
    assert [p.cut for p in plans] == [0, 4, 8, 12] and [p.skipped for p in plans] == [(), (), (SHORT,), (SHORT,)]  # 30 - 8 < 24
    source = _sales().rename(columns={"store": "series_id"})
    for plan in plans:
        fold = prepare_frame(fold_frame(frame, plan), spec, "standard")
        ids = fold.scalers.series_ids
        assert list(ids) == list(plan.series)
        for code, series_id in enumerate(ids):
            values = source.loc[source["series_id"] == series_id, "sales"].to_numpy()
            origin = len(values) - plan.cut - HORIZON  # position of the fold's first forecast point
            rows = fold.frame[fold.frame["series_id"] == series_id]
            # Its rows end with its test window, which starts at the origin...
            np.testing.assert_allclose(rows["value"], values[:origin + HORIZON])
            np.testing.assert_allclose(rows.loc[rows["split"] == "test", "value"], values[origin:origin + HORIZON])
            # ...its scaler is fitted on the training part alone, before validation and test...
            training = values[:origin - HORIZON]
            assert fold.scalers.loc[code] == pytest.approx(training.mean(), rel=1e-12)
            assert fold.scalers.scale[code] == pytest.approx(training.std(), rel=1e-12)
            # ...and every training target ends there too.
            offset = rows.index[0]
            windows = fold.train.series == code
            last_target = fold.train.starts[windows] - offset + LOOKBACK + HORIZON - 1
            if len(rows) >= LOOKBACK + 3 * HORIZON:
                assert last_target.max() == origin - HORIZON - 1
            else:  # too short for a training window of its own: scored, and trained on the others
                assert len(last_target) == 0


def test_values_after_a_fold_origin_change_none_of_its_forecasts(backtested, tmp_path):
    """Black-box: scale every point from fold 3's origin on by 10; fold 3 forecasts exactly as before."""
    cfg, *_ = backtested
    from_origin = HORIZON + (FOLDS - 1) * HORIZON
    perturbed = _project(tmp_path, _sales(perturb_from_end=from_origin), models=["lstm"])
    steps.backtest(perturbed)
    before, after = (pd.read_parquet(c.data_dir / "backtest" / "forecasts.parquet").query("model == 'lstm'")
                     for c in (cfg, perturbed))
    for fold in (1, 2, 3):
        a = before[before["fold"] == fold].reset_index(drop=True)
        b = after[after["fold"] == fold].reset_index(drop=True)
        assert a[["series_id", "timestamp"]].equals(b[["series_id", "timestamp"]])
        if fold == 3:
            np.testing.assert_array_equal(a["forecast"], b["forecast"])
            np.testing.assert_allclose(b["actual"], a["actual"] * 10)
        else:  # the change does reach the later folds' histories
            assert not np.allclose(a["forecast"], b["forecast"])
    assert set(_folds(perturbed)["model"]) == {"lstm"}


def test_off_by_default_writes_nothing_unless_asked_to_for_dvc(cfg):
    assert cfg.evaluation.backtest == BacktestConfig(folds=0, step=None, models=None)
    assert steps.backtest(cfg).empty
    assert not (cfg.data_dir / "backtest").exists() and not (cfg.root / "mlflow").exists()

    assert steps.backtest(cfg, write_when_off=True).empty
    written = cfg.data_dir / "backtest"
    assert json.loads((written / "metrics.json").read_text()) == {}
    assert pd.read_csv(written / "folds.csv").empty and pd.read_csv(written / "summary.csv").empty
    assert "off" in (written / "summary.md").read_text() and not (cfg.root / "mlflow").exists()


@pytest.mark.parametrize("backtest, message", [
    ({"folds": -1}, r"evaluation\.backtest\.folds: Input should be greater than or equal to 0"),
    ({"folds": "three"}, r"evaluation\.backtest\.folds: Input should be a valid integer"),
    ({"folds": 2, "step": 0}, r"evaluation\.backtest\.step: Input should be greater than 0"),
    ({"folds": 2, "models": ["gru"]}, r"evaluation\.backtest\.models names models that 'models' does not list: \['gru'\]"),
    ({"folds": 2, "models": []}, r"evaluation\.backtest\.models: List should have at least 1 item"),
    ({"fold": 2}, r"evaluation\.backtest\.fold: Extra inputs are not permitted"),
])
def test_a_bad_backtest_setting_is_named(project, backtest, message):
    path = project / "conf" / "pipeline.yaml"
    pipeline = yaml.safe_load(path.read_text())
    pipeline["evaluation"]["backtest"] = backtest
    path.write_text(yaml.safe_dump(pipeline))
    with pytest.raises(ConfigError, match=message):
        load_config(project / "conf")


def test_more_folds_than_the_series_allow_fail_before_fitting(backtested):
    cfg = backtested[0]
    too_many = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"backtest": BacktestConfig(folds=7)})})
    before = tree_digest(cfg.data_dir / "backtest")
    # Fold 7 holds back 36 of 60 points: 24 remain, enough to split but not for one training window.
    with pytest.raises(ConfigError, match=r"fold 7 of 7 holds back 36 points and leaves no series long enough for a "
                                          r"training window \(30 points\): lower evaluation.backtest.folds or step"):
        steps.backtest(too_many)
    assert tree_digest(cfg.data_dir / "backtest") == before


def test_cli_backtest_on_data_with_a_gap(project):
    """A value missing at the end of fold 2's test window: linear fill closes it in fold 1 from the
    next point, but fold 2 may not read that point, so the series sits fold 2 out."""
    sales = make_series()
    gap = sales.index[sales["store"] == "s03"][-HORIZON - 1]
    sales.loc[gap, "sales"] = np.nan
    sales.to_csv(project / "input" / "sales.csv", index=False)
    cfg = load_config(write_config(project, validation={"allowed_missing_ratio": 0.05},
                                   prepare={"scaler": "standard", "fill": "linear"},
                                   evaluation={"metric": "mase", "backtest": {"folds": 2, "models": ["seasonal_naive"]}}))
    for step in (steps.ingest, steps.validate, steps.prepare):
        step(cfg)
    result = run_cli("backtest", "--conf", str(project / "conf"), cwd=project)
    assert result.returncode == 0, result.stderr
    assert "Rolling-origin backtest: 2 folds, origin 6 points earlier per fold" in result.stdout
    assert "fold 2: 1 series end in missing values" in result.stdout
    for name in ("folds.csv", "summary.csv", "summary.md", "metrics.json", "forecasts.parquet"):
        assert (project / "data" / "backtest" / name).is_file()
    folds = pd.read_csv(project / "data" / "backtest" / "folds.csv")
    assert folds["series"].tolist() == [8, 7] and folds["skipped"].tolist() == [0, 1]
    forecasts = pd.read_parquet(project / "data" / "backtest" / "forecasts.parquet")
    assert set(forecasts.loc[forecasts["fold"] == 2, "series_id"]) == {f"s{i:02d}" for i in range(8)} - {"s03"}
    assert list(json.loads((project / "data" / "backtest" / "metrics.json").read_text())) == ["seasonal_naive"]
