"""Log the winning model as a pyfunc, register it, and move aliases.

Promotion moves the ``production`` alias and records who, when and why as tags;
model files are never copied by hand.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from seqpipe.data.scaling import Scalers
from seqpipe.errors import RegistryError
from seqpipe.evaluation.forecast import forecast_history
from seqpipe.models.persistence import load_model
from seqpipe.tracking.lineage import HISTORY_TAG
from seqpipe.tracking.runs import active_run

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PRODUCTION, CHALLENGER = "production", "challenger"
# What a served model needs; the seqpipe code itself travels inside the model (code_paths).
SERVING_REQUIREMENTS = ["mlflow", "torch", "numpy", "pandas", "pyarrow"]


@dataclass(frozen=True)
class ModelArtifacts:
    model_dir: Path  # model.json + weights.pt
    scalers: Path  # the scaler table of the training data
    freq: str | None
    example: pd.DataFrame  # a history frame, the signature's input example


def log_and_register(client: MlflowClient, run_id: str, name: str, artifacts: ModelArtifacts, tags: dict[str, str]) -> str:
    """Log the pyfunc into ``run_id``, register it under ``name`` with ``tags``, alias it challenger."""
    model = load_model(artifacts.model_dir)
    scalers = Scalers.from_frame(pd.read_parquet(artifacts.scalers))
    example_output = forecast_history(model, scalers, artifacts.example, model.shape.horizon, artifacts.freq)
    signature = infer_signature(artifacts.example, example_output, params={"horizon": model.shape.horizon})
    with active_run(run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"model": str(artifacts.model_dir), "scalers": str(artifacts.scalers)},
            code_paths=[str(PACKAGE_DIR)],
            model_config={"freq": artifacts.freq},
            signature=signature,
            input_example=artifacts.example,
            pip_requirements=SERVING_REQUIREMENTS,
        )
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(client: MlflowClient, name: str, version: str, reason: str) -> dict[str, str | None]:
    """Point ``production`` at ``version``; keep the move in the version's tags and the model's history."""
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"registered model '{name}' has no version {version}: {exc.message}") from None
    previous = alias_version(client, name, PRODUCTION)
    record = {"at": _now(), "by": getpass.getuser(), "from": previous, "to": version, "reason": reason}
    client.set_registered_model_alias(name, PRODUCTION, version)
    for key in ("at", "by", "reason"):
        client.set_model_version_tag(name, version, f"seqpipe.promoted_{key}", str(record[key]))
    client.set_model_version_tag(name, version, "seqpipe.promoted_from", str(previous))
    history = json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*history, record]))
    return record


def model_uri(name: str, reference: str) -> str:
    """``production`` / ``challenger`` (aliases) or a version number."""
    return f"models:/{name}/{reference}" if reference.isdigit() else f"models:/{name}@{reference}"
