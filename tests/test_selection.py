"""Choose before the test window, report on it: the test window's values cannot change which model is registered.

The champion is chosen on the validation window (the default) or on backtest folds that
end before the test window (``evaluation.selection.method: backtest``).
"""

import numpy as np
import pandas as pd
import pytest
import yaml

from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.data.prepare import load_prepared
from seqpipe.errors import ConfigError
from seqpipe.tracking.registry import CHALLENGER, alias_version
from seqpipe.tracking.store import connect
from tests.conftest import HORIZON, run_cli, train_all

SELECTION_FOLDS = 3


def _pipeline_until_register(cfg) -> tuple[pd.DataFrame, str]:
    """Every step up to register, as the flow orders them; the board and the registered model's name."""
    for step in (steps.ingest, steps.validate, steps.prepare, steps.select, train_all):
        step(cfg)
    board = steps.evaluate(cfg)
    version = steps.register(cfg)
    client, _ = connect(cfg)
    assert alias_version(client, cfg.tracking.registered_model, CHALLENGER) == version
    return board, client.get_model_version(cfg.tracking.registered_model, version).tags["seqpipe.model"]


def _flatten_window(path, points_after: int = 0) -> None:
    """Each series' ``HORIZON`` points before its last ``points_after`` take the value of the point before them.

    ``points_after`` 0 flattens the test window, ``HORIZON`` the validation window: there
    the naive forecast is exact and the seasonal one misses by the season's swing.
    """
    sales = pd.read_csv(path)
    end = len(sales) if points_after == 0 else -points_after
    for _, rows in sales.groupby("store").groups.items():
        rows = np.asarray(rows)
        before, window = rows[:end][-HORIZON - 1], rows[:end][-HORIZON:]
        sales.loc[window, "sales"] = sales.loc[before, "sales"]
    sales.to_csv(path, index=False)


def _naive_against_seasonal(project, **evaluation):
    (project / "conf" / "models" / "naive.yaml").write_text("arch: naive\nparams: {}\n")
    conf = project / "conf"
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = ["naive", "seasonal_naive"]
    pipeline.setdefault("evaluation", {}).update(evaluation)
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    return load_config(conf)


def test_the_champion_is_chosen_on_validation_and_the_test_window_only_reports(project):
    cfg = _naive_against_seasonal(project)

    seasonal, registered = _pipeline_until_register(cfg)
    assert registered == "seasonal_naive"
    assert list(seasonal["model"]) == ["seasonal_naive", "naive"]
    assert {"val_mase", "mase"} <= set(seasonal.columns)

    # Only the test window changes, in the source file, and then the pipeline runs again from ingest.
    _flatten_window(project / "input" / "sales.csv")
    flat, registered = _pipeline_until_register(cfg)
    by_model = flat.set_index("model")
    # The test split now prefers naive by far: ranking on it would register naive.
    assert by_model.loc["naive", "mase"] < 0.01 < by_model.loc["seasonal_naive", "mase"]
    assert registered == "seasonal_naive"
    assert flat.iloc[0]["model"] == "seasonal_naive"
    validation = [c for c in flat.columns if c.startswith("val_")]
    pd.testing.assert_frame_equal(seasonal.set_index("model")[validation], by_model.loc[seasonal["model"], validation])


def test_backtest_folds_before_the_test_window_choose_and_the_test_window_still_only_reports(project):
    """Validation alone prefers naive (its window is flat); three folds before the test window prefer seasonal naive."""
    _flatten_window(project / "input" / "sales.csv", points_after=HORIZON)
    cfg = _naive_against_seasonal(project, selection={"method": "backtest", "folds": SELECTION_FOLDS})

    board, registered = _pipeline_until_register(cfg)
    by_model = board.set_index("model")
    assert by_model.loc["naive", "val_mase"] < 0.01 < by_model.loc["seasonal_naive", "val_mase"]
    assert by_model.loc["seasonal_naive", "sel_mase"] < by_model.loc["naive", "sel_mase"]
    assert registered == "seasonal_naive" and board.iloc[0]["model"] == "seasonal_naive"

    selection = cfg.data_dir / "selection"
    folds = pd.read_csv(selection / "folds.csv")
    assert sorted(folds["fold"].unique()) == list(range(1, SELECTION_FOLDS + 1))
    assert sorted(folds["cut"].unique()) == [HORIZON * k for k in range(1, SELECTION_FOLDS + 1)]
    means = folds.groupby("model")["mase"].mean()
    assert by_model["sel_mase"].to_dict() == pytest.approx(means.to_dict())
    # Fold 1 forecasts exactly the pipeline's validation window; no fold forecasts a test point.
    prepared = load_prepared(cfg.data_dir / "prepared").frame
    forecasts = pd.read_parquet(selection / "forecasts.parquet")
    validation_window = prepared.loc[prepared["split"] == "val", ["series_id", "timestamp"]]
    fold_one = forecasts.loc[(forecasts["fold"] == 1) & (forecasts["model"] == "naive"), ["series_id", "timestamp"]]
    pd.testing.assert_frame_equal(fold_one.reset_index(drop=True), validation_window.reset_index(drop=True),
                                  check_dtype=False, check_categorical=False)
    assert forecasts["timestamp"].max() < prepared.loc[prepared["split"] == "test", "timestamp"].min()

    client, _ = connect(cfg)
    version = alias_version(client, cfg.tracking.registered_model, CHALLENGER)
    tags = client.get_model_version(cfg.tracking.registered_model, version).tags
    assert tags["seqpipe.selected_by"] == "sel_mase"
    assert float(tags["seqpipe.sel_mase"]) == pytest.approx(by_model.loc["seasonal_naive", "sel_mase"], abs=1e-6)

    # Only the test window changes; the folds' scores, and so the choice, stay.
    _flatten_window(project / "input" / "sales.csv")
    flat, registered = _pipeline_until_register(cfg)
    assert flat.set_index("model").loc["naive", "mase"] < 0.01  # the test window would now pick naive
    assert registered == "seasonal_naive"
    pd.testing.assert_frame_equal(pd.read_csv(selection / "folds.csv"), folds)


