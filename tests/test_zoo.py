"""The model zoo: every architecture beyond the walking skeleton's, on CPU in seconds.

Each one maps ``(B, L, 1)`` to ``(B, H)`` (and samples ``(B, S, H)`` when probabilistic),
learns a noisy seasonal pattern well enough to beat the naive forecast, survives a
save/load round trip unchanged and trains bit-identically from the same seed.
"""

import functools
from pathlib import Path

import pytest
import torch
import yaml

from seqpipe.models.classifiers import CLASSIFIERS
from seqpipe.models import ARCHITECTURES, build_model
from seqpipe.models.persistence import load_model, save_model
from seqpipe.training import TrainSettings, fit, seed_everything
from test_models import SHAPE, _seasonal_windows

CONF_MODELS = Path(__file__).resolve().parents[1] / "conf" / "models"

# Small sizes so each model trains in about a second on one thread; (params, epochs).
ZOO = {
    "tcn": ({"channels": 16, "num_blocks": 3, "dropout": 0.0}, 6),
    "transformer": ({"patch_len": 6, "stride": 3, "d_model": 16, "num_heads": 2, "num_layers": 1,
                     "feedforward": 32, "dropout": 0.0}, 6),
    "dlinear": ({"moving_average": 5}, 8),
    "nbeats": ({"stack_types": ["generic", "generic"], "layers": 2, "layer_width": 64}, 8),
    "nhits": ({"layers": 2, "layer_width": 64}, 8),
    "cvae": ({"hidden_size": 32, "latent_size": 4}, 8),
    "gan": ({"hidden_size": 32, "discriminator_size": 32}, 8),
    "dbn": ({"hidden_sizes": [32, 16], "pretrain_epochs": 2}, 8),
    "deep_ensemble": ({"members": 3, "member_arch": "dlinear", "member_params": {"moving_average": 5}}, 8),
}
PROBABILISTIC = {"cvae", "gan", "deep_ensemble"}


def _naive_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    return torch.nn.functional.mse_loss(build_model("naive", SHAPE, {})(x), y).item()


@functools.cache
def _trained(arch: str):
    """One training run per architecture, shared by the tests that only read the result."""
    params, epochs = ZOO[arch]
    seed_everything(0, num_threads=1)
    model = build_model(arch, SHAPE, params)
    settings = TrainSettings(max_epochs=epochs, batch_size=64, learning_rate=3e-3, patience=epochs, progress=False)
    fit(model, _seasonal_windows(1024, 1), _seasonal_windows(256, 2), settings, name=arch)
    return model


def test_every_architecture_has_a_conf_file_and_the_zoo_covers_it():
    for arch in ARCHITECTURES:
        spec = yaml.safe_load((CONF_MODELS / f"{arch}.yaml").read_text())
        assert spec["arch"] == arch
    assert set(ZOO) <= set(ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_default_conf_maps_windows_to_the_horizon(arch):
    torch.manual_seed(0)
    spec = yaml.safe_load((CONF_MODELS / f"{arch}.yaml").read_text())
    model = build_model(arch, SHAPE, spec.get("params") or {}).eval()
    x = torch.randn(5, SHAPE.lookback, 1)
    with torch.no_grad():
        assert model(x).shape == (5, SHAPE.horizon)
        if arch in PROBABILISTIC:
            assert model.sample(x, 7).shape == (5, 7, SHAPE.horizon)


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_learns_the_seasonal_pattern_and_beats_naive(arch):
    model = _trained(arch)
    x, y = (torch.from_numpy(a) for a in _seasonal_windows(256, 2))
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(x), y).item()
    seasonal = torch.nn.functional.mse_loss(build_model("seasonal_naive", SHAPE, {})(x), y).item()
    print(f"{arch}: validation MSE {mse:.4f}, naive {_naive_mse(x, y):.4f}, seasonal naive {seasonal:.4f}")
    # The naive forecast misses the whole season; a model that learned it is far below.
    assert mse < 0.05 * _naive_mse(x, y)


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_save_load_round_trip_predicts_identically(arch, tmp_path):
    model = _trained(arch).eval()
    save_model(model, tmp_path / arch)
    loaded = load_model(tmp_path / arch)
    x = torch.from_numpy(_seasonal_windows(16, 5)[0])
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        if arch in PROBABILISTIC:
            torch.manual_seed(1)
            first = model.sample(x, 4)
            torch.manual_seed(1)
            assert torch.equal(first, loaded.sample(x, 4))


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_same_seed_trains_bit_identical_weights(arch):
    def train_once():
        seed_everything(3, num_threads=1)
        model = build_model(arch, SHAPE, ZOO[arch][0])
        fit(model, _seasonal_windows(128, 1), _seasonal_windows(32, 2),
            TrainSettings(max_epochs=1, batch_size=32, progress=False))
        return model.state_dict()

    first, second = train_once(), train_once()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("arch", sorted(PROBABILISTIC))
