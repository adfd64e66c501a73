"""statsforecast's AutoETS and AutoTheta as estimators: local models fitted per series.

A local model learns nothing that carries from one history to another: it is saved as
its spec and refits on whatever history it is asked to forecast from. Fitting on the
training histories keeps their forecasts too (with a digest of those histories), so the
pipeline's own scoring and gating of the test window costs one fit, not three.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from seqpipe.errors import PredictionError
from seqpipe.estimators.interface import Estimator, FitData, FitOptions, ForecastInputs
from seqpipe.hyperparams import parse_params
from seqpipe.models.base import ProblemShape
from seqpipe.models.persistence import SPEC_FILE
from seqpipe.training import FitResult, TrainSettings

log = logging.getLogger(__name__)

FITTED_FORECASTS = "fitted_forecasts.npy"
FITTED_DIGEST = "fitted_histories.md5"


def histories_digest(histories: Sequence[np.ndarray], horizon: int) -> str:
    digest = hashlib.md5(str(horizon).encode())
    for values in histories:
        array = np.ascontiguousarray(values, dtype=np.float64)
        digest.update(str(len(array)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class StatsForecastEstimator(Estimator):
    requirements: ClassVar[tuple[str, ...]] = ("statsforecast",)

    def __init__(self, shape: ProblemShape, params: Any) -> None:
        super().__init__(shape, parse_params(self.arch, params))
        self._fitted: tuple[str, np.ndarray] | None = None

    def _fallback(self):
        """The model for series this one cannot fit (``params.fallback``), or None to fail on them."""
        if self.params.fallback == "none":
            return None
        from statsforecast.models import Naive

        return Naive(alias="forecast")

    def _model(self):  # the statsforecast model, built afresh for each fit
        raise NotImplementedError

    @property
    def trainable(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.params), "fitted_on": "each history it forecasts from"}

    def _refit(self, histories: Sequence[np.ndarray], horizon: int) -> np.ndarray:
        from statsforecast import StatsForecast

        lengths = np.array([len(h) for h in histories])
        broken = [i for i, h in enumerate(histories) if len(h) == 0 or not np.isfinite(h).all()]
        if broken:
            raise PredictionError(f"{self.arch} refits on each whole history: rows {broken[:10]} are empty or hold "
                                  "missing or non-finite values")
        # Integer steps instead of timestamps: the fit needs only the order, and no frequency.
        data = pd.DataFrame({
            "unique_id": np.repeat(np.arange(len(histories)), lengths),
            "ds": np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.array([], dtype=int),
            "y": np.concatenate(histories).astype(np.float64) if len(lengths) else np.array([]),
        })
        engine = StatsForecast(models=[self._model()], freq=1, n_jobs=self.params.n_jobs,
                               fallback_model=self._fallback())
        try:
            out = engine.forecast(df=data, h=horizon)
        except (NotImplementedError, ValueError) as exc:  # statsforecast's refusals of a series it cannot fit
            raise PredictionError(f"{self.arch} cannot fit one of {len(histories)} histories (the shortest has "
                                  f"{lengths.min()} points): {exc}; params.fallback: naive forecasts such "
                                  "series with their last value") from None
        out = out.assign(step=out.groupby("unique_id", sort=False).cumcount())
        table = out.pivot(index="unique_id", columns="step", values="forecast").reindex(np.arange(len(histories)))
        if table.isna().any().any():
            missing = list(table.index[table.isna().any(axis=1)][:10])
            raise ValueError(f"{self.arch} produced no forecast for rows {missing}")
        return table.to_numpy(np.float64)

    def fit(self, data: FitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        started = time.perf_counter()
        forecasts = self._refit(data.histories, self.shape.horizon)
        seconds = time.perf_counter() - started
        self._fitted = (histories_digest(data.histories, self.shape.horizon), forecasts)
        log.info("[%s] fitted %d series in %.1fs", options.name, len(forecasts), seconds)
        return FitResult("cpu", best_epoch=0, best_val_loss=float("nan"), epochs_run=0, stopped_early=False,
                         seconds=seconds)

    def forecast(self, inputs: ForecastInputs) -> np.ndarray:
        if self._fitted and self._fitted[0] == histories_digest(inputs.histories, self.shape.horizon):
            return self._fitted[1]
        return self._refit(inputs.histories, self.shape.horizon)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"arch": self.arch, "shape": dataclasses.asdict(self.shape), "params": dataclasses.asdict(self.params)}
        (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        if self._fitted:
            (folder / FITTED_DIGEST).write_text(self._fitted[0] + "\n")
            np.save(folder / FITTED_FORECASTS, self._fitted[1])

    @classmethod
    def load(cls, folder: Path) -> StatsForecastEstimator:
        spec = json.loads((folder / SPEC_FILE).read_text())
        estimator = cls(ProblemShape(**spec["shape"]), spec["params"])
        if (folder / FITTED_DIGEST).is_file():
            estimator._fitted = ((folder / FITTED_DIGEST).read_text().strip(),
                                 np.load(folder / FITTED_FORECASTS, allow_pickle=False))
        return estimator


class AutoETSEstimator(StatsForecastEstimator):
    """Exponential smoothing with error, trend and season chosen per series by AICc."""

    arch = "auto_ets"

    def _model(self):
        from statsforecast.models import AutoETS

        return AutoETS(season_length=self.shape.season, model=self.params.model, damped=self.params.damped,
                       alias="forecast")


class AutoThetaEstimator(StatsForecastEstimator):
    """The Theta method, its variant chosen per series by in-sample MSE."""

    arch = "auto_theta"

    def _model(self):
        from statsforecast.models import AutoTheta

        return AutoTheta(season_length=self.shape.season, decomposition_type=self.params.decomposition_type,
                         model=self.params.model, alias="forecast")
