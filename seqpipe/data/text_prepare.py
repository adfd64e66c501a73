"""Split and tokenize labelled texts (task: classify, text).

The split is stratified by label with a fixed seed. A dataset with its own split (a
``split`` column, ``reuters-r8``) keeps its test part, and validation is carved out of
its training part, per class, as ``seqpipe.data.sequence_prepare`` carves it; any other
dataset is split by ``split_sequences`` exactly as numeric sequences are.

Normalisation is tokenisation: a Hugging Face ``tokenizers`` tokenizer whose vocabulary
is learned from the training texts only (``TextTokenizer``), saved beside the prepared
texts and applied unchanged at predict time. A text longer than ``max_tokens`` keeps its
first ``max_tokens`` tokens; how many were cut is counted and recorded in ``meta.json``.
A batch holds the token ids as float32 ``(n, length, 1)``, zero padded (``[PAD]`` is 0),
and each text as the tokenizer normalised it (NFKC, lowercased if configured) through the
end of its last kept token: the characters a model that reads them sees, cut by the same
rule.

The prepared folder holds ``texts.parquet`` (the canonical rows and their ``split``, raw
text), ``tokenizer.json`` and ``meta.json``; batches are encoded again on load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from seqpipe.config import SequenceSplitConfig, TextConfig
from seqpipe.data.sequence_prepare import (
    CLASS_WEIGHTINGS, IDS_LISTED, META_FILE, SPLITS, LabelledSplits, _class_generator, _known_split, _share, pad, split_sequences,
)
from seqpipe.data.texts import LABEL, OWN_SPLITS, SEQUENCE_ID, SPLIT, TEXT
from seqpipe.errors import ConfigError, DataValidationError
from seqpipe.estimators.classification import SequenceBatch
from seqpipe.io import read_json, write_json, write_parquet

TEXTS_FILE = "texts.parquet"
TOKENIZER_FILE = "tokenizer.json"
KIND = "text"
TOKENIZER_FORMAT = 1
PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)  # in id order: [PAD] is 0, what batches are padded with
CONTINUING_PREFIX = "##"  # WordPiece's mark of a piece inside a word
CHANNELS = ("token",)
TRUNCATION_RULE = ("a text longer than max_tokens tokens keeps its first max_tokens tokens, and its characters "
                   "up to the end of the last of them")
# Token ids travel in float32 batches, which hold every integer up to 2**24 exactly.
LARGEST_VOCABULARY = 2 ** 24

log = logging.getLogger(__name__)


# -- split --------------------------------------------------------------------------------------

def split_texts(frame: pd.DataFrame, split_cfg: SequenceSplitConfig) -> np.ndarray:
    """``"train"``, ``"val"`` or ``"test"`` for each row of a canonical text frame, aligned with its rows.

    With a ``split`` column its test rows are the test split and, per class,
    ``round(n x validation_share)`` of its training rows (at least one left) are
    validation; without one, ``split_sequences`` with ``test_share`` and
    ``validation_share``. Either way the result depends on the (id, label) pairs only.
    """
    ids = frame[SEQUENCE_ID].to_numpy(dtype=object)
    labels = frame[LABEL].to_numpy(dtype=object)
    if SPLIT not in frame.columns:
        return split_sequences(ids, labels, split_cfg)
    own = frame[SPLIT].to_numpy(dtype=object)
    unknown = sorted({str(s) for s in own} - set(OWN_SPLITS))
    if unknown:
        raise ValueError(f"the dataset's own split holds {unknown}; known: {list(OWN_SPLITS)}")
    assigned = own.copy()
    train = np.flatnonzero(own == "train")
    assigned[train[_carve(ids[train], labels[train], split_cfg.validation_share, split_cfg.seed)]] = "val"
    return assigned


def _carve(ids: np.ndarray, labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Per class, ``round(n x share)`` of the rows (at least one left out), as ``split_sequences`` draws them."""
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("split_texts needs one row per text; ids repeat")
    order = np.argsort(ids.astype(str), kind="stable")
    chosen = np.zeros(len(ids), dtype=bool)
    keys = np.array(["" if pd.isna(label) else f"={label}" for label in labels], dtype=object)
    for key in sorted(set(keys.tolist())):
        members = order[keys[order] == key]
        shuffled = members[_class_generator(seed, key).permutation(len(members))]
        chosen[shuffled[:min(_share(len(members), share), max(len(members) - 1, 0))]] = True
    return chosen


