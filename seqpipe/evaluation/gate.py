"""The promotion gate's statistics: per-step losses, the Diebold-Mariano test, the decision.

The test set is a panel: each series contributes one multi-step forecast from one origin,
so its per-step errors are correlated up to ``horizon - 1`` lags (they share the origin)
while different series are treated as independent. The long-run variance of the loss
differential is therefore built from autocovariances pooled *within* series, and the
Harvey-Leybourne-Newbold (1997) correction and Student-t reference distribution account
for the small number of points such a test set has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

Loss = Literal["absolute", "squared"]


@dataclass(frozen=True)
class DieboldMariano:
    statistic: float  # HLN-corrected; negative when the challenger's loss is lower
    p_value: float  # one-sided: the challenger is more accurate than production
    points: int  # series x steps in the loss differential


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger_score: float
    production_score: float | None
    # Forecasting: relative, (production - challenger) / production; classification: absolute, in the metric's direction.
    improvement: float | None
    test: Any  # the paired test: DieboldMariano for forecasts, classification_gate.PairedTest for classifiers


def step_losses(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray, loss: Loss) -> np.ndarray:
    """Per series x step losses of errors divided by each series' MASE scale.

    Scaling keeps series with large values from dominating the test, the same way MASE
    keeps them from dominating the leaderboard.
    """
    errors = (actual - forecast) / scale[:, None]
    return np.abs(errors) if loss == "absolute" else errors**2


def _pooled_autocovariance(d: np.ndarray, lag: int) -> float:
    """Autocovariance at ``lag`` of the demeaned differential, summed within rows, over all points."""
    centred = d - d.mean()
    return float((centred[:, lag:] * centred[:, : d.shape[1] - lag]).sum() / d.size)


def diebold_mariano(challenger_loss: np.ndarray, production_loss: np.ndarray) -> DieboldMariano:
    """DM test with the HLN correction on (series, horizon) loss arrays; H1: the challenger is better."""
    if challenger_loss.shape != production_loss.shape or challenger_loss.ndim != 2:
        raise ValueError(f"loss arrays must share one (series, horizon) shape, got {challenger_loss.shape} "
                         f"and {production_loss.shape}")
    d = challenger_loss - production_loss
    points, horizon = d.size, d.shape[1]
    if points < 2:
        raise ValueError("the Diebold-Mariano test needs at least two forecast points")
    long_run = _pooled_autocovariance(d, 0) + 2 * sum(_pooled_autocovariance(d, k) for k in range(1, horizon))
    if long_run <= 0:
        # Truncated HAC estimates can turn negative; the lag-0 variance is the usual fallback.
        long_run = _pooled_autocovariance(d, 0)
    mean = float(d.mean())
    if long_run <= 0:
        # A constant differential: the challenger is better (or not) at every single point.
        return DieboldMariano(statistic=-np.inf if mean < 0 else 0.0, p_value=0.0 if mean < 0 else 1.0, points=points)
    radicand = (points + 1 - 2 * horizon + horizon * (horizon - 1) / points) / points
    if radicand <= 0:
        # Fewer points than the correction needs (a single series): no usable evidence.
        return DieboldMariano(statistic=0.0, p_value=1.0, points=points)
    statistic = float(mean / np.sqrt(long_run / points) * np.sqrt(radicand))
    return DieboldMariano(statistic=statistic, p_value=float(stats.t.cdf(statistic, df=points - 1)), points=points)


def decide(metric: str, challenger_score: float, production_score: float | None, test: DieboldMariano | None,
           margin: float, significance: float) -> GateDecision:
    """Promote only on an improvement of at least ``margin`` (relative) that the DM test finds significant."""
    if production_score is None:
        return GateDecision(True, "no production version yet", metric, challenger_score, None, None, None)
    improvement = (production_score - challenger_score) / production_score if production_score else 0.0
    better = challenger_score < production_score and improvement >= margin
    significant = test is not None and test.p_value < significance
    if better and significant:
        reason = f"{metric} improves by {improvement:.1%} (>= {margin:.1%}), DM p={test.p_value:.3g} < {significance}"
    elif not better:
        reason = f"{metric} improvement {improvement:.1%} is below the margin {margin:.1%}"
    else:
        p_value = "n/a" if test is None else f"{test.p_value:.3g}"
        reason = f"{metric} improves by {improvement:.1%} but DM p={p_value} is not below {significance}"
    return GateDecision(better and significant, reason, metric, challenger_score, production_score, improvement, test)
