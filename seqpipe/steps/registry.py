"""Register, gate, promote and roll back model versions; list them; forecast with one."""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import mlflow
from mlflow.exceptions import MlflowException

from seqpipe.config import PipelineConfig
from seqpipe.data.prepare import COVARIATE_SCALERS_FILE, SCALERS_FILE, PreparedData, load_prepared
from seqpipe.data.sources import read_table, training_series_name
from seqpipe.layout import Layout
from seqpipe.errors import ConfigError, PredictionError, RegistryError, SeqpipeError
from seqpipe.evaluation.forecast import QuantileSettings
from seqpipe.evaluation.leaderboard import before_test_scores, ranking_column
from seqpipe.evaluation.gate import GateDecision, decide, diebold_mariano, step_losses
from seqpipe.evaluation.metrics import METRICS, score
from seqpipe.evaluation.scoring import scoring_targets
from seqpipe.io import write_json, write_table
from seqpipe.tracking.lineage import TAG_PREFIX
from seqpipe.tracking.registry import (
    CHALLENGER, PRODUCTION, ModelArtifacts, alias_version, forecast_package, aliases_of, list_versions, log_and_register, model_uri,
)
from seqpipe.tracking.registry import promote as move_production
from seqpipe.tracking.registry import rollback as roll_back_production
from seqpipe.tracking.store import connect, mlflow_uris, tracking_uri
from seqpipe.steps.training import training_record
from seqpipe.tasks import task_step

log = logging.getLogger(__name__)


def champion(cfg: PipelineConfig) -> tuple[pd.DataFrame, pd.Series, dict]:
    """The leaderboard, its first model (best before the test window) and the MLflow runs that trained it here: what ``register`` registers."""
    layout = Layout.of(cfg)
    board = pd.read_csv(layout.evaluation / "leaderboard.csv")
    best = board.iloc[0]
    run = training_record(cfg, best["model"])
    if run is None:
        raise RegistryError(f"no MLflow training run is recorded here for the model now in {layout.models / best['model']}; "
                            f"train it here (`seqpipe train --model {best['model']}`) before registering it")
    return board, best, run


@task_step
def register(cfg: PipelineConfig) -> str:
    """Register the leaderboard's best model, whatever its kind, as a new version with the alias ``challenger``.

    The best model is the one with the best validation score: the test scores it is
    tagged with were not used to choose it. Retrying is safe: the winner's training run
    keeps the version it already has.
    """
    client, _ = connect(cfg)  # an unreachable store fails here, before anything is logged
    layout = Layout.of(cfg)
    _, best, run = champion(cfg)
    ranked_by = ranking_column(cfg.evaluation.metric, cfg.evaluation.selection.method)
    prepared = load_prepared(layout.prepared)
    example_ids = prepared.scalers.series_ids[:2]
    example = (prepared.frame[prepared.frame["series_id"].isin(example_ids)]
               .groupby("series_id").tail(prepared.spec.lookback)[_history_columns(prepared)]
               .reset_index(drop=True))
    # The version inherits the lineage its training run recorded, not today's files.
    trained_from = {k: v for k, v in client.get_run(run["run_id"]).data.tags.items() if k.startswith(TAG_PREFIX)}
    tags = {**trained_from, "seqpipe.model": best["model"], "seqpipe.arch": best["arch"],
            "seqpipe.pipeline_run_id": run["parent_run_id"], "seqpipe.training_run_id": run["run_id"],
            **{f"seqpipe.test_{m}": f"{best[m]:.6f}" for m in METRICS},
            **{f"seqpipe.{column}": f"{value:.6f}" for column, value in before_test_scores(best).items()},
            "seqpipe.selected_by": ranked_by}
    with tempfile.TemporaryDirectory() as scratch:
        config = write_json(Path(scratch) / "pipeline.json", cfg.model_dump(mode="json", exclude={"root", "conf_dir"}))
        version = log_and_register(
            client, run["run_id"], cfg.tracking.registered_model,
            lambda: forecast_package(ModelArtifacts(layout.models / best["model"], layout.prepared / SCALERS_FILE, prepared.spec.freq,
                           example, QuantileSettings(tuple(cfg.serving.quantiles), cfg.serving.samples, cfg.serving.seed),
                           config, prepared.features,
                           layout.prepared / COVARIATE_SCALERS_FILE if prepared.covariate_scalers else None,
                           prepared.lower_bound)),
            tags,
        )
    metric = cfg.evaluation.metric
    log.info(f"registered {cfg.tracking.registered_model} version {version} ({best['model']}, chosen on {ranked_by} "
             f"{best[ranked_by]:.4f}; test {metric} {best[metric]:.4f}) with alias 'challenger'")
    return version


def _history_columns(prepared: PreparedData) -> list[str]:
    """What a history frame for the prepared data's models holds: the canonical columns and the covariates."""
    return ["series_id", "timestamp", "value", *prepared.features.covariates]


