"""The rolling-origin backtest: refit and score the models at earlier forecast origins; ``data/backtest``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from seqpipe.config import ModelSpec, PipelineConfig
from seqpipe.data.catalog import SeriesSpec, series_spec
from seqpipe.data.prepare import PreparedData, prepare_frame
from seqpipe.layout import VALIDATED_FILE, Layout
from seqpipe.errors import ConfigError, DataValidationError
from seqpipe.evaluation import backtest as bt
from seqpipe.evaluation.leaderboard import to_markdown
from seqpipe.estimators import FitOptions
from seqpipe.estimators.inputs import test_inputs
from seqpipe.evaluation.scoring import ModelScores, score_estimator, scoring_targets
from seqpipe.io import atomic_dir
from seqpipe.tracking.runs import log_metrics
from seqpipe.tracking.store import connect
from seqpipe.steps.data import _filled, _with_frequency, input_features
from seqpipe.steps.runs import finish_pipeline_run, pipeline_run_for
from seqpipe.steps.fitting import fit_estimator, seeded_estimator
from seqpipe.steps.training import training_record
from seqpipe.tasks import task_step

log = logging.getLogger(__name__)

BACKTEST_ARTIFACTS = ("folds.csv", "summary.csv", "summary.md", "metrics.json")


@task_step
def backtest(cfg: PipelineConfig, parent_run_id: str | None = None, write_when_off: bool = False) -> pd.DataFrame:
    """Refit and score the models at ``evaluation.backtest.folds`` forecast origins; write ``data/backtest``.

    Fold 1 is the regular test window, each next fold's origin ``step`` points earlier
    (see ``seqpipe.evaluation.backtest``). Returns the summary: per model, the mean and
    standard deviation of every score over the folds. With ``folds: 0`` it does nothing
    and returns an empty summary, so callers may call it unconditionally;
    ``write_when_off`` then writes the outputs empty, for a DVC stage that declares them.
    Fold models are neither saved nor registered; the results go to the parent MLflow run.
    """
    settings, layout = cfg.evaluation.backtest, Layout.of(cfg)
    if settings.folds == 0:
        log.info("backtest off: set evaluation.backtest.folds to run one")
        return no_folds(layout.backtest, write_when_off, "The backtest is off (evaluation.backtest.folds = 0).\n")
    plan = FoldRun(cfg.backtest_models(), settings.folds, settings.step, before_test=False,
                   setting="evaluation.backtest", name="backtest", title="Rolling-origin backtest")
    summary = refit_on_folds(cfg, plan, layout.backtest, parent_run_id or _evaluated_parent(cfg))
    log.info("backtest (%d folds, ranked by mean %s) written to %s", settings.folds, cfg.evaluation.metric,
             layout.backtest)
    return summary


@dataclass(frozen=True)
class FoldRun:
    """Which models a fold run refits, at how many origins, and what it is called in errors, logs and MLflow."""

    models: list[ModelSpec]
    folds: int
    step: int | None  # None: the horizon
    before_test: bool  # hold back the test window: fold 1 then forecasts the validation window
    setting: str  # the config section that asked for it, e.g. evaluation.backtest
    name: str  # prefix of its MLflow metrics and artifact folder, e.g. backtest
    title: str  # what its summary.md calls it


def refit_on_folds(cfg: PipelineConfig, run: FoldRun, folder: Path, parent_run_id: str | None,
                   extra_files: dict[str, dict] | None = None) -> pd.DataFrame:
    """Refit and score ``run.models`` on each fold; write ``folder`` and log to the parent run; return the summary.

    The folds start from the validated rows: each is filled, split, scaled and windowed by
    the pipeline's prepare code from its own points only. ``parent_run_id`` None opens a
    pipeline run of its own for the results. ``extra_files`` (name: JSON payload) are
    written into ``folder`` with the results, in the same swap.
    """
    layout = Layout.of(cfg)
    # Folds start from the validated rows, before any fill: a gap just before a fold's origin
    # must not be interpolated from points after it.
    if not (layout.validated / VALIDATED_FILE).is_file():
        raise ConfigError(f"{layout.validated}: no validated data for the {run.name} folds; run `seqpipe validate` first")
    frame = pd.read_parquet(layout.validated / VALIDATED_FILE)
    spec = _with_frequency(series_spec(cfg.data), frame)
    step = run.step or spec.horizon
    for model_spec in run.models:  # a mistyped hyper-parameter fails before any fold is fitted
        seeded_estimator(cfg, model_spec)
    try:
        plans = bt.plan_folds(frame.groupby("series_id", sort=True).size(), spec, run.folds, step,
                              cfg.prepare.pad_history, spec.horizon if run.before_test else 0, run.setting)
    except ValueError as exc:
        raise ConfigError(f"{cfg.conf_dir / 'pipeline.yaml'}: {exc}") from None

    connect(cfg)  # an unreachable store fails here, before hours of fitting
    parent, owned = parent_run_id, False
    if parent is None:
        parent, owned = pipeline_run_for(cfg), True
    try:
        result = bt.run_folds(
            frame, plans, [(m.name, m.arch) for m in run.models],
            prepare=lambda rows, fold: _prepare_fold(cfg, rows, spec, fold),
            fit_and_score=lambda name, fold_data, fold: _refit_and_score(cfg, cfg.model(name), fold_data,
                                                                         f"{name} {run.name} fold {fold}"),
        )
        summary = bt.summarize(result.folds, cfg.evaluation.metric)
        header = (f"{run.title}: {run.folds} folds, origin {step} points earlier per fold, horizon {spec.horizon}; "
                  "mean and standard deviation over folds.\n\n")
        write_folds(folder, result, summary, header + to_markdown(summary), extra_files)
        _log_folds(cfg, parent, summary, folder, run, step)
    except BaseException:
        if owned:
            finish_pipeline_run(cfg, parent, succeeded=False)
        raise
    if owned:
        finish_pipeline_run(cfg, parent, succeeded=True)
    return summary


def _prepare_fold(cfg: PipelineConfig, rows: pd.DataFrame, spec: SeriesSpec, fold: int) -> PreparedData:
    """What ``prepare`` makes of a fold's rows; series its fill cannot complete sit this fold out."""
    filled, unfilled = _filled(cfg, rows)
    if len(unfilled):
        log.info("[backtest] fold %d: %d series end in missing values that prepare.fill = %r cannot fill without "
                 "later points; left out of this fold", fold, len(unfilled), cfg.prepare.fill)
        filled = filled[~filled["series_id"].isin(unfilled)].reset_index(drop=True)
    if filled.empty:
        raise DataValidationError(f"backtest fold {fold}: no series is complete after prepare.fill; "
                                  "lower evaluation.backtest.folds or step")
    return prepare_frame(filled, spec, cfg.prepare.scaler, cfg.prepare.window_stride, input_features(cfg),
                         cfg.prepare.non_negative)


