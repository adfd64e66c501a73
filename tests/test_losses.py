"""Point losses that match how forecasts are judged: MAPE, sMAPE and MASE besides MSE and MAE."""

import numpy as np
import pytest
import torch
import yaml

from seqpipe.config import load_config
from seqpipe.errors import ConfigError
from seqpipe.evaluation.metrics import mape, smape
from seqpipe.models import build_model
from seqpipe.models.losses import point_loss
from seqpipe.training import TrainSettings, fit, seed_everything
from test_models import SHAPE


def _positive_windows(n: int, seed: int):
    """Windows of a positive noisy 12-periodic signal, each series on its own level: meanabs-scaled units."""
    rng = np.random.default_rng(seed)
    t = np.arange(SHAPE.lookback + SHAPE.horizon)[None, :] + rng.integers(0, 12, (n, 1))
    level = rng.uniform(0.5, 2, (n, 1))
    series = level * (1 + 0.4 * np.sin(2 * np.pi * t / 12)) + rng.normal(0, 0.02, t.shape)
    return series[:, : SHAPE.lookback, None].astype(np.float32), series[:, SHAPE.lookback:].astype(np.float32)


def test_percentage_losses_are_the_reported_metrics_on_ratio_keeping_scales():
    rng = np.random.default_rng(0)
    actual = rng.uniform(50, 500, (8, 6))
    forecast = actual * rng.uniform(0.7, 1.3, actual.shape)
    per_series_scale = rng.uniform(10, 1000, (8, 1))  # what meanabs divides each series by
    scaled = [torch.from_numpy(a / per_series_scale) for a in (forecast, actual)]
    history = torch.ones(8, SHAPE.lookback)
    assert point_loss("mape", *scaled, history, 12).item() == pytest.approx(mape(actual, forecast).mean() / 100)
    assert point_loss("smape", *scaled, history, 12).item() == pytest.approx(smape(actual, forecast).mean() / 100)


def test_mase_loss_ignores_each_windows_shift_and_scale_and_reads_only_its_history():
    x, y = (torch.from_numpy(a) for a in _positive_windows(16, 1))
    forecast = y + 0.1 * torch.randn_like(y)
    history = x[:, :, 0]
    base = point_loss("mase", forecast, y, history, 12)
    a, b = torch.rand(16, 1) * 5 + 0.1, torch.randn(16, 1) * 3
    moved = point_loss("mase", a * forecast + b, a * y + b, a * history + b, 12)
    torch.testing.assert_close(moved, base, rtol=1e-4, atol=1e-6)
    # Each window is divided by its own history's seasonal-naive error, not by one of the batch.
    by_window = [point_loss("mase", forecast[i:i + 1], y[i:i + 1], history[i:i + 1], 12) for i in range(16)]
    torch.testing.assert_close(torch.stack(by_window).mean(), base, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", ["mae", "mape", "smape", "mase"])
def test_a_model_trained_on_each_loss_learns_the_season_and_beats_naive_on_it(loss):
    seed_everything(0, num_threads=1)
    model = build_model("dlinear", SHAPE, {"moving_average": 5, "loss": loss})
    settings = TrainSettings(max_epochs=8, batch_size=64, learning_rate=3e-3, patience=8, progress=False)
    result = fit(model, _positive_windows(1024, 1), _positive_windows(256, 2), settings, name=f"dlinear-{loss}")
    x, y = (torch.from_numpy(a) for a in _positive_windows(256, 3))
    with torch.no_grad():
        trained = point_loss(loss, model(x), y, x[:, :, 0], SHAPE.season).item()
        naive = point_loss(loss, build_model("naive", SHAPE, {})(x), y, x[:, :, 0], SHAPE.season).item()
    # Early stopping followed the same loss: the best validation loss is of its kind and size.
    assert result.best_val_loss == pytest.approx(min(e.val_loss for e in result.history))
    assert trained < 0.3 * naive, (loss, trained, naive)


def test_a_percentage_loss_on_shifted_scaling_is_refused_naming_both_keys(project):
    conf = project / "conf"
    lstm = yaml.safe_load((conf / "models" / "lstm.yaml").read_text())
    lstm["params"]["loss"] = "mape"
    (conf / "models" / "lstm.yaml").write_text(yaml.safe_dump(lstm))
    with pytest.raises(ConfigError, match=r"models \['lstm \(loss mape\)'\] train on a percentage error.*"
                                          r"prepare\.scaler to meanabs \(it is 'standard'\)"):
        load_config(conf)
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text())
    pipeline["prepare"]["scaler"] = "meanabs"
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    assert load_config(conf).model("lstm").params.loss == "mape"
    lstm["params"]["loss"] = "mapd"
    (conf / "models" / "lstm.yaml").write_text(yaml.safe_dump(lstm))
    with pytest.raises(ConfigError, match=r"lstm\.yaml: params\.loss: Input should be 'mse', 'mae', 'mape', 'smape' or 'mase'"):
        load_config(conf)
