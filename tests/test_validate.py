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
    assert report.success and len(report.checks) == 9 and report.series == 8
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
    assert "2 of 9 expectations broken" in message


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