def test_samples_spread_around_the_point_forecast(arch):
    model = _trained(arch)
    x, y = (torch.from_numpy(a) for a in _seasonal_windows(256, 2))
    torch.manual_seed(0)
    with torch.no_grad():
        samples = model.sample(x, 100)
    low, high = samples.quantile(0.05, dim=1), samples.quantile(0.95, dim=1)
    coverage = ((y >= low) & (y <= high)).float().mean().item()
    print(f"{arch}: 90% interval coverage {coverage:.2f}, mean width {(high - low).mean():.3f}")
    assert (samples.std(dim=1) > 0).all()
    # Near the nominal 90% for every sampler: the GAN's energy-score term keeps its spread
    # (an L2 term per sample had collapsed it to 39% coverage here).
    assert 0.75 < coverage < 0.995


def test_dbn_pretraining_lowers_reconstruction_error():
    seed_everything(0, num_threads=1)
    model = build_model("dbn", SHAPE, {"hidden_sizes": [32], "pretrain_epochs": 2})
    x = torch.from_numpy(_seasonal_windows(1024, 1)[0])
    visible = ((x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)).flatten(1)
    rbm = model.layers[0]

    def mean_field_error():
        hidden = torch.sigmoid(rbm(visible))
        return ((torch.nn.functional.linear(hidden, rbm.weight.t(), model.visible_biases[0]) - visible) ** 2).mean()

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = mean_field_error()
        model.pretrain(x, None, lambda: list(torch.randperm(len(x), generator=generator).split(64)))
        after = mean_field_error()
    print(f"dbn: RBM reconstruction error {before:.3f} -> {after:.3f}")
    assert after < 0.6 * before


def test_deep_ensemble_members_start_from_different_seeds_and_must_be_point_models():
    torch.manual_seed(0)
    model = build_model("deep_ensemble", SHAPE, {"members": 2, "member_arch": "dlinear"})
    first, second = (m.point.trend.weight for m in model.members)
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match="not a point architecture"):
        build_model("deep_ensemble", SHAPE, {"member_arch": "cvae"})
    with pytest.raises(ValueError, match="nothing to train"):
        build_model("deep_ensemble", SHAPE, {"member_arch": "naive"})


def test_models_command_lists_every_architecture_with_its_defaults():
    from typer.testing import CliRunner

    from seqpipe.cli import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    by_task: dict[str, dict[str, str]] = {}
    for line in result.output.splitlines():
        if line.startswith("task: "):
            task = by_task.setdefault(line.split()[1], {})
        else:
            task[line.split()[0]] = line
    assert set(by_task["forecast"]) == set(ARCHITECTURES) | {"auto_ets", "auto_theta", "ensemble"}
    assert set(by_task["classify"]) == set(CLASSIFIERS) | {"majority", "minirocket", "tfidf_linear", "nb_linear",
                                                       "classifier_ensemble"}
    assert '"moving_average": 25' in by_task["forecast"]["dlinear"]
    assert '"model": "ZZZ"' in by_task["forecast"]["auto_ets"]
    assert '"bidirectional": true' in by_task["classify"]["lstm_classifier"]


def test_list_and_dict_params_are_type_checked():
    with pytest.raises(ValueError, match="param 'hidden_sizes' must be list"):
        build_model("dbn", SHAPE, {"hidden_sizes": 64})
    with pytest.raises(ValueError, match="param 'member_params' must be dict"):
        build_model("deep_ensemble", SHAPE, {"member_params": "hidden_size=8"})


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_default_conf_builds_for_the_shortest_builtin_lookback(arch):
    """Yearly built-in datasets have a lookback of 4: every default conf must still work."""
    from seqpipe.models import ProblemShape

    shape = ProblemShape(lookback=4, horizon=6, season=1)
    spec = yaml.safe_load((CONF_MODELS / f"{arch}.yaml").read_text())
    torch.manual_seed(0)
    model = build_model(arch, shape, spec.get("params") or {}).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 4, 1)).shape == (3, 6)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_extra_channels_are_read_and_only_the_target_sets_the_output_scale(arch):
    """Covariates and calendar features ride in channels 1..; channel 0 is the target.

    Per-window normalisation uses the target's level and spread alone, so moving and
    stretching the target moves and stretches the forecast the same way, whatever the
    other channels hold; a trainable model must also react to those other channels.
    Level scaling (N-BEATS, N-HiTS) divides by the target's mean absolute value and
    shifts nothing, so for those only stretching carries over.
    """
    from seqpipe.models import ProblemShape

    shape = ProblemShape(SHAPE.lookback, SHAPE.horizon, SHAPE.season, channels=3)
    spec = yaml.safe_load((CONF_MODELS / f"{arch}.yaml").read_text())
    torch.manual_seed(0)
    model = build_model(arch, shape, {**(spec.get("params") or {}), **(ZOO.get(arch, ({}, 0))[0])}).eval()
    x = torch.randn(5, shape.lookback, 3, generator=torch.Generator().manual_seed(1))
    shift = 0.0 if getattr(model, "window_scaling", "revin") == "level" else 10.0
    moved = x.clone()
    moved[:, :, 0] = 3.0 * x[:, :, 0] + shift
    other = x.clone()
    other[:, :, 1:] += 1.0
    with torch.no_grad():
        forecast = model(x)
        assert forecast.shape == (5, shape.horizon)
        torch.testing.assert_close(model(moved), 3.0 * forecast + shift, rtol=1e-4, atol=1e-4)
        if model.trainable:
            assert not torch.allclose(model(other), forecast)
        if arch in PROBABILISTIC:
            assert model.sample(x, 4).shape == (5, 4, shape.horizon)