# -- tokenizer ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoded:
    """Token ids per text (at least one each), the normalised text they cover, and how many texts were cut to
    ``max_tokens``."""

    ids: list[np.ndarray]
    texts: list[str]
    truncated: int

    def batch(self, rows: Sequence[int] | None = None, length: int | None = None) -> SequenceBatch:
        """The ``rows`` (None: all) as a batch: token ids padded with ``[PAD]`` to ``length`` (None: the longest)."""
        rows = range(len(self.ids)) if rows is None else rows
        tokens = pad([self.ids[i].astype(np.float32)[:, None] for i in rows], length, channels=len(CHANNELS))
        return replace(tokens, texts=tuple(self.texts[i] for i in rows))


class TextTokenizer:
    """A trained ``tokenizers.Tokenizer`` with the settings it was built from (``classify.text``).

    ``[PAD]`` is id 0 and ``[UNK]`` id 1; a word (or, for subwords, a character) the
    training texts did not give often enough is ``[UNK]``.
    """

    def __init__(self, tokenizer: Tokenizer, settings: TextConfig) -> None:
        self.tokenizer = tokenizer
        self.settings = settings

    @classmethod
    def train(cls, texts: Iterable[str], settings: TextConfig) -> TextTokenizer:
        """Learn the vocabulary of ``texts`` (the training split's, and only those)."""
        if settings.vocab_size > LARGEST_VOCABULARY:
            raise ConfigError(f"classify.text.vocab_size {settings.vocab_size} exceeds {LARGEST_VOCABULARY}, the "
                              "largest vocabulary whose ids float32 batches hold exactly")
        texts = list(texts)
        tokenizer = Tokenizer(_model(settings.tokenizer))
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFKC(), *([normalizers.Lowercase()] if settings.lowercase else [])])
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        special = list(SPECIAL_TOKENS)
        if settings.tokenizer == "wordpiece":
            # tokenizers' WordPiece trainer numbers the "##" pieces in hash-map order, so equal
            # counts break ties differently from run to run (huggingface/tokenizers#1794).
            # Declared up front, in sorted order, they get the same ids every time.
            special += [CONTINUING_PREFIX + c for c in _inner_characters(tokenizer, texts)]
        tokenizer.train_from_iterator(texts, trainer=_trainer(settings, special))
        if len(special) > len(SPECIAL_TOKENS):
            tokenizer = _without_added_tokens(tokenizer, special[len(SPECIAL_TOKENS):])
        if [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
            raise RuntimeError(f"the trained tokenizer does not number {list(SPECIAL_TOKENS)} from 0")
        return cls(tokenizer, settings)

    @property
    def vocabulary_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def unknown_id(self) -> int:
        return SPECIAL_TOKENS.index(UNK_TOKEN)

    def _raw_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode_counted(self, texts: Sequence[str]) -> Encoded:
        """Token ids (int64) of each text, cut to its first ``max_tokens``; an empty encoding is one ``[UNK]``.

        Each text's characters are cut where its last kept token ends (the offsets are the
        raw text's), then normalised as the tokenizer normalises them.
        """
        limit = self.settings.max_tokens
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ids = [np.asarray(e.ids[:limit] if e.ids else [self.unknown_id], dtype=np.int64) for e in encodings]
        kept = [text[: e.offsets[limit - 1][1]] if len(e.ids) > limit else text for text, e in zip(texts, encodings)]
        return Encoded(ids=ids, texts=[self.tokenizer.normalizer.normalize_str(text) for text in kept],
                       truncated=sum(len(e.ids) > limit for e in encodings))

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``encode_counted``'s ids; texts that were cut are logged."""
        return self._encode_logged(texts).ids

    def batch(self, texts: Sequence[str]) -> SequenceBatch:
        """The texts' padded batch of token ids and normalised characters, as a model reads them; cuts are logged."""
        return self._encode_logged(texts).batch()

    def _encode_logged(self, texts: Sequence[str]) -> Encoded:
        encoded = self.encode_counted(texts)
        if encoded.truncated:
            log.info("%d of %d texts are longer than %d tokens and keep their first %d (classify.text.max_tokens)",
                     encoded.truncated, len(texts), self.settings.max_tokens, self.settings.max_tokens)
        return encoded

    def token_counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's tokens before truncation, and how many of them are ``[UNK]``."""
        raw = self._raw_ids(texts)
        return (np.array([len(r) for r in raw], dtype=np.int64),
                np.array([r.count(self.unknown_id) for r in raw], dtype=np.int64))

    def unknown_share(self, texts: Sequence[str]) -> float:
        """The share of the texts' tokens (before truncation) that are ``[UNK]``; 0 when there are none."""
        raw = self._raw_ids(texts)
        total = sum(len(r) for r in raw)
        return sum(r.count(self.unknown_id) for r in raw) / total if total else 0.0

    def to_json(self) -> str:
        return json.dumps({"format": TOKENIZER_FORMAT, "settings": self.settings.model_dump(),
                           "truncation": TRUNCATION_RULE, "tokenizer": self.tokenizer.to_str()}, sort_keys=True)

    @classmethod
    def from_json(cls, payload: str) -> TextTokenizer:
        data = json.loads(payload)
        if data.get("format") != TOKENIZER_FORMAT:
            raise ValueError(f"text tokenizer format {data.get('format')!r} is not {TOKENIZER_FORMAT}")
        return cls(Tokenizer.from_str(data["tokenizer"]), TextConfig(**data["settings"]))


def _model(kind: str) -> Any:
    if kind == "word":
        return models.WordLevel(unk_token=UNK_TOKEN)
    if kind == "bpe":
        return models.BPE(unk_token=UNK_TOKEN)
    if kind == "wordpiece":
        return models.WordPiece(unk_token=UNK_TOKEN, continuing_subword_prefix=CONTINUING_PREFIX)
    raise ConfigError(f"unknown classify.text.tokenizer '{kind}'; known: word, bpe, wordpiece")


def _trainer(settings: TextConfig, special: list[str]) -> Any:
    common = {"vocab_size": settings.vocab_size, "min_frequency": settings.min_frequency,
              "special_tokens": special, "show_progress": False}
    if settings.tokenizer == "word":
        return trainers.WordLevelTrainer(**common)
    if settings.tokenizer == "bpe":
        return trainers.BpeTrainer(**common)
    return trainers.WordPieceTrainer(**common, continuing_subword_prefix=CONTINUING_PREFIX)


def _inner_characters(tokenizer: Tokenizer, texts: list[str]) -> list[str]:
    """The characters found after a word's first, as the tokenizer normalises and splits the texts; sorted."""
    found: set[str] = set()
    for text in texts:
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)):
            found.update(word[1:])
    return sorted(found)


