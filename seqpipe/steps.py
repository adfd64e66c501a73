"""The pipeline steps: one plain function each, shared by the CLI, the Prefect flow and DVC.

Steps hand over data as files under ``data/`` (see ``Layout``), never as objects, so
any step can be rerun alone and DVC can hash what each one wrote. Every output is
written into a staging file or folder and swapped in only when complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import mlflow
from mlflow.exceptions import MlflowException

from seqpipe.config import PipelineConfig, SourceConfig
from seqpipe.data.catalog import SeriesSpec, series_spec
from seqpipe.data.prepare import load_prepared, prepare_frame, save_prepared
from seqpipe.data.snapshot import Manifest, read_manifest, read_snapshot, write_snapshot
from seqpipe.data.sources import read_source, read_table
from seqpipe.data.validation import ValidationReport, validate_frame
from seqpipe.errors import ConfigError, DataValidationError, PredictionError, RegistryError, SeqpipeError
from seqpipe.evaluation.forecast import inverse_scale, predict_scaled
from seqpipe.evaluation.gate import GateDecision, decide, diebold_mariano, step_losses
from seqpipe.evaluation.leaderboard import build_leaderboard, to_markdown
from seqpipe.evaluation.metrics import METRICS, score, seasonal_scale
from seqpipe.evaluation.plots import plot_forecast_vs_actual, sample_series
from seqpipe.io import atomic_dir, read_json, write_json, write_table
from seqpipe.models import ProblemShape, build_model
from seqpipe.models.persistence import load_model, save_model
from seqpipe.tracking.lineage import TAG_PREFIX, git_state, lineage_tags
from seqpipe.tracking.registry import (
    CHALLENGER, PRODUCTION, ModelArtifacts, alias_version, aliases_of, list_versions, log_and_register, model_uri,
)
from seqpipe.tracking.registry import promote as move_production
from seqpipe.tracking.registry import rollback as roll_back_production
from seqpipe.tracking.runs import active_run, create_run, finish_run, log_metrics, log_params
from seqpipe.tracking.store import connect
from seqpipe.training import TrainSettings, fit, seed_everything

RUN_FILE = "run.json"
HISTORY_FILE = "history.json"
REPORT_FILE = "report.json"
VALIDATED_FILE = "series.parquet"


@dataclass(frozen=True)
class Layout:
    """Where each step writes, under the configured data folder."""
    raw: Path
    validated: Path
    reports: Path
    prepared: Path
    models: Path
    evaluation: Path

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Layout:
        root = cfg.data_dir
        return cls(root / "raw", root / "validated", root / "reports" / "validation", root / "prepared",
                   root / "models", root / "evaluation")


# -- ingest -------------------------------------------------------------------------------------

def ingest(cfg: PipelineConfig, source: SourceConfig | None = None) -> Manifest:
    """Read the source into the canonical frame and store it as an immutable raw snapshot."""
    frame, origin = read_source(source or cfg.data.source, cfg.root)
    manifest = write_snapshot(frame, Layout.of(cfg).raw, origin)
    print(f"ingested {manifest.rows} rows, {manifest.series} series from {origin} -> {manifest.snapshot}")
    return manifest


# -- validate -----------------------------------------------------------------------------------

def min_length(cfg: PipelineConfig) -> int:
    spec = series_spec(cfg.data)
    return cfg.validation.min_length or spec.lookback + 2 * spec.horizon


def validate(cfg: PipelineConfig) -> ValidationReport:
    """Run the GX suite on the latest snapshot; only a passing batch reaches ``data/validated``."""
    layout = Layout.of(cfg)
    frame, manifest = read_snapshot(layout.raw)
    report = validate_frame(
        frame, dataset=manifest.md5, source=manifest.source, min_length=min_length(cfg),
        max_listed=cfg.validation.max_offending_listed,
    )
    write_json(layout.reports / f"{manifest.md5}.json", report.to_dict())
    if not report.success:
        raise DataValidationError(report.failure_message(str(manifest.snapshot_path(layout.raw))))
    with atomic_dir(layout.validated) as staging:
        frame.to_parquet(staging / VALIDATED_FILE, index=False)
        write_json(staging / REPORT_FILE, report.to_dict())
    print(f"validation passed: {len(report.checks)} expectations on {report.rows} rows, {report.series} series")
    return report


def read_validation(cfg: PipelineConfig) -> dict:
    return read_json(Layout.of(cfg).validated / REPORT_FILE)


# -- prepare ------------------------------------------------------------------------------------

def _with_frequency(spec: SeriesSpec, frame: pd.DataFrame) -> SeriesSpec:
    """Calendar data needs a frequency to date its forecasts: configured, or inferred here."""
    if spec.freq or not pd.api.types.is_datetime64_any_dtype(frame["timestamp"]):
        return spec
    longest = frame.groupby("series_id")["timestamp"].size().idxmax()
    inferred = pd.infer_freq(frame.loc[frame["series_id"] == longest, "timestamp"])
    if inferred is None:
        raise ConfigError(f"could not infer the time frequency from series {longest!r}; set data.freq (e.g. 'MS', 'D', 'h')")
    return SeriesSpec(spec.horizon, spec.season, spec.lookback, inferred)


def prepare(cfg: PipelineConfig) -> dict:
    """Split by time, scale per series on training data, cut windows; write ``data/prepared``."""
    layout = Layout.of(cfg)
    frame = pd.read_parquet(layout.validated / VALIDATED_FILE)
    report = read_validation(cfg)
    spec = _with_frequency(series_spec(cfg.data), frame)
    prepared = prepare_frame(frame, spec, cfg.prepare.scaler, cfg.prepare.window_stride)
    with atomic_dir(layout.prepared) as staging:
        meta = save_prepared(prepared, staging, dataset=report["dataset"])
    print(f"prepared {meta['series']} series: windows {meta['windows']}, scaler {meta['scaler']}")
    return meta


# -- MLflow runs --------------------------------------------------------------------------------

def _lineage(cfg: PipelineConfig, flow_run_id: str | None) -> dict[str, str]:
    manifest = read_manifest(Layout.of(cfg).raw)
    report = read_validation(cfg)
    return lineage_tags(cfg, dataset_md5=manifest.md5, source=manifest.source,
                        validation="passed" if report["success"] else "failed", flow_run_id=flow_run_id)


def start_pipeline_run(cfg: PipelineConfig, flow_run_id: str | None = None) -> str:
    """Open the parent MLflow run of one pipeline run; log the config and the code version."""
    client, experiment_id = connect(cfg)
    tags = {TAG_PREFIX + k: v for k, v in git_state(cfg.root).items()}
    tags |= {TAG_PREFIX + "config_hash": cfg.fingerprint(), TAG_PREFIX + "prefect_flow_run_id": flow_run_id or "none"}
    run_id = create_run(client, experiment_id, "pipeline", tags)
    client.log_dict(run_id, cfg.model_dump(mode="json", exclude={"root"}), "config/pipeline.json")
    return run_id


def record_validation(cfg: PipelineConfig, run_id: str, flow_run_id: str | None = None) -> None:
    """Attach the dataset hash and validation result of the current data to a run."""
    client, _ = connect(cfg)
    for key, value in _lineage(cfg, flow_run_id).items():
        client.set_tag(run_id, key, value)
    client.log_artifact(run_id, str(Layout.of(cfg).validated / REPORT_FILE), "validation")


def finish_pipeline_run(cfg: PipelineConfig, run_id: str, succeeded: bool) -> None:
    client, _ = connect(cfg)
    finish_run(client, run_id, succeeded)


# -- train --------------------------------------------------------------------------------------

def _settings(cfg: PipelineConfig) -> TrainSettings:
    return TrainSettings(**cfg.training.model_dump())


def train(cfg: PipelineConfig, name: str, parent_run_id: str, flow_run_id: str | None = None) -> dict:
    """Train one configured model in its own child run; write ``data/models/<name>/``."""
    spec_cfg = cfg.model(name)
    layout = Layout.of(cfg)
    prepared = load_prepared(layout.prepared)
    shape = ProblemShape(prepared.spec.lookback, prepared.spec.horizon, prepared.spec.season)
    seed_everything(cfg.training.seed, cfg.training.num_threads)
    try:
        model = build_model(spec_cfg.arch, shape, spec_cfg.params)
    except ValueError as exc:
        raise ConfigError(f"{cfg.root / 'conf' / 'models' / (name + '.yaml')}: {exc}") from None

    client, experiment_id = connect(cfg)
    run_id = create_run(client, experiment_id, name, _lineage(cfg, flow_run_id), parent_id=parent_run_id)
    try:
        log_params(client, run_id, {
            "arch": spec_cfg.arch, **{f"model.{k}": v for k, v in asdict(model.params).items()},
            **{f"training.{k}": v for k, v in cfg.training.model_dump().items()},
            **{f"data.{k}": v for k, v in asdict(prepared.spec).items()},
            "train_windows": len(prepared.train.y), "parameters": sum(p.numel() for p in model.parameters()),
        })
        with active_run(run_id, system_metrics=cfg.tracking.system_metrics and model.trainable):
            result = fit(
                model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y), _settings(cfg),
                name=name,
                on_epoch=lambda e: log_metrics(client, run_id, {"train_loss": e.train_loss, "val_loss": e.val_loss,
                                                                "learning_rate": e.learning_rate}, step=e.epoch),
            )
        log_metrics(client, run_id, {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                                     "epochs_run": result.epochs_run, "train_seconds": result.seconds})
        summary = {"name": name, "arch": spec_cfg.arch, "run_id": run_id, "parent_run_id": parent_run_id,
                   "device": result.device, "best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch}
        with atomic_dir(layout.models / name) as staging:
            save_model(model.cpu(), staging)
            (staging / RUN_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            (staging / HISTORY_FILE).write_text(json.dumps([asdict(e) for e in result.history], indent=2) + "\n")
    except BaseException:
        finish_run(client, run_id, succeeded=False)
        raise
    finish_run(client, run_id, succeeded=True)
    return summary


def train_all(cfg: PipelineConfig, parent_run_id: str | None = None) -> list[dict]:
    """Train every configured model; without a parent run (a DVC stage), open and close one."""
    own_run = parent_run_id is None
    if own_run:
        parent_run_id = start_pipeline_run(cfg)
        record_validation(cfg, parent_run_id)
    try:
        summaries = [train(cfg, spec.name, parent_run_id) for spec in cfg.models]
    except BaseException:
        if own_run:
            finish_pipeline_run(cfg, parent_run_id, succeeded=False)
        raise
    if own_run:
        finish_pipeline_run(cfg, parent_run_id, succeeded=True)
    return summaries


# -- evaluate -----------------------------------------------------------------------------------

def evaluate(cfg: PipelineConfig) -> pd.DataFrame:
    """Score every trained model on the test split; write the leaderboard, forecasts and a plot."""
    layout = Layout.of(cfg)
    prepared = load_prepared(layout.prepared)
    horizon = prepared.spec.horizon
    frame = prepared.frame
    ids = prepared.scalers.series_ids
    test_rows = frame[frame["split"] == "test"]
    actual = test_rows["value"].to_numpy(np.float64).reshape(len(ids), horizon)
    scale = seasonal_scale(frame[frame["split"] == "train"], prepared.spec.season).reindex(ids).to_numpy()

    runs, per_series, forecasts = {}, [], []
    for spec in cfg.models:
        model_dir = layout.models / spec.name
        if not (model_dir / RUN_FILE).is_file():
            raise ConfigError(f"{model_dir}: model '{spec.name}' has not been trained; run `seqpipe train` first")
        runs[spec.name] = read_json(model_dir / RUN_FILE)
        model = load_model(model_dir)
        forecast = inverse_scale(predict_scaled(model, prepared.test.x), prepared.test.series, prepared.scalers)
        scores = score(actual, forecast, scale)
        per_series.append(pd.DataFrame({"model": spec.name, "arch": spec.arch, "series_id": ids, **scores}))
        forecasts.append(test_rows[["series_id", "timestamp"]].assign(model=spec.name, forecast=forecast.ravel(),
                                                                      actual=actual.ravel()))
    per_series_frame = pd.concat(per_series, ignore_index=True)
    forecast_frame = pd.concat(forecasts, ignore_index=True)
    board = build_leaderboard(per_series_frame, cfg.evaluation.metric)
    markdown = to_markdown(board)

    with atomic_dir(layout.evaluation) as staging:
        board.to_csv(staging / "leaderboard.csv", index=False)
        (staging / "leaderboard.md").write_text(markdown)
        metrics = {row.model: {m: float(getattr(row, m)) for m in METRICS} for row in board.itertuples()}
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        per_series_frame.to_parquet(staging / "per_series.parquet", index=False)
        forecast_frame.to_parquet(staging / "forecasts.parquet", index=False)
        shown = sample_series(list(ids), cfg.evaluation.plot_series)
        plot_forecast_vs_actual(frame, forecast_frame, shown, horizon, staging / "forecast_vs_actual.png")

    client, _ = connect(cfg)
    for row in board.itertuples():
        log_metrics(client, runs[row.model]["run_id"], {f"test_{m}": getattr(row, m) for m in METRICS})
    parent = runs[board.iloc[0]["model"]]["parent_run_id"]
    for artifact in ("leaderboard.csv", "leaderboard.md", "metrics.json", "forecast_vs_actual.png"):
        client.log_artifact(parent, str(layout.evaluation / artifact), "evaluation")
    best = board.iloc[0]
    log_metrics(client, parent, {f"best_test_{m}": float(best[m]) for m in METRICS})
    client.set_tag(parent, "seqpipe.best_model", best["model"])
    print(f"\nLeaderboard (test split, {len(ids)} series, horizon {horizon}, ranked by {cfg.evaluation.metric}):\n{markdown}")
    return board


# -- register / promote / predict ----------------------------------------------------------------

def register(cfg: PipelineConfig) -> str:
    """Register the leaderboard's winner as a new model version with the alias ``challenger``.

    Retrying is safe: the winner's training run keeps the version it already has.
    """
    client, _ = connect(cfg)  # an unreachable store fails here, before anything is logged
    layout = Layout.of(cfg)
    board = pd.read_csv(layout.evaluation / "leaderboard.csv")
    best = board.iloc[0]
    run = read_json(layout.models / best["model"] / RUN_FILE)
    prepared = load_prepared(layout.prepared)
    example_ids = prepared.scalers.series_ids[:2]
    example = (prepared.frame[prepared.frame["series_id"].isin(example_ids)]
               .groupby("series_id").tail(prepared.spec.lookback)[["series_id", "timestamp", "value"]]
               .reset_index(drop=True))
    tags = {**_lineage(cfg, None), "seqpipe.model": best["model"], "seqpipe.arch": best["arch"],
            "seqpipe.pipeline_run_id": run["parent_run_id"], "seqpipe.training_run_id": run["run_id"],
            **{f"seqpipe.test_{m}": f"{best[m]:.6f}" for m in METRICS}}
    version = log_and_register(
        client, run["run_id"], cfg.tracking.registered_model,
        ModelArtifacts(layout.models / best["model"], layout.prepared / "scalers.parquet", prepared.spec.freq, example),
        tags,
    )
    print(f"registered {cfg.tracking.registered_model} version {version} ({best['model']}, "
          f"test {cfg.evaluation.metric} {best[cfg.evaluation.metric]:.4f}) with alias 'challenger'")
    return version


def _test_split(cfg: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The history before the test split, the test actuals (series x step) and each series' MASE scale."""
    folder = Layout.of(cfg).prepared
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no prepared data to compare versions on; run `seqpipe prepare` first")
    prepared = load_prepared(folder)
    frame = prepared.frame
    history = frame.loc[frame["split"] != "test", ["series_id", "timestamp", "value"]].reset_index(drop=True)
    test = frame[frame["split"] == "test"]
    actual = (test.assign(step=test.groupby("series_id").cumcount() + 1)
              .pivot(index="series_id", columns="step", values="value"))
    scale = seasonal_scale(frame[frame["split"] == "train"], prepared.spec.season).reindex(actual.index)
    return history, actual, scale


