"""Rolling-origin backtest: refit every model at several earlier forecast origins and score each.

Fold 1 forecasts the regular test window; fold i holds back the last ``(i - 1) x step``
points of every series and forecasts the ``horizon`` points before them. The folds that
choose the champion (``evaluation.selection``) hold back the test window as well, so
their fold 1 forecasts the validation window and none of them reads a test point. Each fold's
series are filled, split, scaled and windowed by the same prepare code as the pipeline,
from the points before the held-back part only, so nothing after a fold's test window
reaches it, and nothing at or after its origin reaches its scalers or its training (as
statsforecast's ``cross_validation`` with refit).

Training and scoring are passed in: this module decides what each fold sees and
aggregates, the pipeline's own fitting code does the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqpipe.data.catalog import SeriesSpec, length_rule
from seqpipe.data.prepare import PreparedData
from seqpipe.evaluation.metrics import METRICS
from seqpipe.evaluation.scoring import ModelScores, scoring_targets

FOLD_KEYS = ("model", "arch", "fold", "cut", "origin", "series", "skipped")
FORECAST_COLUMNS = ("model", "fold", "series_id", "timestamp", "forecast", "actual", "lower", "upper")
SUMMARY_KEYS = ("model", "arch", "folds")
STATS = ("mean", "std")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldPlan:
    number: int  # 1 is the regular test window
    cut: int  # points held back from the end of every series
    series: tuple[str, ...]  # long enough to be split after the cut
    skipped: tuple[str, ...]  # too short: left out of this fold


def plan_folds(lengths: pd.Series, spec: SeriesSpec, folds: int, step: int, padded: bool = False,
               held_back: int = 0, setting: str = "evaluation.backtest") -> list[FoldPlan]:
    """Which series each fold scores, from the series' lengths (indexed by series id).

    ``padded`` (``prepare.pad_history``) lowers the length a series needs as prepare does.
    ``held_back`` points at the end of every series belong to no fold (the test window,
    for the folds that select). Raises ``ValueError`` naming ``setting`` when a fold would
    have nothing to score or nothing to train on, before any model is fitted.
    """
    shortest = spec.min_length(padded)
    trainable = shortest + spec.horizon
    plans = []
    for number in range(1, folds + 1):
        cut = held_back + (number - 1) * step
        kept = lengths[lengths - cut >= shortest]
        if kept.empty:
            raise ValueError(f"fold {number} of {folds} holds back {cut} points and leaves no series of at least "
                             f"{shortest} points ({length_rule(padded)}): lower {setting}.folds or step")
        if not (kept - cut >= trainable).any():
            raise ValueError(f"fold {number} of {folds} holds back {cut} points and leaves no series long enough for a "
                             f"training window ({trainable} points): lower {setting}.folds or step")
        skipped = lengths.index.difference(kept.index)
        plans.append(FoldPlan(number, cut, tuple(map(str, kept.index)), tuple(map(str, skipped))))
    return plans


def fold_frame(frame: pd.DataFrame, plan: FoldPlan) -> pd.DataFrame:
    """The canonical rows a fold may use: its series without their last ``plan.cut`` points."""
    from_end = frame.groupby("series_id", sort=False, observed=True).cumcount(ascending=False)
    kept = (from_end >= plan.cut) & frame["series_id"].isin(plan.series)
    return frame.loc[kept, ["series_id", "timestamp", "value"]].reset_index(drop=True)


@dataclass(frozen=True)
class BacktestResult:
    folds: pd.DataFrame  # one row per model and fold: FOLD_KEYS and the mean of each score over its series
    forecasts: pd.DataFrame  # FORECAST_COLUMNS


def run_folds(frame: pd.DataFrame, plans: Sequence[FoldPlan], models: Sequence[tuple[str, str]],
              prepare: Callable[[pd.DataFrame, int], PreparedData],
              fit_and_score: Callable[[str, PreparedData, int], ModelScores]) -> BacktestResult:
    """Prepare each fold, have every ``(name, arch)`` fitted and scored on it, and collect the scores.

    ``prepare(rows, fold)`` turns a fold's canonical rows into prepared data (and may set
    series aside, which then count as skipped); ``fit_and_score(name, prepared, fold)``
    fits one model on it afresh and scores the test window.
    """
    rows, forecasts = [], []
    for plan in plans:
        prepared = prepare(fold_frame(frame, plan), plan.number)
        series = len(prepared.scalers.series_ids)
        skipped = len(plan.series) + len(plan.skipped) - series
        test = prepared.frame[prepared.frame["split"] == "test"]
        origin = test.groupby("series_id", sort=True, observed=True)["timestamp"].first().min()
        actual, _ = scoring_targets(prepared)
        logger.info(f"[backtest] fold {plan.number}/{len(plans)}: origin {origin}, {series} series"
                    + (f" ({skipped} left out)" if skipped else ""))
        for name, arch in models:
            scored = fit_and_score(name, prepared, plan.number)
            # NaN-skipping means, as the leaderboard takes them: fold 1 repeats its numbers.
            means = {metric: float(pd.Series(values).mean()) for metric, values in scored.scores.items()}
            rows.append({"model": name, "arch": arch, "fold": plan.number, "cut": plan.cut, "origin": origin,
                         "series": series, "skipped": skipped, **means})
            forecasts.append(pd.DataFrame({
                "model": name, "fold": plan.number, "series_id": test["series_id"].to_numpy(),
                "timestamp": test["timestamp"].to_numpy(), "forecast": scored.forecast.ravel(),
                "actual": actual.ravel(),
                "lower": np.nan if scored.lower is None else scored.lower.ravel(),
                "upper": np.nan if scored.upper is None else scored.upper.ravel()}))
    return BacktestResult(pd.DataFrame(rows), pd.concat(forecasts, ignore_index=True))


def summarize(folds: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per model: the number of folds and each score's mean and sample standard deviation over them.

    The standard deviation is of the per-fold means (ddof = 1): how much a model's score
    moves with the forecast origin. One fold has no spread: its std is empty.
    """
    scores = [c for c in folds.columns if c not in FOLD_KEYS]
    grouped = folds.groupby(["model", "arch"], sort=False)
    summary = grouped.size().rename("folds").reset_index()
    for score in scores:
        summary[f"{score}_mean"] = grouped[score].mean().to_numpy()
        summary[f"{score}_std"] = grouped[score].std(ddof=1).to_numpy()
    return summary.sort_values([f"{metric}_mean", "model"], kind="stable").reset_index(drop=True)


def summary_metrics(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each model's summary scores, leaving out empty ones (JSON has no NaN)."""
    scores = [c for c in summary.columns if c not in SUMMARY_KEYS]
    return {row["model"]: {s: float(row[s]) for s in scores if pd.notna(row[s])} for _, row in summary.iterrows()}


def empty_result() -> tuple[BacktestResult, pd.DataFrame]:
    """The tables of a backtest that did not run, with their columns."""
    folds = pd.DataFrame(columns=[*FOLD_KEYS, *METRICS])
    summary = pd.DataFrame(columns=[*SUMMARY_KEYS, *(f"{m}_{s}" for m in METRICS for s in STATS)])
    return BacktestResult(folds, pd.DataFrame(columns=list(FORECAST_COLUMNS))), summary
