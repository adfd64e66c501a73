"""Split, scale and pad labelled sequences (task: classify).

The split is stratified by label with a fixed seed: per class, test first, then
validation out of the rest, the remainder training. Each class is shuffled by its own
generator, seeded by the split seed and the class's name, over its ids in sorted
order: the split depends on the set of (id, label) pairs only, never on row order, and
adding sequences of one class leaves the other classes' assignment as it was.

Channels are standardised per channel with statistics of the training sequences'
steps only. Batches are zero padded after each sequence's end (``SequenceBatch``).

The prepared folder holds ``sequences.parquet`` (the canonical frame and a ``split``
column, in original units), ``scaler.json`` and ``meta.json``; scaled, padded arrays are
rebuilt from them on load.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqpipe.config import SequenceSplitConfig
from seqpipe.data.audio import FrameExtractor
from seqpipe.data.sequences import LABEL, SequenceLayout, channel_columns
from seqpipe.errors import DataValidationError
from seqpipe.estimators.classification import ClassifyFitData, SequenceBatch
from seqpipe.io import read_json, write_json, write_parquet

SEQUENCES_FILE = "sequences.parquet"
SCALER_FILE = "scaler.json"
META_FILE = "meta.json"
SPLIT = "split"
SPLITS = ("train", "val", "test")
CLASS_WEIGHTINGS = ("none", "balanced")
SCALER_FORMAT = 1
IDS_LISTED = 10

log = logging.getLogger(__name__)


# -- split --------------------------------------------------------------------------------------

def _share(count: int, share: float) -> int:
    """``count x share`` rounded half up (Python's round would send halves to even)."""
    return int(np.floor(count * share + 0.5))


def _class_generator(seed: int, label: str) -> np.random.Generator:
    # crc32 rather than hash(): Python salts str hashes per process.
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def split_sequences(ids: np.ndarray, labels: np.ndarray, split: SequenceSplitConfig) -> np.ndarray:
    """``"train"``, ``"val"`` or ``"test"`` for each sequence, aligned with ``ids``.

    Per class: ``round(n x test_share)`` sequences go to test, then
    ``round(rest x validation_share)`` to validation, and at least one stays in training.
    A missing label (None) is a class of its own, so the split still runs on data that
    validation is about to reject.
    """
    ids = np.asarray(ids, dtype=object)
    labels = np.asarray(labels, dtype=object)
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("split_sequences needs one entry per sequence; ids repeat")
    order = np.argsort(ids.astype(str), kind="stable")
    assigned = np.full(len(ids), "train", dtype=object)
    # Real labels key as "=label", so a missing one ("") is a group no label can join.
    keys = np.array(["" if pd.isna(label) else f"={label}" for label in labels], dtype=object)
    for key in sorted(set(keys.tolist())):
        members = order[keys[order] == key]  # this class's sequences, in id order
        shuffled = members[_class_generator(split.seed, key).permutation(len(members))]
        n_test = min(_share(len(members), split.test_share), max(len(members) - 1, 0))
        n_val = min(_share(len(members) - n_test, split.validation_share), max(len(members) - n_test - 1, 0))
        assigned[shuffled[:n_test]] = "test"
        assigned[shuffled[n_test:n_test + n_val]] = "val"
    return assigned


# -- scaling ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelScaler:
    """Per-channel standardisation, ``(x - mean) / std``, fitted on training steps only."""

    channels: tuple[str, ...]
    mean: np.ndarray  # (channels,) float64
    std: np.ndarray  # (channels,) float64, never 0

    @classmethod
    def fit(cls, values: np.ndarray, channels: list[str] | tuple[str, ...]) -> ChannelScaler:
        """Fit on ``values`` ``(steps, channels)``: the real steps of the training sequences, nothing else."""
        if len(values) == 0:
            raise ValueError("a channel scaler needs at least one training step")
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        # A constant channel carries no scale: centre it but leave it unscaled, not divided by 0.
        std = np.where(np.isfinite(std) & (std > np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)), std, 1.0)
        return cls(tuple(channels), mean.astype(np.float64), std.astype(np.float64))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale ``values`` whose last axis is the channels."""
        if values.shape[-1] != len(self.channels):
            raise ValueError(f"values have {values.shape[-1]} channels, the scaler {len(self.channels)}")
        return (values - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        return {"format": SCALER_FORMAT, "method": "standard", "channels": list(self.channels),
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ChannelScaler:
        if payload.get("format") != SCALER_FORMAT:
            raise ValueError(f"channel scaler format {payload.get('format')!r} is not {SCALER_FORMAT}")
        mean, std = np.asarray(payload["mean"], np.float64), np.asarray(payload["std"], np.float64)
        if not len(payload["channels"]) == len(mean) == len(std):
            raise ValueError("channel scaler: channels, mean and std differ in length")
        return cls(tuple(payload["channels"]), mean, std)


# -- padding ------------------------------------------------------------------------------------

def pad(sequences: list[np.ndarray], length: int | None = None, *, channels: int | None = None) -> SequenceBatch:
    """Stack ``(steps, channels)`` arrays into one batch, zeros after each sequence's end.

    ``length`` (None: the longest sequence) is the padded width; a longer sequence is cut
    to its first ``length`` steps. ``channels`` gives an empty batch its width.
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError(f"sequences {np.flatnonzero(lengths == 0)[:IDS_LISTED].tolist()} have no steps")
    width = channels if not sequences else sequences[0].shape[1]
    if width is None:
        raise ValueError("pad needs `channels` for an empty list of sequences")
    if any(s.ndim != 2 or s.shape[1] != width for s in sequences):
        raise ValueError(f"every sequence must be (steps, {width})")
    length = int(lengths.max(initial=1)) if length is None else length
    cut = lengths > length
    if cut.any():
        log.warning("%d sequences are longer than %d steps and were cut to it", int(cut.sum()), length)
    lengths = np.minimum(lengths, length)
    x = np.zeros((len(sequences), length, width), dtype=np.float32)
    for i, (sequence, n) in enumerate(zip(sequences, lengths, strict=True)):
        x[i, :n] = sequence[:n]
    return SequenceBatch(x=x, lengths=lengths)


