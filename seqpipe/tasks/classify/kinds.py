"""The two kinds of data sequence classification reads: numeric sequences (frames, audio) and texts.

Each kind reads its source into its canonical form, validates it with its GX suite,
prepares it (a channel scaler, or a tokenizer learned on the training split), compares
new data with production's for drift, and turns a user's rows into the batch a
classifier reads; the steps ask ``kind_of`` once and go
through the ``DataKind`` it returns. The prepared folder names its kind in ``meta.json``,
so anything after prepare reads it back without the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import pandas as pd

from seqpipe.config import PipelineConfig, SequenceSourceConfig
from seqpipe.data.sequence_drift import SequenceDriftReport, detect_sequence_drift
from seqpipe.data.sequence_prepare import (
    PreparedSequences, load_prepared_sequences, prepare_sequences, save_prepared_sequences,
)
from seqpipe.data.sequence_validation import SequenceRules, validate_sequences
from seqpipe.data.sequences import audio_extractor, read_sequence_source
from seqpipe.data.text_drift import detect_text_drift
from seqpipe.data.text_prepare import PreparedTexts, load_prepared_texts, prepare_texts, save_prepared_texts
from seqpipe.data.text_validation import TextRules, validate_texts
from seqpipe.data.texts import is_text_source, read_text_source
from seqpipe.io import read_json
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.tasks.classify.inputs import AUDIO, FRAMES, TEXT, InputSpec

Prepared = Union[PreparedSequences, PreparedTexts]  # noqa: UP007
META_FILE = "meta.json"
TEXT_KIND = "text"
SEQUENCE_KIND = "sequences"
# Files of a prepared folder a registered model carries: how its inputs become a batch.
INPUT_FILES = {SEQUENCE_KIND: "scaler.json", TEXT_KIND: "tokenizer.json"}


@dataclass(frozen=True)
class DataKind:
    name: str
    read: Callable[[SequenceSourceConfig, Path], tuple[pd.DataFrame, str]]
    order: str  # the column whose range the raw snapshot's manifest records
    validate: Callable[..., Any]  # (cfg, frame, dataset, source, docs_dir) -> report
    prepare: Callable[[PipelineConfig, pd.DataFrame], Prepared]
    save: Callable[[Prepared, Path, str], dict]
    drift: Callable[..., SequenceDriftReport]  # (cfg, reference, current, reference_md5, current_md5)


def _validate_sequences(cfg: PipelineConfig, frame: pd.DataFrame, dataset: str, source: str, docs_dir: Path) -> Any:
    rules = SequenceRules.from_config(cfg.classify.validation, cfg.classify.split)
    return validate_sequences(frame, dataset=dataset, source=source, rules=rules, docs_dir=docs_dir)


def _validate_texts(cfg: PipelineConfig, frame: pd.DataFrame, dataset: str, source: str, docs_dir: Path) -> Any:
    rules = TextRules.from_config(cfg.classify.validation, cfg.classify.split, cfg.classify.text)
    return validate_texts(frame, dataset=dataset, source=source, rules=rules, docs_dir=docs_dir)


SEQUENCES = DataKind(
    name=SEQUENCE_KIND, read=read_sequence_source, order="step", validate=_validate_sequences,
    prepare=lambda cfg, frame: prepare_sequences(frame, cfg.classify.split, cfg.classify.class_weighting,
                                                 audio_extractor(cfg.classify.source)),
    save=save_prepared_sequences,
    drift=lambda cfg, reference, current, ref_md5, cur_md5: detect_sequence_drift(
        reference, current, cfg.drift, ref_md5, cur_md5),
)
TEXTS = DataKind(
    name=TEXT_KIND, read=read_text_source, order="sequence_id", validate=_validate_texts,
    prepare=lambda cfg, frame: prepare_texts(frame, cfg.classify.split, cfg.classify.class_weighting,
                                             cfg.classify.text),
    save=save_prepared_texts,
    drift=lambda cfg, reference, current, ref_md5, cur_md5: detect_text_drift(
        reference, current, cfg.drift, cfg.classify.text, cfg.classify.split, ref_md5, cur_md5),
)


def kind_of(cfg: PipelineConfig) -> DataKind:
    return TEXTS if is_text_source(cfg.classify.source) else SEQUENCES


def load_prepared(folder: Path) -> Prepared:
    """The prepared data in ``folder``, of whichever kind its ``meta.json`` names."""
    kind = read_json(folder / META_FILE).get("kind", SEQUENCE_KIND)
    return load_prepared_texts(folder) if kind == TEXT_KIND else load_prepared_sequences(folder)


def is_text(prepared: Prepared) -> bool:
    return isinstance(prepared, PreparedTexts)


def classifier_shape(prepared: Prepared) -> ClassifierShape:
    vocabulary = prepared.tokenizer.vocabulary_size if is_text(prepared) else 0
    return ClassifierShape(len(prepared.channels), len(prepared.classes), prepared.max_length, vocabulary)


def input_spec(prepared: Prepared) -> InputSpec:
    """What the registered model reads: texts, WAV files and the extractor trained with, or frames as trained on."""
    if is_text(prepared):
        return InputSpec(TEXT, tuple(prepared.channels))
    if prepared.extractor is not None:
        return InputSpec(AUDIO, tuple(prepared.channels), extractor=prepared.extractor.to_dict())
    return InputSpec(FRAMES, tuple(prepared.channels))


def input_file(prepared: Prepared) -> str:
    """The prepared file (scaler or tokenizer) that turns a registered model's inputs into its batch."""
    return INPUT_FILES[TEXT_KIND if is_text(prepared) else SEQUENCE_KIND]
