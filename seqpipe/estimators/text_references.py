"""The text reference every text network must beat: TF-IDF of token n-grams with a linear model.

A text is the classifiers' ``SequenceBatch`` of token ids (channel 0, the tokenizer's
words). Each text's real ids become string n-grams, ``"12"`` for a word and ``"12_40"``
for a bigram, from 1 to ``ngram_max`` tokens long; they are weighted as scikit-learn's
``TfidfVectorizer`` weighs them by default (sublinear counts if asked, smooth idf
``ln((1 + n) / (1 + df)) + 1``, every row scaled to unit L2 norm) and read by a
multinomial logistic regression. The transform is computed here rather than by
scikit-learn, so a saved model is its plain arrays (``model.json``, the n-gram
vocabulary in ``grams.json`` and ``arrays.npz``) and loads without unpickling anything
into the very transform it was fitted with. An n-gram absent from the training texts
(or rarer there than ``min_df``) is ignored, as the vectorizer ignores it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from seqpipe.estimators.classification import ClassifyFitData, SequenceBatch
from seqpipe.estimators.interface import FitOptions
from seqpipe.estimators.references import (
    ARRAYS_FILE,
    _check_batch,
    _check_labels,
    _read_spec,
    _ReferenceClassifier,
    _softmax,
)
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.training import FitResult, TrainSettings

log = logging.getLogger(__name__)

GRAMS_FILE = "grams.json"
# Joins an n-gram's token ids into its name: "12_40".
GRAM_SEPARATOR = "_"


def text_grams(ids: np.ndarray, ngram_max: int) -> list[str]:
    """The n-grams of one text's token ids, 1 to ``ngram_max`` tokens long, as strings: words first, in order."""
    words = [str(int(token)) for token in ids]
    grams = list(words)
    for n in range(2, ngram_max + 1):
        grams.extend(GRAM_SEPARATOR.join(words[i:i + n]) for i in range(len(words) - n + 1))
    return grams


def batch_grams(batch: SequenceBatch, ngram_max: int) -> list[list[str]]:
    """Each text's n-grams, read from its real steps' token ids (channel 0, rounded)."""
    ids = np.rint(batch.x[..., 0]).astype(np.int64)
    return [text_grams(ids[i, : int(length)], ngram_max) for i, length in enumerate(batch.lengths)]


@dataclasses.dataclass(frozen=True)
class _TfidfState:
    """Everything a fitted TF-IDF + linear model predicts from: the vocabulary and plain arrays."""

    grams: list[str]  # the n-gram of each feature column, sorted
    idf: np.ndarray  # (features,) float64
    coef: np.ndarray  # (classes seen, features), or (1, features) with two classes, as sklearn keeps it
    intercept: np.ndarray
    classes: np.ndarray  # the class indices the logistic regression saw, its output columns' order

    def arrays(self) -> dict[str, np.ndarray]:
        return {"idf": self.idf, "coef": self.coef, "intercept": self.intercept, "classes": self.classes}


