"""Read a source into the canonical long frame: ``series_id``, ``timestamp``, ``value``.

Sources: a built-in dataset, CSV or Parquet (one file, a folder or a glob; long or
wide layout) and SQL (a SQLAlchemy URL and a query). Only structural problems are
caught here (unreadable file, missing column, values that do not parse): they leave
nothing to validate. Everything about the content (duplicates, lengths, gaps) is
the validation step's business.
"""

from __future__ import annotations

import glob as globbing
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa

from seqpipe.config import ColumnMap, SourceConfig
from seqpipe.data import CANONICAL_COLUMNS
from seqpipe.data.catalog import builtin_dataset
from seqpipe.errors import SourceError

EXAMPLES_SHOWN = 5
SUFFIXES = {"csv": (".csv", ".csv.gz", ".tsv"), "parquet": (".parquet", ".pq")}
GLOB_CHARACTERS = re.compile(r"[*?\[]")
SQL_SERIES_NAME = "series"  # the id of a query's one series without a series id column and no series_name


def read_source(source: SourceConfig, root: Path) -> tuple[pd.DataFrame, str]:
    """Return the canonical frame and a human-readable description of where it came from."""
    if source.kind == "builtin":
        return canonical_order(builtin_dataset(source.name).load()), f"builtin:{source.name}"
    if source.kind == "sql":
        return _read_sql(source), f"sql:{_redacted(source.url)}"
    paths = resolve_paths(source.path, source.kind, root)
    if source.series_name is not None and len(paths) > 1:
        raise SourceError(f"{source.path}: matched {len(paths)} files, but data.source.series_name names one series; "
                          f"leave it unset to name each file's series after the file")
    frames = [read_file(path, source) for path in paths]
    origin = str(paths[0]) if len(paths) == 1 else f"{source.path} ({len(paths)} files)"
    return canonical_order(pd.concat(frames, ignore_index=True)), origin


def resolve_paths(pattern: str, kind: str, root: Path) -> list[Path]:
    """One file, every matching file in a folder, or a glob's matches, sorted for a stable order."""
    base = Path(pattern) if Path(pattern).is_absolute() else root / pattern
    if GLOB_CHARACTERS.search(pattern):
        paths = sorted(Path(p) for p in globbing.glob(str(base), recursive=True) if Path(p).is_file())
        if not paths:
            raise SourceError(f"{base}: the glob matched no files")
        return paths
    if base.is_dir():
        paths = sorted(p for p in base.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES[kind]))
        if not paths:
            raise SourceError(f"{base}: the folder holds no {'/'.join(SUFFIXES[kind])} files")
        return paths
    if not base.is_file():
        raise SourceError(f"{base}: file not found")
    return [base]


def read_file(path: Path, source: SourceConfig) -> pd.DataFrame:
    raw = _read_csv(path, source) if source.kind == "csv" else _read_parquet(path)
    if source.layout == "wide":
        raw = _wide_to_long(raw, source, path)
        columns = ColumnMap()
    else:
        columns = source.columns
    return to_canonical(raw, columns, path, source.time_format, source.timezone,
                        series_name=source.series_name or file_stem(path))


