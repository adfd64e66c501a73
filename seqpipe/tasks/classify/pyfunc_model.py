"""The registered classifier, logged "from code": MLflow stores this file, not a pickle.

Loading reads the estimator's JSON and arrays or state dict, and the channel scaler's
JSON; ``predict`` takes a long frame of feature frames, or a frame of WAV paths for a
model trained on audio (``InputSpec``), and returns each sequence's label and a
probability per class.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import set_model

from seqpipe.data.sequence_prepare import ChannelScaler
from seqpipe.errors import PredictionError
from seqpipe.estimators import load_estimator
from seqpipe.tasks.classify.inputs import InputSpec, input_batch, prediction_frame


class SeqpipeClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model"])
        try:
            self.model = load_estimator(folder)
            self.scaler = ChannelScaler.from_dict(json.loads(Path(context.artifacts["scaler"]).read_text()))
        except Exception as exc:  # noqa: BLE001 - torch, numpy and json each raise their own kind
            raise PredictionError(f"{folder}: the registered model's files cannot be read "
                                  f"({type(exc).__name__}: {str(exc)[:300]})") from None
        config = context.model_config or {}
        self.classes = list(config["classes"])
        self.inputs = InputSpec.from_dict(config["inputs"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        ids, batch = input_batch(model_input, self.inputs, self.scaler)
        return prediction_frame(ids, self.model.predict_proba(batch), self.classes)


set_model(SeqpipeClassifier())
