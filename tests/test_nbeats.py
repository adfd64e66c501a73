"""N-BEATS and N-HiTS: what their bases, interpolation and level scaling promise, beyond the zoo's common tests.

The zoo (tests/test_zoo.py) covers shapes, learning, save/load, seed determinism, the
shortest lookback and extra channels for the default ``nbeats`` and ``nhits``; here:
the interpretable stacks' decomposition, N-HiTS's interpolation on any horizon, the
scale-equivariance of level scaling, the named errors, and the interpretable conf trained.
"""

import math
from pathlib import Path

import pytest
import torch
import yaml

from seqpipe.hyperparams import NBEATSParams
from seqpipe.models import ProblemShape, build_model
from seqpipe.models.persistence import load_model, save_model
from seqpipe.models.revin import WINDOW_EPS, level_stats
from seqpipe.training import TrainSettings, fit, seed_everything
from test_models import SHAPE, _seasonal_windows

CONF_MODELS = Path(__file__).resolve().parents[1] / "conf" / "models"
INTERPRETABLE = {"stack_types": ["trend", "seasonality"], "blocks_per_stack": 2, "layers": 2, "layer_width": 32,
                 "share_weights": True}


def _windows(shape: ProblemShape, batch: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, shape.lookback, shape.channels, generator=torch.Generator().manual_seed(seed))