def test_backtest_selection_refuses_missing_folds_and_folds_the_data_cannot_hold(project):
    cfg = _naive_against_seasonal(project, selection={"method": "backtest", "folds": SELECTION_FOLDS})
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    with pytest.raises(ConfigError, match=r"selection.*run `seqpipe select` before `seqpipe evaluate`"):
        steps.evaluate(cfg)
    assert not (cfg.data_dir / "evaluation").exists()

    too_many = _naive_against_seasonal(project, selection={"method": "backtest", "folds": 10})
    result = run_cli("select", "--conf", str(project / "conf"), cwd=project)
    assert result.returncode != 0
    assert "evaluation.selection.folds" in result.stderr and "pipeline.yaml" in result.stderr
    assert not (too_many.data_dir / "selection").exists()

    # A selection over a different set of folds is stale: evaluate refuses it rather than rank by it.
    steps.select(_naive_against_seasonal(project, selection={"method": "backtest", "folds": SELECTION_FOLDS}))
    fewer = _naive_against_seasonal(project, selection={"method": "backtest", "folds": 2})
    with pytest.raises(ConfigError, match=r"fitted with other evaluation.selection than now; run `seqpipe select` again"):
        steps.evaluate(fewer)
    # So are folds fitted before the data changed, or before a model's settings did.
    cfg = _naive_against_seasonal(project, selection={"method": "backtest", "folds": SELECTION_FOLDS})
    _flatten_window(project / "input" / "sales.csv")
    for step in (steps.ingest, steps.validate):
        step(cfg)
    with pytest.raises(ConfigError, match=r"fitted with other validated data than now"):
        steps.evaluate(cfg)
    steps.select(cfg)
    (project / "conf" / "models" / "naive.yaml").write_text("arch: naive\nparams: {}\ntraining: {max_epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"fitted with other models \(naive\) than now"):
        steps.evaluate(load_config(project / "conf"))


@pytest.mark.parametrize("selection, message", [
    ({"folds": 0}, "greater than or equal to 1"),
    ({"method": "test"}, "'validation' or 'backtest'"),
    ({"fold": 2}, "Extra inputs are not permitted"),
])
def test_selection_settings_are_checked_at_load(project, selection, message):
    with pytest.raises(ConfigError, match=message):
        _naive_against_seasonal(project, selection=selection)


@pytest.mark.slow
def test_the_flow_chooses_on_the_selection_folds_and_logs_them_to_its_run(project):
    """`seqpipe run`, a real Prefect flow run: select runs before training, and its scores reach the pipeline run."""
    _flatten_window(project / "input" / "sales.csv", points_after=HORIZON)
    cfg = _naive_against_seasonal(project, selection={"method": "backtest", "folds": SELECTION_FOLDS})
    result = run_cli("run", "--conf", str(project / "conf"), cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]

    client, experiment_id = connect(cfg)
    version = alias_version(client, cfg.tracking.registered_model, CHALLENGER)
    tags = client.get_model_version(cfg.tracking.registered_model, version).tags
    assert tags["seqpipe.model"] == "seasonal_naive" and tags["seqpipe.selected_by"] == "sel_mase"
    pipeline_run = client.get_run(tags["seqpipe.pipeline_run_id"])
    summary = pd.read_csv(cfg.data_dir / "selection" / "summary.csv").set_index("model")
    assert pipeline_run.data.tags["seqpipe.selection.folds"] == str(SELECTION_FOLDS)
    assert pipeline_run.data.metrics["selection_naive_mase_mean"] == pytest.approx(summary.loc["naive", "mase_mean"])
    artifacts = {a.path for a in client.list_artifacts(pipeline_run.info.run_id, "selection")}
    assert "selection/summary.csv" in artifacts
