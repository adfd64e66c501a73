"""Choose the champion on backtest folds that end before the test window; ``data/selection``.

With ``evaluation.selection.method: backtest`` every configured model is refitted at
``folds`` forecast origins before the test window (fold 1 forecasts the validation
window) and ``evaluate`` ranks the leaderboard by each model's mean over these folds.
No fold reads a point of the test window, so the test scores still only report.
"""

from __future__ import annotations

import logging

import pandas as pd

from seqpipe.config import PipelineConfig
from seqpipe.errors import ConfigError
from seqpipe.evaluation import backtest as bt
from seqpipe.layout import Layout
from seqpipe.steps.backtesting import FoldRun, refit_on_folds, write_folds
from seqpipe.tasks import task_step

log = logging.getLogger(__name__)

SELECTION_NAME = "selection"


@task_step
def select(cfg: PipelineConfig, parent_run_id: str | None = None, write_when_off: bool = False) -> pd.DataFrame:
    """Refit and score every configured model on the selection folds; write ``data/selection``; return the summary.

    The summary has, per model, the mean and standard deviation of every score over the
    folds; ``evaluate`` ranks by the mean of ``evaluation.metric``. With
    ``evaluation.selection.method: validation`` it does nothing and returns an empty
    summary; ``write_when_off`` then writes the outputs empty, for a DVC stage that
    declares them. Fold models are neither saved nor registered.
    """
    settings, folder = cfg.evaluation.selection, Layout.of(cfg).selection
    if settings.method != "backtest":
        off, summary = bt.empty_result()
        if write_when_off:
            write_folds(folder, off, summary, "The champion is chosen on the validation window "
                        "(evaluation.selection.method = validation): no selection folds.\n")
        log.info("selection on the validation window: no selection folds to fit")
        return summary
    run = FoldRun(list(cfg.models), settings.folds, settings.step, before_test=True,
                  setting="evaluation.selection", name=SELECTION_NAME,
                  title="Selection backtest (fold 1 forecasts the validation window; no fold reads the test window)")
    summary = refit_on_folds(cfg, run, folder, parent_run_id)
    log.info("selection folds (%d, ranked by mean %s) written to %s", settings.folds, cfg.evaluation.metric, folder)
    return summary


def selection_scores(cfg: PipelineConfig, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Each configured model's mean of every one of ``metrics`` over the selection folds, indexed by model.

    Refuses folds that are missing or that lack a configured model: the leaderboard must
    not rank a model it has no selection score for.
    """
    summary_file = Layout.of(cfg).selection / "summary.csv"
    if not summary_file.is_file():
        raise ConfigError(f"{summary_file}: no selection folds; evaluation.selection.method is 'backtest', "
                          "so run `seqpipe select` before `seqpipe evaluate`")
    summary = pd.read_csv(summary_file).set_index("model")
    missing = [spec.name for spec in cfg.models if spec.name not in summary.index or summary.loc[spec.name, "folds"] != cfg.evaluation.selection.folds]
    if missing:
        raise ConfigError(f"{summary_file}: no selection score over {cfg.evaluation.selection.folds} folds for "
                          f"{missing}; run `seqpipe select` again")
    names = [spec.name for spec in cfg.models]
    return summary.loc[names, [f"{m}_mean" for m in metrics]].rename(columns=lambda c: c.removesuffix("_mean"))
