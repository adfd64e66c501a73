"""A corpus of broken inputs: each case writes its file(s) and says how seqpipe must refuse it.

``write(folder)`` returns the source settings (merged into ``data.source``) and, where
the case needs them, validation settings. ``exit_code`` 3 is a source error (nothing
readable), 4 a validation error (readable, but breaks an expectation).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import make_series

SOURCE, VALIDATION = 3, 4


@dataclass(frozen=True)
class Case:
    name: str
    write: Callable[[Path], dict]
    exit_code: int
    fragments: tuple[str, ...]  # each must appear in the error message
    series: tuple[str, ...] = ()  # offending series the message must name
    names_file: bool = True  # SQL sources have no file; the message names the database instead
    validation: dict = field(default_factory=dict)


def _csv(frame: pd.DataFrame, name: str = "broken.csv", **to_csv) -> Callable[[Path], dict]:
    def write(folder: Path) -> dict:
        frame.to_csv(folder / name, index=False, **to_csv)
        return {"path": str(folder / name)}

    return write


def _bytes(content: bytes, name: str = "broken.csv", kind: str = "csv") -> Callable[[Path], dict]:
    def write(folder: Path) -> dict:
        (folder / name).write_bytes(content)
        return {"path": str(folder / name), "kind": kind}

    return write


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame], name: str = "broken.csv") -> Callable[[Path], dict]:
    return lambda folder: _csv(change(make_series()), name)(folder)


def _set(store: str, rows: list[int], column: str, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[frame[frame["store"] == store].index[rows], column] = value
        return frame

    return change


def _truncated_parquet(folder: Path) -> dict:
    path = folder / "broken.parquet"
    make_series().to_parquet(path, index=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return {"path": str(path), "kind": "parquet"}


def _wrong_schema_parquet(folder: Path) -> dict:
    path = folder / "broken.parquet"
    make_series().rename(columns={"sales": "revenue", "month": "period"}).to_parquet(path, index=False)
    return {"path": str(path), "kind": "parquet"}


def _text_values_parquet(folder: Path) -> dict:
    path = folder / "broken.parquet"
    frame = make_series()
    frame["sales"] = frame["sales"].astype(str)
    frame.loc[7, "sales"] = "lots"
    frame.to_parquet(path, index=False)
    return {"path": str(path), "kind": "parquet"}


def _failing_sql(folder: Path) -> dict:
    db = folder / "broken.db"
    with sqlite3.connect(db) as connection:
        make_series().to_sql("sales", connection, index=False)
    return {"kind": "sql", "url": f"sqlite:///{db}", "query": "SELECT store, month, sales FROM salez", "path": None}


def _tiny_series(folder: Path) -> dict:
    count = 50_000
    frame = pd.DataFrame({
        "store": np.repeat([f"t{i:05d}" for i in range(count)], 3),
        "month": np.tile(pd.date_range("2020-01-01", periods=3, freq="MS").strftime("%Y-%m-%d"), count),
        "sales": 1.0,
    })
    return _csv(frame)(folder)


def _daylight_saving(folder: Path) -> dict:
    """Daily data written at local midnight: across the DST switch, UTC stamps leave the grid."""
    local = pd.date_range("2020-02-01", periods=60, freq="D", tz="Europe/Berlin")
    frame = pd.DataFrame({"store": "berlin", "month": [t.isoformat() for t in local], "sales": np.arange(60.0)})
    others = make_series(series=3)
    days = pd.date_range("2020-02-01", periods=60, freq="D").strftime("%Y-%m-%d")
    others = others.groupby("store").head(60).assign(month=np.tile(days, 3))
    return _csv(pd.concat([frame, others]))(folder)


PROMO_COLUMNS = {"series_id": "store", "timestamp": "month", "value": "sales", "covariates": ["promo"]}


def _covariate(promo: Callable[[pd.DataFrame], pd.Series | None]) -> Callable[[Path], dict]:
    """The sales data with a covariate ``promo`` (None: without the column), configured as one."""
    def write(folder: Path) -> dict:
        frame = make_series()
        values = promo(frame)
        if values is not None:
            frame["promo"] = values
        return {**_csv(frame)(folder), "columns": PROMO_COLUMNS}

    return write


def _hostile_ids(folder: Path) -> dict:
    frame = make_series(series=3)
    frame.loc[frame["store"] == "s01", "store"] = "../../etc/passwd"
    frame.loc[frame["store"] == "s02", "store"] = "$(touch pwned); rm -rf /"
    short = frame[frame["store"].str.startswith(("../", "$("))].groupby("store").head(10)
    return _csv(pd.concat([frame[frame["store"] == "s00"], short]))(folder)


CASES = [
    Case("empty_file", _bytes(b""), SOURCE, ("the file is empty",)),
    Case("header_only", _bytes(b"store,month,sales\n"), SOURCE, ("header but no rows",)),
    Case("wrong_delimiter", _csv(make_series(), sep=";"), SOURCE, ("missing column", "'store' (the series_id column)")),
    Case("missing_id_column", _edit(lambda f: f.drop(columns="store")), SOURCE, ("'store' (the series_id column)",)),
    Case("missing_time_column", _edit(lambda f: f.drop(columns="month")), SOURCE, ("'month' (the timestamp column)",)),
    Case("missing_value_column", _edit(lambda f: f.drop(columns="sales")), SOURCE, ("'sales' (the value column)",)),
    Case("non_numeric_values", _edit(_set("s03", [4], "sales", "twelve")), SOURCE, ("non-numeric values",), ("s03",)),
    Case("nan_values", _edit(_set("s02", [5, 6], "sales", np.nan)), VALIDATION,
         ("expect_column_values_to_not_be_null(value): 2 unexpected",), ("s02",)),
    Case("inf_values", _edit(_set("s06", [9], "sales", np.inf)), VALIDATION,
         ("expect_column_values_to_be_between(value): 1 unexpected",), ("s06",)),
    Case("duplicate_pairs", _edit(lambda f: pd.concat([f, f.iloc[[130]]])), VALIDATION,
         ("expect_compound_columns_to_be_unique(series_id, timestamp): 2 unexpected",), ("s02",)),
    Case("mixed_time_formats", _edit(_set("s05", [3, 4], "month", "03/04/2015")), SOURCE,
         ("timestamps that do not parse", "2 rows"), ("s05",)),
    Case("time_zone_mix_across_dst", _daylight_saving, VALIDATION,
         ("expect_column_values_to_be_between(off_grid)",), ("berlin",)),
    Case("irregular_gaps", _edit(lambda f: f.drop(f[f["store"] == "s04"].index[[10, 11, 30]])), VALIDATION,
         ("expect_column_values_to_be_between(gap_ratio)",), ("s04",)),
    Case("off_grid_timestamp", _edit(_set("s07", [8], "month", "2015-09-17")), VALIDATION,
         ("expect_column_values_to_be_between(off_grid)",), ("s07",)),
    Case("series_shorter_than_window", _edit(lambda f: f[~((f["store"] == "s01") & (f.index % 60 >= 20))]), VALIDATION,
         ("expect_column_values_to_be_between(length): 1 unexpected",), ("s01",)),
    Case("single_short_series", _edit(lambda f: f[f["store"] == "s00"].head(12)), VALIDATION,
         ("expect_column_values_to_be_between(length)",), ("s00",)),
    Case("single_row", _edit(lambda f: f.head(1)), VALIDATION, ("expect_column_values_to_be_between(length)",), ("s00",)),
    Case("fifty_thousand_tiny_series", _tiny_series, VALIDATION,
         ("expect_column_values_to_be_between(length): 50000 unexpected", "and 49990 more"), ("t00000",)),
    Case("hostile_series_ids", _hostile_ids, VALIDATION, ("expect_column_values_to_be_between(length)",),
         ("../../etc/passwd", "$(touch pwned); rm -rf /")),
    Case("null_series_ids", _edit(_set("s01", [0, 1], "store", np.nan)), VALIDATION,
         ("expect_column_values_to_not_be_null(series_id): 2 unexpected",)),
    Case("null_timestamps", _edit(_set("s03", [2], "month", np.nan)), VALIDATION,
         ("expect_column_values_to_not_be_null(timestamp): 1 unexpected",), ("s03",)),
    Case("non_utf8_bytes", _bytes("store,month,sales\ns\xe9,2015-01-01,1.0\n".encode("latin-1")), SOURCE, ("not UTF-8",)),
    Case("truncated_parquet", _truncated_parquet, SOURCE, ("not readable as Parquet",)),
    Case("parquet_wrong_schema", _wrong_schema_parquet, SOURCE,
         ("'month' (the timestamp column)", "'sales' (the value column)", "columns present")),
    Case("parquet_text_values", _text_values_parquet, SOURCE, ("non-numeric values", "['lots']"), ("s00",)),
    Case("sql_query_fails", _failing_sql, SOURCE, ("the query failed: no such table: salez",), names_file=False),
    Case("glob_matches_nothing", lambda folder: {"path": str(folder / "nothing-*.csv")}, SOURCE, ("the glob matched no files",)),
    Case("file_not_found", lambda folder: {"path": str(folder / "absent.csv")}, SOURCE, ("file not found",)),
    Case("values_out_of_bounds", _edit(_set("s04", [2], "sales", -5.0)), VALIDATION,
         ("expect_column_values_to_be_between(value): 1 unexpected",), ("s04",), validation={"value_min": 0.0}),
    Case("too_many_rows", _edit(lambda f: f), VALIDATION,
         ("expect_table_row_count_to_be_between(table)", "observed 480"), validation={"max_rows": 400}),
    Case("missing_covariate_column", _covariate(lambda f: None), SOURCE, ("'promo' (a covariate)", "columns present")),
    Case("non_numeric_covariate", _covariate(lambda f: np.where(f["store"] == "s03", "yes", "0")), VALIDATION,
         ("expect_column_values_to_be_in_type_list(promo)",)),
    Case("missing_covariate_values", _covariate(lambda f: np.where(np.arange(len(f)) == 70, np.nan, 1.0)), VALIDATION,
         ("expect_column_values_to_not_be_null(promo): 1 unexpected",), ("s01",)),
    Case("missing_beyond_allowed_ratio", _edit(_set("s00", list(range(10)), "sales", np.nan)), VALIDATION,
         ("expect_column_values_to_not_be_null(value): 10 unexpected",), ("s00",),
         validation={"allowed_missing_ratio": 0.01}),
]
