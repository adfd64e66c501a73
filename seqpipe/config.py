"""The typed pipeline configuration, loaded from the YAML files in ``conf/``.

``conf/pipeline.yaml`` holds the pipeline; ``conf/models/<name>.yaml`` holds one
model's architecture and hyper-parameters, which ``pipeline.yaml`` may override.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError,
                      ValidationInfo, create_model, field_validator, model_validator)

from seqpipe import hyperparams
from seqpipe.errors import ConfigError
from seqpipe.hashing import short_digest

CONF_ENV = "SEQPIPE_CONF"
PROFILE_ENV = "SEQPIPE_PROFILE"
PIPELINE_FILE = "pipeline.yaml"
MODELS_DIR = "models"
PROFILES_DIR = "profiles"


# Sections that say where and how the pipeline runs, or what is drawn from its results
# afterwards (synthesis), not what it trains and scores.
INFRASTRUCTURE = ("root", "conf_dir", "tracking", "orchestration", "servers", "schedule", "synthesis")


# What only forecasting reads; sequence classification has its own ``classify`` section.
FORECAST_SECTIONS = ("data", "validation", "prepare", "evaluation", "serving")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _require_probabilities(key: str, values: list[float]) -> None:
    if not all(0 < value < 1 for value in values):
        raise ValueError(f"{key} must lie strictly between 0 and 1, got {values}")


# Names the canonical and prepared frames use themselves: a covariate may not take one.
RESERVED_COLUMNS = ("series_id", "timestamp", "value", "split")
CalendarFeature = Literal["minute_of_hour", "hour_of_day", "day_of_week", "day_of_month", "day_of_year",
                          "week_of_year", "month_of_year", "quarter_of_year"]


class ColumnMap(StrictModel):
    """Which source columns hold the series id, the time, the value and any covariates."""

    series_id: str | None = Field(
        "series_id", description="None: no id column, each file is one series (data.source.series_name, or the file's name)"
    )
    timestamp: str = "timestamp"
    value: str = "value"
    covariates: list[str] = Field(
        [], description="numeric columns observed with the value (price, promo), extra model inputs; keep their names"
    )

    @model_validator(mode="after")
    def _covariates_are_distinct(self) -> ColumnMap:
        mapped = {self.series_id, self.timestamp, self.value}
        clashes = sorted(c for c in self.covariates if c in mapped or c in RESERVED_COLUMNS)
        if clashes:
            raise ValueError(f"covariates {clashes} repeat a mapped column or a reserved name {list(RESERVED_COLUMNS)}")
        repeated = sorted({c for c in self.covariates if self.covariates.count(c) > 1})
        if repeated:
            raise ValueError(f"covariates lists {repeated} more than once")
        return self


class SourceConfig(StrictModel):
    kind: Literal["builtin", "csv", "parquet", "sql"] = "builtin"
    name: str | None = Field(None, description="built-in dataset name, for kind=builtin")
    path: str | None = Field(None, description="a file, a folder or a glob, for kind=csv or parquet")
    layout: Literal["long", "wide"] = Field(
        "long", description="long: one row per observation; wide: a time column and one column per series"
    )
    columns: ColumnMap = ColumnMap()
    value_columns: list[str] | None = Field(None, description="wide layout: the series columns; None: all but time")
    time_format: str | None = Field(
        None, description="strptime format for text timestamps; None infers, integers stay steps"
    )
    timezone: str = Field("UTC", description="zone of timestamps written without an offset; all become UTC")
    delimiter: str = ","
    series_name: str | None = Field(
        None, min_length=1, description="columns.series_id None: the one series' id; None: the file's name (SQL: 'series')"
    )
    url: str | None = Field(None, description="SQLAlchemy URL, for kind=sql")
    query: str | None = Field(None, description="SQL query returning the configured columns, for kind=sql")

    @model_validator(mode="after")
    def _source_is_complete(self) -> SourceConfig:
        required = {"builtin": ["name"], "csv": ["path"], "parquet": ["path"], "sql": ["url", "query"]}[self.kind]
        for key in required:
            if not getattr(self, key):
                raise ValueError(f"data.source.{key} is required when kind is '{self.kind}'")
        if self.series_name is not None and (self.columns.series_id is not None or self.layout == "wide"):
            raise ValueError("data.source.series_name names the one series of a long-layout source without a series "
                             "id column: set data.source.columns.series_id to null as well")
        if self.columns.covariates and (self.kind == "builtin" or self.layout == "wide"):
            raise ValueError("data.source.columns.covariates needs a long-layout csv, parquet or sql source: "
                             "built-in datasets have none, and a wide layout has one column per series")
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
    policy: Literal["fail", "quarantine"] = Field(
        "fail", description="fail: stop before training; quarantine: set offending series aside and go on"
    )
    min_retained_share: float = Field(0.9, gt=0, le=1, description="quarantine: the share of series that must remain")
    min_length: int | None = Field(
        None, gt=0, description="None: lookback + 2 x horizon, or 2 x horizon + 1 with prepare.pad_history")
    allowed_missing_ratio: float = Field(0.0, ge=0, lt=1, description="share of values that may be missing")
    max_gap_ratio: float = Field(0.0, ge=0, lt=1, description="share of a series' steps that may skip periods")
    value_min: float | None = None
    value_max: float | None = None
    min_rows: int | None = Field(None, ge=0)
    max_rows: int | None = Field(None, gt=0)
    max_offending_listed: int = Field(10, gt=0)


class PrepareConfig(StrictModel):
    scaler: Literal["standard", "minmax", "robust", "meanabs"] = "standard"
    window_stride: int = Field(1, gt=0)
    non_negative: Literal["auto", "always", "never"] = Field(
        "auto", description="keep forecasts, intervals, samples and synthetic series at or above zero (clipped): "
                            "auto when no training value is negative, always, or never")
    fill: Literal["none", "ffill", "linear"] = Field("none", description="how missing values are filled, per series")
    fill_limit: int | None = Field(None, gt=0, description="longest run of missing values that is filled")
    calendar_features: list[CalendarFeature] = Field(
        [], description="sin/cos pairs of the timestamps' position in a cycle, as extra inputs; calendar data only"
    )
    pad_history: bool = Field(
        False, description="zero-pad histories shorter than the lookback and add a mask channel (1 real, 0 padded): "
                           "a series then needs 2 x horizon + 1 points, not lookback + 2 x horizon"
    )

    @model_validator(mode="after")
    def _calendar_features_distinct(self) -> PrepareConfig:
        repeated = sorted({c for c in self.calendar_features if self.calendar_features.count(c) > 1})
        if repeated:
            raise ValueError(f"prepare.calendar_features lists {repeated} more than once")
        return self


def _dataclass_fields(cls: type) -> dict[str, Any]:
    """Pydantic field definitions of the dataclass ``cls``: its types, defaults, and the bounds and description in its metadata."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        default = ({"default": field.default} if field.default is not dataclasses.MISSING
                   else {"default_factory": field.default_factory})
        bounds = {k: v for k, v in field.metadata.items() if k != "description"}
        fields[field.name] = (hints[field.name], Field(**default, **bounds,
                                                       description=field.metadata.get("description") or None))
    return fields


