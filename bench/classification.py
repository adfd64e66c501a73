"""Classification benchmark: every configured classifier of one or more configs against references.

Numeric sequences (default ``examples/spoken-digits/conf``) and texts
(``examples/rotten-tomatoes/conf``, ``examples/reuters-r8/conf``) alike: the data kind of
each config (``seqpipe.tasks.classify.kinds.kind_of``) reads its source and prepares it
(a channel scaler, or a tokenizer learned on the training split) exactly as
``seqpipe prepare`` does, and ``classifier_shape`` gives the models their shape. One run
measures, per config and on the same test split:

- every model of the config: the networks, the ensembles and seqpipe's own references
  (``majority``, ``minirocket`` for sequences; ``majority``, ``tfidf_linear``, ``nb_linear``
  for texts: every model that fits without the training loop), each seeded with
  ``seed_everything(training.seed, threads)`` and built by ``build_estimator`` with the
  pipeline's ``ClassifierShape``, then fitted on the training split with early stopping
  on the validation split, as ``seqpipe train`` does;
- references from outside seqpipe, the ones the issues compare against.
  For numeric sequences: ``mean_std_logreg``, each channel's mean and standard deviation
  over the sequence (26 features) into a standardised sklearn ``LogisticRegression``
  (0.947 accuracy elsewhere, on a random 80/20 split), and ``dtw_1nn``, the training
  sequence nearest by dynamic time warping (0.993 elsewhere). DTW here is "dependent" DTW
  (the squared Euclidean distance of whole frames as the step cost, no warping window),
  in numpy, one test sequence against a batch of training sequences at a time.
  For texts, on the RAW texts (not seqpipe's tokens): sklearn
  ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)``, fitted on the training texts
  only, into ``LinearSVC`` (``tfidf_linearsvc``: rotten-tomatoes 0.782 accuracy elsewhere,
  on a stratified 80/20 split with seed 0; reuters-r8 0.977 accuracy and 0.940 macro-F1,
  on its own split) or into ``LogisticRegression`` (``tfidf_logreg``: 0.776 and 0.973).

Each row gives test accuracy, macro-F1 and log loss (a 1-NN's probabilities are one-hot,
so its log loss mostly counts its errors; LinearSVC gives no probabilities, so its log
loss is blank), the validation score that the pipeline ranks by
(``classify.evaluation.metric``), seconds to fit and to predict the test split, the
fitted parameters and the training sequences (texts) used. The pipeline's selection rule
picks the ``selected`` model among the config's models: the best validation score,
chosen without looking at test. Each table is sorted by test accuracy, and a closing line
per dataset says, for numeric sequences, whether the selected model beats MiniRocket on
test accuracy and macro-F1 and whether it reaches 0.99 accuracy; for texts, whether it
beats the best reference measured in the same run (the best of seqpipe's references and
the outside TF-IDF references, per score) on accuracy and macro-F1, and for
rotten-tomatoes whether it reaches 0.80 accuracy.

Splits (``--split``):

- ``pipeline`` (default): what ``seqpipe prepare`` makes from ``classify.split``
  (stratified by label, seeded); every row fits on its training split, except where the
  dataset brings its own split (reuters-r8): there the test split is the dataset's, the
  one its outside figures were measured on, and the outside references, which use no
  validation, fit on all of the dataset's training part (train + val) as they did there.
- ``random80``: for numeric sequences one seeded random 80/20 split, not stratified, as
  their external figures were measured; for texts a stratified 80/20 split with
  ``classify.split.seed`` (0 in both text examples), as the external rotten-tomatoes
  figures were measured (a dataset's own split, reuters-r8's, is set aside: all its texts
  are split again). ``classify.split.validation_share`` of the 80 is carved out as
  validation for early stopping and selection. seqpipe's models fit on the rest of the
  80; the outside references use no validation, so they fit on all of the 80, as they
  did where their figures come from (the ``trained on`` column says so).

Channels are standardised with training statistics, as ``prepare`` does; DTW reads them
so (``--dtw-units scaled``) or in the source's units (``--dtw-units raw``). The data are
not run through validation (the built-in data pass it unchanged) and nothing is logged to
MLflow.

    .venv/bin/python bench/classification.py                                   # everything: long on a CPU
    .venv/bin/python bench/classification.py --models majority,minirocket,gru --max-epochs 1 --skip-dtw
    .venv/bin/python bench/classification.py --split random80 --json random80.json
    .venv/bin/python bench/classification.py --models majority --dtw-limit 100  # DTW against 100 training sequences
    .venv/bin/python bench/classification.py --conf examples/rotten-tomatoes/conf --conf examples/reuters-r8/conf \\
        --json texts.json                                                      # one table per dataset

``--conf`` may be given several times: one table per config, in that order; ``--models``
and the other options apply to each. ``--json FILE`` writes every dataset of the run,
``{dataset: {model: {accuracy, macro_f1, log_loss, fit_seconds, selected, ...}}}`` (log
loss null where a model gives no probabilities); the dataset key carries ``/random80``
for that split. The file is rewritten after each dataset, so a long run keeps what it
measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from threadpoolctl import threadpool_limits

from seqpipe.config import MODEL_SPECS, ModelSpec, PipelineConfig, load_config
from seqpipe.data.sequence_prepare import ChannelScaler, PreparedSequences
from seqpipe.data.sequences import LABEL, SequenceLayout, channel_columns
from seqpipe.data.text_prepare import PreparedTexts
from seqpipe.data.texts import REUTERS_R8, ROTTEN_TOMATOES, SPLIT
from seqpipe.estimators import FitOptions, build_estimator
from seqpipe.estimators.classification import SequenceBatch, fitted_numbers
from seqpipe.evaluation.classification import HIGHER_IS_BETTER, classification_scores
from seqpipe.steps.fitting import train_settings
from seqpipe.tasks.classify.kinds import Prepared, classifier_shape, is_text, kind_of
from seqpipe.training import TrainSettings, seed_everything

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONF = REPO / "examples" / "spoken-digits" / "conf"
SPLITS = ("pipeline", "random80")
RANDOM_TEST_SHARE = 0.2  # random80: the test share of all sequences
DTW_UNITS = ("scaled", "raw")
# Test accuracy measured elsewhere, on a random 80/20 split, for the outside references (spoken-digits).
EXTERNAL_ACCURACY = {"mean_std_logreg": 0.947, "dtw_1nn": 0.993}
TARGET_ACCURACY = 0.99
MINIROCKET_ARCH = "minirocket"
# Texts' outside references: TF-IDF of the raw texts' word 1- and 2-grams, into a linear SVM or a logistic regression.
TFIDF_SVM, TFIDF_LOGREG = "tfidf_linearsvc", "tfidf_logreg"
TFIDF_NGRAMS = (1, 2)
# Their test scores measured elsewhere, per dataset: the split they were measured on, then the scores.
EXTERNAL_TEXT = {
    ROTTEN_TOMATOES: ("a stratified 80/20 split with seed 0",
                      {TFIDF_SVM: {"accuracy": 0.782}, TFIDF_LOGREG: {"accuracy": 0.776}}),
    REUTERS_R8: ("the dataset's own train/test split",
                 {TFIDF_SVM: {"accuracy": 0.977, "macro_f1": 0.940}, TFIDF_LOGREG: {"accuracy": 0.973}}),
}
# The test accuracy a text champion is to reach, per dataset.
TEXT_TARGET_ACCURACY = {ROTTEN_TOMATOES: 0.80}
# Scores that need probabilities: blank for a model that only predicts classes (LinearSVC).
PROBABILITY_SCORES = ("log_loss", "brier", "ece")
LOGREG_MAX_ITER = 2000
# Training sequences per DTW pass: they are sorted by length first, so a pass pads little.
DTW_CHUNK = 512
MODELS_DIR = "models"
KIND_MODEL, KIND_REFERENCE, KIND_EXTERNAL = "seqpipe", "seqpipe reference", "outside reference"

log = logging.getLogger("bench.classification")


@dataclass(frozen=True)
class Row:
    """One measured classifier."""

    model: str
    kind: str
    scores: dict[str, float | None]  # on the test split: accuracy, macro_f1, log_loss (None: no probabilities), ...
    val_score: float | None  # the validation score selection ranks by; None for the outside references
    fit_seconds: float
    predict_seconds: float  # the test split
    parameters: int
    trained_on: str  # training sequences (texts) used


# -- data ---------------------------------------------------------------------------------------

def _share(count: int, share: float) -> int:
    """``count x share`` rounded half up, as ``prepare`` rounds its shares."""
    return int(np.floor(count * share + 0.5))


def random80_prepared(frame: pd.DataFrame, cfg: PipelineConfig) -> PreparedSequences:
    """One seeded random 80/20 split (not stratified), validation carved out of the 80, scaled as ``prepare`` does."""
    split = cfg.classify.split
    layout = SequenceLayout.of(frame)
    order = np.random.default_rng(split.seed).permutation(len(layout.ids))
    n_test = _share(len(order), RANDOM_TEST_SHARE)
    n_val = _share(len(order) - n_test, split.validation_share)
    splits = np.full(len(order), "train", dtype=object)
    splits[order[:n_test]] = "test"
    splits[order[n_test:n_test + n_val]] = "val"
    channels = channel_columns(frame)
    row_splits = splits[layout.codes].astype(str)
    scaler = ChannelScaler.fit(frame[channels].to_numpy(np.float64)[row_splits == "train"], channels)
    labels = layout.first_rows(frame[LABEL])
    return PreparedSequences(frame=frame.assign(split=row_splits), classes=tuple(sorted(set(labels.tolist()))),
                             channels=tuple(channels), scaler=scaler,
                             max_length=int(layout.lengths[splits == "train"].max()),
                             class_weighting=cfg.classify.class_weighting,
                             split_settings={"kind": "random80", "test_share": RANDOM_TEST_SHARE,
                                             "validation_share": split.validation_share, "seed": split.seed})


def random80_text_config(cfg: PipelineConfig) -> PipelineConfig:
    """The config with ``classify.split.test_share`` at 0.2: ``prepare`` then splits the texts 80/20, stratified."""
    split = cfg.classify.split.model_copy(update={"test_share": RANDOM_TEST_SHARE})
    return cfg.model_copy(update={"classify": cfg.classify.model_copy(update={"split": split})})


def prepared_data(cfg: PipelineConfig, split: str) -> tuple[Prepared, bool]:
    """The config's data, read and prepared by its data kind as ``seqpipe ingest`` and ``prepare`` do.

    random80: numeric sequences get one seeded random 80/20 split (not stratified); texts
    are prepared with ``test_share`` 0.2, a stratified 80/20 split seeded by
    ``classify.split.seed``, a dataset's own split set aside. Also whether the test split
    is the dataset's own (a ``split`` column kept, as the pipeline keeps it).
    """
    kind = kind_of(cfg)
    frame, origin = kind.read(cfg.classify.source, cfg.root)
    log.info("read %s (%s)", origin, kind.name)
    if split == "random80":
        if kind.name == "sequences":
            return random80_prepared(frame, cfg), False
        if SPLIT in frame.columns:
            log.info("random80: the dataset's own train/test split is set aside; all %d texts are split 80/20",
                     len(frame))
            frame = frame.drop(columns=SPLIT)
        return kind.prepare(random80_text_config(cfg), frame), False
    return kind.prepare(cfg, frame), SPLIT in frame.columns


def outside_training_set(prepared: PreparedSequences, split: str) -> tuple[SequenceBatch, np.ndarray]:
    """What the outside references fit on: the training split, or with random80 all of the 80 (train + val)."""
    if split == "pipeline":
        return prepared.batch_of("train")
    longest = int(prepared.layout.lengths.max())
    (train, train_labels), (val, val_labels) = prepared.batch_of("train", longest), prepared.batch_of("val", longest)
    return (SequenceBatch(np.concatenate([train.x, val.x]), np.concatenate([train.lengths, val.lengths])),
            np.concatenate([train_labels, val_labels]))


def split_counts(prepared: Prepared) -> dict[str, int]:
    return {split: sum(per_class.values()) for split, per_class in prepared.counts().items()}


# -- seqpipe's classifiers ----------------------------------------------------------------------

def spec_from_file(cfg: PipelineConfig, name: str) -> ModelSpec:
    """A model that ``conf/models/<name>.yaml`` describes but pipeline.yaml does not list (no overrides apply)."""
    path = cfg.conf_dir / MODELS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"--models: '{name}' is neither in {cfg.conf_dir}/pipeline.yaml nor a file {path}")
    raw = yaml.safe_load(path.read_text())
    return MODEL_SPECS[raw["arch"]].model_validate({"name": name, "arch": raw["arch"],
                                                    "params": raw.get("params") or {},
                                                    "training": raw.get("training") or {}})


def chosen_specs(cfg: PipelineConfig, names: list[str] | None) -> list[ModelSpec]:
    """The config's models, or those named (in that order); a name the config lacks is read from conf/models/."""
    if names is None:
        return list(cfg.models)
    listed = {spec.name: spec for spec in cfg.models}
    return [listed[name] if name in listed else spec_from_file(cfg, name) for name in names]


