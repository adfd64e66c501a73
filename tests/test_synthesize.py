"""`seqpipe synthesize`: the GAN's generator, run without a history, yields series like the training data."""

import numpy as np
import pandas as pd
import torch
import yaml

import seqpipe.steps as steps
from seqpipe.config import load_config
from seqpipe.models import build_model
from test_models import SHAPE
from test_zoo import ZOO, _trained
from conftest import LENGTH, run_cli


def _autocorrelation(series: np.ndarray, lag: int) -> float:
    """Mean over series of the lag-``lag`` autocorrelation."""
    centred = series - series.mean(1, keepdims=True)
    return float(((centred[:, lag:] * centred[:, :-lag]).sum(1) / (centred**2).sum(1)).mean())


def _synthesize(model) -> np.ndarray:
    return model.synthesize(64, 6 * 12, torch.Generator().manual_seed(0)).numpy()


def test_the_trained_generator_draws_the_season_it_learned_and_an_untrained_one_does_not():
    # The zoo's GAN learned noisy sines of period 12 (random level, amplitude and phase).
    learned = _synthesize(_trained("gan"))
    torch.manual_seed(0)
    untrained = _synthesize(build_model("gan", SHAPE, ZOO["gan"][0]).eval())
    print(f"lag-12 / lag-6 autocorrelation: trained {_autocorrelation(learned, 12):.2f} / "
          f"{_autocorrelation(learned, 6):.2f}, untrained {_autocorrelation(untrained, 12):.2f} / "
          f"{_autocorrelation(untrained, 6):.2f}")
    assert learned.shape == (64, 72) and np.isfinite(learned).all()
    # A sine of period 12 is in phase with itself a period on and opposite half a period on.
    assert _autocorrelation(learned, 12) > 0.6
    assert _autocorrelation(learned, 6) < -0.4
    assert _autocorrelation(untrained, 12) < 0.3
    # Different noise, different series: not one curve repeated. Each series standardised:
    # the same curve gives 0 across series, sines of random phase about 1.
    standardised = (learned - learned.mean(1, keepdims=True)) / learned.std(1, keepdims=True)
    spread_across_series = np.std(standardised, axis=0).mean()
    print(f"spread across series after two periods: {spread_across_series:.2f}")
    assert spread_across_series > 0.3


def test_synthesize_command_writes_series_with_the_sources_columns_level_and_calendar(project):
    (project / "conf" / "models" / "gan.yaml").write_text(yaml.safe_dump(
        {"arch": "gan", "params": {"hidden_size": 16, "discriminator_size": 16}}))
    pipeline = yaml.safe_load((project / "conf" / "pipeline.yaml").read_text())
    pipeline["models"] = ["seasonal_naive", "gan"]
    (project / "conf" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    cfg = load_config(project / "conf")
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    parent = steps.start_pipeline_run(cfg)
    steps.train(cfg, "gan", parent)
    steps.train(cfg, "seasonal_naive", parent)

    done = run_cli("synthesize", "--series", "5", "--length", "30", "--seed", "3", "--output", "synthetic.csv",
                   cwd=project)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(project / "synthetic.csv")
    assert list(frame.columns) == ["store", "month", "sales"]
    assert frame.groupby("store").size().to_dict() == {f"synthetic-{i}": 30 for i in range(1, 6)}
    source = pd.read_csv(project / "input" / "sales.csv")
    for _, rows in frame.groupby("store"):
        months = pd.to_datetime(rows["month"])
        assert (months.diff().dropna().dt.days.between(28, 31)).all()
        # Level and spread of a training series: the source's values lie within 100 to about 200.
        assert source["sales"].min() - 30 < rows["sales"].mean() < source["sales"].max() + 30
        assert rows["sales"].std() > 1

    # The same seed draws the same series; in-process here, since the command only forwards.
    steps.synthesize(cfg, series=5, length=30, seed=3, output=project / "again.csv")
    pd.testing.assert_frame_equal(frame, pd.read_csv(project / "again.csv"))
    # Default: the median training length, into data/synthetic/gan.parquet.
    steps.synthesize(cfg, series=2)
    default = pd.read_parquet(project / "data" / "synthetic" / "gan.parquet")
    assert len(default) == 2 * (LENGTH - 2 * cfg.data.horizon)

    refused = run_cli("synthesize", "--model", "seasonal_naive", "--output", "nothing.csv", cwd=project)
    assert refused.returncode != 0
    assert "model 'seasonal_naive' is a seasonal_naive; synthesize needs a gan" in refused.stderr
    assert not (project / "nothing.csv").exists()