def _forecast_version(cfg: PipelineConfig, version: str, history: pd.DataFrame, actual: pd.DataFrame) -> np.ndarray:
    """Forecasts of a registered version for the test split, aligned with ``actual``."""
    uri = model_uri(cfg.tracking.registered_model, version)
    try:
        forecast = mlflow.pyfunc.load_model(uri).predict(history, params={"horizon": actual.shape[1]})
    except (MlflowException, SeqpipeError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise RegistryError(f"{uri} cannot forecast the current test split: {message}") from None
    table = forecast.pivot(index="series_id", columns="step", values="mean")
    return table.reindex(index=actual.index, columns=actual.columns).to_numpy(np.float64)


def _gate_tags(decision: GateDecision, production: str | None, loss: str, action: str) -> dict[str, str]:
    def number(value: float | None) -> str:
        return "none" if value is None else f"{value:.6g}"

    test = decision.test
    return {
        "seqpipe.gate.passed": str(decision.promote).lower(),
        "seqpipe.gate.action": action,
        "seqpipe.gate.reason": decision.reason,
        "seqpipe.gate.metric": decision.metric,
        "seqpipe.gate.challenger_score": number(decision.challenger_score),
        "seqpipe.gate.production_score": number(decision.production_score),
        "seqpipe.gate.production_version": str(production),
        "seqpipe.gate.p_value": number(test.p_value if test else None),
        "seqpipe.gate.dm_statistic": number(test.statistic if test else None),
        "seqpipe.gate.loss": loss,
        "seqpipe.gate.at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def gate(cfg: PipelineConfig) -> dict:
    """Compare the challenger with production on the test split; promote it when it is clearly better.

    Both versions forecast the same history with their registered pyfunc, so the comparison
    covers exactly what would serve. The decision is kept as tags on the challenger.
    """
    client, _ = connect(cfg)
    name, settings, metric = cfg.tracking.registered_model, cfg.promotion, cfg.evaluation.metric
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"registered model '{name}' has no '{CHALLENGER}' version; run `seqpipe register` first")
    production = alias_version(client, name, PRODUCTION)
    if production == challenger:
        print(f"gate: version {challenger} is already '{PRODUCTION}'; nothing to decide")
        return {"challenger": challenger, "production": production, "passed": False, "action": "already production"}

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

    action = "promoted" if decision.promote and settings.auto_promote else (
        "report only" if decision.promote else "kept production")
    tags = _gate_tags(decision, production, settings.loss, action)
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    p_value = "n/a" if test is None else f"{test.p_value:.4g}"
    print(f"gate: challenger v{challenger} {metric} {challenger_score:.4f} vs production "
          f"{'none' if production is None else f'v{production} {production_score:.4f}'}; DM p-value {p_value} "
          f"({settings.loss} loss) -> {'pass' if decision.promote else 'fail'}: {decision.reason}; {action}")
    if action == "promoted":
        promote(cfg, challenger, f"gate: {decision.reason}")
    return {"challenger": challenger, "production": production, "passed": decision.promote, "action": action,
            "metric": metric, "challenger_score": challenger_score, "production_score": production_score,
            "p_value": None if test is None else test.p_value, "reason": decision.reason}


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
    print(f"production: version {record['from']} -> {record['to']} by {record['by']} at {record['at']} ({reason})")
    return record


def rollback(cfg: PipelineConfig, reason: str) -> dict:
    """Move ``production`` back to the version the current one replaced."""
    client, _ = connect(cfg)
    record = roll_back_production(client, cfg.tracking.registered_model, reason)
    print(f"production rolled back: version {record['from']} -> {record['to']} by {record['by']} "
          f"at {record['at']} ({reason})")
    return record


VERSION_COLUMNS = ("version", "aliases", "model", *(f"test_{m}" for m in METRICS), "gate", "created")


def versions(cfg: PipelineConfig) -> pd.DataFrame:
    """Every registered version with its aliases, test metrics, gate outcome and creation time."""
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    found = list_versions(client, name)
    if not found:
        print(f"registered model '{name}' has no versions yet; run `seqpipe register`")
        return pd.DataFrame(columns=list(VERSION_COLUMNS))
    aliases = aliases_of(client, name)
    rows = [{
        "version": int(v.version),
        "aliases": ",".join(aliases.get(str(v.version), [])) or "-",
        "model": v.tags.get("seqpipe.model", "?"),
        **{f"test_{m}": float(v.tags[f"seqpipe.test_{m}"]) if f"seqpipe.test_{m}" in v.tags else np.nan for m in METRICS},
        "gate": v.tags.get("seqpipe.gate.action", "-"),
        "created": datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds"),
    } for v in found]
    table = pd.DataFrame(rows, columns=list(VERSION_COLUMNS))
    print(f"registered model '{name}':\n{to_markdown(table)}")
    return table


def predict(cfg: PipelineConfig, model: str, input_path: Path, output_path: Path, horizon: int | None = None) -> pd.DataFrame:
    """Forecast every series in ``input_path`` with a registered model; write ``output_path``."""

    history = read_table(input_path, cfg.data.source.columns, time_format=cfg.data.source.time_format)
    connect(cfg)
    uri = model_uri(cfg.tracking.registered_model, model)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise RegistryError(f"cannot load {uri}: {exc.message}") from None
    try:
        forecast = loaded.predict(history, params=None if horizon is None else {"horizon": horizon})
    except MlflowException as exc:
        raise PredictionError(f"{input_path}: {exc.message}") from None
    write_table(forecast, output_path)
    print(f"wrote {len(forecast)} forecasts for {forecast['series_id'].nunique()} series to {output_path} ({uri})")
    return forecast
