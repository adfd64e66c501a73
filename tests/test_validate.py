import numpy as np
import pandas as pd
import pytest

from conftest import make_series, tree_digest
from seqpipe import steps
from seqpipe.errors import DataValidationError


def _ingest_frame(cfg, project, frame, name):
    path = project / "input" / name
    frame.to_csv(path, index=False)
    steps.ingest(cfg, cfg.data.source.model_copy(update={"path": str(path)}))


def test_good_batch_passes_every_expectation(cfg):
    steps.ingest(cfg)
    report = steps.validate(cfg)
    assert report.success and len(report.checks) == 12 and report.series == 8
    docs = cfg.data_dir / "reports" / "validation" / report.dataset / "data_docs"
    assert (docs / "index.html").is_file() and any(docs.rglob("validations/**/*.html"))
    assert (cfg.data_dir / "validated" / "series.parquet").is_file()


def test_duplicate_pair_fails_naming_expectation_and_series(cfg, project):
    frame = make_series()
    _ingest_frame(cfg, project, pd.concat([frame, frame[frame["store"] == "s05"].head(1)]), "dup.csv")
    with pytest.raises(DataValidationError) as err:
        steps.validate(cfg)
    message = str(err.value)
    assert "expect_compound_columns_to_be_unique(series_id, timestamp)" in message
    assert "['s05']" in message and "snapshots/" in message


def test_short_series_and_non_finite_values_are_reported(cfg, project):
    frame = make_series()
    frame = frame[~((frame["store"] == "s02") & (frame.index % 60 > 20))]
    frame.loc[frame["store"] == "s06", "sales"] = np.inf
    _ingest_frame(cfg, project, frame, "short.csv")
    with pytest.raises(DataValidationError) as err:
        steps.validate(cfg)
    message = str(err.value)
    assert "expect_column_values_to_be_between(length)" in message and "['s02']" in message
    assert "expect_column_values_to_be_between(value)" in message and "['s06']" in message
    assert "2 of 12 expectations broken" in message


def test_failed_validation_leaves_the_validated_data_untouched(cfg, project):
    steps.ingest(cfg)
    steps.validate(cfg)
    before = tree_digest(cfg.data_dir / "validated")
    frame = make_series()
    frame.loc[0, "sales"] = np.nan
    _ingest_frame(cfg, project, frame, "nan.csv")
    with pytest.raises(DataValidationError, match=r"expect_column_values_to_not_be_null\(value\).*\['s00'\]"):
        steps.validate(cfg)
    assert tree_digest(cfg.data_dir / "validated") == before


def _with_validation(cfg, **rules):
    return cfg.model_copy(update={"validation": cfg.validation.model_copy(update=rules)})


def test_gaps_beyond_tolerance_and_off_grid_steps_name_their_series(cfg, project):
    frame = make_series()
    frame = frame.drop(frame[(frame["store"] == "s04")].index[[10, 20]])  # two skipped months
    frame.loc[frame[frame["store"] == "s07"].index[5], "month"] = "2015-06-15"  # between two month starts
    _ingest_frame(cfg, project, frame, "gaps.csv")
    with pytest.raises(DataValidationError) as err:
        steps.validate(cfg)
    message = str(err.value)
    assert "expect_column_values_to_be_between(gap_ratio): 1 unexpected, series ['s04']" in message
    assert "expect_column_values_to_be_between(off_grid): 1 unexpected, series ['s07']" in message
    tolerant = _with_validation(cfg, max_gap_ratio=0.05)
    frame = make_series().drop(make_series()[lambda f: f["store"] == "s04"].index[[10, 20]])
    _ingest_frame(tolerant, project, frame, "gaps_ok.csv")
    assert steps.validate(tolerant).success


def test_value_and_row_count_bounds(cfg, project):
    steps.ingest(cfg)
    bounded = _with_validation(cfg, value_max=150.0, max_rows=100)
    with pytest.raises(DataValidationError) as err:
        steps.validate(bounded)
    message = str(err.value)
    assert "expect_table_row_count_to_be_between(table): 0 unexpected, observed 480" in message
    assert "expect_column_values_to_be_between(value)" in message and "s07" in message


def test_quarantine_sets_offending_series_aside_and_goes_on(cfg, project):
    frame = make_series()
    frame = frame[~((frame["store"] == "s02") & (frame.index % 60 > 20))]
    frame = pd.concat([frame, frame[frame["store"] == "s05"].head(1)])
    _ingest_frame(cfg, project, frame, "mixed.csv")
    lenient = _with_validation(cfg, policy="quarantine", min_retained_share=0.7)
    report = steps.validate(lenient)
    assert report.quarantined == ["s02", "s05"]
    validated = pd.read_parquet(cfg.data_dir / "validated" / "series.parquet")
    assert set(validated["series_id"]) == {f"s{i:02d}" for i in range(8)} - {"s02", "s05"}
    [folder] = (cfg.data_dir / "quarantine").iterdir()
    reasons = __import__("json").loads((folder / "reasons.json").read_text())
    assert reasons["s05"] == ["expect_compound_columns_to_be_unique(series_id, timestamp)"]
    assert set(pd.read_parquet(folder / "series.parquet")["series_id"]) == {"s02", "s05"}

    strict_share = _with_validation(cfg, policy="quarantine", min_retained_share=0.9)
    with pytest.raises(DataValidationError, match=r"quarantine would keep only 75.0% of the series"):
        steps.validate(strict_share)


def test_missing_values_within_the_allowed_ratio_are_filled_by_prepare(cfg, project):
    frame = make_series()
    frame.loc[frame[frame["store"] == "s01"].index[[3, 4]], "sales"] = np.nan
    _ingest_frame(cfg, project, frame, "holes.csv")
    with pytest.raises(DataValidationError, match=r"expect_column_values_to_not_be_null\(value\): 2 unexpected, series \['s01'\]"):
        steps.validate(cfg)
    allowing = cfg.model_copy(update={"validation": cfg.validation.model_copy(update={"allowed_missing_ratio": 0.01}),
                                      "prepare": cfg.prepare.model_copy(update={"fill": "none"})})
    steps.validate(allowing)
    with pytest.raises(DataValidationError, match=r"1 series still have missing values .*\['s01'\]"):
        steps.prepare(allowing)
    filling = allowing.model_copy(update={"prepare": allowing.prepare.model_copy(update={"fill": "linear"})})
    steps.prepare(filling)
    prepared = pd.read_parquet(cfg.data_dir / "prepared" / "series.parquet")
    s01 = prepared[prepared["series_id"] == "s01"]["value"].to_numpy()
    np.testing.assert_allclose(s01[3:5], s01[2] + (s01[5] - s01[2]) * np.array([1, 2]) / 3)


def test_without_a_frequency_no_step_is_called_a_gap(cfg, project):
    frame = make_series()
    frame["month"] = pd.to_datetime(frame["month"]) + pd.to_timedelta(np.random.default_rng(0).integers(0, 5, len(frame)), "D")
    _ingest_frame(cfg, project, frame, "jitter.csv")
    with pytest.raises(DataValidationError) as err:
        steps.validate(cfg)
    assert "infer_frequency(timestamp): could not run" in str(err.value)
    assert "gap_ratio" not in str(err.value)
