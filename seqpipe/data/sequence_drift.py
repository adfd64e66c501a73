"""Has the labelled-sequence data moved away from what the production classifier was trained on? (task: classify)

The twin of ``seqpipe.data.drift`` for canonical sequence frames. A classifier sees whole
sequences, so the quantities compared are per sequence, not per step:

- ``label``: the class mix, a chi-square test of the current label counts against the
  reference's proportions plus the PSI of the label shares; labels the reference never
  had are named (and labels it had that are gone);
- ``length``: the number of steps of each sequence;
- ``channel:<name>``: each channel's mean over the steps of each sequence.

``length`` and the channels get a PSI over the reference's quantile bins and a two-sample
KS test, exactly as forecasting's series do. A quantity drifted when its PSI exceeds
``psi_threshold`` and its test rejects at ``ks_alpha``; one with fewer than ``min_points``
sequences on either side is not tested. Sequences are compared in full: a new snapshot is
the population the next model trains on, not an extension of the old one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from seqpipe.config import DriftConfig
from seqpipe.data.drift import PSI_FLOOR, SHOWN, compare_samples, shares_psi
from seqpipe.data.sequences import LABEL, SEQUENCE_ID, channel_columns

LABEL_QUANTITY, LENGTH_QUANTITY, CHANNEL_PREFIX = "label", "length", "channel:"


@dataclass(frozen=True)
class QuantityDrift:
    name: str  # "label", "length" or "channel:<name>"
    reference_sequences: int
    current_sequences: int
    psi: float
    p_value: float  # chi-square for the label, two-sample KS otherwise
    drifted: bool


@dataclass(frozen=True)
class SequenceDriftReport:
    reference_md5: str
    current_md5: str
    reference_sequences: int
    current_sequences: int
    tested: int  # quantities
    drifted: int
    untested: int  # too few sequences
    unseen_labels: list[str]  # in the current data, never in the reference
    vanished_labels: list[str]  # in the reference, not in the current data
    added_channels: list[str]  # not compared: the reference has no values for them
    removed_channels: list[str]
    mean_psi: float
    quantities: list[QuantityDrift] = field(repr=False)

    @property
    def drifted_share(self) -> float:
        return self.drifted / self.tested if self.tested else 0.0

    def summary(self) -> str:
        worst = sorted((q for q in self.quantities if q.drifted), key=lambda q: -q.psi)[:SHOWN]
        named = ", ".join(f"{q.name} (PSI {q.psi:.2f})" for q in worst)
        parts = [f"drift against {self.reference_md5[:12]}: {self.drifted} of {self.tested} quantities drifted "
                 f"({self.drifted_share:.0%}, mean PSI {self.mean_psi:.3f}) over {self.current_sequences} sequences "
                 f"(reference {self.reference_sequences}); {self.untested} with too few sequences"]
        if named:
            parts.append(f"most: {named}")
        if self.unseen_labels:
            parts.append(f"unseen labels: {', '.join(self.unseen_labels[:SHOWN])}")
        if self.vanished_labels:
            parts.append(f"labels gone: {', '.join(self.vanished_labels[:SHOWN])}")
        if self.added_channels or self.removed_channels:
            parts.append(f"{len(self.added_channels)} new channels, {len(self.removed_channels)} gone")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "drifted_share": self.drifted_share}


def per_sequence(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per sequence (indexed by id): its label, its length and each channel's mean."""
    groups = frame.groupby(SEQUENCE_ID, sort=True)
    # first() skips missing values: a label missing on some rows (validation's business, and
    # snapshots are not validated) should not hide the sequence's class.
    return pd.concat([groups[LABEL].first(), groups.size().rename(LENGTH_QUANTITY),
                      groups[channel_columns(frame)].mean().add_prefix(CHANNEL_PREFIX)], axis=1)


