"""Series that cannot be negative get forecasts that are not: clipped where they are made, and reported."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.data.domain import lower_bound_of
from seqpipe.tracking.store import connect, mlflow_uris
from tests.conftest import HORIZON, train_all


def test_the_bound_comes_from_the_training_values_or_from_the_config():
    assert lower_bound_of(np.array([0.0, 3.0, np.nan]), "auto") == 0.0
    assert lower_bound_of(np.array([-0.1, 3.0]), "auto") is None
    assert lower_bound_of(np.array([-5.0]), "always") == 0.0
    assert lower_bound_of(np.array([1.0]), "never") is None


def _declining_project(project, non_negative: str):
    """Series falling straight to near zero: a linear-trend model's forecast crosses below it."""
    t = np.arange(60)
    rows = [pd.DataFrame({"store": f"s{i}", "month": pd.date_range("2015-01-01", periods=60, freq="MS").strftime("%Y-%m-%d"),
                          "sales": np.maximum(0.5, 130 + 5 * i - (2.2 + 0.1 * i) * t) + 0.01 * np.sin(t)})
            for i in range(4)]
    pd.concat(rows).to_csv(project / "input" / "sales.csv", index=False)
    conf = project / "conf"
    (conf / "models" / "trend_ets.yaml").write_text(yaml.safe_dump({"arch": "auto_ets", "params": {"model": "AAN", "damped": False}}))
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = ["trend_ets"]
    pipeline["prepare"]["non_negative"] = non_negative
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    return load_config(conf)


@pytest.mark.parametrize("non_negative", ["auto", "never"])
def test_non_negative_series_get_non_negative_forecasts_in_evaluation_and_serving(project, non_negative):
    cfg = _declining_project(project, non_negative)
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    board = steps.evaluate(cfg).set_index("model")
    forecasts = pd.read_parquet(cfg.data_dir / "evaluation" / "forecasts.parquet")
    meta = json.loads((cfg.data_dir / "prepared" / "meta.json").read_text())
    version = steps.register(cfg)
    client, _ = connect(cfg)
    with mlflow_uris(client):
        served = mlflow.pyfunc.load_model(f"models:/tiny-forecaster/{version}").predict(
            pd.read_parquet(cfg.data_dir / "validated" / "series.parquet").groupby("series_id").head(60 - HORIZON))
    if non_negative == "never":
        assert "lower_bound" not in meta and "clipped" not in board.columns
        assert forecasts["forecast"].min() < 0 and served["mean"].min() < 0
        return
    assert meta["lower_bound"] == 0.0
    assert forecasts["forecast"].min() == 0.0 and served["mean"].min() == 0.0
    # The leaderboard says how much the bound changed: the share of test points raised to it.
    assert 0 < board.loc["trend_ets", "clipped"] < 1


def test_synthetic_series_of_non_negative_data_stay_non_negative(project):
    cfg = _declining_project(project, "auto")
    (project / "conf" / "models" / "gan.yaml").write_text(yaml.safe_dump(
        {"arch": "gan", "params": {"hidden_size": 16, "discriminator_size": 16}}))
    pipeline = yaml.safe_load((project / "conf" / "pipeline.yaml").read_text())
    pipeline["models"] = ["gan"]
    (project / "conf" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    cfg = load_config(project / "conf")
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    synthetic = pd.read_parquet(steps.synthesize(cfg, series=20, length=40, seed=1))
    # The donors' levels are small and their spreads large: unbounded, these series would dip below zero.
    assert synthetic["sales"].min() == 0.0 and (synthetic["sales"] > 0).mean() > 0.5