def _test_split(cfg: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The history before the test split, the test actuals (series x step) and each series' MASE scale."""
    folder = Layout.of(cfg).prepared
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no prepared data to compare versions on; run `seqpipe prepare` first")
    prepared = load_prepared(folder)
    frame = prepared.frame
    history = frame.loc[frame["split"] != "test", _history_columns(prepared)].reset_index(drop=True)
    values, scale = scoring_targets(prepared)
    ids = pd.Index(prepared.scalers.series_ids, name="series_id")
    actual = pd.DataFrame(values, index=ids, columns=pd.RangeIndex(1, prepared.spec.horizon + 1, name="step"))
    return history, actual, pd.Series(scale, index=ids)


def _forecast_version(cfg: PipelineConfig, version: str, history: pd.DataFrame, actual: pd.DataFrame) -> np.ndarray:
    """Forecasts of a registered version for the test split, aligned with ``actual``."""
    uri = model_uri(cfg.tracking.registered_model, version)
    try:
        with mlflow_uris(tracking_uri(cfg)):
            loaded = mlflow.pyfunc.load_model(uri)
        forecast = loaded.predict(history, params={"horizon": actual.shape[1]})
    except (MlflowException, SeqpipeError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise RegistryError(f"{uri} cannot forecast the current test split: {message}") from None
    table = forecast.pivot(index="series_id", columns="step", values="mean")
    return table.reindex(index=actual.index, columns=actual.columns).to_numpy(np.float64)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def gate_candidates(cfg: PipelineConfig) -> tuple[str, str | None]:
    """The challenger and production (None: no version serves yet) versions the gate compares."""
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"registered model '{name}' has no '{CHALLENGER}' version; run `seqpipe register` first")
    return challenger, alias_version(client, name, PRODUCTION)


def already_production(version: str) -> dict:
    log.info(f"gate: version {version} is already '{PRODUCTION}'; nothing to decide")
    return {"challenger": version, "production": version, "passed": False, "action": "already production"}


def conclude_gate(cfg: PipelineConfig, challenger: str, production: str | None, decision: GateDecision,
                  auto_promote: bool, test_tags: dict[str, str], test_summary: str) -> dict:
    """Keep the gate's decision as tags on the challenger and promote it when it passed (and may be).

    ``test_tags`` are the paired test's own figures (``seqpipe.gate.*``), ``test_summary``
    its line in the log; the rest is the same for every task.
    """
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    action = "promoted" if decision.promote and auto_promote else ("report only" if decision.promote else "kept production")
    tags = {
        "seqpipe.gate.passed": str(decision.promote).lower(),
        "seqpipe.gate.action": action,
        "seqpipe.gate.reason": decision.reason,
        "seqpipe.gate.metric": decision.metric,
        "seqpipe.gate.challenger_score": _number(decision.challenger_score),
        "seqpipe.gate.production_score": _number(decision.production_score),
        "seqpipe.gate.production_version": str(production),
        **test_tags,
        "seqpipe.gate.at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    log.info(f"gate: challenger v{challenger} {decision.metric} {decision.challenger_score:.4f} vs production "
             f"{'none' if production is None else f'v{production} {decision.production_score:.4f}'}; {test_summary} "
             f"-> {'pass' if decision.promote else 'fail'}: {decision.reason}; {action}")
    if action == "promoted":
        promote(cfg, challenger, f"gate: {decision.reason}")
    return {"challenger": challenger, "production": production, "passed": decision.promote, "action": action,
            "metric": decision.metric, "challenger_score": decision.challenger_score,
            "production_score": decision.production_score, "reason": decision.reason}


@task_step
def gate(cfg: PipelineConfig) -> dict:
    """Compare the challenger with production on the test split; promote it when it is clearly better.

    Both versions forecast the same history with their registered pyfunc, so the comparison
    covers exactly what would serve. The decision is kept as tags on the challenger.
    """
    challenger, production = gate_candidates(cfg)
    if production == challenger:
        return already_production(challenger)
    settings, metric = cfg.promotion, cfg.evaluation.metric

    history, actual, scale = _test_split(cfg)
    values, scales = actual.to_numpy(np.float64), scale.to_numpy(np.float64)
    challenger_forecast = _forecast_version(cfg, challenger, history, actual)
    challenger_score = float(np.nanmean(score(values, challenger_forecast, scales)[metric]))
    production_score, test = None, None
    if production is not None:
        production_forecast = _forecast_version(cfg, production, history, actual)
        production_score = float(np.nanmean(score(values, production_forecast, scales)[metric]))
        test = diebold_mariano(step_losses(values, challenger_forecast, scales, settings.loss),
                               step_losses(values, production_forecast, scales, settings.loss))
    decision = decide(metric, challenger_score, production_score, test, settings.margin, settings.significance)
    test_tags = {"seqpipe.gate.p_value": _number(test.p_value if test else None),
                 "seqpipe.gate.dm_statistic": _number(test.statistic if test else None),
                 "seqpipe.gate.loss": settings.loss}
    p_value = "n/a" if test is None else f"{test.p_value:.4g}"
    result = conclude_gate(cfg, challenger, production, decision, settings.auto_promote, test_tags,
                           f"DM p-value {p_value} ({settings.loss} loss)")
    return {**result, "p_value": None if test is None else test.p_value}


def promote(cfg: PipelineConfig, version: str | None, reason: str, challenger: bool = False) -> dict:
    """Move ``production`` to ``version`` (or to the challenger); the move is kept in the registry."""
    if (version is None) == (not challenger):
        raise ConfigError("give exactly one of --version N and --challenger")
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    if challenger:
        version = alias_version(client, name, CHALLENGER)
        if version is None:
            raise RegistryError(f"registered model '{name}' has no '{CHALLENGER}' version")
    record = move_production(client, name, str(version), reason)
    log.info(f"production: version {record['from']} -> {record['to']} by {record['by']} at {record['at']} ({reason})")
    return record


def rollback(cfg: PipelineConfig, reason: str) -> dict:
    """Move ``production`` back to the version the current one replaced."""
    client, _ = connect(cfg)
    record = roll_back_production(client, cfg.tracking.registered_model, reason)
    log.info(f"production rolled back: version {record['from']} -> {record['to']} by {record['by']} "
          f"at {record['at']} ({reason})")
    return record


VERSION_COLUMNS = ("version", "aliases", "model", *(f"test_{m}" for m in METRICS), "gate", "created")
TEST_TAG = "seqpipe.test_"


def versions(cfg: PipelineConfig) -> pd.DataFrame:
    """Every registered version with its aliases, test metrics, gate outcome and creation time.

    The metric columns are those the versions were tagged with (a forecaster's MASE and
    sMAPE, a classifier's accuracy and macro-F1), in the order they first appear.
    """
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    found = list_versions(client, name)
    if not found:
        log.info("registered model '%s' has no versions yet; run `seqpipe register`", name)
        return pd.DataFrame(columns=list(VERSION_COLUMNS))
    aliases = aliases_of(client, name)
    metrics = list(dict.fromkeys(k[len("seqpipe."):] for v in found for k in v.tags if k.startswith(TEST_TAG)))
    rows = [{
        "version": int(v.version),
        "aliases": ",".join(aliases.get(str(v.version), [])) or "-",
        "model": v.tags.get("seqpipe.model", "?"),
        **{m: float(v.tags[f"seqpipe.{m}"]) if f"seqpipe.{m}" in v.tags else np.nan for m in metrics},
        "gate": v.tags.get("seqpipe.gate.action", "-"),
        "created": datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds"),
    } for v in found]
    return pd.DataFrame(rows, columns=["version", "aliases", "model", *metrics, "gate", "created"])


def load_registered(cfg: PipelineConfig, reference: str) -> tuple[mlflow.pyfunc.PyFuncModel, str]:
    """The registered version ``reference`` (production, challenger or a number) as a pyfunc, and its URI."""
    client, _ = connect(cfg)
    uri = model_uri(cfg.tracking.registered_model, reference)
    try:
        with mlflow_uris(client):
            return mlflow.pyfunc.load_model(uri), uri
    except MlflowException as exc:
        raise RegistryError(f"cannot load {uri}: {exc.message}") from None
    except PredictionError as exc:
        raise PredictionError(f"cannot load {uri}: {exc}") from None


@task_step
def predict(cfg: PipelineConfig, model: str, input_path: Path, output_path: Path, horizon: int | None = None) -> pd.DataFrame:
    """Forecast every series in ``input_path`` with a registered model; write ``output_path``."""

    source = cfg.data.source
    # The model, not today's config, knows which covariates it reads: every further column
    # is carried, and the model names any of its covariates the input lacks.
    columns = source.columns.model_copy(update={"covariates": []})
    # Without an id column the input is the one series training named (data.source.series_name or the source file's).
    history = read_table(input_path, columns, time_format=source.time_format, timezone=source.timezone,
                         keep_other_columns=True, series_name=training_series_name(source))
    loaded, uri = load_registered(cfg, model)
    schema = loaded.metadata.get_input_schema()
    if schema is not None:
        wanted = schema.input_names()
        absent = [c for c in wanted if c not in history.columns]
        if absent:
            raise PredictionError(f"{input_path}: missing columns {absent} that {uri} reads (covariates keep their "
                                  f"names); columns present: {list(map(str, history.columns))}")
        history = history[wanted]
    try:
        forecast = loaded.predict(history, params=None if horizon is None else {"horizon": horizon})
    except MlflowException as exc:
        raise PredictionError(f"{input_path}: {exc.message}") from None
    write_table(forecast, output_path)
    log.info(f"wrote {len(forecast)} forecasts for {forecast['series_id'].nunique()} series to {output_path} ({uri})")
    return forecast