def fitted_count(estimator: object) -> int:
    count = fitted_numbers(estimator.describe())
    if count is None:
        raise ValueError(f"{estimator.arch} reports no count of fitted numbers after fitting")
    return count


def training_summary(cfg: PipelineConfig, specs: list[ModelSpec], max_epochs: int | None) -> str:
    """The pipeline's training settings and each model's own, in words."""
    base = f"at most {max_epochs or cfg.training.max_epochs} epochs, patience {cfg.training.patience}, learning rate " \
           f"{cfg.training.learning_rate}, seed {cfg.training.seed}"
    own = [f"{spec.name} " + ", ".join(f"{key} {value}" for key, value in spec.training.items())
           for spec in specs if spec.training]
    return base + "".join(f"; {text}" for text in own)


def timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def measure_model(spec: ModelSpec, prepared: Prepared, settings: TrainSettings, metric: str,
                  bins: int) -> Row:
    """Seed, build and fit one configured classifier as ``seqpipe train`` does; score validation and test."""
    seed_everything(settings.seed, settings.num_threads)
    estimator = build_estimator(spec.arch, classifier_shape(prepared), spec.params)
    data = prepared.fit_data()
    _, fit_seconds = timed(lambda: estimator.fit(data, settings, FitOptions(name=spec.name)))
    val_scores = classification_scores(data.val_labels, estimator.predict_proba(data.val), bins)
    test, test_labels = prepared.test_batch()
    probabilities, predict_seconds = timed(lambda: estimator.predict_proba(test))
    return Row(spec.name, KIND_MODEL if estimator.trainable else KIND_REFERENCE,
               classification_scores(test_labels, probabilities, bins), val_scores[metric], fit_seconds,
               predict_seconds, fitted_count(estimator), str(len(data.train)))