def _section_schema(cls: type, name: str) -> type[BaseModel]:
    """A config section from a settings dataclass."""
    return create_model(name, __base__=StrictModel, __doc__=cls.__doc__, **_dataclass_fields(cls))


# The training loop's own settings class is the declaration: one set of fields and defaults.
TrainingConfig = _section_schema(hyperparams.TrainSettings, "TrainingConfig")


def model_training_valid(training: Any, where: str = "") -> dict[str, Any]:
    """A model's own ``training`` settings: a mapping of the keys in ``PER_MODEL_TRAINING``, each valid as the
    ``training`` section would take it. They replace the pipeline's values for that model alone. Errors start
    with ``where``, the mapping's key path, where the caller's own error does not name it."""
    prefix = f"{where}: " if where else ""
    if not isinstance(training, dict):
        raise ValueError(f"{prefix}must map training settings to values, got {training!r}")
    try:
        hyperparams.check_own_training(training)
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}") from None
    try:
        TrainingConfig.model_validate(training)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{where + '.' if where else ''}{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                   for e in exc.errors())) from None
    return training


def _params_schema(cls: type) -> type[BaseModel]:
    """A strict pydantic model of the params dataclass ``cls``: same fields, types and defaults.

    Strict, as ``seqpipe.hyperparams.parse_as`` checks dicts: no coercion ("64" is not an
    int, 1 is not a bool), but an int is a float. YAML reads ``1e-4`` as a string: write
    ``1.0e-4``.
    """
    validators = {}
    member_arch_known = {hyperparams.DeepEnsembleParams: _member_arch_known,
                         hyperparams.DeepEnsembleClassifierParams: _classifier_member_arch_known,
                         hyperparams.TextDeepEnsembleParams: _text_member_arch_known}.get(cls)
    if member_arch_known is not None:
        validators = {"_member_arch_known": field_validator("member_arch")(member_arch_known),
                      "_member_params_match": field_validator("member_params")(_member_params_match)}
    members_valid = {hyperparams.EnsembleParams: _ensemble_members_valid,
                     hyperparams.ClassifierEnsembleParams: _classifier_ensemble_members_valid}.get(cls)
    if members_valid is not None:
        validators = {"_members_valid": field_validator("members")(members_valid)}
    if hasattr(cls, "__post_init__"):
        validators["_dataclass_checks"] = model_validator(mode="after")(_dataclass_checks(cls))
    return create_model(f"{cls.__name__}Schema", __config__=ConfigDict(extra="forbid", frozen=True, strict=True,
                                                                       protected_namespaces=()),
                        __validators__=validators, **_dataclass_fields(cls))


