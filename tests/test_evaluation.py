import json
from pathlib import Path
import math

import numpy as np
import pandas as pd
import yaml

from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.evaluation.probabilistic import coverage, crps
from tests.conftest import train_all


def test_crps_of_a_point_mass_is_the_absolute_error_and_matches_the_normal_closed_form():
    actual = np.array([[1.0, 2.0, 3.0]])
    point = np.repeat(np.array([[[1.5, 2.0, 1.0]]]), 10, axis=1)
    np.testing.assert_allclose(crps(actual, point), [np.abs(actual - point[:, 0]).mean()])
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 1, (1, 20000, 1))
    y = 0.7
    pdf, cdf = math.exp(-y * y / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(y / math.sqrt(2)))
    closed_form = y * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi)
    np.testing.assert_allclose(crps(np.array([[y]]), samples), [closed_form], rtol=0.02)


def test_interval_coverage_is_near_nominal_for_a_calibrated_sampler():
    rng = np.random.default_rng(1)
    actual = rng.normal(0, 1, (200, 24))
    samples = rng.normal(0, 1, (200, 500, 24))
    assert abs(coverage(actual, samples, 0.8).mean() - 0.8) < 0.02
    assert abs(coverage(actual, samples, 0.95).mean() - 0.95) < 0.02


def test_evaluate_scores_probabilistic_models_and_draws_the_reviewer_plots(project):
    conf = project / "conf"
    (conf / "models" / "cvae.yaml").write_text(yaml.safe_dump({"arch": "cvae", "params": {"hidden_size": 16, "latent_size": 4}}))
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = ["seasonal_naive", "cvae"]
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    cfg = load_config(conf)
    for step in (steps.ingest, steps.validate, steps.prepare, train_all):
        step(cfg)
    board = steps.evaluate(cfg)
    row = board.set_index("model")
    assert {"mae", "rmse", "crps", "coverage_80", "coverage_95"} <= set(board.columns)
    assert pd.isna(row.loc["seasonal_naive", "crps"]) and row.loc["cvae", "crps"] > 0
    assert 0 <= row.loc["cvae", "coverage_80"] <= row.loc["cvae", "coverage_95"] <= 1
    evaluation = cfg.data_dir / "evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert "crps" in metrics["cvae"] and "crps" not in metrics["seasonal_naive"]
    for plot in ("forecast_vs_actual.png", "metric_by_model.png", "error_distribution.png"):
        assert (evaluation / plot).stat().st_size > 10_000
    forecasts = pd.read_parquet(evaluation / "forecasts.parquet")
    cvae = forecasts[forecasts["model"] == "cvae"]
    assert (cvae["lower"] <= cvae["upper"]).all() and forecasts.loc[forecasts["model"] == "seasonal_naive", "lower"].isna().all()
    again = steps.evaluate(cfg)
    pd.testing.assert_frame_equal(board, again)  # sampling is seeded: scores repeat


def test_a_registered_sampling_model_serves_quantiles(project):
    import mlflow

    from seqpipe.tracking.store import connect, mlflow_uris

    conf = project / "conf"
    (conf / "models" / "cvae.yaml").write_text(yaml.safe_dump({"arch": "cvae", "params": {"hidden_size": 16, "latent_size": 4}}))
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["models"] = ["cvae"]
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    cfg = load_config(conf)
    for step in (steps.ingest, steps.validate, steps.prepare, train_all, steps.evaluate):
        step(cfg)
    version = steps.register(cfg)
    client, _ = connect(cfg)
    with mlflow_uris(client):
        model = mlflow.pyfunc.load_model(f"models:/tiny-forecaster/{version}")
        config_dir = Path(mlflow.artifacts.download_artifacts(f"models:/tiny-forecaster/{version}"))
    history = pd.read_parquet(cfg.data_dir / "validated" / "series.parquet")
    forecast = model.predict(history)
    assert list(forecast.columns) == ["series_id", "timestamp", "step", "mean", "q0.1", "q0.5", "q0.9"]
    assert (forecast["q0.1"] <= forecast["q0.5"]).all() and (forecast["q0.5"] <= forecast["q0.9"]).all()
    assert "q0.9" in model.metadata.get_output_schema().input_names()
    config_artifact = config_dir / "artifacts" / "pipeline.json"
    assert json.loads(config_artifact.read_text())["models"][0]["arch"] == "cvae"
