"""Read a source into the canonical long frame: ``series_id``, ``timestamp``, ``value``.

Only structural problems are caught here (unreadable file, missing column, values
that do not parse): those leave nothing to validate. Everything about the content
(duplicates, lengths, non-finite values) is the validation step's business.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from seqpipe.config import ColumnMap, SourceConfig
from seqpipe.data import CANONICAL_COLUMNS
from seqpipe.data.catalog import builtin_dataset
from seqpipe.errors import SourceError

EXAMPLES_SHOWN = 5


def read_source(source: SourceConfig, root: Path) -> tuple[pd.DataFrame, str]:
    """Return the canonical frame and a human-readable description of where it came from."""
    if source.kind == "builtin":
        return canonical_order(builtin_dataset(source.name).load()), f"builtin:{source.name}"
    path = Path(source.path)
    path = path if path.is_absolute() else root / path
    return read_table(path, source.columns, source.kind, source.time_format, source.delimiter), str(path)


def read_table(
    path: Path,
    columns: ColumnMap,
    kind: str | None = None,
    time_format: str | None = None,
    delimiter: str = ",",
) -> pd.DataFrame:
    """Read a CSV or Parquet file (kind from the suffix when not given) into the canonical frame."""
    kind = kind or ("parquet" if path.suffix.lower() == ".parquet" else "csv")
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    raw = _read_csv(path, columns, delimiter) if kind == "csv" else _read_parquet(path)
    return to_canonical(raw, columns, path, time_format)


def _read_csv(path: Path, columns: ColumnMap, delimiter: str) -> pd.DataFrame:
    try:
        # Ids stay text: "007" and "7" are different series.
        return pd.read_csv(path, sep=delimiter, dtype={columns.series_id: str})
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not readable as CSV with delimiter {delimiter!r}: {exc}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SourceError(f"{path}: not readable as Parquet: {exc}") from None


def to_canonical(raw: pd.DataFrame, columns: ColumnMap, origin: Path | str, time_format: str | None = None) -> pd.DataFrame:
    mapping = {columns.series_id: "series_id", columns.timestamp: "timestamp", columns.value: "value"}
    missing = [f"'{src}' (the {dst} column)" for src, dst in mapping.items() if src not in raw.columns]
    if missing:
        raise SourceError(
            f"{origin}: missing column {', '.join(missing)}; columns present: {list(map(str, raw.columns))}"
        )
    if raw.empty:
        raise SourceError(f"{origin}: the file has a header but no rows")
    frame = raw[list(mapping)].rename(columns=mapping)
    frame["series_id"] = frame["series_id"].astype("string").astype(object)
    frame["value"] = _parse_values(frame, origin)
    frame["timestamp"] = _parse_timestamps(frame, origin, time_format)
    return canonical_order(frame[list(CANONICAL_COLUMNS)])


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by series then time: every later step relies on contiguous, ordered series."""
    return frame.sort_values(["series_id", "timestamp"], kind="stable").reset_index(drop=True)


def _offenders(frame: pd.DataFrame, bad: pd.Series) -> str:
    ids = frame.loc[bad, "series_id"].drop_duplicates().head(EXAMPLES_SHOWN).tolist()
    return f"{int(bad.sum())} rows, series {ids}"


def _parse_values(frame: pd.DataFrame, origin: Path | str) -> pd.Series:
    values = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    unparsable = values.isna() & frame["value"].notna()
    if unparsable.any():
        examples = frame.loc[unparsable, "value"].astype(str).head(EXAMPLES_SHOWN).tolist()
        raise SourceError(
            f"{origin}: non-numeric values in the value column ({_offenders(frame, unparsable)}), e.g. {examples}"
        )
    return values


def _parse_timestamps(frame: pd.DataFrame, origin: Path | str, time_format: str | None) -> pd.Series:
    stamps = frame["timestamp"]
    if pd.api.types.is_integer_dtype(stamps):
        return stamps.astype("int64")
    if pd.api.types.is_datetime64_any_dtype(stamps):
        parsed = stamps
    else:
        parsed = pd.to_datetime(stamps, format=time_format, errors="coerce", utc=True)
        unparsable = parsed.isna() & stamps.notna()
        if unparsable.any():
            examples = stamps[unparsable].astype(str).head(EXAMPLES_SHOWN).tolist()
            raise SourceError(
                f"{origin}: timestamps that do not parse{f' with format {time_format!r}' if time_format else ''}"
                f" ({_offenders(frame, unparsable)}), e.g. {examples}"
            )
    # One canonical clock: naive UTC, so series from different zones compare.
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")
