"""The registered model, logged "from code": MLflow stores this file, not a pickle.

Loading reads a JSON spec, a state dict (``weights_only``) or a local model's arrays,
and scaler tables (Parquet), so loading a registered version never unpickles arbitrary
objects; a local model refits on the history it is asked to forecast from. The model config
names the covariates and calendar features the model reads; versions registered
before those existed read none.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import set_model

from seqpipe.data.features import Features, covariate_scalers_from
from seqpipe.data.scaling import Scalers
from seqpipe.evaluation.forecast import QuantileSettings, forecast_history
from seqpipe.errors import PredictionError
from seqpipe.estimators import load_estimator


class SeqpipeForecaster(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model"])
        try:
            self.model = load_estimator(folder)
            self.scalers = Scalers.from_frame(pd.read_parquet(context.artifacts["scalers"]))
        except Exception as exc:  # noqa: BLE001 - torch, pyarrow and json each raise their own kind
            # Damaged or missing files (a bad disk, a partial copy) must say which version's files broke.
            raise PredictionError(f"{folder}: the registered model's files cannot be read "
                                  f"({type(exc).__name__}: {str(exc)[:300]})") from None
        config = context.model_config or {}
        self.freq = config.get("freq")
        self.sampling = QuantileSettings(**config["sampling"]) if config.get("sampling") else None
        self.features = Features.from_dict(config.get("features"))
        self.lower_bound = config.get("lower_bound")  # versions registered before the domain was recorded: none
        covariates = context.artifacts.get("covariate_scalers")
        self.covariate_scalers = covariate_scalers_from(pd.read_parquet(covariates)) if covariates else {}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        # Only a missing horizon means "the model's"; 0 or a negative one is refused downstream.
        requested = (params or {}).get("horizon")
        horizon = self.model.shape.horizon if requested is None else int(requested)
        return forecast_history(self.model, self.scalers, model_input, horizon, self.freq, sampling=self.sampling,
                                features=self.features, covariate_scalers=self.covariate_scalers,
                                lower_bound=self.lower_bound)


set_model(SeqpipeForecaster())