def _dataclass_checks(cls: type) -> Any:
    """A validator that builds ``cls`` from the validated fields, so the checks of its ``__post_init__`` (those
    that read several fields) run at load too."""
    def check(model: BaseModel) -> BaseModel:
        cls(**model.model_dump())
        return model
    return check


def _member_arch_known(value: str) -> str:
    if value not in hyperparams.PARAMS:
        raise ValueError(f"unknown architecture '{value}'; known: {sorted(hyperparams.PARAMS)}")
    return value


def _classifier_member_arch_known(value: str) -> str:
    if value not in hyperparams.CLASSIFIER_MEMBER_ARCHS:
        raise ValueError(f"'{value}' is not a classifier network an ensemble can hold; "
                         f"known: {sorted(hyperparams.CLASSIFIER_MEMBER_ARCHS)}")
    return value


def _text_member_arch_known(value: str) -> str:
    if value not in hyperparams.TEXT_MEMBER_ARCHS:
        raise ValueError(f"'{value}' is not a text classifier network an ensemble can hold; "
                         f"known: {sorted(hyperparams.TEXT_MEMBER_ARCHS)}")
    return value


def _member_params_match(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """The members' params, checked against the member architecture's schema; kept as written."""
    member_arch = info.data.get("member_arch")
    if member_arch is None:  # member_arch itself failed, and says so
        return value
    try:
        PARAMS_SCHEMAS[hyperparams.PARAMS[member_arch]].model_validate(value)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                         + f" (params of member_arch '{member_arch}')") from None
    return value


def _own_training_valid(training: Any) -> dict[str, Any]:
    return model_training_valid(training)


