"""Every source kind on real files: folder, glob, wide layout, SQL, time zones, built-in catalog."""

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_series
from seqpipe.config import ColumnMap, SourceConfig
from seqpipe.data.catalog import BUILTIN_DATASETS
from seqpipe.data.sources import read_source
from seqpipe.errors import SourceError

COLUMNS = ColumnMap(series_id="store", timestamp="month", value="sales")


def test_a_folder_and_a_glob_read_every_matching_file(tmp_path):
    frame = make_series()
    (tmp_path / "parts" / "2015").mkdir(parents=True)
    for store, part in frame.groupby("store"):
        part.to_parquet(tmp_path / "parts" / "2015" / f"{store}.parquet", index=False)
    (tmp_path / "parts" / "notes.txt").write_text("not data")
    folder, origin = read_source(SourceConfig(kind="parquet", path="parts", columns=COLUMNS), tmp_path)
    assert len(folder) == len(frame) and folder["series_id"].nunique() == 8 and "8 files" in origin
    globbed, _ = read_source(SourceConfig(kind="parquet", path="parts/**/s0[0-3].parquet", columns=COLUMNS), tmp_path)
    assert sorted(globbed["series_id"].unique()) == ["s00", "s01", "s02", "s03"]
    with pytest.raises(SourceError, match=r"parts/\*\.csv: the glob matched no files"):
        read_source(SourceConfig(kind="csv", path="parts/*.csv", columns=COLUMNS), tmp_path)


def test_wide_layout_becomes_long(tmp_path):
    wide = make_series().pivot(index="month", columns="store", values="sales").reset_index()
    wide.to_csv(tmp_path / "wide.csv", index=False)
    source = SourceConfig(kind="csv", path="wide.csv", layout="wide", columns=ColumnMap(timestamp="month"),
                          value_columns=["s01", "s03"])
    frame, _ = read_source(source, tmp_path)
    assert sorted(frame["series_id"].unique()) == ["s01", "s03"] and len(frame) == 120
    expected = make_series().query("store == 's03'")["sales"].to_numpy()
    assert (frame.loc[frame["series_id"] == "s03", "value"].to_numpy() == expected).all()


def test_sql_query_against_a_real_sqlite_file(tmp_path):
    db = tmp_path / "sales.db"
    with sqlite3.connect(db) as connection:
        make_series().to_sql("sales", connection, index=False)
    source = SourceConfig(kind="sql", url=f"sqlite:///{db}", query="SELECT store, month, sales FROM sales WHERE store < 's04'",
                          columns=COLUMNS)
    frame, origin = read_source(source, tmp_path)
    assert frame["series_id"].nunique() == 4 and origin == f"sql:sqlite:///{db}"
    broken = source.model_copy(update={"query": "SELECT * FROM no_such_table"})
    with pytest.raises(SourceError, match=r"the query failed: no such table: no_such_table"):
        read_source(broken, tmp_path)


def test_time_zones_are_normalised_to_utc(tmp_path):
    pd.DataFrame({
        "store": ["a", "a", "b"],
        "month": ["2020-01-01T01:00:00+01:00", "2020-01-01T02:00:00Z", "2020-01-01 09:00"],
        "sales": [1.0, 2.0, 3.0],
    }).to_csv(tmp_path / "zones.csv", index=False)
    frame, _ = read_source(SourceConfig(kind="csv", path="zones.csv", columns=COLUMNS, timezone="America/New_York"), tmp_path)
    assert frame["timestamp"].dt.tz is None
    assert frame["timestamp"].tolist() == [pd.Timestamp("2020-01-01 00:00"), pd.Timestamp("2020-01-01 02:00"),
                                           pd.Timestamp("2020-01-01 14:00")]


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_every_builtin_dataset_loads_canonical_and_long_enough(name):
    dataset = BUILTIN_DATASETS[name]
    frame, _ = read_source(SourceConfig(kind="builtin", name=name), Path("."))
    assert list(frame.columns) == ["series_id", "timestamp", "value"]
    assert frame.set_index(["series_id", "timestamp"]).index.is_unique
    lengths = frame.groupby("series_id").size()
    # Most series afford the catalog's lookback + 2 x horizon; the rest are quarantine material.
    assert (lengths >= dataset.lookback + 2 * dataset.horizon).mean() > 0.5