# -- outside reference 1: per-channel mean and standard deviation + logistic regression --------

def channel_statistics(batch: SequenceBatch) -> np.ndarray:
    """Each sequence's per-channel mean and standard deviation over its real steps: ``(n, 2 x channels)``."""
    mask = (np.arange(batch.x.shape[1])[None, :] < batch.lengths[:, None])[..., None]
    steps = batch.lengths[:, None].astype(np.float64)
    x = batch.x.astype(np.float64)
    mean = (x * mask).sum(axis=1) / steps
    std = np.sqrt((((x - mean[:, None, :]) * mask) ** 2).sum(axis=1) / steps)
    return np.concatenate([mean, std], axis=1)


def measure_statistics_logreg(train: tuple[SequenceBatch, np.ndarray], prepared: PreparedSequences,
                              bins: int) -> Row:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    batch, labels = train
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=LOGREG_MAX_ITER))
    _, fit_seconds = timed(lambda: model.fit(channel_statistics(batch), labels))
    test, test_labels = prepared.test_batch()
    predicted, predict_seconds = timed(lambda: model.predict_proba(channel_statistics(test)))
    # predict_proba's columns are the classes seen in training; a class absent there gets 0.
    probabilities = np.zeros((len(test), len(prepared.classes)))
    probabilities[:, model.classes_] = predicted
    regression = model[-1]
    return Row("mean_std_logreg", KIND_EXTERNAL, classification_scores(test_labels, probabilities, bins), None,
               fit_seconds, predict_seconds, int(regression.coef_.size + regression.intercept_.size), str(len(batch)))


