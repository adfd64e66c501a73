"""The registered classifier, logged "from code": MLflow stores this file, not a pickle.

Loading reads the estimator's JSON and arrays or state dict, and the channel scaler's
JSON or the tokenizer's; ``predict`` takes a long frame of feature frames, a frame of WAV
paths for a model trained on audio, or a column of texts (``InputSpec``), and returns
each sequence's label and a probability per class.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import set_model

from seqpipe.errors import PredictionError
from seqpipe.estimators import load_estimator
from seqpipe.tasks.classify.inputs import InputSpec, input_batch, load_preprocessing, prediction_frame


class SeqpipeClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model"])
        config = context.model_config or {}
        self.classes = list(config["classes"])
        self.inputs = InputSpec.from_dict(config["inputs"])
        try:
            self.model = load_estimator(folder)
            # Versions registered before texts existed call their scaler "scaler".
            inputs = context.artifacts.get("inputs") or context.artifacts["scaler"]
            self.preprocessing = load_preprocessing(self.inputs, Path(inputs))
        except Exception as exc:  # noqa: BLE001 - torch, numpy, json and tokenizers each raise their own kind
            raise PredictionError(f"{folder}: the registered model's files cannot be read "
                                  f"({type(exc).__name__}: {str(exc)[:300]})") from None

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        ids, batch = input_batch(model_input, self.inputs, self.preprocessing)
        return prediction_frame(ids, self.model.predict_proba(batch), self.classes)


set_model(SeqpipeClassifier())