def file_stem(path: Path | str) -> str:
    """A file's name without its data suffix (``sales.csv.gz`` -> ``sales``): the series of a file without ids."""
    name = Path(path).name
    for suffix in sorted((s for group in SUFFIXES.values() for s in group), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def training_series_name(source: SourceConfig) -> str | None:
    """The id training gave the one series of a source without a series id column; None when it has ids.

    ``data.source.series_name``, else the stem of the source file (None too when the path is a
    folder or a glob: then each file named its own series).
    """
    if source.columns.series_id is not None or source.layout == "wide":
        return None
    if source.series_name is not None:
        return source.series_name
    if source.kind == "sql":
        return SQL_SERIES_NAME
    if source.path is None or GLOB_CHARACTERS.search(source.path) or not Path(source.path).suffix:
        return None
    return file_stem(source.path)


def read_table(path: Path, columns: ColumnMap, time_format: str | None = None, timezone: str = "UTC",
               keep_other_columns: bool = False, series_name: str | None = None) -> pd.DataFrame:
    """Read one long-layout CSV or Parquet file (kind from the suffix) into the canonical frame.

    Without a series id column (``columns.series_id`` None) the file is one series, ``series_name``
    (None: the file's stem).
    """
    kind = "parquet" if path.name.lower().endswith(SUFFIXES["parquet"]) else "csv"
    source = SourceConfig(kind=kind, path=str(path), columns=columns, time_format=time_format, timezone=timezone)
    resolved = resolve_paths(str(path), kind, Path.cwd())[0]
    raw = _read_csv(resolved, source) if kind == "csv" else _read_parquet(resolved)
    return canonical_order(to_canonical(raw, columns, resolved, time_format, timezone, keep_other_columns,
                                        series_name=series_name or file_stem(resolved)))


def _read_csv(path: Path, source: SourceConfig) -> pd.DataFrame:
    try:
        # Ids stay text: "007" and "7" are different series.
        ids = source.columns.series_id
        return pd.read_csv(path, sep=source.delimiter, dtype={ids: str} if ids is not None else None)
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path}: the file is empty (no header, no rows)") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except pd.errors.ParserError as exc:
        raise SourceError(f"{path}: not readable as CSV with delimiter {source.delimiter!r}: {exc}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SourceError(f"{path}: not readable as Parquet: {exc}") from None


def _read_sql(source: SourceConfig) -> pd.DataFrame:
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    where = f"sql:{_redacted(source.url)}"
    try:
        engine = sqlalchemy.create_engine(source.url)
    except (SQLAlchemyError, ValueError) as exc:
        raise SourceError(f"{where}: not a usable SQLAlchemy URL: {exc}") from None
    try:
        with engine.connect() as connection:
            raw = pd.read_sql_query(sqlalchemy.text(source.query), connection)
    except SQLAlchemyError as exc:
        first_line = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
        raise SourceError(f"{where}: the query failed: {first_line}") from None
    finally:
        engine.dispose()
    if source.layout == "wide":
        raw = _wide_to_long(raw, source, where)
        return to_canonical(raw, ColumnMap(), where, source.time_format, source.timezone)
    return to_canonical(raw, source.columns, where, source.time_format, source.timezone,
                        series_name=source.series_name or SQL_SERIES_NAME)


def _redacted(url: str) -> str:
    """The URL without its password, fit for messages and lineage tags."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by create_engine; never echo it raw
        return "<unparsable URL>"


def _wide_to_long(raw: pd.DataFrame, source: SourceConfig, origin: Path | str) -> pd.DataFrame:
    time_column = source.columns.timestamp
    if time_column not in raw.columns:
        raise SourceError(f"{origin}: missing time column '{time_column}'; columns present: {list(map(str, raw.columns))}")
    series_columns = source.value_columns or [c for c in raw.columns if c != time_column]
    missing = [c for c in series_columns if c not in raw.columns]
    if missing:
        raise SourceError(f"{origin}: missing series columns {missing} (data.source.value_columns)")
    long = raw.melt(id_vars=time_column, value_vars=series_columns, var_name="series_id", value_name="value")
    return long.rename(columns={time_column: "timestamp"})


def to_canonical(raw: pd.DataFrame, columns: ColumnMap, origin: Path | str, time_format: str | None = None,
                 timezone: str = "UTC", keep_other_columns: bool = False, series_name: str | None = None) -> pd.DataFrame:
    """The canonical columns, then the configured covariates under their own names.

    ``keep_other_columns`` carries every further column too (a prediction input keeps
    whatever covariates the model it goes to was trained with). Without a series id column
    (``columns.series_id`` None) the rows are one series, named ``series_name``.
    """
    roles = [(columns.series_id, "series_id"), (columns.timestamp, "timestamp"), (columns.value, "value")]
    labels = {src: f"the {dst} column" for src, dst in roles if src is not None}
    labels |= {name: "a covariate" for name in columns.covariates}
    mapping = {src: dst for src, dst in roles if src is not None} | {name: name for name in columns.covariates}
    missing = [f"'{src}' ({labels[src]})" for src in mapping if src not in raw.columns]
    if missing:
        hint = ("; a file holding one series needs no id column: set data.source.columns.series_id to null"
                if columns.series_id is not None and columns.series_id not in raw.columns else "")
        raise SourceError(
            f"{origin}: missing column {', '.join(missing)}; columns present: {list(map(str, raw.columns))}{hint}"
        )
    if raw.empty:
        raise SourceError(f"{origin}: the file has a header but no rows")
    others = [c for c in raw.columns if c not in mapping and c not in CANONICAL_COLUMNS] if keep_other_columns else []
    frame = raw[list(mapping) + others].rename(columns=mapping)
    if columns.series_id is None:
        if series_name is None:
            raise ValueError("to_canonical needs series_name when columns.series_id is None")
        frame.insert(0, "series_id", series_name)
    frame["series_id"] = frame["series_id"].astype("string").astype(object)
    frame["value"] = _parse_values(frame, origin)
    frame["timestamp"] = _parse_timestamps(frame, origin, time_format, timezone)
    extra = [*columns.covariates, *others]
    for name in extra:
        frame[name] = _numeric_or_text(frame[name])
    return frame[[*CANONICAL_COLUMNS, *extra]]


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


def _numeric_or_text(column: pd.Series) -> pd.Series:
    """Numbers (ints, bools) become float64; anything else stays, as text, for validation to name."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return column.astype("float64")
    return column.astype("string").astype(object)


def _parse_timestamps(frame: pd.DataFrame, origin: Path | str, time_format: str | None, timezone: str) -> pd.Series:
    stamps = frame["timestamp"]
    if pd.api.types.is_integer_dtype(stamps):
        return stamps.astype("int64")
    if pd.api.types.is_datetime64_any_dtype(stamps):
        parsed = stamps
    else:
        # Offsets written in the data are honoured (mixed zones become one UTC clock); a
        # stamp without an offset is in the configured zone.
        text = stamps.astype("string")
        has_offset = text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True, na=False)
        parsed = pd.to_datetime(text.where(has_offset), format=time_format, errors="coerce", utc=True)
        if (~has_offset).any():
            naive = pd.to_datetime(text.where(~has_offset), format=time_format, errors="coerce")
            parsed = parsed.where(has_offset, naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC"))
        unparsable = parsed.isna() & stamps.notna()
        if unparsable.any():
            examples = stamps[unparsable].astype(str).head(EXAMPLES_SHOWN).tolist()
            raise SourceError(
                f"{origin}: timestamps that do not parse{f' with format {time_format!r}' if time_format else ''}"
                f" ({_offenders(frame, unparsable)}), e.g. {examples}"
            )
    if getattr(parsed.dt, "tz", None) is None and timezone != "UTC":
        parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")