class TfidfLinearEstimator(_ReferenceClassifier):
    """TF-IDF of each text's token 1..``ngram_max``-grams, then a multinomial logistic regression (scikit-learn).

    Class weights, when the fit data has them, weigh each training text by its class's
    weight in the regression's loss.
    """

    arch = "tfidf_linear"
    requirements: ClassVar[tuple[str, ...]] = ("scikit-learn",)

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        super().__init__(shape, params)
        if not shape.is_text:
            raise ValueError(f"{self.arch} classifies texts (token ids), but the sequences are numeric frames "
                             f"(vocabulary=0)")
        self._state: _TfidfState | None = None
        self._columns: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        fitted = {} if self._state is None else {"grams": len(self._state.grams),
                                                 "coefficients": int(self._state.coef.size + self._state.intercept.size)}
        return {**dataclasses.asdict(self.params), **fitted}

    def _set_state(self, state: _TfidfState) -> None:
        self._state = state
        self._columns = {gram: column for column, gram in enumerate(state.grams)}

    def _tf(self, documents: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The term frequencies of the known n-grams, as CSR ``(data, indices, indptr)``, columns sorted per row."""
        data, indices, indptr = [np.zeros(0)], [np.zeros(0, np.int64)], [0]
        for grams in documents:
            known = np.fromiter((self._columns[g] for g in grams if g in self._columns), dtype=np.int64)
            columns, counts = np.unique(known, return_counts=True)
            indices.append(columns)
            data.append(counts.astype(np.float64))
            indptr.append(indptr[-1] + len(columns))
        return np.concatenate(data), np.concatenate(indices), np.asarray(indptr, dtype=np.int64)

    def features(self, batch: SequenceBatch) -> Any:
        """The L2-normalised TF-IDF rows ``(n, grams)`` the regression reads, a SciPy CSR matrix."""
        from scipy.sparse import csr_matrix

        if self._state is None:
            raise RuntimeError("the TF-IDF model is not fitted: call fit or load first")
        _check_batch(batch, self.shape, "prediction")
        data, indices, indptr = self._tf(batch_grams(batch, self.params.ngram_max))
        if self.params.sublinear_tf:
            data = 1.0 + np.log(data)
        data = data * self._state.idf[indices]
        rows = np.repeat(np.arange(len(batch)), np.diff(indptr))
        norms = np.sqrt(np.bincount(rows, weights=data**2, minlength=len(batch)))
        # A text with no known n-gram keeps its empty row: the regression reads only its intercept.
        data = data / np.where(norms > 0, norms, 1.0)[rows]
        return csr_matrix((data, indices, indptr), shape=(len(batch), len(self._state.grams)))

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        started = time.perf_counter()
        _check_batch(data.train, self.shape, "training")
        labels = _check_labels(data.train_labels, data.train, self.shape.classes, "training")
        present = np.unique(labels)
        if len(present) < 2:
            raise ValueError(f"the TF-IDF model's logistic regression needs at least two classes in training, "
                             f"found {present.tolist()}")
        documents = batch_grams(data.train, self.params.ngram_max)
        frequency = Counter(gram for grams in documents for gram in set(grams))
        grams = sorted(gram for gram, count in frequency.items() if count >= self.params.min_df)
        if not grams:
            raise ValueError(f"no n-gram is in min_df={self.params.min_df} training texts: lower min_df")
        df = np.array([frequency[gram] for gram in grams], dtype=np.float64)
        idf = np.log((1.0 + len(documents)) / (1.0 + df)) + 1.0
        # The regression is fitted on the same transform prediction runs, with placeholder coefficients.
        self._set_state(_TfidfState(grams, idf, np.zeros((0, len(grams))), np.zeros(0), present))
        features = self.features(data.train)
        weights = None if data.class_weights is None else np.asarray(data.class_weights, dtype=np.float64)[labels]
        regression = LogisticRegression(C=self.params.regularization, max_iter=self.params.max_iter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            regression.fit(features, labels, sample_weight=weights)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.warning("[%s] the TF-IDF model's logistic regression did not converge in max_iter=%d iterations; "
                        "raise max_iter or lower regularization", options.name, self.params.max_iter)
        self._set_state(_TfidfState(grams, idf, regression.coef_.astype(np.float64),
                                    regression.intercept_.astype(np.float64), regression.classes_.astype(np.int64)))
        log.info("[%s] %s: %d n-grams from %d training texts", options.name, self.arch, len(grams), len(documents))
        return self._fitted(data, started, options)

    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        """Softmax of the regression's logits, as sklearn's ``predict_proba``; classes absent from training get 0."""
        state = self._state
        if state is None:
            raise RuntimeError("the TF-IDF model is not fitted: call fit or load first")
        logits = np.asarray(self.features(batch) @ state.coef.T) + state.intercept
        if state.coef.shape[0] == 1:
            # With two classes sklearn keeps one logit z, of the second class: softmax of
            # (-z/2, z/2) is its (1 - sigmoid(z), sigmoid(z)).
            logits = np.concatenate([-logits / 2, logits / 2], axis=1)
        probabilities = np.zeros((len(batch), self.shape.classes))
        probabilities[:, state.classes] = _softmax(logits)
        return probabilities

    def save(self, folder: Path) -> None:
        if self._state is None:
            raise RuntimeError("the TF-IDF model is not fitted: there is nothing to save")
        self._write_spec(folder, {"grams": GRAMS_FILE, "arrays": ARRAYS_FILE})
        (folder / GRAMS_FILE).write_text(json.dumps(self._state.grams) + "\n")
        np.savez(folder / ARRAYS_FILE, **self._state.arrays())

    @classmethod
    def load(cls, folder: Path) -> TfidfLinearEstimator:
        spec = _read_spec(folder, cls.arch)
        estimator = cls(ClassifierShape(**spec["shape"]), spec["params"])
        grams = json.loads((folder / spec["grams"]).read_text())
        with np.load(folder / spec["arrays"], allow_pickle=False) as arrays:
            state = _TfidfState(grams, arrays["idf"], arrays["coef"], arrays["intercept"],
                                arrays["classes"].astype(np.int64))
        if not (len(grams) == len(state.idf) == state.coef.shape[1]):
            raise ValueError(f"{folder}: {len(grams)} n-grams, {len(state.idf)} idf weights and "
                             f"{state.coef.shape[1]} coefficients per class; they must agree")
        estimator._set_state(state)
        return estimator