def _label_drift(reference: pd.Series, current: pd.Series, settings: DriftConfig) -> QuantityDrift | None:
    reference, current = reference.dropna().astype(str), current.dropna().astype(str)
    if len(reference) < settings.min_points or len(current) < settings.min_points:
        return None
    labels = sorted(set(reference) | set(current))
    expected = reference.value_counts(normalize=True).reindex(labels, fill_value=0.0).to_numpy()
    counts = current.value_counts().reindex(labels, fill_value=0).to_numpy()
    index = shares_psi(expected, counts / counts.sum())
    if len(labels) < 2:  # one class on both sides: nothing can have moved
        return QuantityDrift(LABEL_QUANTITY, len(reference), len(current), index, 1.0, False)
    # An unseen label has no reference share and would make the statistic infinite; it gets
    # the floor the PSI smooths with, so a handful of odd sequences does not decide alone.
    smoothed = np.maximum(expected, PSI_FLOOR)
    pvalue = float(stats.chisquare(counts, smoothed / smoothed.sum() * counts.sum()).pvalue)
    return QuantityDrift(LABEL_QUANTITY, len(reference), len(current), index, pvalue,
                         bool(index > settings.psi_threshold and pvalue < settings.ks_alpha))


def _values_drift(name: str, reference: pd.Series, current: pd.Series, settings: DriftConfig) -> QuantityDrift | None:
    # A channel missing throughout a sequence has no mean; that sequence is left out of its comparison.
    ref_values = reference.dropna().to_numpy(np.float64)
    new_values = current.dropna().to_numpy(np.float64)
    if len(ref_values) < settings.min_points or len(new_values) < settings.min_points:
        return None
    index, pvalue, drifted = compare_samples(ref_values, new_values, settings)
    return QuantityDrift(name, len(ref_values), len(new_values), index, pvalue, drifted)


def detect_sequence_drift(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftConfig,
                          reference_md5: str, current_md5: str) -> SequenceDriftReport:
    """Compare two canonical sequence frames: the label mix, the lengths and each channel's per-sequence mean."""
    return compare_per_sequence(per_sequence(reference), per_sequence(current), settings, reference_md5, current_md5)


def compare_per_sequence(ref: pd.DataFrame, cur: pd.DataFrame, settings: DriftConfig, reference_md5: str,
                         current_md5: str, prefix: str = CHANNEL_PREFIX) -> SequenceDriftReport:
    """Compare two tables of one row per sequence: the label mix, the length and each ``prefix``ed quantity."""
    ref_channels = [c for c in ref.columns if c.startswith(prefix)]
    cur_channels = [c for c in cur.columns if c.startswith(prefix)]
    common = [c for c in ref_channels if c in cur_channels]
    results = [_label_drift(ref[LABEL], cur[LABEL], settings),
               _values_drift(LENGTH_QUANTITY, ref[LENGTH_QUANTITY], cur[LENGTH_QUANTITY], settings),
               *(_values_drift(c, ref[c], cur[c], settings) for c in common)]
    tested = [r for r in results if r is not None]
    finite = [r.psi for r in tested if np.isfinite(r.psi)]
    ref_labels, cur_labels = set(ref[LABEL].dropna().astype(str)), set(cur[LABEL].dropna().astype(str))

    def bare(columns: set[str]) -> list[str]:
        return sorted(c.removeprefix(prefix) for c in columns)

    return SequenceDriftReport(
        reference_md5=reference_md5, current_md5=current_md5, reference_sequences=len(ref),
        current_sequences=len(cur), tested=len(tested), drifted=sum(r.drifted for r in tested),
        untested=len(results) - len(tested), unseen_labels=sorted(cur_labels - ref_labels),
        vanished_labels=sorted(ref_labels - cur_labels), added_channels=bare(set(cur_channels) - set(ref_channels)),
        removed_channels=bare(set(ref_channels) - set(cur_channels)),
        mean_psi=float(np.mean(finite)) if finite else 0.0, quantities=tested,
    )
