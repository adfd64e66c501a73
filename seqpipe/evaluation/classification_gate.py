"""The classifier gate's paired tests and its decision.

The challenger and production classify the same test sequences, so the comparison is
paired: McNemar's exact test looks only at the sequences the two disagree on, and a
paired bootstrap resamples sequences (the same ones for both models) to test any metric,
the calibration scores included. Both tests are one-sided, H1: the challenger is better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from seqpipe.evaluation.classification import HIGHER_IS_BETTER, Scorer
from seqpipe.evaluation.gate import GateDecision


@dataclass(frozen=True)
class PairedTest:
    name: Literal["mcnemar", "bootstrap"]
    # Positive when the challenger is ahead. mcnemar: b - c; bootstrap: the metric's
    # improvement on the whole test set, in the metric's better direction.
    statistic: float
    p_value: float  # one-sided: the challenger is better than production
    points: int  # test sequences compared
    challenger_only: int  # b: sequences only the challenger classifies correctly
    production_only: int  # c: sequences only production classifies correctly
    samples: int = 0  # bootstrap resamples; 0 for mcnemar
    not_better: int = 0  # resamples in which the challenger's metric was not better


def _correct(labels: np.ndarray, pred_or_proba: np.ndarray) -> np.ndarray:
    """Whether each sequence is classified correctly, from class indices ``(n,)`` or probabilities ``(n, k)``."""
    values = np.asarray(pred_or_proba)
    predicted = values.argmax(axis=1) if values.ndim == 2 else values
    if predicted.shape != labels.shape:
        raise ValueError(f"predictions of shape {values.shape} do not match {labels.shape[0]} labels")
    return predicted == labels


def _paired_counts(challenger_correct: np.ndarray, production_correct: np.ndarray) -> tuple[int, int]:
    challenger_correct = np.asarray(challenger_correct, dtype=bool)
    production_correct = np.asarray(production_correct, dtype=bool)
    if challenger_correct.shape != production_correct.shape or challenger_correct.ndim != 1:
        raise ValueError(f"the paired tests need one correctness flag per test sequence for both models, got shapes "
                         f"{challenger_correct.shape} and {production_correct.shape}")
    return (int((challenger_correct & ~production_correct).sum()),
            int((~challenger_correct & production_correct).sum()))


def mcnemar_exact(challenger_correct: np.ndarray, production_correct: np.ndarray) -> PairedTest:
    """McNemar's exact test: P(X >= b) for X ~ Binomial(b + c, 1/2); no disagreements gives p = 1."""
    b, c = _paired_counts(challenger_correct, production_correct)
    # binom.sf(b - 1) is P(X > b - 1) = P(X >= b); with n = 0 it is 1, as no evidence should be.
    p_value = float(stats.binom.sf(b - 1, b + c, 0.5)) if b + c else 1.0
    return PairedTest("mcnemar", statistic=float(b - c), p_value=p_value, points=len(challenger_correct),
                      challenger_only=b, production_only=c)


def paired_bootstrap(labels: np.ndarray, challenger_pred_or_proba: np.ndarray, production_pred_or_proba: np.ndarray,
                     metric_fn: Scorer, samples: int, seed: int, *, higher_is_better: bool | None = None) -> PairedTest:
    """Resample the test sequences with replacement, the same draw for both models, and score each with ``metric_fn``.

    ``metric_fn(labels, pred_or_proba)`` takes whatever the two arrays hold (class indices
    or probabilities). Its direction is ``higher_is_better``, or, left out, the
    ``higher_is_better`` of ``metric_fn`` itself, which ``metric_scorer`` gives. The
    one-sided p-value is the share of resamples in which the challenger's metric is not
    strictly better than production's.
    """
    if higher_is_better is None:
        higher_is_better = getattr(metric_fn, "higher_is_better", None)
        if higher_is_better is None:
            raise ValueError("paired_bootstrap cannot tell whether a higher score is better: pass a metric_scorer(...) "
                             "as metric_fn, or higher_is_better")
    labels = np.asarray(labels)
    challenger, production = np.asarray(challenger_pred_or_proba), np.asarray(production_pred_or_proba)
    if samples < 1:
        raise ValueError(f"the bootstrap needs at least one resample, got {samples}")
    if len(labels) == 0 or len(challenger) != len(labels) or len(production) != len(labels):
        raise ValueError(f"the bootstrap needs both models' outputs for the same test sequences, got {len(labels)} "
                         f"labels, {len(challenger)} and {len(production)} rows")
    sign = 1.0 if higher_is_better else -1.0
    b, c = _paired_counts(_correct(labels, challenger), _correct(labels, production))
    observed = sign * (metric_fn(labels, challenger) - metric_fn(labels, production))
    rng = np.random.default_rng(seed)
    not_better = 0
    for _ in range(samples):
        rows = rng.integers(0, len(labels), len(labels))
        gain = sign * (metric_fn(labels[rows], challenger[rows]) - metric_fn(labels[rows], production[rows]))
        # A tie, or a score the resample leaves undefined (NaN), is no evidence for the challenger.
        not_better += int(not gain > 0)
    return PairedTest("bootstrap", statistic=float(observed), p_value=not_better / samples, points=len(labels),
                      challenger_only=b, production_only=c, samples=samples, not_better=not_better)


def decide_classifier(metric: str, challenger_score: float, production_score: float | None, test: PairedTest | None,
                      margin: float, significance: float) -> GateDecision:
    """Promote on an improvement of at least ``margin`` that the paired test finds significant.

    The margin is absolute, in the metric's better direction, and so is
    ``GateDecision.improvement`` here: positive when the challenger is better. With no
    production version the challenger is promoted.
    """
    try:
        higher = HIGHER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown classification metric '{metric}'; known: {sorted(HIGHER_IS_BETTER)}") from None
    if production_score is None:
        return GateDecision(True, "no production version yet", metric, challenger_score, None, None, None)
    improvement = challenger_score - production_score if higher else production_score - challenger_score
    # Strictly better even when the margin is 0: a tie is no reason to replace what serves.
    better = improvement > 0 and improvement >= margin
    significant = test is not None and test.p_value < significance
    label = "test" if test is None else test.name
    if better and significant:
        reason = (f"{metric} improves by {improvement:.4g} (>= {margin:.4g}), "
                  f"{label} p={test.p_value:.3g} < {significance}")
    elif not better:
        reason = f"{metric} improvement {improvement:.4g} is not above the margin {margin:.4g}"
    else:
        p_value = "n/a" if test is None else f"{test.p_value:.3g}"
        reason = f"{metric} improves by {improvement:.4g} but {label} p={p_value} is not below {significance}"
    return GateDecision(better and significant, reason, metric, challenger_score, production_score, improvement, test)
