import numpy as np
import pytest
import torch

from seqpipe.models import ProblemShape, build_model
from seqpipe.models.persistence import load_model, save_model
from seqpipe.training import TrainSettings, fit, seed_everything

SHAPE = ProblemShape(lookback=24, horizon=6, season=12)


def _seasonal_windows(n: int, seed: int):
    """Windows of a noisy 12-periodic signal with a random level, scale and phase."""
    rng = np.random.default_rng(seed)
    t = np.arange(SHAPE.lookback + SHAPE.horizon)[None, :] + rng.integers(0, 12, (n, 1))
    level, amplitude = rng.normal(0, 1, (n, 1)), rng.uniform(0.5, 2, (n, 1))
    series = level + amplitude * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.05, t.shape)
    return series[:, : SHAPE.lookback, None].astype(np.float32), series[:, SHAPE.lookback :].astype(np.float32)


def test_seasonal_naive_repeats_the_last_season():
    model = build_model("seasonal_naive", SHAPE, {})
    x = torch.arange(24, dtype=torch.float32).reshape(1, 24, 1)
    assert model(x).tolist() == [[12.0, 13.0, 14.0, 15.0, 16.0, 17.0]]


def test_unknown_param_is_named():
    with pytest.raises(ValueError, match=r"lstm: unknown params \['hidden'\]"):
        build_model("lstm", SHAPE, {"hidden": 3})


def test_dict_params_are_type_checked_and_typed_params_accepted():
    from seqpipe.hyperparams import RecurrentParams

    with pytest.raises(ValueError, match=r"lstm: param 'hidden_size' must be int, got 'big'"):
        build_model("lstm", SHAPE, {"hidden_size": "big"})
    with pytest.raises(ValueError, match=r"lstm: param 'num_layers' must be int, got True"):
        build_model("lstm", SHAPE, {"num_layers": True})
    with pytest.raises(ValueError, match=r"lstm: params must be RecurrentParams or a mapping"):
        build_model("lstm", SHAPE, [("hidden_size", 8)])
    typed = build_model("lstm", SHAPE, RecurrentParams(hidden_size=8))
    assert typed.params == build_model("lstm", SHAPE, {"hidden_size": 8}).params == RecurrentParams(hidden_size=8)
    assert isinstance(build_model("lstm", SHAPE, {"dropout": 0}).params.dropout, float)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_recurrent_models_learn_a_seasonal_pattern_and_beat_naive(arch):
    seed_everything(0, num_threads=1)
    model = build_model(arch, SHAPE, {"hidden_size": 32, "num_layers": 1, "dropout": 0.0})
    train, val = _seasonal_windows(2048, 1), _seasonal_windows(256, 2)
    settings = TrainSettings(max_epochs=8, batch_size=64, learning_rate=3e-3, patience=8, progress=False)
    result = fit(model, train, val, settings, name=arch)
    assert result.history[-1].train_loss < result.history[0].train_loss
    naive = build_model("naive", SHAPE, {})
    with torch.no_grad():
        x, y = (torch.from_numpy(a) for a in val)
        naive_mse = torch.nn.functional.mse_loss(naive(x), y).item()
    assert result.best_val_loss < 0.5 * naive_mse


def test_training_is_deterministic_on_cpu_and_save_load_round_trips(tmp_path):
    def train_once():
        seed_everything(3, num_threads=1)
        model = build_model("lstm", SHAPE, {"hidden_size": 8, "num_layers": 1, "dropout": 0.0})
        fit(model, _seasonal_windows(256, 1), _seasonal_windows(64, 2),
            TrainSettings(max_epochs=2, batch_size=32, progress=False))
        return model

    first, second = train_once(), train_once()
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    save_model(first, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.from_numpy(_seasonal_windows(16, 5)[0])
    with torch.no_grad():
        assert torch.equal(first.eval()(x), loaded(x))
