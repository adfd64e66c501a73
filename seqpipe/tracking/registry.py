"""Log the winning model as a pyfunc, register it, and move aliases.

Promotion and rollback move the ``production`` alias and record who, when, from, to
and why as tags; model files are never copied by hand. The alias is the truth about
what serves; the history explains how it got there and tells rollback where to go.
"""

from __future__ import annotations

import getpass
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from seqpipe.data.features import Features, covariate_scalers_from
from seqpipe.data.scaling import Scalers
from seqpipe.errors import RegistryError
from seqpipe.evaluation.forecast import QuantileSettings, forecast_history
from seqpipe.estimators import load_estimator
from seqpipe.tracking.runs import active_run
from seqpipe.tracking.store import mlflow_uris

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PRODUCTION, CHALLENGER = "production", "challenger"
# One registered-model tag per move of ``production`` (see ``_record``).
HISTORY_PREFIX = "seqpipe.alias_history."
PROMOTE, ROLLBACK = "promote", "rollback"
PAST_TENSE = {PROMOTE: "promoted", ROLLBACK: "rolled_back_to"}
TRAINING_RUN_TAG = "seqpipe.training_run_id"
# Write conflicts between concurrent promotions last milliseconds; these bound the retries.
CONFLICT_RETRIES = 5
CONFLICT_BACKOFF_SECONDS = 0.05
NOT_RETRIED = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED", "UNAUTHENTICATED"}
# What a served model needs; the seqpipe code itself travels inside the model (code_paths).
SERVING_REQUIREMENTS = ["mlflow", "torch", "numpy", "pandas", "pyarrow"]


@dataclass(frozen=True)
class ModelArtifacts:
    model_dir: Path  # model.json + weights.pt
    scalers: Path  # the scaler table of the training data
    freq: str | None
    example: pd.DataFrame  # a history frame, the signature's input example
    sampling: QuantileSettings | None = None  # quantile columns, for models that can sample
    config: Path | None = None  # the pipeline config the model was trained under, as JSON
    features: Features = Features()  # the input channels beside the target
    covariate_scalers: Path | None = None  # the covariates' scaler table, when there are covariates
    lower_bound: float | None = None  # the data's domain: forecasts are clipped to it


@dataclass(frozen=True)
class PyfuncPackage:
    """What one registered version holds, whatever its task: its code, files, config and signature."""

    code: Path  # the PythonModel file, logged "from code"
    artifacts: dict[str, str]  # name -> file or folder
    model_config: dict[str, Any]
    example: pd.DataFrame  # the signature's input example
    example_output: pd.DataFrame
    params: dict[str, Any] | None  # inference params of the signature, with their defaults
    requirements: list[str]  # besides seqpipe's own code, which travels inside the model


def forecast_package(artifacts: ModelArtifacts) -> PyfuncPackage:
    """A forecaster's registered form: its folder, the scaler tables and the sampling it serves with."""
    model = load_estimator(artifacts.model_dir)
    scalers = Scalers.from_frame(pd.read_parquet(artifacts.scalers))
    covariate_scalers = (covariate_scalers_from(pd.read_parquet(artifacts.covariate_scalers))
                         if artifacts.covariate_scalers else {})
    example_output = forecast_history(model, scalers, artifacts.example, model.shape.horizon, artifacts.freq,
                                      sampling=artifacts.sampling, features=artifacts.features,
                                      covariate_scalers=covariate_scalers, lower_bound=artifacts.lower_bound)
    return PyfuncPackage(
        code=PYFUNC_CODE,
        artifacts={"model": str(artifacts.model_dir), "scalers": str(artifacts.scalers),
                   **({"config": str(artifacts.config)} if artifacts.config else {}),
                   **({"covariate_scalers": str(artifacts.covariate_scalers)} if artifacts.covariate_scalers else {})},
        model_config={"freq": artifacts.freq, "sampling": asdict(artifacts.sampling) if artifacts.sampling else None,
                      "features": artifacts.features.to_dict(), "lower_bound": artifacts.lower_bound},
        example=artifacts.example, example_output=example_output, params={"horizon": model.shape.horizon},
        requirements=[*SERVING_REQUIREMENTS, *model.requirements],
    )


