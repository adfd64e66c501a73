"""The typed pipeline configuration, loaded from the YAML files in ``conf/``.

``conf/pipeline.yaml`` holds the pipeline; ``conf/models/<name>.yaml`` holds one
model's architecture and hyper-parameters, which ``pipeline.yaml`` may override.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from seqpipe.errors import ConfigError

CONF_ENV = "SEQPIPE_CONF"
PIPELINE_FILE = "pipeline.yaml"
MODELS_DIR = "models"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnMap(StrictModel):
    """Which source columns hold the series id, the time and the value."""

    series_id: str = "series_id"
    timestamp: str = "timestamp"
    value: str = "value"


class SourceConfig(StrictModel):
    kind: Literal["builtin", "csv", "parquet"] = "builtin"
    name: str | None = Field(None, description="built-in dataset name, for kind=builtin")
    path: str | None = Field(None, description="file path, for kind=csv or parquet")
    columns: ColumnMap = ColumnMap()
    time_format: str | None = Field(
        None, description="strptime format for text timestamps; None infers, integers stay steps"
    )
    delimiter: str = ","

    @model_validator(mode="after")
    def _source_is_complete(self) -> SourceConfig:
        if self.kind == "builtin" and not self.name:
            raise ValueError("data.source.name is required when kind is 'builtin'")
        if self.kind in ("csv", "parquet") and not self.path:
            raise ValueError(f"data.source.path is required when kind is '{self.kind}'")
        return self


class DataConfig(StrictModel):
    source: SourceConfig = SourceConfig(name="tourism-monthly")
    horizon: int | None = Field(None, gt=0, description="None: the built-in dataset's horizon")
    season: int | None = Field(None, gt=0, description="None: the built-in dataset's season")
    freq: str | None = Field(
        None, description="pandas offset alias for calendar timestamps (e.g. 'MS'); None infers"
    )
    lookback: int | None = Field(None, gt=0, description="None: the built-in dataset's lookback")
    dir: str = "data"


class ValidationConfig(StrictModel):
    min_length: int | None = Field(None, gt=0, description="None: lookback + 2 x horizon")
    max_offending_listed: int = Field(10, gt=0)


class PrepareConfig(StrictModel):
    scaler: Literal["standard", "minmax", "meanabs"] = "standard"
    window_stride: int = Field(1, gt=0)


class TrainingConfig(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_epochs: int = Field(30, gt=0)
    batch_size: int = Field(256, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(5, gt=0, description="epochs without validation improvement before stopping")
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 42
    num_threads: int | None = Field(None, gt=0, description="torch CPU threads; None uses all cores")
    progress: bool = True


class ModelSpec(StrictModel):
    """One model to train: ``name`` picks ``conf/models/<name>.yaml``; ``params`` override it."""

    name: str
    arch: str
    params: dict[str, Any] = {}


class EvaluationConfig(StrictModel):
    metric: Literal["mase", "smape", "mape"] = "mase"
    plot_series: int = Field(4, gt=0)


class TrackingConfig(StrictModel):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str = "mlflow/artifacts"
    experiment: str = "seqpipe"
    registered_model: str = "seqpipe-forecaster"
    system_metrics: bool = True
    # A tracking server that is down should fail a command in seconds, not after MLflow's
    # default minutes of retries; MLFLOW_HTTP_REQUEST_* variables in the environment win.
    http_max_retries: int = Field(2, ge=0, description="retries of a failed request to a tracking server")
    http_backoff_factor: int = Field(1, ge=0, description="seconds; doubles with each retry")
    http_timeout: int = Field(30, gt=0, description="seconds one request to a tracking server may take")


class PromotionConfig(StrictModel):
    """The gate between the newly registered challenger and the production version."""

    auto_promote: bool = Field(True, description="move 'production' when the gate passes; false only reports")
    margin: float = Field(0.0, ge=0, lt=1, description="relative improvement of evaluation.metric required")
    significance: float = Field(0.05, gt=0, lt=1, description="level of the one-sided Diebold-Mariano test")
    loss: Literal["absolute", "squared"] = Field("absolute", description="per-step loss the DM test compares")


class ScheduleConfig(StrictModel):
    cron: str = "0 3 * * 1"
    timezone: str = "UTC"


class PipelineConfig(StrictModel):
    root: Path = Field(description="project root; relative paths in the config resolve against it")
    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    prepare: PrepareConfig = PrepareConfig()
    training: TrainingConfig = TrainingConfig()
    models: list[ModelSpec]
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    promotion: PromotionConfig = PromotionConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _model_names_unique(self) -> PipelineConfig:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"models lists {duplicates} more than once")
        if not names:
            raise ValueError("models must list at least one model")
        return self

    def path(self, relative: str | Path) -> Path:
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.root / candidate

    @property
    def data_dir(self) -> Path:
        return self.path(self.data.dir)

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise ConfigError(f"model '{name}' is not in the config; known: {[m.name for m in self.models]}")

    def fingerprint(self) -> str:
        """A short hash of everything but the root, for lineage tags."""
        payload = self.model_dump(mode="json", exclude={"root"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def _resolve_models(conf_dir: Path, entries: Any) -> list[dict[str, Any]]:
    """Expand each entry of ``models:`` (a name, or a name with overrides) from conf/models/."""
    if not isinstance(entries, list):
        raise ConfigError(f"{conf_dir / PIPELINE_FILE}: 'models' must be a list of model names")
    resolved = []
    for entry in entries:
        overrides: dict[str, Any] = {}
        if isinstance(entry, str):
            name = entry
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name = entry["name"]
            unknown = set(entry) - {"name", "params"}
            if unknown:
                raise ConfigError(f"{conf_dir / PIPELINE_FILE}: models entry '{name}' has unknown keys {sorted(unknown)}")
            overrides = entry.get("params") or {}
        else:
            raise ConfigError(f"{conf_dir / PIPELINE_FILE}: models entries are names or {{name, params}}, got {entry!r}")
        model_file = conf_dir / MODELS_DIR / f"{name}.yaml"
        base = _read_yaml(model_file)
        unknown = set(base) - {"arch", "params"}
        if unknown:
            raise ConfigError(f"{model_file}: unknown keys {sorted(unknown)}; expected 'arch' and 'params'")
        if "arch" not in base:
            raise ConfigError(f"{model_file}: missing 'arch'")
        resolved.append({"name": name, "arch": base["arch"], "params": {**(base.get("params") or {}), **overrides}})
    return resolved


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def default_conf_dir() -> Path:
    return Path(os.environ.get(CONF_ENV, "conf")).resolve()


def load_config(conf_dir: str | Path | None = None) -> PipelineConfig:
    """Load and validate ``<conf_dir>/pipeline.yaml``; the project root is conf_dir's parent."""
    conf_path = Path(conf_dir).resolve() if conf_dir else default_conf_dir()
    pipeline_file = conf_path / PIPELINE_FILE
    raw = _read_yaml(pipeline_file)
    raw["models"] = _resolve_models(conf_path, raw.get("models", []))
    if "root" in raw:
        raise ConfigError(f"{pipeline_file}: 'root' is derived from the config folder and cannot be set")
    raw["root"] = conf_path.parent
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(pipeline_file, exc)) from None
