"""N-BEATS (Oreshkin et al. 2020) and N-HiTS (Challu et al. 2023): doubly residual stacks of fully connected blocks.

Oreshkin, Carpov, Chapados, Bengio, "N-BEATS: Neural basis expansion analysis for
interpretable time series forecasting", ICLR 2020. Each block is a few fully connected
layers whose output (theta) is expanded on a basis into a *backcast* of the lookback and a
*forecast* of the horizon. The next block reads the input minus the backcast (what is left
to explain) and the model's forecast is the sum of every block's. A stack is a run of
blocks with one kind of basis: ``generic`` (a learned linear map, theta of the lookback's
and horizon's length), ``trend`` (polynomials of degree ``trend_degree`` in time) or
``seasonality`` (a Fourier series of ``harmonics`` harmonics). ``["trend", "seasonality"]``
is the paper's interpretable model: its forecast is a trend part plus a seasonal part,
``stack_forecasts`` returns them one by one.

Challu, Olivares, Oreshkin, Garza, Mergenthaler-Canseco, Dubrawski, "N-HiTS: Neural
Hierarchical Interpolation for Time Series Forecasting", AAAI 2023. N-BEATS blocks with
generic bases, where the blocks of stack s read their input max-pooled with kernel
``pooling_kernel_sizes[s]`` and forecast only ``horizon // downsample_frequencies[s]``
coefficients, linearly interpolated to the horizon: the first stacks see and forecast
the slow components, the last the fast ones.

The target is channel 0; the backcasts are removed from it alone. Further channels
(covariates, calendar features) are flattened and read by every block beside the
target's residual, as NBEATSx (Olivares et al. 2023) feeds exogenous inputs to every
block. On a padded history (``prepare.pad_history``, the mask is the last channel) the
residual is kept at zero on the padded points, as the authors' implementations mask
their inputs, so a backcast never has padding to explain.
Both models start their forecast from the window's last value (``naive_level``),
as the authors' reference implementations do, and by default divide each window by its
mean absolute target and shift nothing (``window_scaling: level``, ``seqpipe.models.revin``):
the forecast stretches with the history, as a fit on scale-free errors (the paper's sMAPE
and MASE) would, but does not move with it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqpipe.hyperparams import NBEATSParams, NHITSParams
from seqpipe.models.base import WindowNormalizedForecaster, history_weights

STACK_TYPES = ("generic", "trend", "seasonality")


def _require(ok: bool, arch: str, message: str) -> None:
    # The config checks the bounds at load; params built in code (dicts, instances) are checked here.
    if not ok:
        raise ValueError(f"{arch}: {message}")


def _fully_connected(inputs: int, layers: int, width: int, dropout: float) -> nn.Sequential:
    """``layers`` linear layers of ``width`` units, each followed by a ReLU (and dropout when it is positive)."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU()]
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
    return nn.Sequential(*modules)


def trend_basis(degree: int, length: int) -> torch.Tensor:
    """Rows ``t**0 .. t**degree`` on ``t = 0, 1/length, ..., (length - 1)/length``, shaped ``(degree + 1, length)``."""
    t = torch.arange(length, dtype=torch.float64) / length
    return torch.stack([t**i for i in range(degree + 1)]).float()


def seasonality_basis(harmonics: int, t: torch.Tensor) -> torch.Tensor:
    """Rows ``1, cos(2 pi k t), sin(2 pi k t)`` for ``k = 1..harmonics`` on the times ``t``: ``(1 + 2 harmonics, len(t))``."""
    angles = 2 * math.pi * torch.arange(1, harmonics + 1, dtype=torch.float64)[:, None] * t.double()[None, :]
    return torch.cat([torch.ones(1, len(t), dtype=torch.float64), angles.cos(), angles.sin()]).float()