def _residual_off_span(y: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Largest distance of the rows of ``y`` ``(batch, horizon)`` from the span of the columns of ``basis``."""
    solution = torch.linalg.lstsq(basis.double(), y.double().T).solution
    return (basis.double() @ solution - y.double().T).abs().max()


def test_interpretable_forecast_is_a_polynomial_trend_plus_a_fourier_season():
    shape = ProblemShape(lookback=24, horizon=12, season=12)
    torch.manual_seed(0)
    model = build_model("nbeats", shape, {**INTERPRETABLE, "trend_degree": 2, "harmonics": 2,
                                          "naive_level": False, "window_scaling": "none"}).eval()
    x = _windows(shape)
    with torch.no_grad():
        trend, season = model.stack_forecasts(x).unbind(dim=1)
        forecast = model(x)
    torch.testing.assert_close(forecast, trend + season)
    steps = torch.arange(shape.horizon, dtype=torch.float64)
    polynomials = torch.stack([steps**i for i in range(3)], dim=1)
    angles = 2 * math.pi * steps[:, None] * torch.arange(1, 3)[None, :] / shape.horizon
    fourier = torch.cat([torch.ones(shape.horizon, 1, dtype=torch.float64), angles.cos(), angles.sin()], dim=1)
    assert _residual_off_span(trend, polynomials) < 1e-5
    assert _residual_off_span(season, fourier) < 1e-5
    # Neither part is trivially in the other's span: each stack says something of its own.
    assert _residual_off_span(trend, fourier) > 1e-3 and _residual_off_span(season, polynomials) > 1e-3


def test_naive_level_adds_the_windows_last_value_to_the_stacks_sum():
    torch.manual_seed(0)
    model = build_model("nbeats", SHAPE, {**INTERPRETABLE, "window_scaling": "none"}).eval()
    x = _windows(SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x[:, -1:, 0] + model.stack_forecasts(x).sum(dim=1))


@pytest.mark.parametrize("window_scaling", ["level", "revin", "none"])
def test_a_degree_one_trend_stack_forecasts_a_straight_line(window_scaling):
    torch.manual_seed(0)
    model = build_model("nbeats", SHAPE, {"stack_types": ["trend"], "trend_degree": 1, "blocks_per_stack": 2,
                                          "layers": 2, "layer_width": 32, "window_scaling": window_scaling}).eval()
    with torch.no_grad():
        forecast = model(_windows(SHAPE)).double()
    steps = forecast.diff(dim=1)
    torch.testing.assert_close(steps.diff(dim=1), torch.zeros_like(steps[:, 1:]), rtol=0, atol=1e-5)
    assert steps.abs().min() > 1e-4  # a line, not a constant


@pytest.mark.parametrize("horizon", [1, 5, 7, 13])
def test_nhits_interpolates_to_any_horizon(horizon):
    shape = ProblemShape(lookback=24, horizon=horizon, season=12, channels=2)
    torch.manual_seed(0)
    model = build_model("nhits", shape, {"pooling_kernel_sizes": [4, 2, 1], "downsample_frequencies": [8, 3, 1],
                                         "layers": 2, "layer_width": 32}).eval()
    x = _windows(shape)
    assert model.coefficients == [max(1, horizon // 8), max(1, horizon // 3), horizon]
    with torch.no_grad():
        forecast, stacks = model(x), model.stack_forecasts(x)
    assert forecast.shape == (8, horizon) and stacks.shape == (8, 3, horizon)
    assert torch.isfinite(forecast).all()
    if horizon < 16:  # one coefficient: the slowest stack forecasts a constant
        torch.testing.assert_close(stacks[:, 0], stacks[:, 0, :1].expand(-1, horizon))


@pytest.mark.parametrize("arch", ["nbeats", "nhits"])
def test_level_scaling_makes_the_forecast_scale_equivariant(arch):
    shape = ProblemShape(lookback=24, horizon=6, season=12, channels=2)
    spec = yaml.safe_load((CONF_MODELS / f"{arch}.yaml").read_text())
    assert spec["params"]["window_scaling"] == "level"
    torch.manual_seed(0)
    model = build_model(arch, shape, spec["params"]).eval()
    x = _windows(shape)
    with torch.no_grad():
        forecast = model(x)
        for c in (1e-3, 0.5, 7.0, 1e4):
            scaled = x.clone()
            scaled[:, :, 0] *= c  # the covariate is not the target: it keeps its values
            torch.testing.assert_close(model(scaled), c * forecast, rtol=1e-4, atol=1e-6 * c)


def test_level_stats_divide_by_the_mean_absolute_target_and_survive_flat_and_negative_windows():
    x = torch.tensor([[[-2.0, 5.0], [1.0, 5.0], [-3.0, 5.0]], [[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]]])
    level, spread = level_stats(x)
    assert torch.equal(level, torch.zeros(2, 1, 2))
    assert torch.equal(spread, torch.tensor([[[2.0, 1.0]], [[WINDOW_EPS, 1.0]]]))
    torch.manual_seed(0)
    model = build_model("nhits", ProblemShape(3, 4, 1, channels=2), {"pooling_kernel_sizes": [2, 1],
                                                                     "downsample_frequencies": [2, 1]}).eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
        assert torch.isfinite(model(-x.abs())).all()


def test_window_scaling_of_the_existing_architectures_is_unchanged():
    assert build_model("lstm", SHAPE, {}).window_scaling == "revin"
    assert build_model("dlinear", SHAPE, {}).window_scaling == "revin"
    assert build_model("dlinear", SHAPE, {"revin": False}).window_scaling == "none"
    assert build_model("nbeats", SHAPE, {"window_scaling": "revin"}).window_scaling == "revin"


@pytest.mark.parametrize(("arch", "params", "message"), [
    ("nbeats", {"stack_types": ["generic", "fourier"]},
     r"nbeats: param 'stack_types'\[1\] must be one of \['generic', 'trend', 'seasonality'\], got 'fourier'"),
    ("nbeats", {"stack_types": []}, r"nbeats: stack_types must list at least one stack"),
    ("nbeats", {"blocks_per_stack": 0}, r"nbeats: blocks_per_stack must be at least 1"),
    ("nbeats", {"harmonics": 0}, r"nbeats: harmonics must be at least 1"),
    ("nbeats", {"trend_degree": -1}, r"nbeats: trend_degree must be at least 0"),
    ("nbeats", {"window_scaling": "meanabs"}, r"nbeats: param 'window_scaling' must be one of"),
    ("nhits", {"pooling_kernel_sizes": [2, 30, 1]},
     r"nhits: pooling_kernel_sizes \[30\] must be between 1 and the lookback \(24\)"),
    ("nhits", {"pooling_kernel_sizes": [2, 1]},
     r"nhits: pooling_kernel_sizes and downsample_frequencies must have one entry per stack, got 2 and 3"),
    ("nhits", {"downsample_frequencies": [4, 0, 1]}, r"nhits: downsample_frequencies \[0\] must be at least 1"),
    ("nhits", {"layer_width": 0}, r"nhits: layer_width must be at least 1"),
    ("nhits", {"pooling_kernel_sizes": "2,2,1"}, r"nhits: param 'pooling_kernel_sizes' must be list\[int\]"),
])
def test_invalid_params_are_named(arch, params, message):
    with pytest.raises(ValueError, match=message):
        build_model(arch, SHAPE, params)


def test_params_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match=r"nbeats: stack_types holds unknown stack types \['fourier'\]"):
        build_model("nbeats", SHAPE, NBEATSParams(stack_types=["fourier"]))


def test_the_config_rejects_unknown_stack_types_and_scalings_at_load():
    from pydantic import ValidationError

    from seqpipe.config import PARAMS_SCHEMAS

    with pytest.raises(ValidationError, match=r"stack_types\.0\n  Input should be 'generic', 'trend' or 'seasonality'"):
        PARAMS_SCHEMAS[NBEATSParams].model_validate({"stack_types": ["fourier"]})
    with pytest.raises(ValidationError, match=r"window_scaling\n  Input should be 'revin', 'level' or 'none'"):
        PARAMS_SCHEMAS[NBEATSParams].model_validate({"window_scaling": "meanabs"})


def test_shared_weights_hold_one_block_per_stack():
    shared = build_model("nbeats", SHAPE, INTERPRETABLE)
    separate = build_model("nbeats", SHAPE, {**INTERPRETABLE, "share_weights": False})
    assert [len(s) for s in shared.stacks] == [1, 1] and [len(s) for s in separate.stacks] == [2, 2]
    assert 2 * sum(p.numel() for p in shared.parameters()) == sum(p.numel() for p in separate.parameters())


def test_the_interpretable_conf_builds_and_a_small_one_learns_the_season(tmp_path):
    spec = yaml.safe_load((CONF_MODELS / "nbeats_interpretable.yaml").read_text())
    assert spec["arch"] == "nbeats" and spec["params"]["stack_types"] == ["trend", "seasonality"]
    with torch.no_grad():
        assert build_model("nbeats", ProblemShape(4, 6, 1), spec["params"])(torch.randn(3, 4, 1)).shape == (3, 6)
    seed_everything(0, num_threads=1)
    model = build_model("nbeats", SHAPE, {**spec["params"], **INTERPRETABLE})
    settings = TrainSettings(max_epochs=8, batch_size=64, learning_rate=3e-3, patience=8, progress=False)
    fit(model, _seasonal_windows(1024, 1), _seasonal_windows(256, 2), settings, name="nbeats_interpretable")
    x, y = (torch.from_numpy(a) for a in _seasonal_windows(256, 2))
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model.eval()(x), y).item()
        naive = torch.nn.functional.mse_loss(build_model("naive", SHAPE, {})(x), y).item()
    print(f"nbeats interpretable: validation MSE {mse:.4f}, naive {naive:.4f}")
    assert mse < 0.05 * naive
    save_model(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(model(x), load_model(tmp_path / "m")(x))