def _without_added_tokens(tokenizer: Tokenizer, tokens: list[str]) -> Tokenizer:
    """``tokenizer`` with ``tokens`` kept in its vocabulary but no longer matched whole in raw text."""
    dropped = set(tokens)
    payload = json.loads(tokenizer.to_str())
    payload["added_tokens"] = [t for t in payload["added_tokens"] if t["content"] not in dropped]
    return Tokenizer.from_str(json.dumps(payload))


# -- preparation --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PreparedTexts(LabelledSplits):
    """The split, the trained tokenizer and the class list of a batch of labelled texts.

    Mirrors ``PreparedSequences`` where the steps read it: ``channels`` is the one
    ``token`` channel, there is no scaler nor extractor.
    """

    frame: pd.DataFrame  # sequence_id, text (raw), label, split; sorted by sequence_id
    classes: tuple[str, ...]  # sorted: a label's index here is its class index
    tokenizer: TextTokenizer
    max_length: int  # tokens of the longest training text, after truncation
    class_weighting: str = "none"
    split_settings: dict[str, Any] = field(default_factory=dict)
    channels: tuple[str, ...] = CHANNELS
    extractor: None = None

    @cached_property
    def ids(self) -> np.ndarray:
        return self.frame[SEQUENCE_ID].to_numpy(dtype=object)

    @property
    def item_splits(self) -> np.ndarray:
        return self.splits

    @property
    def item_labels(self) -> np.ndarray:
        return self.labels

    @cached_property
    def splits(self) -> np.ndarray:
        return self.frame[SPLIT].to_numpy(dtype=object).astype(str)

    @cached_property
    def labels(self) -> np.ndarray:
        """Each text's class index into ``classes``, in row order."""
        index = {label: i for i, label in enumerate(self.classes)}
        return np.array([index[label] for label in self.frame[LABEL]], dtype=np.int64)

    @cached_property
    def encoded(self) -> Encoded:
        return self.tokenizer.encode_counted(self.frame[TEXT].tolist())

    @property
    def truncated(self) -> int:
        """Texts (of every split) cut to ``max_tokens``."""
        return self.encoded.truncated

    def texts_of(self, split: str) -> np.ndarray:
        return self.frame[TEXT].to_numpy(dtype=object)[self.splits == _known_split(split)]

    def ids_of(self, split: str) -> np.ndarray:
        return self.ids[self.splits == _known_split(split)]

    @property
    def test_ids(self) -> np.ndarray:
        return self.ids_of("test")

    def batch_of(self, split: str, length: int | None = None) -> tuple[SequenceBatch, np.ndarray]:
        """The split's token ids (in id order), padded with ``[PAD]`` to ``length`` (None: its longest), and classes."""
        chosen = np.flatnonzero(self.splits == _known_split(split))
        return self.encoded.batch(chosen, length), self.labels[chosen]