class _Block(nn.Module):
    """Fully connected layers, then theta, expanded on a basis into a backcast ``(batch, lookback)`` and a forecast ``(batch, horizon)``.

    ``backcast_basis`` and ``forecast_basis`` are fixed ``(coefficients, length)`` matrices;
    ``None`` for both is the generic basis, where theta itself is the backcast and the
    forecast (the paper's two linear maps, theta then basis, compose into the one here).
    """

    def __init__(self, inputs: int, lookback: int, horizon: int, layers: int, width: int, dropout: float,
                 backcast_basis: torch.Tensor | None = None, forecast_basis: torch.Tensor | None = None) -> None:
        super().__init__()
        self.layers = _fully_connected(inputs, layers, width, dropout)
        if backcast_basis is None:
            self.backcast_size, self.forecast_size = lookback, horizon
        else:
            self.backcast_size, self.forecast_size = len(backcast_basis), len(forecast_basis)
        # Not persistent: the bases follow from the shape, so the state dict holds weights only.
        self.register_buffer("backcast_basis", backcast_basis, persistent=False)
        self.register_buffer("forecast_basis", forecast_basis, persistent=False)
        self.theta = nn.Linear(width, self.backcast_size + self.forecast_size)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.theta(self.layers(features))
        backcast, forecast = theta[:, : self.backcast_size], theta[:, self.backcast_size :]
        if self.backcast_basis is not None:
            backcast, forecast = backcast @ self.backcast_basis, forecast @ self.forecast_basis
        return backcast, forecast


class _DoublyResidual(WindowNormalizedForecaster):
    """What N-BEATS and N-HiTS share: stacks of blocks on the target's residual, forecasts summed."""

    stacks: nn.ModuleList
    # Blocks each stack applies: a stack that shares weights holds one block and applies it this often.
    repeats: list[int]

    @property
    def window_scaling(self) -> str:
        return self.params.window_scaling

    def block_input(self, stack: int, residual: torch.Tensor) -> torch.Tensor:
        """What a block of ``stack`` reads of the target's residual ``(batch, lookback)``."""
        return residual

    def stack_forecasts(self, x: torch.Tensor) -> torch.Tensor:
        """Each stack's forecast ``(batch, stacks, horizon)`` of normalised windows ``(batch, lookback, channels)``.

        Their sum, plus the window's last value when ``naive_level``, is ``forward_normalized``:
        for the interpretable N-BEATS, the trend part and the seasonal part.
        """
        residual, covariates = x[:, :, 0], x[:, :, 1:].flatten(1)
        weights = history_weights(x, self.shape)
        forecasts = []
        for s, (stack, repeats) in enumerate(zip(self.stacks, self.repeats)):
            forecast = x.new_zeros(len(x), self.shape.horizon)
            for i in range(repeats):
                block = stack[i % len(stack)]
                backcast, block_forecast = block(torch.cat([self.block_input(s, residual), covariates], dim=1))
                residual = residual - backcast
                if weights is not None:
                    residual = residual * weights
                forecast = forecast + block_forecast
            forecasts.append(forecast)
        return torch.stack(forecasts, dim=1)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        forecast = self.stack_forecasts(x).sum(dim=1)
        if self.params.naive_level:
            forecast = forecast + x[:, -1:, 0]
        return forecast


def _check_common(arch: str, params: NBEATSParams | NHITSParams) -> None:
    _require(params.blocks_per_stack >= 1, arch, f"blocks_per_stack must be at least 1, got {params.blocks_per_stack}")
    _require(params.layers >= 1, arch, f"layers must be at least 1, got {params.layers}")
    _require(params.layer_width >= 1, arch, f"layer_width must be at least 1, got {params.layer_width}")
    _require(0 <= params.dropout < 1, arch, f"dropout must be in [0, 1), got {params.dropout}")
    _require(params.window_scaling in ("revin", "level", "none"), arch,
             f"window_scaling must be revin, level or none, got {params.window_scaling!r}")


