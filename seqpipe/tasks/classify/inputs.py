"""What a registered classifier is asked about, turned into the padded batch it reads.

A model trained on frames (a long frame: ``sequence_id``, step, one column per channel)
takes such a frame, scaled by its training scaler; a model trained on raw audio takes a
frame with a ``path`` column of WAV files, whose frames it computes with the extractor it
was trained with; a text classifier takes a ``text`` column (and optionally
``sequence_id``), tokenized by its training tokenizer. Anything it cannot read is refused
with a message that names the sequence, file or column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from seqpipe.data.audio import FrameExtractor
from seqpipe.data.sequence_prepare import ChannelScaler, pad
from seqpipe.data.text_prepare import TextTokenizer
from seqpipe.errors import PredictionError, SourceError
from seqpipe.estimators.classification import SequenceBatch

FRAMES, AUDIO, TEXT = "frames", "audio", "text"
PATH_COLUMN, TEXT_COLUMN = "path", "text"
# Turns a model's inputs into numbers: a channel scaler (frames, audio) or a tokenizer (text).
Preprocessing = Union[ChannelScaler, TextTokenizer]  # noqa: UP007


@dataclass(frozen=True)
class InputSpec:
    """How a classifier reads its input: recorded as the registered model's config."""

    kind: str  # FRAMES or AUDIO
    channels: tuple[str, ...]
    sequence_id: str = "sequence_id"
    step: str | None = "step"
    extractor: dict[str, Any] | None = None  # FrameExtractor.to_dict(), for AUDIO

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "channels": list(self.channels), "sequence_id": self.sequence_id,
                "step": self.step, "extractor": self.extractor}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InputSpec:
        return cls(values["kind"], tuple(values["channels"]), values["sequence_id"], values["step"],
                   values.get("extractor"))


def _frame_sequences(frame: pd.DataFrame, spec: InputSpec) -> tuple[list[str], list[np.ndarray]]:
    missing = [c for c in (spec.sequence_id, *spec.channels) if c not in frame.columns]
    if missing:
        raise PredictionError(f"input lacks columns {missing}: the model reads {len(spec.channels)} channels "
                              f"{list(spec.channels)} per step of each '{spec.sequence_id}'; "
                              f"columns present: {list(map(str, frame.columns))}")
    order = [spec.sequence_id] + ([spec.step] if spec.step and spec.step in frame.columns else [])
    frame = frame.sort_values(order, kind="stable")
    ids, sequences = [], []
    for sequence_id, rows in frame.groupby(spec.sequence_id, sort=False):
        values = rows[list(spec.channels)].to_numpy(np.float64)
        if not np.isfinite(values).all():
            raise PredictionError(f"sequence {sequence_id!r}: missing or non-finite values in its channels")
        ids.append(str(sequence_id))
        sequences.append(values)
    return ids, sequences


def _audio_sequences(frame: pd.DataFrame, spec: InputSpec) -> tuple[list[str], list[np.ndarray]]:
    if PATH_COLUMN not in frame.columns:
        raise PredictionError(f"input lacks the column '{PATH_COLUMN}': this model classifies WAV files "
                              f"named by path; columns present: {list(map(str, frame.columns))}")
    paths = frame[PATH_COLUMN]
    # An empty cell would otherwise be looked up as a file named "nan" or "None".
    blank = (paths.isna() | (paths.astype(str).str.strip() == "")).to_numpy()
    if blank.any():
        raise PredictionError(f"input rows {np.flatnonzero(blank)[:5].tolist()} have no '{PATH_COLUMN}': "
                              f"each row names one audio file")
    extractor = FrameExtractor.from_dict(spec.extractor or {})
    ids, sequences = [], []
    for path in paths.astype(str):
        try:
            sequences.append(extractor.frames(path))
        except SourceError as exc:
            raise PredictionError(str(exc)) from None
        ids.append(path)
    return ids, sequences


def _texts(frame: pd.DataFrame, tokenizer: TextTokenizer) -> tuple[list[str], SequenceBatch]:
    if TEXT_COLUMN not in frame.columns:
        raise PredictionError(f"input lacks the column '{TEXT_COLUMN}': this model classifies texts; "
                              f"columns present: {list(map(str, frame.columns))}")
    ids = (frame["sequence_id"].astype(str).tolist() if "sequence_id" in frame.columns
           else [str(i) for i in range(len(frame))])
    texts = frame[TEXT_COLUMN]
    empty = [i for i, text in zip(ids, texts) if not isinstance(text, str) or not text.strip()]
    if empty:
        raise PredictionError(f"texts {empty[:10]} are empty or missing: there is nothing to classify")
    return ids, tokenizer.batch(texts.tolist())


def load_preprocessing(spec: InputSpec, path: Path) -> Preprocessing:
    """The scaler or tokenizer a registered model saved in ``path``."""
    if spec.kind == TEXT:
        return TextTokenizer.from_json(path.read_text())
    return ChannelScaler.from_dict(json.loads(path.read_text()))


def input_batch(frame: pd.DataFrame, spec: InputSpec, preprocessing: Preprocessing) -> tuple[list[str], SequenceBatch]:
    """The sequence ids in ``frame`` and their padded batch: scaled frames, or token ids."""
    if frame.empty:
        raise PredictionError("input holds no sequences")
    if spec.kind == TEXT:
        return _texts(frame, preprocessing)
    scaler = preprocessing
    ids, sequences = (_audio_sequences if spec.kind == AUDIO else _frame_sequences)(frame, spec)
    for sequence_id, values in zip(ids, sequences):
        if len(values) == 0:
            raise PredictionError(f"sequence {sequence_id!r} is empty: it has no steps to classify")
        if values.shape[1] != len(spec.channels):
            raise PredictionError(f"sequence {sequence_id!r} has {values.shape[1]} channels per step, "
                                  f"the model reads {len(spec.channels)}")
    return ids, pad([scaler.transform(values) for values in sequences])


def prediction_frame(ids: list[str], probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per sequence: its id, the most probable label and a probability column per class."""
    labels = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    columns = {f"p_{name}": probabilities[:, i] for i, name in enumerate(classes)}
    return pd.DataFrame({"sequence_id": ids, "label": labels, **columns})