# -- preparation --------------------------------------------------------------------------------

class LabelledSplits:
    """What prepared labelled data offers the steps once it knows each example's split and class index.

    Shared by numeric sequences and texts: a subclass gives ``item_splits``, ``item_labels``,
    ``classes``, ``class_weighting`` and ``batch_of``.
    """

    classes: tuple[str, ...]
    class_weighting: str
    # Properties of the subclass: each example's split, and its class index into ``classes``.
    item_splits: np.ndarray
    item_labels: np.ndarray

    def batch_of(self, split: str) -> tuple[SequenceBatch, np.ndarray]:
        raise NotImplementedError

    def test_batch(self) -> tuple[SequenceBatch, np.ndarray]:
        return self.batch_of("test")

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per split and class."""
        counts = {split: dict.fromkeys(self.classes, 0) for split in SPLITS}
        for split, label in zip(self.item_splits, self.item_labels, strict=True):
            counts[split][self.classes[label]] += 1
        return counts

    @property
    def class_weights(self) -> np.ndarray | None:
        """balanced: ``n / (k x count_c)`` over the training examples; none: None (every class alike)."""
        if self.class_weighting == "none":
            return None
        train = self.item_labels[self.item_splits == "train"]
        counts = np.bincount(train, minlength=len(self.classes)).astype(np.float64)
        return len(train) / (len(self.classes) * counts)

    def fit_data(self) -> ClassifyFitData:
        train, train_labels = self.batch_of("train")
        val, val_labels = self.batch_of("val")
        return ClassifyFitData(train=train, train_labels=train_labels, val=val, val_labels=val_labels,
                               class_weights=self.class_weights)


@dataclass(frozen=True)
class PreparedSequences(LabelledSplits):
    """The split, the scaler and the class list of a batch of labelled sequences, in original units."""

    frame: pd.DataFrame  # canonical rows plus ``split``, sorted, unscaled
    classes: tuple[str, ...]  # sorted: a label's index here is its class index
    channels: tuple[str, ...]
    scaler: ChannelScaler
    max_length: int  # the longest training sequence
    class_weighting: str = "none"
    extractor: FrameExtractor | None = None  # audio sources: how frames were computed
    split_settings: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def layout(self) -> SequenceLayout:
        return SequenceLayout.of(self.frame)

    @property
    def item_splits(self) -> np.ndarray:
        return self.sequence_splits

    @property
    def item_labels(self) -> np.ndarray:
        return self.sequence_labels

    @cached_property
    def sequence_splits(self) -> np.ndarray:
        """Each sequence's split, in ``layout.ids`` order."""
        return self.layout.first_rows(self.frame[SPLIT]).astype(str)

    @cached_property
    def sequence_labels(self) -> np.ndarray:
        """Each sequence's class index into ``classes``, in ``layout.ids`` order."""
        labels = self.layout.first_rows(self.frame[LABEL])
        index = {label: i for i, label in enumerate(self.classes)}
        return np.array([index[label] for label in labels], dtype=np.int64)

    @cached_property
    def _scaled(self) -> list[np.ndarray]:
        values = self.frame[list(self.channels)].to_numpy(np.float64)
        return self.layout.split_values(self.scaler.transform(values).astype(np.float32))

    def ids_of(self, split: str) -> np.ndarray:
        return self.layout.ids[self.sequence_splits == _known_split(split)]

    @property
    def test_ids(self) -> np.ndarray:
        return self.ids_of("test")

    def batch_of(self, split: str, length: int | None = None) -> tuple[SequenceBatch, np.ndarray]:
        """The split's scaled, padded sequences (in id order) and their class indices."""
        chosen = np.flatnonzero(self.sequence_splits == _known_split(split))
        batch = pad([self._scaled[i] for i in chosen], length, channels=len(self.channels))
        return batch, self.sequence_labels[chosen]