def registered_version_of(client: MlflowClient, name: str, training_run_id: str) -> str | None:
    """The oldest version of ``name`` registered from ``training_run_id``, if any."""
    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{TRAINING_RUN_TAG}` = '{training_run_id}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return str(min(int(v.version) for v in found)) if found else None


def log_and_register(client: MlflowClient, run_id: str, name: str, package: Callable[[], PyfuncPackage],
                     tags: dict[str, str]) -> str:
    """Log the pyfunc ``package()`` builds into ``run_id``, register it under ``name`` with ``tags``, alias it challenger.

    Safe to retry: a training run that already has a version gets the challenger alias
    back instead of a second version. The version is created with its tags in one call,
    so a version without its ``seqpipe.training_run_id`` tag never exists.
    """
    tags = {**tags, TRAINING_RUN_TAG: run_id}
    existing = registered_version_of(client, name, run_id)
    if existing is None:
        existing = _register(client, run_id, name, package(), tags)
    _upsert(lambda: client.set_registered_model_alias(name, CHALLENGER, existing), f"alias '{CHALLENGER}' of '{name}'")
    return existing


def _register(client: MlflowClient, run_id: str, name: str, package: PyfuncPackage, tags: dict[str, str]) -> str:
    signature = infer_signature(package.example, package.example_output, params=package.params)
    # Fluent calls, each inside mlflow_uris(client): they reach the client's store and leave no URI set.
    with active_run(client, run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package.code),
            artifacts=package.artifacts,
            code_paths=[str(PACKAGE_DIR)],
            model_config=package.model_config,
            signature=signature,
            input_example=package.example,
            pip_requirements=package.requirements,
        )
    with mlflow_uris(client):
        version = str(mlflow.register_model(info.model_uri, name, tags=tags).version)
    # Two registers of one run racing past the lookup both create a version; the oldest
    # one stays and the newer one is removed, so both callers end with the same version.
    kept = registered_version_of(client, name, run_id) or version
    if kept != version:
        client.delete_model_version(name, version)
    return kept


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _check_version(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"registered model '{name}' has no version {version}: {exc.message}") from None


def _record(client: MlflowClient, name: str, entry: dict[str, str | None]) -> None:
    """Append one entry to the alias history: its own tag, so concurrent writers never overwrite each other.

    Keys sort by time (nanoseconds, zero-padded) and a random suffix keeps two entries of
    the same nanosecond apart.
    """
    key = f"{HISTORY_PREFIX}{time.time_ns():020d}.{uuid.uuid4().hex[:8]}"
    client.set_registered_model_tag(name, key, json.dumps(entry, sort_keys=True))


def alias_history(client: MlflowClient, name: str) -> list[dict[str, str | None]]:
    """Every promotion and rollback of ``production``, oldest first."""
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as exc:
        raise RegistryError(f"no registered model '{name}': {exc.message}") from None
    return [json.loads(tags[key]) for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX))]


def _upsert(write: Callable[[], None], what: str) -> None:
    """Run one alias or tag write, retrying when a concurrent writer of the same key got in first.

    Stores implement these writes as read-then-insert; two promotions writing the same
    key at once make one of them fail on the unique key (seen with SQLite). A retry then
    finds the row and updates it, so the later writer wins as it would have anyway.
    """
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            write()
            return
        except MlflowException as exc:
            if exc.error_code in NOT_RETRIED or attempt == CONFLICT_RETRIES:
                raise RegistryError(f"could not write {what}: {exc.message}") from None
            time.sleep(CONFLICT_BACKOFF_SECONDS * (attempt + 1))


def _move_production(client: MlflowClient, name: str, version: str, reason: str, action: str) -> dict[str, str | None]:
    previous = alias_version(client, name, PRODUCTION)
    entry = {"action": action, "at": _now(), "by": getpass.getuser(), "from": previous, "to": version, "reason": reason}
    _upsert(lambda: client.set_registered_model_alias(name, PRODUCTION, version), f"alias '{PRODUCTION}' of '{name}'")
    for key in ("at", "by", "reason", "from"):
        tag = f"seqpipe.{PAST_TENSE[action]}_{key}"
        _upsert(lambda tag=tag, key=key: client.set_model_version_tag(name, version, tag, str(entry[key])),
                f"tag {tag} of '{name}' version {version}")
    _record(client, name, entry)
    return entry


def promote(client: MlflowClient, name: str, version: str, reason: str) -> dict[str, str | None]:
    """Point ``production`` at ``version``; record who, when, from, to and why."""
    _check_version(client, name, version)
    return _move_production(client, name, version, reason, PROMOTE)


def rollback_target(history: list[dict[str, str | None]], current: str | None) -> str | None:
    """The version ``current`` replaced when it was last promoted (rollbacks are not undone by rollbacks)."""
    for entry in reversed(history):
        if entry["action"] == PROMOTE and entry["to"] == current:
            return entry["from"]
    return None


def rollback(client: MlflowClient, name: str, reason: str) -> dict[str, str | None]:
    """Move ``production`` back to the version it replaced, and record the move."""
    current = alias_version(client, name, PRODUCTION)
    if current is None:
        raise RegistryError(f"registered model '{name}' has no production version to roll back")
    target = rollback_target(alias_history(client, name), current)
    if target is None:
        raise RegistryError(f"version {current} of '{name}' replaced no earlier production version; "
                            "there is nothing to roll back to (promote a version instead)")
    _check_version(client, name, target)
    return _move_production(client, name, target, reason, ROLLBACK)


def list_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise RegistryError(f"cannot list versions of '{name}': {exc.message}") from None
    return sorted(versions, key=lambda v: int(v.version))


def aliases_of(client: MlflowClient, name: str) -> dict[str, list[str]]:
    """Version -> its aliases."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        raise RegistryError(f"no registered model '{name}': {exc.message}") from None
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def model_uri(name: str, reference: str) -> str:
    """``production`` / ``challenger`` (aliases) or a version number."""
    return f"models:/{name}/{reference}" if reference.isdigit() else f"models:/{name}@{reference}"