def test_a_single_series_needs_no_id_column(tmp_path):
    one = make_series().query("store == 's03'").drop(columns="store")
    one.to_csv(tmp_path / "visitors.csv", index=False)
    columns = ColumnMap(series_id=None, timestamp="month", value="sales")
    frame, _ = read_source(SourceConfig(kind="csv", path="visitors.csv", columns=columns), tmp_path)
    assert list(frame.columns) == ["series_id", "timestamp", "value"] and len(frame) == len(one)
    assert set(frame["series_id"]) == {"visitors"}  # named after the file
    assert (frame["value"].to_numpy() == one["sales"].to_numpy()).all()
    named, _ = read_source(SourceConfig(kind="csv", path="visitors.csv", columns=columns, series_name="north"), tmp_path)
    assert set(named["series_id"]) == {"north"}

    # A folder of such files: one series per file, each named after its file.
    (tmp_path / "stores").mkdir()
    for store, part in make_series(series=3).groupby("store"):
        part.drop(columns="store").to_parquet(tmp_path / "stores" / f"{store}.parquet", index=False)
    folder, _ = read_source(SourceConfig(kind="parquet", path="stores", columns=columns), tmp_path)
    assert sorted(folder["series_id"].unique()) == ["s00", "s01", "s02"] and len(folder) == 3 * len(one)
    with pytest.raises(SourceError, match="matched 3 files, but data.source.series_name names one series"):
        read_source(SourceConfig(kind="parquet", path="stores", columns=columns, series_name="north"), tmp_path)
    with pytest.raises(ValueError, match="set data.source.columns.series_id to null as well"):
        SourceConfig(kind="csv", path="visitors.csv", columns=COLUMNS, series_name="north")


def test_a_missing_id_column_is_named_as_such_with_the_way_out(tmp_path):
    make_series().drop(columns="store").to_csv(tmp_path / "one.csv", index=False)
    for columns in (ColumnMap(timestamp="month", value="sales"), COLUMNS):
        with pytest.raises(SourceError) as error:
            read_source(SourceConfig(kind="csv", path="one.csv", columns=columns), tmp_path)
        message = str(error.value)
        assert f"missing column '{columns.series_id}' (the series_id column)" in message, message
        assert "a covariate" not in message and "set data.source.columns.series_id to null" in message


def test_a_single_series_file_trains_registers_and_forecasts_without_ids(project):
    """One series, no id column, from ingest to a registered model's forecast of a history file alike."""
    from conftest import train_all, write_config
    from seqpipe import steps
    from seqpipe.config import load_config

    make_series().query("store == 's02'").drop(columns="store").to_csv(project / "input" / "visitors.csv", index=False)
    cfg = load_config(write_config(
        project, "input/visitors.csv", models=["seasonal_naive"],
        data={"source": {"kind": "csv", "path": "input/visitors.csv",
                         "columns": {"series_id": None, "timestamp": "month", "value": "sales"}}}))
    steps.ingest(cfg)
    assert steps.validate(cfg).success
    steps.prepare(cfg)
    train_all(cfg)
    board = steps.evaluate(cfg)
    assert list(board["model"]) == ["seasonal_naive"]
    steps.register(cfg)
    history = make_series().query("store == 's02'").drop(columns="store")
    history.to_csv(project / "history.csv", index=False)
    forecast = steps.predict(cfg, "challenger", project / "history.csv", project / "forecast.csv")
    assert set(forecast["series_id"]) == {"visitors"} and len(forecast) == cfg.data.horizon
    # seasonal naive repeats the last season: the forecast is the history's last `horizon` points a season back
    season = history["sales"].to_numpy()[-12:][: cfg.data.horizon]
    assert np.allclose(forecast["mean"].to_numpy(), season)