def _known_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; known: {SPLITS}")
    return split


def prepare_sequences(frame: pd.DataFrame, split_cfg: SequenceSplitConfig, class_weighting: str,
                      extractor: FrameExtractor | None = None) -> PreparedSequences:
    """Split a validated canonical sequence frame and fit the channel scaler on its training steps."""
    if class_weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown class_weighting '{class_weighting}'; known: {CLASS_WEIGHTINGS}")
    channels = channel_columns(frame)
    layout = SequenceLayout.of(frame)
    labels = layout.first_rows(frame[LABEL])
    unlabelled = layout.ids[pd.isna(labels)]
    if len(unlabelled):
        raise DataValidationError(f"{len(unlabelled)} sequences have no label, e.g. {list(unlabelled[:IDS_LISTED])}: "
                                  "run `seqpipe validate`, which names them")
    splits = split_sequences(layout.ids, labels, split_cfg)
    classes = tuple(sorted(set(labels.tolist())))
    untrained = sorted(set(classes) - set(labels[splits == "train"].tolist()))
    if untrained:
        raise DataValidationError(f"classes {untrained} have no training sequence; classify.validation.min_per_class "
                                  "guards against it")
    row_splits = splits[layout.codes]
    values = frame[channels].to_numpy(np.float64)
    scaler = ChannelScaler.fit(values[row_splits == "train"], channels)
    annotated = frame.assign(**{SPLIT: row_splits.astype(str)})
    max_length = int(layout.lengths[splits == "train"].max())
    return PreparedSequences(frame=annotated, classes=classes, channels=tuple(channels), scaler=scaler,
                             max_length=max_length, class_weighting=class_weighting, extractor=extractor,
                             split_settings=split_cfg.model_dump())


def save_prepared_sequences(prepared: PreparedSequences, folder: Path, dataset: str) -> dict[str, Any]:
    """Write the prepared sequences into ``folder`` (the caller's staging folder); return the metadata."""
    write_parquet(prepared.frame, folder / SEQUENCES_FILE)
    write_json(folder / SCALER_FILE, prepared.scaler.to_dict())
    weights = prepared.class_weights
    counts = prepared.counts()
    meta = {
        "dataset": dataset,
        "classes": list(prepared.classes),
        "channels": list(prepared.channels),
        "max_length": prepared.max_length,
        "sequences": {split: sum(per_class.values()) for split, per_class in counts.items()},
        "counts": counts,
        "split": prepared.split_settings,
        "class_weighting": prepared.class_weighting,
        "class_weights": None if weights is None else dict(zip(prepared.classes, weights.tolist(), strict=True)),
        "extractor": None if prepared.extractor is None else prepared.extractor.to_dict(),
    }
    write_json(folder / META_FILE, meta)
    return meta


def load_prepared_sequences(folder: Path) -> PreparedSequences:
    meta = read_json(folder / META_FILE)
    frame = pd.read_parquet(folder / SEQUENCES_FILE)
    return PreparedSequences(
        frame=frame,
        classes=tuple(meta["classes"]),
        channels=tuple(meta["channels"]),
        scaler=ChannelScaler.from_dict(read_json(folder / SCALER_FILE)),
        max_length=int(meta["max_length"]),
        class_weighting=meta["class_weighting"],
        extractor=None if meta.get("extractor") is None else FrameExtractor.from_dict(meta["extractor"]),
        split_settings=meta.get("split", {}),
    )