def prepare_texts(frame: pd.DataFrame, split_cfg: SequenceSplitConfig, class_weighting: str,
                  text_cfg: TextConfig) -> PreparedTexts:
    """Split a validated canonical text frame and train the tokenizer on its training texts."""
    if class_weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown class_weighting '{class_weighting}'; known: {CLASS_WEIGHTINGS}")
    for column, what in ((LABEL, "no label"), (TEXT, "no text")):
        absent = frame.loc[frame[column].isna(), SEQUENCE_ID].tolist()
        if absent:
            raise DataValidationError(f"{len(absent)} texts have {what}, e.g. {absent[:IDS_LISTED]}: "
                                      "run `seqpipe validate`, which names them")
    frame = frame.sort_values(SEQUENCE_ID, kind="stable").reset_index(drop=True)
    splits = split_texts(frame, split_cfg)
    labels = frame[LABEL].to_numpy(dtype=object)
    classes = tuple(sorted(set(labels.tolist())))
    untrained = sorted(set(classes) - set(labels[splits == "train"].tolist()))
    if untrained:
        raise DataValidationError(f"classes {untrained} have no training text; classify.validation.min_per_class "
                                  "guards against it")
    train_texts = frame.loc[splits == "train", TEXT].tolist()
    tokenizer = TextTokenizer.train(train_texts, text_cfg)
    annotated = frame[[SEQUENCE_ID, TEXT, LABEL]].assign(**{SPLIT: splits.astype(str)})
    prepared = PreparedTexts(frame=annotated, classes=classes, tokenizer=tokenizer,
                             max_length=max(len(ids) for ids in tokenizer.encode_counted(train_texts).ids),
                             class_weighting=class_weighting, split_settings=split_cfg.model_dump())
    if prepared.truncated:
        log.info("%d of %d texts are longer than %d tokens and keep their first %d (classify.text.max_tokens)",
                 prepared.truncated, len(frame), text_cfg.max_tokens, text_cfg.max_tokens)
    return prepared


def save_prepared_texts(prepared: PreparedTexts, folder: Path, dataset: str) -> dict[str, Any]:
    """Write the prepared texts into ``folder`` (the caller's staging folder); return the metadata."""
    write_parquet(prepared.frame, folder / TEXTS_FILE)
    (folder / TOKENIZER_FILE).write_text(prepared.tokenizer.to_json())
    weights = prepared.class_weights
    counts = prepared.counts()
    meta = {
        "kind": KIND,
        "dataset": dataset,
        "classes": list(prepared.classes),
        "channels": list(prepared.channels),
        "max_length": prepared.max_length,
        "sequences": {split: sum(per_class.values()) for split, per_class in counts.items()},
        "counts": counts,
        "split": prepared.split_settings,
        "class_weighting": prepared.class_weighting,
        "class_weights": None if weights is None else dict(zip(prepared.classes, weights.tolist(), strict=True)),
        "text": prepared.tokenizer.settings.model_dump(),
        "truncation": TRUNCATION_RULE,
        "truncated": prepared.truncated,
        "vocabulary_size": prepared.tokenizer.vocabulary_size,
        "unknown_share": {split: prepared.tokenizer.unknown_share(prepared.texts_of(split).tolist())
                          for split in SPLITS},
    }
    write_json(folder / META_FILE, meta)
    return meta


def load_prepared_texts(folder: Path) -> PreparedTexts:
    meta = read_json(folder / META_FILE)
    if meta.get("kind") != KIND:
        raise ValueError(f"{folder / META_FILE}: prepared data of kind {meta.get('kind')!r}, not '{KIND}'")
    return PreparedTexts(
        frame=pd.read_parquet(folder / TEXTS_FILE),
        classes=tuple(meta["classes"]),
        tokenizer=TextTokenizer.from_json((folder / TOKENIZER_FILE).read_text()),
        max_length=int(meta["max_length"]),
        class_weighting=meta["class_weighting"],
        split_settings=meta.get("split", {}),
    )
