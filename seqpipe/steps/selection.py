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
from seqpipe.hashing import json_digest
from seqpipe.io import md5_file, read_json
from seqpipe.layout import VALIDATED_FILE, Layout
from seqpipe.steps.backtesting import FoldRun, no_folds, refit_on_folds
from seqpipe.tasks import task_step

log = logging.getLogger(__name__)

SELECTION_NAME = "selection"
BASIS_FILE = "basis.json"  # what the folds were fitted from, so evaluate can refuse stale ones


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
        log.info("selection on the validation window: no selection folds to fit")
        return no_folds(folder, write_when_off, "The champion is chosen on the validation window "
                        "(evaluation.selection.method = validation): no selection folds.\n")
    run = FoldRun(list(cfg.models), settings.folds, settings.step, before_test=True,
                  setting="evaluation.selection", name=SELECTION_NAME,
                  title="Selection backtest (fold 1 forecasts the validation window; no fold reads the test window)")
    summary = refit_on_folds(cfg, run, folder, parent_run_id, {BASIS_FILE: selection_basis(cfg)})
    log.info("selection folds (%d, ranked by mean %s) written to %s", settings.folds, cfg.evaluation.metric, folder)
    return summary


def selection_basis(cfg: PipelineConfig) -> dict:
    """What the selection folds' scores follow from: the validated data, each model's settings and the settings
    that shape every fold (keys as ``BASIS_NAMES`` words them)."""
    return {
        "validated_md5": md5_file(Layout.of(cfg).validated / VALIDATED_FILE),
        "models": {spec.name: json_digest(spec.model_dump(mode="json")) for spec in cfg.models},
        **{section: json_digest(getattr(cfg, section).model_dump(mode="json")) for section in ("data", "prepare", "training")},
        "selection": cfg.evaluation.selection.model_dump(mode="json"),
    }


BASIS_NAMES = {"validated_md5": "validated data", "data": "data settings",
               "prepare": "prepare settings", "training": "training settings", "selection": "evaluation.selection"}


def selection_scores(cfg: PipelineConfig, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Each configured model's mean of every one of ``metrics`` over the selection folds, indexed by model.

    Refuses folds that are missing, or that were fitted on other data, other models or
    other settings than the configured ones: the leaderboard must not rank by stale scores.
    """
    folder = Layout.of(cfg).selection
    if not (folder / BASIS_FILE).is_file():
        raise ConfigError(f"{folder}: no selection folds; evaluation.selection.method is 'backtest', "
                          "so run `seqpipe select` before `seqpipe evaluate`")
    recorded, current = read_json(folder / BASIS_FILE), selection_basis(cfg)
    stale = [key for key in current if recorded.get(key) != current[key]]
    if stale:
        was, now = recorded.get("models", {}), current["models"]
        changed = sorted(name for name in {*was, *now} if was.get(name) != now.get(name))
        words = [f"models ({', '.join(changed)})" if key == "models" else BASIS_NAMES[key] for key in stale]
        raise ConfigError(f"{folder}: the selection folds were fitted with other {', '.join(words)} than now; "
                          "run `seqpipe select` again")
    summary = pd.read_csv(folder / "summary.csv").set_index("model")
    names = [spec.name for spec in cfg.models]
    return summary.loc[names, [f"{m}_mean" for m in metrics]].rename(columns=lambda c: c.removesuffix("_mean"))