def _refit_and_score(cfg: PipelineConfig, spec: ModelSpec, prepared: PreparedData, label: str) -> ModelScores:
    """Fit one configured model afresh on ``prepared`` and score its test window: nothing saved, no run."""
    actual, scale = scoring_targets(prepared)
    estimator = seeded_estimator(cfg, spec)
    fit_estimator(cfg, spec, estimator, prepared, FitOptions(name=label))
    return score_estimator(estimator, test_inputs(prepared), actual, scale, cfg.evaluation, prepared.lower_bound)


def no_folds(folder: Path, write_when_off: bool, markdown: str) -> pd.DataFrame:
    """The empty summary of fold refits that are off; written to ``folder`` when ``write_when_off`` (a DVC
    stage declares the outputs, so they must exist)."""
    off, summary = bt.empty_result()
    if write_when_off:
        write_folds(folder, off, summary, markdown)
    return summary


def write_folds(folder: Path, result: bt.BacktestResult, summary: pd.DataFrame, markdown: str,
                extra_files: dict[str, dict] | None = None) -> None:
    with atomic_dir(folder) as staging:
        for name, payload in (extra_files or {}).items():
            (staging / name).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        result.folds.to_csv(staging / "folds.csv", index=False)
        result.forecasts.to_parquet(staging / "forecasts.parquet", index=False)
        summary.to_csv(staging / "summary.csv", index=False)
        (staging / "summary.md").write_text(markdown)
        (staging / "metrics.json").write_text(json.dumps(bt.summary_metrics(summary), indent=2, sort_keys=True) + "\n")


def _evaluated_parent(cfg: PipelineConfig) -> str | None:
    """The pipeline run the current models were trained in (and evaluate logged to), if trained here."""
    for spec in cfg.models:
        record = training_record(cfg, spec.name)
        if record:
            return record["parent_run_id"]
    return None


def _log_folds(cfg: PipelineConfig, parent: str, summary: pd.DataFrame, folder: Path, run: FoldRun, step: int) -> None:
    client, _ = connect(cfg)
    for artifact in BACKTEST_ARTIFACTS:
        client.log_artifact(parent, str(folder / artifact), run.name)
    log_metrics(client, parent, {f"{run.name}_{model}_{name}": value
                                 for model, scores in bt.summary_metrics(summary).items()
                                 for name, value in scores.items()})
    client.set_tag(parent, f"seqpipe.{run.name}.folds", str(run.folds))
    client.set_tag(parent, f"seqpipe.{run.name}.step", str(step))
