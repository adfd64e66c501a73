"""Score the trained models on the validation and test windows: the leaderboard, forecasts and plots in ``data/evaluation``.

The validation window ranks the models (and so picks the one ``register`` registers), or
the selection folds before it when ``evaluation.selection.method`` is ``backtest``; the
test window only reports.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from seqpipe.config import PipelineConfig
from seqpipe.data.domain import bounded
from seqpipe.data.prepare import load_prepared
from seqpipe.layout import Layout
from seqpipe.errors import ConfigError
from seqpipe.evaluation.leaderboard import (
    VALIDATION_PREFIX, before_test, before_test_scores, board_metrics, build_leaderboard, ranking_column, to_markdown,
)
from seqpipe.evaluation.metrics import METRICS, score
from seqpipe.evaluation.plots import (
    plot_error_distribution, plot_forecast_vs_actual, plot_metric_by_model, sample_series,
)
from seqpipe.estimators import load_estimator
from seqpipe.estimators.inputs import test_inputs, validation_inputs
from seqpipe.evaluation.scoring import ForecastShapeError, score_estimator, scoring_targets
from seqpipe.io import atomic_dir
from seqpipe.models.persistence import SPEC_FILE
from seqpipe.tracking.runs import log_metrics
from seqpipe.tracking.store import connect
from seqpipe.steps.selection import selection_scores
from seqpipe.steps.training import training_record
from seqpipe.tasks import task_step

log = logging.getLogger(__name__)

EVALUATION_ARTIFACTS = ("leaderboard.csv", "leaderboard.md", "metrics.json", "forecast_vs_actual.png",
                        "metric_by_model.png", "error_distribution.png")


@task_step
def evaluate(cfg: PipelineConfig, parent_run_id: str | None = None) -> pd.DataFrame:
    """Score every trained model on the validation and test windows; write the leaderboard, forecasts and plots.

    Models are ranked by their validation score of ``evaluation.metric``: each forecasts
    the validation window from the training points alone. With selection on backtest
    folds, by their mean over the folds that ``select`` wrote. The test scores are reported
    beside it and choose nothing. The leaderboard goes to ``parent_run_id`` when given (a
    pipeline run that reused models trained by an earlier one), else to the pipeline run
    that trained the best model.
    """
    layout = Layout.of(cfg)
    prepared = load_prepared(layout.prepared)
    horizon = prepared.spec.horizon
    frame = prepared.frame
    ids = prepared.scalers.series_ids
    test_rows = frame[frame["split"] == "test"]
    actual, scale = scoring_targets(prepared)
    inputs = test_inputs(prepared)
    val_actual, _ = scoring_targets(prepared, "val")
    val_inputs = validation_inputs(prepared)
    method = cfg.evaluation.selection.method
    # Read before any model is scored: a missing or stale selection fails fast.
    selection = selection_scores(cfg, METRICS) if method == "backtest" else None

    runs = training_records(cfg)
    per_series, forecasts = [], []
    for spec in cfg.models:
        model_dir = layout.models / spec.name
        estimator = load_estimator(model_dir)
        try:
            scored = score_estimator(estimator, inputs, actual, scale, cfg.evaluation, prepared.lower_bound)
        except ForecastShapeError as exc:
            raise ConfigError(f"{model_dir}: {exc}; run `seqpipe train --model {spec.name}` again") from None
        validated = score(val_actual, bounded(estimator.forecast(val_inputs), prepared.lower_bound), scale)
        per_series.append(pd.DataFrame({"model": spec.name, "arch": spec.arch, "series_id": ids,
                                        **{f"{VALIDATION_PREFIX}{m}": v for m, v in validated.items()},
                                        **scored.scores}))
        forecasts.append(test_rows[["series_id", "timestamp"]].assign(
            model=spec.name, forecast=scored.forecast.ravel(), actual=actual.ravel(),
            lower=np.nan if scored.lower is None else scored.lower.ravel(),
            upper=np.nan if scored.upper is None else scored.upper.ravel()))
    per_series_frame = pd.concat(per_series, ignore_index=True)
    forecast_frame = pd.concat(forecasts, ignore_index=True)
    board = build_leaderboard(per_series_frame, cfg.evaluation.metric, selection)
    markdown = to_markdown(board)

    with atomic_dir(layout.evaluation) as staging:
        board.to_csv(staging / "leaderboard.csv", index=False)
        (staging / "leaderboard.md").write_text(markdown)
        (staging / "metrics.json").write_text(json.dumps(board_metrics(board), indent=2, sort_keys=True) + "\n")
        per_series_frame.to_parquet(staging / "per_series.parquet", index=False)
        forecast_frame.to_parquet(staging / "forecasts.parquet", index=False)
        shown = sample_series(list(ids), cfg.evaluation.plot_series)
        plot_forecast_vs_actual(frame, forecast_frame, shown, horizon, staging / "forecast_vs_actual.png")
        plot_metric_by_model(board, cfg.evaluation.metric, staging / "metric_by_model.png")
        plot_error_distribution(per_series_frame, cfg.evaluation.metric, staging / "error_distribution.png")

    if runs:
        _log_evaluation(cfg, board, runs, parent_run_id)
    else:
        log.info("no MLflow training runs recorded for these models here (pulled from a DVC remote?): "
                 "the leaderboard is written to data/evaluation only")
    log.info("leaderboard (%d series, horizon %d, %s) written to %s", len(ids), horizon, leaderboard_title(cfg),
             layout.evaluation)
    return board


def training_records(cfg: PipelineConfig) -> dict[str, dict]:
    """The MLflow training runs of the configured models trained here; refuses a model that is not trained."""
    layout = Layout.of(cfg)
    for spec in cfg.models:
        if not (layout.models / spec.name / SPEC_FILE).is_file():
            raise ConfigError(f"{layout.models / spec.name}: model '{spec.name}' has not been trained; "
                              "run `seqpipe train` first")
    return {spec.name: record for spec in cfg.models if (record := training_record(cfg, spec.name))}


def evaluation_run(runs: dict[str, dict], best: str, parent: str | None) -> str:
    """Where the leaderboard goes: ``parent`` when given, else the pipeline run that trained the best model."""
    return parent or (runs.get(best) or next(iter(runs.values())))["parent_run_id"]


@task_step
def leaderboard_title(cfg: PipelineConfig) -> str:
    """What the leaderboard ranks by and on which split, for the lines that show it."""
    method, metric = cfg.evaluation.selection.method, cfg.evaluation.metric
    where = ("validation" if method == "validation" else
             f"the mean over {cfg.evaluation.selection.folds} backtest folds before the test window of")
    return f"ranked by {where} {metric} ({ranking_column(metric, method)}); the test columns only report"


def leaderboard_markdown(cfg: PipelineConfig) -> str:
    return (Layout.of(cfg).evaluation / "leaderboard.md").read_text()


def _log_evaluation(cfg: PipelineConfig, board: pd.DataFrame, runs: dict[str, dict], parent: str | None) -> None:
    layout = Layout.of(cfg)
    client, _ = connect(cfg)
    for model, scores in board_metrics(board).items():
        if model in runs:
            log_metrics(client, runs[model]["run_id"], {_split_metric(m): v for m, v in scores.items()})
    best = board.iloc[0]
    parent = evaluation_run(runs, best["model"], parent)
    for artifact in EVALUATION_ARTIFACTS:
        client.log_artifact(parent, str(layout.evaluation / artifact), "evaluation")
    log_metrics(client, parent, {f"best_test_{m}": float(best[m]) for m in METRICS}
                | {f"best_{column}": value for column, value in before_test_scores(best).items()})
    client.set_tag(parent, "seqpipe.best_model", best["model"])


def _split_metric(column: str) -> str:
    """A leaderboard column's MLflow metric name: ``val_mase`` and ``sel_mase`` stay, ``mase`` (a test score) becomes ``test_mase``."""
    return column if before_test(column) else f"test_{column}"