# -- outside reference 2: 1-nearest neighbour by dynamic time warping ---------------------------

def dtw_distances(query: np.ndarray, train: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """DTW of one sequence ``(m, channels)`` to each of a padded batch ``(n, width, channels)`` of real ``lengths``.

    The step cost is the squared Euclidean distance between frames; a warping path runs
    from both first steps to both last steps, moving by (1, 0), (0, 1) or (1, 1). The
    table of accumulated costs is filled one anti-diagonal (cells i + j = d) at a time,
    each over the whole batch. A cell reads only cells of lower i and j, so the padding
    past a sequence's end never reaches the cell at its last step, where its distance is read.
    """
    m, width = len(query), train.shape[1]
    n = len(train)
    # (n, width, m): |t|^2 + |q|^2 - 2 t.q, one matrix product; rounding can dip below 0.
    step = np.maximum((train**2).sum(-1)[:, :, None] + (query**2).sum(-1)[None, None, :] - 2 * train @ query.T, 0.0)
    # A diagonal is stored by query step i at column i + 1; column 0 stays infinite, so the
    # neighbours (i - 1, j) and (i - 1, j - 1) of i = 0 are out of the path. Before the first
    # diagonal, the cell "(-1, -1)" holds 0: the path's start.
    before_last = np.full((n, m + 1), np.inf)
    before_last[:, 0] = 0.0
    last = np.full((n, m + 1), np.inf)
    last_row = np.empty((n, width))  # accumulated cost at (m - 1, j)
    for d in range(m + width - 1):
        low, high = max(0, d - width + 1), min(m - 1, d)
        i = np.arange(low, high + 1)
        neighbours = np.minimum(np.minimum(last[:, low:high + 1],           # (i - 1, j)
                                           last[:, low + 1:high + 2]),       # (i, j - 1)
                                before_last[:, low:high + 1])                # (i - 1, j - 1)
        current = np.full((n, m + 1), np.inf)
        current[:, low + 1:high + 2] = step[:, d - i, i] + neighbours
        if high == m - 1:
            last_row[:, d - (m - 1)] = current[:, m]
        before_last, last = last, current
    return last_row[np.arange(n), lengths - 1]


def nearest_neighbours(queries: SequenceBatch, train: SequenceBatch) -> np.ndarray:
    """For each query, the index of the training sequence at the smallest DTW distance (the first on a tie)."""
    by_length = np.argsort(train.lengths, kind="stable")
    chunks = [by_length[start:start + DTW_CHUNK] for start in range(0, len(by_length), DTW_CHUNK)]
    padded = [(train.x[chunk, :int(train.lengths[chunk].max())].astype(np.float64), train.lengths[chunk])
              for chunk in chunks]
    nearest = np.empty(len(queries), dtype=np.int64)
    for q in range(len(queries)):
        query = queries.x[q, :queries.lengths[q]].astype(np.float64)
        distances = np.empty(len(train))
        for chunk, (x, lengths) in zip(chunks, padded, strict=True):
            distances[chunk] = dtw_distances(query, x, lengths)
        nearest[q] = int(np.argmin(distances))
    return nearest


def in_units(batch: SequenceBatch, scaler: ChannelScaler, units: str) -> SequenceBatch:
    """The batch as scaled, or back in the source's units (the padding is never read)."""
    if units == "scaled":
        return batch
    return SequenceBatch(batch.x * scaler.std + scaler.mean, batch.lengths)


def training_subset(train: tuple[SequenceBatch, np.ndarray], limit: int | None,
                    seed: int) -> tuple[SequenceBatch, np.ndarray]:
    """At most ``limit`` training sequences, drawn at random with ``seed`` (all of them without a limit)."""
    batch, labels = train
    if limit is None or limit >= len(batch):
        return train
    kept = np.sort(np.random.default_rng(seed).choice(len(batch), size=limit, replace=False))
    return SequenceBatch(batch.x[kept], batch.lengths[kept]), labels[kept]


def measure_dtw(train: tuple[SequenceBatch, np.ndarray], prepared: PreparedSequences, limit: int | None,
                units: str, seed: int, bins: int) -> Row:
    available = len(train[0])
    batch, labels = training_subset(train, limit, seed)
    test, test_labels = prepared.test_batch()
    log.info("DTW 1-NN: %d test sequences against %d training sequences (%s units)", len(test), len(batch), units)
    nearest, predict_seconds = timed(lambda: nearest_neighbours(in_units(test, prepared.scaler, units),
                                                                in_units(batch, prepared.scaler, units)))
    probabilities = np.eye(len(prepared.classes))[labels[nearest]]
    trained_on = str(len(batch)) if len(batch) == available else f"{len(batch)} of {available}"
    # 1-NN has no fitting; what it keeps is every training frame.
    return Row("dtw_1nn", KIND_EXTERNAL, classification_scores(test_labels, probabilities, bins), None, 0.0,
               predict_seconds, int(batch.lengths.sum()) * batch.x.shape[2], trained_on)


# -- outside references for texts: TF-IDF of the raw texts + a linear model -------------------

def split_labels(prepared: PreparedTexts, split: str) -> np.ndarray:
    """The split's class indices, in the order ``texts_of`` gives its texts (row order)."""
    return prepared.labels[prepared.splits == split]


def outside_training_texts(prepared: PreparedTexts, split: str, own_split: bool) -> tuple[np.ndarray, np.ndarray]:
    """What the outside references fit on: the training texts; all but test (train + val) with random80 or a
    dataset's own split (its whole training part, on which the figures measured elsewhere were fitted)."""
    parts = ("train",) if split == "pipeline" and not own_split else ("train", "val")
    return (np.concatenate([prepared.texts_of(part) for part in parts]),
            np.concatenate([split_labels(prepared, part) for part in parts]))


def measure_tfidf(name: str, train: tuple[np.ndarray, np.ndarray], prepared: PreparedTexts, bins: int) -> Row:
    """TF-IDF of the raw texts' word 1- and 2-grams (fitted on the training texts) into LinearSVC or a logreg."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    texts, labels = train
    linear = LinearSVC() if name == TFIDF_SVM else LogisticRegression(max_iter=LOGREG_MAX_ITER)
    model = make_pipeline(TfidfVectorizer(ngram_range=TFIDF_NGRAMS, sublinear_tf=True), linear)
    _, fit_seconds = timed(lambda: model.fit(list(texts), labels))
    test_texts, test_labels = list(prepared.texts_of("test")), split_labels(prepared, "test")
    k = len(prepared.classes)
    probabilities = np.zeros((len(test_texts), k))
    if hasattr(linear, "predict_proba"):
        predicted, predict_seconds = timed(lambda: model.predict_proba(test_texts))
        # predict_proba's columns are the classes seen in training; a class absent there gets 0.
        probabilities[:, model.classes_] = predicted
        scores = classification_scores(test_labels, probabilities, bins)
    else:
        predicted, predict_seconds = timed(lambda: model.predict(test_texts))
        probabilities[np.arange(len(test_texts)), predicted] = 1.0
        # Accuracy and macro-F1 read the argmax only; the scores of probabilities stay blank.
        scores = {key: (None if key in PROBABILITY_SCORES else value)
                  for key, value in classification_scores(test_labels, probabilities, bins).items()}
    return Row(name, KIND_EXTERNAL, scores, None, fit_seconds, predict_seconds,
               int(linear.coef_.size + linear.intercept_.size), str(len(texts)))


# -- selection and report -----------------------------------------------------------------------

def selected_model(rows: list[Row], metric: str) -> str | None:
    """The pipeline's rule: the config's model with the best validation ``metric``, ties to the name's order."""
    candidates = [row for row in rows if row.val_score is not None]
    if not candidates:
        return None
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    return min(candidates, key=lambda row: (sign * row.val_score, row.model)).model


def verdict(rows: list[Row], selected: str | None, minirocket: str | None) -> str:
    """Whether the selected model beats MiniRocket on test accuracy and macro-F1, and whether it reaches the target."""
    by_name = {row.model: row for row in rows}
    if selected is None:
        return "No configured model was measured, so none is selected."
    champion = by_name[selected].scores
    lines = [f"Selected: **{selected}**."]
    if minirocket is None or minirocket not in by_name:
        lines.append("MiniRocket was not measured in this run.")
    elif minirocket == selected:
        lines.append("The selected model is MiniRocket itself.")
    else:
        reference = by_name[minirocket].scores
        parts = []
        for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            beats = "beats" if champion[key] > reference[key] else "does not beat"
            parts.append(f"{label} {champion[key]:.4f} vs {reference[key]:.4f} ({beats})")
        lines.append(f"Against {minirocket} in this run: {'; '.join(parts)}.")
    reaches = "reaches" if champion["accuracy"] >= TARGET_ACCURACY else "does not reach"
    lines.append(f"It {reaches} {TARGET_ACCURACY} test accuracy ({champion['accuracy']:.4f}).")
    return " ".join(lines)


def text_verdict(rows: list[Row], selected: str | None, dataset: str) -> str:
    """Whether the selected model beats the best reference of the run, score by score, and reaches the target."""
    by_name = {row.model: row for row in rows}
    if selected is None:
        return "No configured model was measured, so none is selected."
    champion = by_name[selected]
    lines = [f"Selected: **{selected}**."]
    if champion.kind == KIND_REFERENCE:
        lines.append("It is one of seqpipe's references; it is compared with the other references.")
    references = [row for row in rows if row.kind in (KIND_REFERENCE, KIND_EXTERNAL) and row.model != selected]
    if not references:
        lines.append("No reference was measured in this run.")
    else:
        parts, verdicts = [], []
        for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            best = max(references, key=lambda row: (row.scores[key], row.model))
            beats = champion.scores[key] > best.scores[key]
            verdicts.append(beats)
            parts.append(f"{label} {champion.scores[key]:.4f} vs {best.scores[key]:.4f} of {best.model} "
                         f"({'beats' if beats else 'does not beat'})")
        overall = "beats" if all(verdicts) else "does not beat"
        lines.append(f"Against the best reference measured in this run, per score (seqpipe's references and the "
                     f"outside TF-IDF ones): {'; '.join(parts)}. So it {overall} the best reference on accuracy "
                     f"and macro-F1.")
    target = TEXT_TARGET_ACCURACY.get(dataset)
    if target is not None:
        reaches = "reaches" if champion.scores["accuracy"] >= target else "does not reach"
        lines.append(f"It {reaches} {target:.2f} test accuracy ({champion.scores['accuracy']:.4f}).")
    return " ".join(lines)


def external_text_figures(dataset: str, split: str) -> str | None:
    """The outside references' figures measured elsewhere for ``dataset``, and on which split."""
    if dataset not in EXTERNAL_TEXT:
        return None
    where, figures = EXTERNAL_TEXT[dataset]
    listed = ", ".join(f"{name} " + " / ".join(f"{value:.3f} {key.replace('macro_f1', 'macro-F1')}"
                                               for key, value in scores.items())
                       for name, scores in figures.items())
    line = f"Figures measured elsewhere ({where}): {listed}."
    if dataset == REUTERS_R8 and split == "random80":
        line += " This run's random80 split sets that split aside; `--split pipeline` keeps it."
    return line


def ranked(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda row: (-row.scores["accuracy"], row.model))


def score_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def markdown_table(rows: list[Row], selected: str | None, metric: str) -> str:
    header = ["rank", "model", "kind", "accuracy", "macro_f1", "log_loss", f"val_{metric}", "fit_s", "predict_s",
              "parameters", "trained on", "selected"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, row in enumerate(ranked(rows), start=1):
        val = "" if row.val_score is None else f"{row.val_score:.4f}"
        cells = [str(rank), row.model, row.kind, f"{row.scores['accuracy']:.4f}", f"{row.scores['macro_f1']:.4f}",
                 score_cell(row.scores["log_loss"]), val, f"{row.fit_seconds:.1f}", f"{row.predict_seconds:.1f}",
                 f"{row.parameters:,}", row.trained_on, "**selected**" if row.model == selected else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def json_report(rows: list[Row], selected: str | None, dataset: str, metric: str) -> dict:
    return {dataset: {row.model: {"accuracy": row.scores["accuracy"], "macro_f1": row.scores["macro_f1"],
                                  "log_loss": row.scores["log_loss"], "fit_seconds": row.fit_seconds,
                                  "selected": row.model == selected, "kind": row.kind,
                                  f"val_{metric}": row.val_score, "predict_seconds": row.predict_seconds,
                                  "parameters": row.parameters, "trained_on": row.trained_on}
                      for row in ranked(rows)}}


# -- main ---------------------------------------------------------------------------------------

def run_config(conf: Path, args: argparse.Namespace, taken: set[str]) -> tuple[str, dict]:
    """Measure one config's models and references, print its table; its dataset key and its JSON entries."""
    cfg = load_config(conf)
    if cfg.task != "classify":
        raise SystemExit(f"{conf}: task is '{cfg.task}'; this benchmark needs a classify config")
    specs = chosen_specs(cfg, args.models)
    metric, bins = cfg.classify.evaluation.metric, cfg.classify.evaluation.calibration_bins
    threads = args.threads or cfg.training.num_threads

    def settings_of(spec: ModelSpec) -> TrainSettings:
        """The model's training settings as the pipeline makes them, with this run's threads and epoch cap."""
        own = train_settings(cfg, spec)
        return dataclasses.replace(own, max_epochs=args.max_epochs or own.max_epochs, num_threads=threads)

    prepared, own_split = prepared_data(cfg, args.split)
    texts = is_text(prepared)
    counts = split_counts(prepared)
    dataset = cfg.classify.source.name or cfg.classify.source.kind
    log.info("%s, split %s: %s", dataset, args.split, counts)

    rows, failed = [], []
    for spec in specs:
        try:
            rows.append(measure_model(spec, prepared, settings_of(spec), metric, bins))
            log.info("%s: test accuracy %.4f, fitted in %.1fs", spec.name, rows[-1].scores["accuracy"],
                     rows[-1].fit_seconds)
        except Exception as exc:  # one broken model must not lose an hour of measurements
            log.exception("%s failed", spec.name)
            failed.append(f"{spec.name} ({type(exc).__name__}: {exc})")
    if texts:
        outside_texts = outside_training_texts(prepared, args.split, own_split)
        for name in (TFIDF_SVM, TFIDF_LOGREG):
            rows.append(measure_tfidf(name, outside_texts, prepared, bins))
            log.info("%s: test accuracy %.4f", name, rows[-1].scores["accuracy"])
    else:
        outside = outside_training_set(prepared, args.split)
        rows.append(measure_statistics_logreg(outside, prepared, bins))
        if not args.skip_dtw:
            rows.append(measure_dtw(outside, prepared, args.dtw_limit, args.dtw_units, cfg.classify.split.seed, bins))

    selected = selected_model(rows, metric)
    unit = "texts" if texts else "sequences"
    print(f"\n# {'Text' if texts else 'Sequence'} classification: {dataset}, split {args.split} "
          f"({counts['train']} train / {counts['val']} val / {counts['test']} test {unit}; {conf})\n")
    print(f"Test scores, sorted by test accuracy; `selected` is the best validation {metric} among the config's "
          f"models (test not consulted). Training: {training_summary(cfg, specs, args.max_epochs)}, "
          f"{threads or 'all'} threads.\n")
    print(markdown_table(rows, selected, metric))
    print()
    if texts:
        print(text_verdict(rows, selected, dataset))
        external = external_text_figures(dataset, args.split)
        if external is not None:
            print(external)
    else:
        minirocket = next((spec.name for spec in specs if spec.arch == MINIROCKET_ARCH), None)
        print(verdict(rows, selected, minirocket))
        print("Figures measured elsewhere (random 80/20 split): "
              + ", ".join(f"{name} {value}" for name, value in EXTERNAL_ACCURACY.items()) + ".")
        dtw = next((row for row in rows if row.model == "dtw_1nn"), None)
        if dtw is not None:
            print(f"DTW 1-NN took {dtw.predict_seconds:.1f}s ({counts['test']} test sequences against "
                  f"{dtw.trained_on} training sequences, {args.dtw_units} units).")
    if failed:
        print("Failed: " + "; ".join(failed))
    key = dataset if args.split == "pipeline" else f"{dataset}/{args.split}"
    if key in taken:  # two configs of one dataset: the second keyed by its folder too
        key = f"{key} ({conf})"
    return key, json_report(rows, selected, key, metric)


def run(args: argparse.Namespace) -> None:
    results: dict[str, dict] = {}
    for conf in args.conf or [DEFAULT_CONF]:
        key, report = run_config(conf, args, set(results))
        results.update(report)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
            print(f"Wrote {args.json} ({', '.join(results)})")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", type=Path, action="append", default=None,
                        help=f"a classify config folder; repeat it for several datasets (default: {DEFAULT_CONF})")
    parser.add_argument("--models", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
                        default=None, help="comma-separated model names; default: the config's models")
    parser.add_argument("--split", choices=SPLITS, default="pipeline",
                        help="pipeline: classify.split as prepare makes it; random80: one seeded 80/20 split "
                             "(random for sequences, stratified for texts)")
    parser.add_argument("--max-epochs", type=positive, default=None, help="default: training.max_epochs")
    parser.add_argument("--threads", type=positive, default=None,
                        help="torch and BLAS threads; default: training.num_threads, else all cores")
    parser.add_argument("--skip-dtw", action="store_true",
                        help="leave out the DTW 1-NN reference (the slowest; numeric sequences only)")
    parser.add_argument("--dtw-limit", type=positive, default=None,
                        help="DTW against at most N training sequences, drawn at random (seed: classify.split.seed)")
    parser.add_argument("--dtw-units", choices=DTW_UNITS, default="scaled",
                        help="DTW on standardised channels (what the models read) or in the source's units")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every dataset's scores to this file (rewritten after each dataset)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with threadpool_limits(args.threads):
        run(args)


if __name__ == "__main__":
    main()
