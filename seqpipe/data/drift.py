"""Has the data moved away from what the production model was trained on?

Per series, the points the reference snapshot already had are the reference sample
and the points after its last timestamp are the new sample (a series whose history was
rewritten rather than extended compares in full). By default both samples are seasonal
differences (y[t] - y[t - season]): a trending or seasonal series always sees new levels,
which is not drift; a change in how it moves from one season to the next is. Each series gets a population
stability index over the reference's quantile bins and a two-sample Kolmogorov-Smirnov
test, and drifted when both say so; the summary says how many series drifted, which ones most, and which series
appeared or disappeared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from seqpipe.config import DriftConfig

# Empty bins would make the PSI infinite; this floor is the usual smoothing.
PSI_FLOOR = 1e-4
MIN_EXPECTED_PER_BIN = 5
SHOWN = 10


@dataclass(frozen=True)
class SeriesDrift:
    series_id: str
    reference_points: int
    new_points: int
    psi: float
    ks_pvalue: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    reference_md5: str
    current_md5: str
    tested: int
    drifted: int
    untested: int  # too few new points
    added_series: list[str]
    removed_series: list[str]
    mean_psi: float
    series: list[SeriesDrift] = field(repr=False)

    @property
    def drifted_share(self) -> float:
        return self.drifted / self.tested if self.tested else 0.0

    def summary(self) -> str:
        worst = sorted((s for s in self.series if s.drifted), key=lambda s: -s.psi)[:SHOWN]
        named = ", ".join(f"{s.series_id} (PSI {s.psi:.2f})" for s in worst)
        return (f"drift against {self.reference_md5[:12]}: {self.drifted} of {self.tested} series drifted "
                f"({self.drifted_share:.0%}, mean PSI {self.mean_psi:.3f}); {self.untested} with too few new points; "
                f"{len(self.added_series)} new series, {len(self.removed_series)} gone" + (f"; most: {named}" if named else ""))

    def to_dict(self) -> dict:
        return {**asdict(self), "drifted_share": self.drifted_share}


def psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population stability index of ``current`` against ``reference``'s quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant reference: drift is any departure from that value
        return 0.0 if np.all(current == reference[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    return shares_psi(np.histogram(reference, edges)[0] / len(reference),
                      np.histogram(current, edges)[0] / len(current))


def shares_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two distributions given as shares of the same bins or categories."""
    expected, actual = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def compare_samples(reference: np.ndarray, current: np.ndarray, settings: DriftConfig) -> tuple[float, float, bool]:
    """PSI, two-sample KS p-value and whether ``current`` drifted from ``reference`` (both say so)."""
    # A bin the new sample would fill with fewer than a handful of points makes the PSI noise.
    bins = int(np.clip(len(current) // MIN_EXPECTED_PER_BIN, 2, settings.bins))
    index = psi(reference, current, bins)
    pvalue = float(stats.ks_2samp(reference, current).pvalue)
    # Both must agree: the PSI says the distribution moved far enough to matter, the KS test
    # that a move this large is unlikely to be chance in samples this small.
    return index, pvalue, bool(index > settings.psi_threshold and pvalue < settings.ks_alpha)


def _differenced(frame: pd.DataFrame, lag: int) -> pd.DataFrame:
    if lag == 0:
        return frame
    return frame.assign(value=frame["value"] - frame["value"].shift(lag)).iloc[lag:]


def _series_drift(series_id: str, reference: pd.DataFrame, current: pd.DataFrame, settings: DriftConfig,
                  lag: int) -> SeriesDrift | None:
    ref_values = _differenced(reference, lag)["value"].dropna().to_numpy()
    changes = _differenced(current, lag)
    newer = changes[changes["timestamp"] > reference["timestamp"].max()]
    # No newer points but different data: the history was revised, so compare all of it.
    new_values = (newer if len(newer) else changes)["value"].dropna().to_numpy()
    if len(new_values) < settings.min_points or len(ref_values) < settings.min_points:
        return None
    index, pvalue, drifted = compare_samples(ref_values, new_values, settings)
    return SeriesDrift(series_id, len(ref_values), len(new_values), index, pvalue, drifted)


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftConfig,
                 reference_md5: str, current_md5: str, season: int = 1) -> DriftReport:
    """Compare two canonical frames (sorted by series, then time) series by series."""
    lag = season if settings.compare == "seasonal_difference" else 0
    ref_groups = dict(tuple(reference.groupby("series_id", sort=True)))
    cur_groups = dict(tuple(current.groupby("series_id", sort=True)))
    common = sorted(set(ref_groups) & set(cur_groups))
    results = [_series_drift(sid, ref_groups[sid], cur_groups[sid], settings, lag) for sid in common]
    tested = [r for r in results if r is not None]
    finite = [r.psi for r in tested if np.isfinite(r.psi)]
    return DriftReport(
        reference_md5=reference_md5, current_md5=current_md5, tested=len(tested),
        drifted=sum(r.drifted for r in tested), untested=len(results) - len(tested),
        added_series=sorted(set(cur_groups) - set(ref_groups)), removed_series=sorted(set(ref_groups) - set(cur_groups)),
        mean_psi=float(np.mean(finite)) if finite else 0.0, series=tested,
    )