def _members_valid(members: list[dict[str, Any]], allowed: frozenset[str], what: str,
                   keys: tuple[str, ...] = ("arch", "params")) -> list[dict[str, Any]]:
    """Each member is ``{arch, params}`` (or the other ``keys``) of an architecture in ``allowed``, its params
    typed."""
    for index, member in enumerate(members):
        where = f"members[{index}]"
        extra = sorted(set(member) - set(keys))
        if extra or "arch" not in member:
            raise ValueError(f"{where}: a member is {{{', '.join(keys)}}}, got keys {sorted(member)}")
        if "training" in member:
            model_training_valid(member["training"], f"{where}.training")
        arch = member["arch"]
        if arch not in allowed:
            raise ValueError(f"{where}.arch: '{arch}' is not {what} an ensemble can hold; known: {sorted(allowed)}")
        try:
            PARAMS_SCHEMAS[hyperparams.PARAMS[arch]].model_validate(member.get("params") or {})
        except ValidationError as exc:
            raise ValueError("; ".join(f"{where}.params.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                       for e in exc.errors())) from None
    return members


# What each kind of ensemble may hold: its task's architectures. A forecasting ensemble may hold
# another, a group whose forecast is combined first (an N-BEATS ensemble beside AutoETS).
_FORECAST_MEMBERS = frozenset(hyperparams.PARAMS) - hyperparams.CLASSIFICATION_ARCHS
_CLASSIFIER_MEMBERS = hyperparams.CLASSIFICATION_ARCHS - {"classifier_ensemble"}


def _ensemble_members_valid(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _members_valid(members, _FORECAST_MEMBERS, "a forecaster")


def _classifier_ensemble_members_valid(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _members_valid(members, _CLASSIFIER_MEMBERS, "a classifier", ("arch", "params", "training"))


def _typed_params(cls: type, schema: type[BaseModel]) -> Any:
    """``params`` of a model spec: validated by ``schema``, held and dumped as the dataclass ``cls``."""
    def to_mapping(value: Any) -> Any:
        return dataclasses.asdict(value) if isinstance(value, cls) else value

    def to_instance(value: BaseModel) -> Any:
        return cls(**{name: getattr(value, name) for name in schema.model_fields})

    return Annotated[schema, BeforeValidator(to_mapping), AfterValidator(to_instance),
                     PlainSerializer(dataclasses.asdict, return_type=dict)]


# One strict schema per params dataclass, and one spec model per architecture.
PARAMS_SCHEMAS: dict[type, type[BaseModel]] = {
    cls: _params_schema(cls) for cls in dict.fromkeys(hyperparams.PARAMS.values())
}
MODEL_SPECS: dict[str, type[BaseModel]] = {
    arch: create_model(
        f"{''.join(part.title() for part in arch.split('_'))}Spec", __base__=StrictModel,
        __doc__=f"One model of arch {arch}: ``name`` picks ``conf/models/<name>.yaml``.",
        name=(str, ...), arch=(Literal[arch], ...),
        params=(_typed_params(cls, PARAMS_SCHEMAS[cls]), cls()),
        training=(dict[str, Any], {}),
        __validators__={"_training_valid": field_validator("training")(_own_training_valid)},
    )
    for arch, cls in hyperparams.PARAMS.items()
}
# One model to train: ``name`` picks ``conf/models/<name>.yaml``, whose ``arch`` picks the
# spec model, so ``params`` is typed per architecture (a dataclass of seqpipe.hyperparams)
# and ``model_overrides`` in pipeline.yaml merge over it before it is validated.
ModelSpec = Annotated[Union[tuple(MODEL_SPECS.values())], Field(discriminator="arch")]  # noqa: UP007


class BacktestConfig(StrictModel):
    """A rolling-origin backtest: every model refitted and scored at ``folds`` earlier forecast origins.

    Fold 1 forecasts the regular test window; fold i moves the origin ``(i - 1) x step``
    points back and re-prepares and refits on what lies before it, nothing after.
    """

    folds: int = Field(0, ge=0, description="forecast origins; 0 turns the backtest off")
    step: int | None = Field(None, gt=0, description="points the origin moves back per fold; None: the horizon")
    models: list[str] | None = Field(None, min_length=1, description="models to backtest; None: every configured one")


class SelectionConfig(StrictModel):
    """How the champion is chosen: on the validation window, or on backtest folds that end before the test window.

    ``backtest`` refits every model at ``folds`` forecast origins before the test window
    (fold 1 forecasts the validation window, each next fold's origin ``step`` points
    earlier) and ranks by the mean over the folds. Each fold stops training on its own
    validation window, the one before the window it is scored on, so no network is scored
    on the window it stopped training on, as it is on the pipeline's validation window.
    """

    method: Literal["validation", "backtest"] = Field(
        "validation", description="validation: the validation window ranks; backtest: folds before the test window rank")
    folds: int = Field(2, ge=1, description="backtest: forecast origins before the test window")
    step: int | None = Field(None, gt=0, description="backtest: points the origin moves back per fold; None: the horizon")


class EvaluationConfig(StrictModel):
    metric: Literal["mase", "smape", "mape", "mae", "rmse"] = "mase"
    plot_series: int = Field(4, gt=0)
    samples: int = Field(200, gt=1, description="samples drawn from probabilistic models for CRPS and intervals")
    coverage_levels: list[float] = Field([0.8, 0.95], description="central interval levels whose coverage is scored")
    seed: int = Field(0, description="seed of the evaluation's sampling, so scores repeat")
    backtest: BacktestConfig = BacktestConfig()
    selection: SelectionConfig = SelectionConfig()

    @model_validator(mode="after")
    def _levels_are_probabilities(self) -> EvaluationConfig:
        _require_probabilities("evaluation.coverage_levels", self.coverage_levels)
        return self


class ServingConfig(StrictModel):
    """What the registered model returns besides the mean, when its architecture can sample."""

    quantiles: list[float] = Field([0.1, 0.5, 0.9], description="quantile columns q0.1, q0.5, ... of the forecast")
    samples: int = Field(200, gt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _quantiles_are_probabilities(self) -> ServingConfig:
        _require_probabilities("serving.quantiles", self.quantiles)
        return self


class SynthesisConfig(StrictModel):
    """`seqpipe synthesize`: synthetic series from a trained GAN's generator, run without a history."""

    model: str = Field("gan", description="a trained model of arch gan, by its name in `models`")
    series: int = Field(100, gt=0)
    length: int | None = Field(None, gt=1, description="points per series; null: the median training series'")
    seed: int = 0


class TrackingConfig(StrictModel):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str | None = Field(
        "mlflow/artifacts", description="new experiments' artifact location; None: the tracking server's own"
    )
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
    skip_unchanged: bool = Field(
        True, description="a scheduled run stops after ingest when the data equals production's"
    )


class DriftConfig(StrictModel):
    """How a scheduled retraining compares new data with the data behind production."""

    compare: Literal["seasonal_difference", "level"] = Field(
        "seasonal_difference", description="what is compared: y[t] - y[t - season], or the values themselves"
    )
    bins: int = Field(10, ge=2, description="most quantile bins of the reference values for the PSI")
    psi_threshold: float = Field(0.2, gt=0, description="a series drifted when its PSI exceeds this")
    ks_alpha: float = Field(0.01, gt=0, lt=1, description="... and a two-sample KS test rejects at this level")
    min_points: int = Field(8, gt=1, description="series with fewer new points are not tested")


class OrchestrationConfig(StrictModel):
    """How Prefect runs the pipeline: in this process, or training fanned out to a work pool."""

    mode: Literal["local", "workers"] = Field(
        "local", description="local: train in this process; workers: one flow run per model on work_pool"
    )
    prefect_api_url: str | None = Field(None, description="None: PREFECT_API_URL, or Prefect in-process")
    work_pool: str = Field("gpu", description="the pool the train-model deployment runs on")
    retrain_pool: str = Field("seqpipe", description="the pool the scheduled retraining deployment runs on")
    training_deployment: str = "seqpipe-train-model/train-model"
    concurrency: int | None = Field(
        None, gt=0, description="local mode: models trained at once (threads sharing one device); None: 1"
    )
    training_timeout: float | None = Field(
        None, gt=0, description="workers mode: seconds to wait for one model's flow run; None waits"
    )
    heartbeat_seconds: int = Field(
        30, ge=30, description="seconds between a running flow run's heartbeats (seqpipe's commands set "
                               "PREFECT_FLOWS_HEARTBEAT_FREQUENCY from it; Prefect's minimum is 30)"
    )
    heartbeat_timeout: float = Field(
        300, ge=10, description="a seqpipe flow run with no heartbeat for this many seconds is marked Crashed "
                                "(the automation `seqpipe deploy` creates); more than heartbeat_seconds"
    )
    retries: int = Field(2, ge=0, description="retries of a step that failed for a transient reason")
    retry_delay: float = Field(2.0, ge=0, description="seconds before the first retry; doubles per retry")
    cache: bool = Field(True, description="skip a step whose input files, config and code are unchanged")
    cache_dir: str = ".seqpipe/cache"
    lock_timeout: float | None = Field(
        600, ge=0, description="seconds a run waits while another run holds the data folder, then fails; "
                               "0 fails at once, None waits as long as it takes"
    )
    ephemeral_startup_timeout: int = Field(
        120, gt=0, description="seconds Prefect's temporary API server (no prefect_api_url) may take to start; "
                               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS wins"
    )

    @model_validator(mode="after")
    def _timeout_outlasts_heartbeat(self) -> OrchestrationConfig:
        if self.heartbeat_timeout <= self.heartbeat_seconds:
            raise ValueError(f"orchestration.heartbeat_timeout ({self.heartbeat_timeout}) must be longer than "
                             f"orchestration.heartbeat_seconds ({self.heartbeat_seconds}), or every run is marked Crashed")
        return self


class ServersConfig(StrictModel):
    """What `seqpipe up` starts (the production profile): MLflow and Prefect servers on PostgreSQL."""

    host: str = "127.0.0.1"
    mlflow_port: int = Field(5000, gt=0, lt=65536)
    mlflow_backend_store_uri: str = "postgresql://postgres@127.0.0.1:5432/seqpipe_mlflow"
    mlflow_artifacts_destination: str = "mlflow/server-artifacts"
    prefect_port: int = Field(4200, gt=0, lt=65536)
    prefect_database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/seqpipe_prefect"
    state_dir: str = Field(".seqpipe/servers", description="pid files and logs of the started servers")
    start_timeout: float = Field(120, gt=0, description="seconds a server may take to answer its health check")


# -- sequence classification (task: classify) -------------------------------------------------

class SequenceColumns(StrictModel):
    """Which columns of a long frame hold the sequence id, the step, the label and the channels."""

    sequence_id: str | None = Field(
        "sequence_id", description="the id column; None (texts only): the rows are numbered"
    )
    step: str | None = Field("step", description="None: the rows' order within each sequence")
    label: str = Field("label", description="the label column; a label table (source.labels) may hold it instead")
    channels: list[str] | None = Field(None, min_length=1, description="None: every other numeric column")
    text: str | None = Field(
        None, description="text classification: the column of texts, one labelled text per row "
                          "(sequence_id: a row id column, or None to number the rows); None: numeric frames"
    )


class AudioFeatures(StrictModel):
    """How raw audio becomes frames of features (librosa); recorded with the model, so prediction matches."""

    kind: Literal["mfcc", "log_mel"] = "mfcc"
    sample_rate: int = Field(8000, gt=0, description="audio is resampled to this rate first")
    n_mfcc: int = Field(13, gt=0, description="coefficients per frame, kind=mfcc")
    n_mels: int = Field(40, gt=0, description="mel bands")
    n_fft: int = Field(256, gt=0, description="samples per analysis window")
    hop_length: int = Field(128, gt=0, description="samples between frames")
    trim_db: float | None = Field(30.0, gt=0, description="trim leading and trailing silence quieter than this; None keeps it")


class TextConfig(StrictModel):
    """How text becomes token ids: a vocabulary learned on the training split only, saved with the model."""

    tokenizer: Literal["word", "bpe", "wordpiece"] = Field(
        "word", description="word: whitespace and punctuation words; bpe / wordpiece: subwords (Hugging Face tokenizers)"
    )
    vocab_size: int = Field(20_000, gt=2, description="at most this many tokens, the unknown and padding ones included")
    min_frequency: int = Field(2, gt=0, description="a token seen fewer times in training text is unknown")
    lowercase: bool = True
    max_tokens: int = Field(
        256, gt=0, description="a longer text keeps its first max_tokens tokens, and its characters up to the end "
                               "of the last (recorded with the model)"
    )
    max_chars: int = Field(100_000, gt=0, description="validation: a text longer than this is refused")


class SequenceSourceConfig(StrictModel):
    """Where labelled sequences come from: a built-in dataset, a long frame (CSV, Parquet, SQL) or WAV files."""

    kind: Literal["builtin", "csv", "parquet", "sql", "audio"] = "builtin"
    name: str | None = Field(
        "spoken-digits", description="built-in dataset, for kind=builtin: spoken-digits (MFCC frames), "
                                     "rotten-tomatoes or reuters-r8 (texts)"
    )
    path: str | None = Field(None, description="csv/parquet: a file or folder; audio: the folder of WAV files")
    labels: str | None = Field(
        None, description="a CSV of (sequence_id, label); audio: of (file, label), file relative to path"
    )
    columns: SequenceColumns = SequenceColumns()
    url: str | None = Field(None, description="SQLAlchemy URL, for kind=sql")
    query: str | None = Field(None, description="SQL query returning the configured columns, for kind=sql")
    audio: AudioFeatures = AudioFeatures()

    @model_validator(mode="after")
    def _source_is_complete(self) -> SequenceSourceConfig:
        required = {"builtin": ["name"], "csv": ["path"], "parquet": ["path"], "sql": ["url", "query"],
                    "audio": ["path", "labels"]}[self.kind]
        for key in required:
            if not getattr(self, key):
                raise ValueError(f"classify.source.{key} is required when kind is '{self.kind}'")
        return self


class SequenceSplitConfig(StrictModel):
    """A stratified split with a fixed seed: test first, then validation out of what is left for training."""

    test_share: float = Field(0.2, gt=0, lt=1)
    validation_share: float = Field(0.2, gt=0, lt=1, description="share of the non-test sequences")
    seed: int = 0


class SequenceValidationConfig(StrictModel):
    """The GX suite of a batch of labelled sequences."""

    classes: list[str] | None = Field(None, min_length=2, description="the label set; None: the labels found")
    min_per_class: int = Field(5, gt=0, description="training sequences each class needs at least")
    min_length: int = Field(1, gt=0, description="steps a sequence needs at least")
    max_length: int | None = Field(None, gt=0)
    channels: int | None = Field(None, gt=0, description="channels each step must have; None: whatever the first batch has")
    value_min: float | None = None
    value_max: float | None = None
    max_offending_listed: int = Field(10, gt=0)


class SequenceEvaluationConfig(StrictModel):
    metric: Literal["accuracy", "macro_f1", "log_loss", "brier", "ece"] = Field(
        "macro_f1", description="what ranks the leaderboard and the gate compares"
    )
    calibration_bins: int = Field(15, gt=1, description="equal-width confidence bins of the expected calibration error")


class SequencePromotionConfig(StrictModel):
    """The gate of a classifier: a paired test on the same test sequences."""

    test: Literal["mcnemar", "bootstrap"] = Field(
        "mcnemar", description="McNemar's exact test on the disagreements, or a paired bootstrap of the metric"
    )
    margin: float = Field(0.0, ge=0, lt=1, description="improvement of the metric the challenger needs")
    significance: float = Field(0.05, gt=0, lt=1)
    bootstrap_samples: int = Field(2000, gt=99)
    seed: int = 0


class ClassifyConfig(StrictModel):
    """Sequence classification (``task: classify``): one label per sequence, speech or sensor frames."""

    source: SequenceSourceConfig = SequenceSourceConfig()
    split: SequenceSplitConfig = SequenceSplitConfig()
    validation: SequenceValidationConfig = SequenceValidationConfig()
    class_weighting: Literal["none", "balanced"] = Field(
        "none", description="balanced: the loss weighs each class by the inverse of its training frequency"
    )
    text: TextConfig = TextConfig()
    evaluation: SequenceEvaluationConfig = SequenceEvaluationConfig()
    promotion: SequencePromotionConfig = SequencePromotionConfig()


# Losses that are ratios of the target (seqpipe.models.losses), and the scalers under which
# a ratio in scaled units is the ratio in the data's units.
RATIO_LOSSES = ("mape", "smape")
RATIO_KEEPING_SCALERS = ("meanabs",)


def _point_losses_of(spec: Any) -> list[str]:
    """The point losses a model spec trains on: its params' ``loss``, or its members' (the ensembles)."""
    params = spec.params
    member_params = getattr(params, "member_params", None)
    if isinstance(member_params, dict):
        return [member_params.get("loss", "mse")]
    members = getattr(params, "members", None)
    if isinstance(members, list):
        return [(member.get("params") or {}).get("loss", "mse") for member in members]
    loss = getattr(params, "loss", None)
    return [] if loss is None else [loss]


class PipelineConfig(StrictModel):
    conf_dir: Path = Field(description="the folder this config was loaded from")
    root: Path = Field(description="project root (conf_dir's parent); relative paths resolve against it")
    task: Literal["forecast", "classify"] = Field(
        "forecast", description="forecast: series to horizons (data, prepare, evaluation, promotion); "
                                "classify: a label per sequence (the classify section)"
    )
    data: DataConfig = DataConfig()
    classify: ClassifyConfig = ClassifyConfig()
    validation: ValidationConfig = ValidationConfig()
    prepare: PrepareConfig = PrepareConfig()
    training: TrainingConfig = TrainingConfig()
    models: list[ModelSpec]
    evaluation: EvaluationConfig = EvaluationConfig()
    serving: ServingConfig = ServingConfig()
    synthesis: SynthesisConfig = SynthesisConfig()
    tracking: TrackingConfig = TrackingConfig()
    promotion: PromotionConfig = PromotionConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    drift: DriftConfig = DriftConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    servers: ServersConfig = ServersConfig()

    @model_validator(mode="after")
    def _model_names_unique(self) -> PipelineConfig:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"models lists {duplicates} more than once")
        if not names:
            raise ValueError("models must list at least one model")
        unknown = sorted(set(self.evaluation.backtest.models or []) - set(names))
        if unknown:
            raise ValueError(f"evaluation.backtest.models names models that 'models' does not list: {unknown}")
        classifying = self.task == "classify"
        wrong = [f"{m.name} ({m.arch})" for m in self.models if (m.arch in hyperparams.CLASSIFICATION_ARCHS) != classifying]
        if wrong:
            raise ValueError(f"task '{self.task}' cannot train {wrong}: `seqpipe models` lists the architectures of each task")
        return self

    @model_validator(mode="after")
    def _ratio_losses_keep_ratios(self) -> PipelineConfig:
        """A percentage-error loss is that error only on data scaled without a shift (seqpipe.models.losses)."""
        if self.prepare.scaler in RATIO_KEEPING_SCALERS:
            return self
        offending = [f"{m.name} (loss {loss})" for m in self.models for loss in dict.fromkeys(_point_losses_of(m))
                     if loss in RATIO_LOSSES]
        if offending:
            raise ValueError(f"models {offending} train on a percentage error, which needs a scaling that keeps "
                             f"ratios: set prepare.scaler to {' or '.join(RATIO_KEEPING_SCALERS)} "
                             f"(it is '{self.prepare.scaler}'), or choose loss mse, mae or mase")
        return self

    def backtest_models(self) -> list[ModelSpec]:
        """The models the backtest refits, in the order ``models`` lists them."""
        chosen = self.evaluation.backtest.models
        return [spec for spec in self.models if chosen is None or spec.name in chosen]

    def path(self, relative: str | Path) -> Path:
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.root / candidate

    @property
    def data_dir(self) -> Path:
        return self.path(self.data.dir)

    def model_file(self, name: str) -> Path:
        return self.conf_dir / MODELS_DIR / f"{name}.yaml"

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise ConfigError(f"model '{name}' is not in the config; known: {[m.name for m in self.models]}")

    def fingerprint(self) -> str:
        """A short hash of what shapes the results, for lineage tags.

        Where things run (servers, pools, caching) is left out: the same data, models and
        settings on a laptop or on GPU workers are the same experiment.
        """
        payload = self.model_dump(mode="json", exclude=set(INFRASTRUCTURE) | set(self.inactive_sections()))
        return short_digest(payload)

    @property
    def source(self) -> SourceConfig | SequenceSourceConfig:
        """Where the configured task's data comes from: ``data.source``, or ``classify.source``."""
        return self.classify.source if self.task == "classify" else self.data.source

    def inactive_sections(self) -> tuple[str, ...]:
        """The sections the configured task never reads: their defaults must not tell two experiments apart."""
        return FORECAST_SECTIONS if self.task == "classify" else ("classify",)

    def payload(self) -> dict[str, Any]:
        """The config as plain data, without this machine's paths: what a remote worker receives."""
        return self.model_dump(mode="json", exclude={"root", "conf_dir"})

    @classmethod
    def from_payload(cls, payload: dict[str, Any], conf_dir: str | Path) -> PipelineConfig:
        """Rebuild a config sent by ``payload`` on another machine, rooted at its own project."""
        conf_path = Path(conf_dir).resolve()
        try:
            return cls.model_validate({**payload, "root": conf_path.parent, "conf_dir": conf_path})
        except ValidationError as exc:
            raise ConfigError(_format_errors(conf_path / PIPELINE_FILE, exc)) from None


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


def _resolve_models(conf_dir: Path, names: Any, overrides: Any) -> list[Any]:
    """Expand each name of ``models:`` from conf/models/<name>.yaml, apply ``model_overrides``, validate.

    ``models`` stays a plain list of names so that DVC can run one stage per model
    (``foreach``) and ``dvc exp run -S`` can address any override by its key path. Each
    model is validated on its own, so an error names its file (or the override) and key.
    """
    pipeline_file = conf_dir / PIPELINE_FILE
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{pipeline_file}: 'models' must be a list of model names, got {names!r}")
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{pipeline_file}: 'model_overrides' must map model names to params")
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise ConfigError(f"{pipeline_file}: model_overrides names models that 'models' does not list: {stray}")
    resolved = []
    for name in names:
        model_file = conf_dir / MODELS_DIR / f"{name}.yaml"  # PipelineConfig.model_file, before it exists
        base = _read_yaml(model_file)
        unknown = set(base) - {"arch", "params", "training"}
        if unknown:
            raise ConfigError(f"{model_file}: unknown keys {sorted(unknown)}; expected 'arch', 'params' and "
                              f"optionally 'training'")
        if "arch" not in base:
            raise ConfigError(f"{model_file}: missing 'arch'")
        arch, own, override = base["arch"], base.get("params") or {}, overrides.get(name) or {}
        if not isinstance(own, dict):
            raise ConfigError(f"{model_file}: 'params' must be a mapping, got {own!r}")
        if not isinstance(override, dict):
            raise ConfigError(f"{pipeline_file}: model_overrides.{name} must be a mapping, got {override!r}")
        spec_model = MODEL_SPECS.get(arch) if isinstance(arch, str) else None
        if spec_model is None:
            raise ConfigError(f"{model_file}: arch: unknown architecture {arch!r}; known: {sorted(MODEL_SPECS)}")
        try:
            resolved.append(spec_model.model_validate({"name": name, "arch": arch, "params": {**own, **override},
                                                       "training": base.get("training") or {}}))
        except ValidationError as exc:
            raise ConfigError(_format_model_errors(model_file, pipeline_file, name, override, exc)) from None
    return resolved


def _format_model_errors(model_file: Path, pipeline_file: Path, name: str, override: dict[str, Any],
                         exc: ValidationError) -> str:
    """One line per error, naming the file the offending key came from and its key path."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        if loc[:1] == ["params"] and len(loc) > 1 and loc[1] in override:
            where = f"{pipeline_file}: model_overrides.{name}.{'.'.join(loc[1:])}"
        else:
            where = f"{model_file}: {'.'.join(loc) or '(top level)'}"
        given = f" (got {err['input']!r})" if err["type"] not in ("extra_forbidden", "missing") else ""
        lines.append(f"{where}: {err['msg']}{given}")
    return "\n".join(lines)


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def default_conf_dir() -> Path:
    return Path(os.environ.get(CONF_ENV, "conf")).resolve()


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _apply_profiles(conf_path: Path, raw: dict[str, Any], profiles: str | None) -> dict[str, Any]:
    """Overlay ``conf/profiles/<name>.yaml`` for each comma-separated name, in order.

    A profile switches infrastructure (servers, pools) without touching pipeline.yaml,
    whose keys DVC tracks as params: the same experiment runs embedded or on servers.
    """
    for name in filter(None, (part.strip() for part in (profiles or "").split(","))):
        profile_file = conf_path / PROFILES_DIR / f"{name}.yaml"
        if not profile_file.is_file():
            known = sorted(p.stem for p in (conf_path / PROFILES_DIR).glob("*.yaml"))
            raise ConfigError(f"{profile_file}: no such profile (SEQPIPE_PROFILE={profiles}); known: {known}")
        overlay = _read_yaml(profile_file)
        if "models" in overlay or "model_overrides" in overlay:
            raise ConfigError(f"{profile_file}: a profile changes infrastructure, not 'models'; edit pipeline.yaml")
        raw = _merge(raw, overlay)
    return raw


def load_config(conf_dir: str | Path | None = None, profile: str | None = None) -> PipelineConfig:
    """Load and validate ``<conf_dir>/pipeline.yaml``; the project root is conf_dir's parent.

    ``profile`` (default: $SEQPIPE_PROFILE) names overlays in ``<conf_dir>/profiles/``.
    """
    conf_path = Path(conf_dir).resolve() if conf_dir else default_conf_dir()
    pipeline_file = conf_path / PIPELINE_FILE
    raw = _apply_profiles(conf_path, _read_yaml(pipeline_file), profile or os.environ.get(PROFILE_ENV))
    raw["models"] = _resolve_models(conf_path, raw.get("models", []), raw.pop("model_overrides", None))
    for derived in ("root", "conf_dir"):
        if derived in raw:
            raise ConfigError(f"{pipeline_file}: '{derived}' is derived from the config folder and cannot be set")
    raw["root"], raw["conf_dir"] = conf_path.parent, conf_path
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(pipeline_file, exc)) from None
