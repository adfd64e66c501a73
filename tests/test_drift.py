"""Drift between two canonical frames: PSI and KS per series, on the points the reference lacks."""

import numpy as np
import pandas as pd
import pytest

from seqpipe.config import DriftConfig
from seqpipe.data.drift import detect_drift, psi


def _frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"series_id": sid, "timestamp": np.arange(len(v)), "value": v})
                      for sid, v in values.items()], ignore_index=True)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 2000)
    assert psi(reference, rng.normal(0, 1, 2000), bins=10) < 0.05
    assert psi(reference, rng.normal(2, 1, 2000), bins=10) > 1.0


def test_only_shifted_series_drift_and_new_or_gone_series_are_named():
    rng = np.random.default_rng(1)
    reference = {f"s{i}": rng.normal(10, 1, 200) for i in range(4)}
    current = {sid: np.concatenate([v, rng.normal(10 + (5 if sid == "s1" else 0), 1, 100)])
               for sid, v in reference.items() if sid != "s3"}
    current["s9"] = rng.normal(0, 1, 300)
    report = detect_drift(_frame(reference), _frame(current), DriftConfig(compare="level"), "ref", "cur")
    assert (report.tested, report.drifted) == (3, 1)
    assert [s.series_id for s in report.series if s.drifted] == ["s1"]
    assert all(s.new_points == 100 for s in report.series)  # only the points after the reference's end
    assert (report.added_series, report.removed_series) == (["s9"], ["s3"])
    assert "1 of 3 series drifted" in report.summary() and "s1 (PSI" in report.summary()


def test_series_with_too_few_new_points_are_not_tested():
    reference = _frame({"a": np.arange(50.0)})
    current = _frame({"a": np.arange(53.0)})
    report = detect_drift(reference, current, DriftConfig(min_points=8), "ref", "cur")
    assert (report.tested, report.untested, report.drifted) == (0, 1, 0)


def test_drift_settings_are_validated():
    with pytest.raises(ValueError, match="ks_alpha"):
        DriftConfig(ks_alpha=2)


def test_seasonal_differences_let_trend_and_season_pass_but_catch_a_break():
    rng = np.random.default_rng(2)
    t = np.arange(96)
    steady = 100 + 0.5 * t + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, 96)
    broken = steady.copy()
    broken[84:] += 30  # the last year jumps
    reference = _frame({"steady": steady[:84], "broken": broken[:84]})
    current = _frame({"steady": steady, "broken": broken})
    by_level = detect_drift(reference, current, DriftConfig(compare="level"), "ref", "cur", season=12)
    assert {s.series_id for s in by_level.series if s.drifted} == {"steady", "broken"}  # new highs look like drift
    by_change = detect_drift(reference, current, DriftConfig(), "ref", "cur", season=12)
    assert {s.series_id for s in by_change.series if s.drifted} == {"broken"}
