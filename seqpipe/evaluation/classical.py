"""Classical references (statsforecast's AutoETS and AutoTheta) fitted per series.

They are not torch modules, so they never enter the training loop or the registry: they
fit on each series' training and validation part and forecast its test horizon, so the
leaderboard can show how the networks compare with the methods they must beat.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class AutoETSParams:
    model: str = "ZZZ"  # error, trend, season: Z picks by AICc, A additive, M multiplicative, N none
    damped: bool | None = None  # None tries both
    n_jobs: int = 1


@dataclass(frozen=True)
class AutoThetaParams:
    decomposition_type: str = "multiplicative"
    model: str | None = None  # None picks among the Theta variants by in-sample MSE
    n_jobs: int = 1


CLASSICAL: dict[str, type] = {"auto_ets": AutoETSParams, "auto_theta": AutoThetaParams}


def is_classical(arch: str) -> bool:
    return arch in CLASSICAL


def parse_params(arch: str, values: dict[str, Any]) -> Any:
    """Typed params, naming unknown keys instead of ignoring them."""
    cls = CLASSICAL[arch]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{arch}: unknown params {unknown}; known: {sorted(known)}")
    return cls(**values)


def _statsforecast_model(arch: str, params: Any, season: int):
    from statsforecast.models import AutoETS, AutoTheta

    if arch == "auto_ets":
        return AutoETS(season_length=season, model=params.model, damped=params.damped, alias="forecast")
    return AutoTheta(season_length=season, decomposition_type=params.decomposition_type, model=params.model,
                     alias="forecast")


def classical_forecast(arch: str, params: Any, frame: pd.DataFrame, ids: np.ndarray, horizon: int,
                       season: int) -> np.ndarray:
    """Fit on the ``train`` and ``val`` rows of each series; return test forecasts (series x horizon).

    ``frame`` is the prepared frame (with its ``split`` column); rows come back in ``ids`` order.
    """
    from statsforecast import StatsForecast

    history = frame[frame["split"] != "test"]
    # Integer steps instead of timestamps: the fit needs only the order, and no frequency.
    data = pd.DataFrame({
        "unique_id": history["series_id"].astype(str).to_numpy(),
        "ds": history.groupby("series_id", sort=False, observed=True).cumcount().to_numpy(),
        "y": history["value"].to_numpy(np.float64),
    })
    engine = StatsForecast(models=[_statsforecast_model(arch, params, season)], freq=1, n_jobs=params.n_jobs)
    out = engine.forecast(df=data, h=horizon)
    out = out.assign(step=out.groupby("unique_id", sort=False).cumcount())
    table = out.pivot(index="unique_id", columns="step", values="forecast").reindex([str(i) for i in ids])
    if table.isna().any().any():
        missing = list(table.index[table.isna().any(axis=1)][:10])
        raise ValueError(f"{arch} produced no forecast for series {missing}")
    return table.to_numpy(np.float64)