class NBEATSForecaster(_DoublyResidual):
    """N-BEATS (Oreshkin et al. 2020): generic, trend and seasonality stacks; see the module's docstring.

    Trend bases run on each side's own grid (``t`` from 0 to just under 1 over the lookback,
    and over the horizon), as the paper writes them. Seasonality bases run on one time axis
    in horizon units (lookback ``t = -lookback/horizon .. -1/horizon``, horizon
    ``t = 0 .. (horizon - 1)/horizon``), as the reference implementation does, so each
    harmonic has the same period in steps on both sides.
    """

    arch = "nbeats"
    Params = NBEATSParams

    def __init__(self, shape, params: NBEATSParams) -> None:
        super().__init__(shape, params)
        _check_common(self.arch, params)
        _require(len(params.stack_types) >= 1, self.arch, "stack_types must list at least one stack")
        unknown = [t for t in params.stack_types if t not in STACK_TYPES]
        _require(not unknown, self.arch, f"stack_types holds unknown stack types {unknown}; known: {list(STACK_TYPES)}")
        _require(params.trend_degree >= 0, self.arch, f"trend_degree must be at least 0, got {params.trend_degree}")
        _require(params.harmonics is None or params.harmonics >= 1, self.arch,
                 f"harmonics must be at least 1 (or None), got {params.harmonics}")
        lookback, horizon = shape.lookback, shape.horizon
        self.harmonics = params.harmonics or max(1, horizon // 2 - 1)
        inputs = lookback + lookback * (shape.channels - 1)
        seasonal_times = (torch.arange(-lookback, 0) / horizon, torch.arange(horizon) / horizon)
        bases = {
            "generic": (None, None),
            "trend": (trend_basis(params.trend_degree, lookback), trend_basis(params.trend_degree, horizon)),
            "seasonality": tuple(seasonality_basis(self.harmonics, t) for t in seasonal_times),
        }
        stacks = []
        for stack_type in params.stack_types:
            count = 1 if params.share_weights else params.blocks_per_stack
            stacks.append(nn.ModuleList(
                _Block(inputs, lookback, horizon, params.layers, params.layer_width, params.dropout, *bases[stack_type])
                for _ in range(count)))
        self.stacks = nn.ModuleList(stacks)
        self.repeats = [params.blocks_per_stack] * len(stacks)


class NHITSForecaster(_DoublyResidual):
    """N-HiTS (Challu et al. 2023): multi-rate input pooling and hierarchical interpolation; see the module's docstring.

    Pooling is MaxPool1d with stride equal to its kernel, the last partial window kept
    (``ceil_mode``), as the reference implementation. The backcast covers the whole
    lookback (it is subtracted from the unpooled residual); the forecast's
    ``max(1, horizon // frequency)`` coefficients are interpolated linearly to the horizon,
    so any horizon works, divisible by the frequency or not. Covariates are not pooled:
    max-pooling a promotion flag or a calendar feature keeps its peaks and loses when they fall.
    """

    arch = "nhits"
    Params = NHITSParams

    def __init__(self, shape, params: NHITSParams) -> None:
        super().__init__(shape, params)
        _check_common(self.arch, params)
        kernels, frequencies = params.pooling_kernel_sizes, params.downsample_frequencies
        _require(len(kernels) >= 1, self.arch, "pooling_kernel_sizes must list at least one stack")
        _require(len(kernels) == len(frequencies), self.arch,
                 f"pooling_kernel_sizes and downsample_frequencies must have one entry per stack, got {len(kernels)} "
                 f"and {len(frequencies)}")
        bad = [k for k in kernels if not 1 <= k <= shape.lookback]
        _require(not bad, self.arch, f"pooling_kernel_sizes {bad} must be between 1 and the lookback ({shape.lookback})")
        bad = [f for f in frequencies if f < 1]
        _require(not bad, self.arch, f"downsample_frequencies {bad} must be at least 1")
        lookback, horizon = shape.lookback, shape.horizon
        covariate_inputs = lookback * (shape.channels - 1)
        self.pools = nn.ModuleList(nn.MaxPool1d(k, stride=k, ceil_mode=True) for k in kernels)
        # Fewer than one coefficient cannot be interpolated: a frequency above the horizon forecasts a constant.
        self.coefficients = [max(1, horizon // f) for f in frequencies]
        self.stacks = nn.ModuleList(
            nn.ModuleList(
                _NHITSBlock(math.ceil(lookback / k) + covariate_inputs, lookback, horizon, coefficients,
                            params.layers, params.layer_width, params.dropout)
                for _ in range(params.blocks_per_stack))
            for k, coefficients in zip(kernels, self.coefficients))
        self.repeats = [params.blocks_per_stack] * len(kernels)

    def block_input(self, stack: int, residual: torch.Tensor) -> torch.Tensor:
        return self.pools[stack](residual[:, None, :])[:, 0]


class _NHITSBlock(_Block):
    """A generic block whose forecast is ``coefficients`` values linearly interpolated to the horizon."""

    def __init__(self, inputs: int, lookback: int, horizon: int, coefficients: int, layers: int, width: int,
                 dropout: float) -> None:
        super().__init__(inputs, lookback, coefficients, layers, width, dropout)
        self.horizon = horizon

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        backcast, knots = super().forward(features)
        forecast = nn.functional.interpolate(knots[:, None, :], size=self.horizon, mode="linear", align_corners=False)
        return backcast, forecast[:, 0]
