"""The text references every text network must beat: linear models of a text's word (and character) n-grams.

A text is the classifiers' ``SequenceBatch`` of token ids (channel 0, the tokenizer's
words) and, for a text batch, its normalised characters. Each text becomes string
n-grams (``seqpipe.estimators.ngrams``): by default n-grams of its token ids, ``"12"`` for
a word and ``"12_40"`` for a bigram, from 1 to ``ngram_max`` tokens long; on request the
word n-grams of its characters instead (``words: text``) and its character n-grams
besides (``char_ngram_max``). The n-grams of the training texts (in at least ``min_df`` of
them) are the vocabulary, and an n-gram outside it is ignored, as scikit-learn's
vectorizers ignore it. Two weightings of those n-grams feed scikit-learn's linear models:

- ``tfidf_linear``: TF-IDF as scikit-learn's ``TfidfVectorizer`` weighs by default
  (sublinear counts if asked, smooth idf ``ln((1 + n) / (1 + df)) + 1``, every row scaled
  to unit L2 norm; with character n-grams, the words' block and the characters' block
  each scaled to unit norm, as a union of two vectorizers scales them), read by a
  multinomial logistic regression or (``loss: squared_hinge``)
  a linear SVM. An SVM's scores are margins, not log-odds: its probabilities are the
  softmax of its scores times one temperature, the one that minimises the validation
  split's log loss (Guo et al. 2017). The temperature changes no predicted class, so the
  validation accuracy and macro-F1 that selection reads are the SVM's own; the
  validation log loss it reports is the calibrated one;
- ``nb_linear``: NBSVM's features with a logistic regression, "NB-LR" (Wang and Manning
  2012): a text's n-gram presence (0 or 1), each n-gram scaled by its naive Bayes
  log-count ratio ``r = log((p / |p|_1) / (q / |q|_1))``, where ``p`` and ``q`` are the
  smoothed counts of the n-gram's presence in the texts of a class and of the others.
  Two classes take one ratio and one regression; more take one of each per class, one
  against the rest, whose probabilities are normalised to sum to 1.

The transforms are computed here rather than by scikit-learn, so a saved model is its
plain arrays (``model.json``, the n-gram vocabulary in ``grams.json`` and ``arrays.npz``)
and loads without unpickling anything into the very transform it was fitted with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from seqpipe.estimators.classification import ClassifyFitData, SequenceBatch
from seqpipe.estimators.interface import FitOptions
from seqpipe.estimators.ngrams import document_grams, is_char_gram
from seqpipe.estimators.references import (
    ARRAYS_FILE,
    _check_batch,
    _check_labels,
    _read_spec,
    _ReferenceClassifier,
    _softmax,
    fit_linear_svm,
    fit_logistic,
)
from seqpipe.evaluation.classification import log_loss
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.training import FitResult, TrainSettings

log = logging.getLogger(__name__)

GRAMS_FILE = "grams.json"
# Where the SVM's temperature is searched: wide enough for the scores of unit-norm TF-IDF rows,
# whose margins sit near 1, to become anything from nearly uniform to nearly certain.
TEMPERATURE_RANGE = (1e-2, 1e3)


@dataclasses.dataclass(frozen=True)
class _TfidfState:
    """Everything a fitted TF-IDF + linear model predicts from: the vocabulary and plain arrays."""

    grams: list[str]  # the n-gram of each feature column, sorted
    idf: np.ndarray  # (features,) float64
    coef: np.ndarray  # (classes seen, features), or (1, features) with two classes, as sklearn keeps it
    intercept: np.ndarray
    classes: np.ndarray  # the class indices the linear model saw, its output columns' order
    temperature: float = 1.0  # the logits are the linear scores times this: 1 for a logistic regression

    def arrays(self) -> dict[str, np.ndarray]:
        return {"idf": self.idf, "coef": self.coef, "intercept": self.intercept, "classes": self.classes,
                "temperature": np.asarray(self.temperature)}

    @classmethod
    def from_arrays(cls, grams: list[str], arrays: Any) -> _TfidfState:
        # Models saved before the SVM option hold no temperature: theirs is a regression's, 1.
        temperature = float(arrays["temperature"]) if "temperature" in arrays.files else 1.0
        return cls(grams, arrays["idf"], arrays["coef"], arrays["intercept"], arrays["classes"].astype(np.int64),
                   temperature)

    @property
    def weights(self) -> np.ndarray:
        """The coefficients each logit applies to the feature rows, ``(logits, features)``."""
        return self.coef * self.temperature

    @property
    def bias(self) -> np.ndarray:
        return self.intercept * self.temperature


@dataclasses.dataclass(frozen=True)
class _NBState:
    """Everything a fitted NB-LR predicts from: the vocabulary, each logit's log-count ratios and regression."""

    grams: list[str]
    ratios: np.ndarray  # (logits, features): a row per class against the rest, one row with two classes
    coef: np.ndarray  # (logits, features), the regressions' coefficients on the ratio-weighted presence
    intercept: np.ndarray  # (logits,)
    classes: np.ndarray  # the class indices seen in training; with two, the one row's logit is the second's

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ratios": self.ratios, "coef": self.coef, "intercept": self.intercept, "classes": self.classes}

    @classmethod
    def from_arrays(cls, grams: list[str], arrays: Any) -> _NBState:
        return cls(grams, arrays["ratios"], arrays["coef"], arrays["intercept"], arrays["classes"].astype(np.int64))

    @property
    def weights(self) -> np.ndarray:
        # A regression on x * r has the logit x . (r * w) + b: one product serves prediction.
        return self.ratios * self.coef

    @property
    def bias(self) -> np.ndarray:
        return self.intercept


class _NgramLinear(_ReferenceClassifier):
    """What the n-gram references share: the training vocabulary, the counts of its n-grams, linear logits over
    feature rows, and saving as plain arrays. Subclasses weigh the n-grams (``features``) and fit the logits."""

    state_cls: ClassVar[type]
    # Several classes: False, one multinomial softmax; True, one logit per class against the rest, normalised.
    one_vs_rest: ClassVar[bool] = False

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        super().__init__(shape, params)
        if not shape.is_text:
            raise ValueError(f"{self.arch} classifies texts (token ids), but the sequences are numeric frames "
                             f"(vocabulary=0)")
        self._state: Any = None
        self._columns: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        fitted = {} if self._state is None else {"grams": len(self._state.grams),
                                                 "coefficients": int(self._state.coef.size + self._state.intercept.size)}
        return {**dataclasses.asdict(self.params), **fitted}

    def _set_state(self, state: Any) -> None:
        # A fit replaces its state (placeholder, fitted, calibrated) over one vocabulary: the lookups
        # derived from the n-grams are built again only for new ones.
        new_grams = self._state is None or state.grams is not self._state.grams
        self._state = state
        if new_grams:
            self._vocabulary_changed(state.grams)

    def _vocabulary_changed(self, grams: list[str]) -> None:
        self._columns = {gram: column for column, gram in enumerate(grams)}

    def _fitted_state(self) -> Any:
        if self._state is None:
            raise RuntimeError(f"the {self.arch} model is not fitted: call fit or load first")
        return self._state

    def _training_texts(self, data: ClassifyFitData) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
        """The training texts' n-grams, their labels, and the classes present (at least two)."""
        labels, present = self._training_labels(data)
        return self._grams(data.train), labels, present

    def _grams(self, batch: SequenceBatch) -> list[list[str]]:
        return document_grams(batch, self.params, self.arch)

    def _vocabulary(self, documents: list[list[str]]) -> tuple[list[str], np.ndarray]:
        """The n-grams in at least ``min_df`` training texts, sorted, and how many texts hold each."""
        frequency = Counter(gram for grams in documents for gram in set(grams))
        grams = sorted(gram for gram, count in frequency.items() if count >= self.params.min_df)
        if not grams:
            raise ValueError(f"no n-gram is in min_df={self.params.min_df} training texts: lower min_df")
        return grams, np.array([frequency[gram] for gram in grams], dtype=np.float64)

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
        """The feature rows ``(n, grams)`` the logits read, a SciPy CSR matrix."""
        raise NotImplementedError

    def logits(self, batch: SequenceBatch) -> np.ndarray:
        """The linear model's logits ``(n, logits)``: one per class seen, or one of the second class with two."""
        state = self._fitted_state()
        return np.asarray(self.features(batch) @ state.weights.T) + state.bias

    def probabilities_of(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` from ``logits``; classes absent from training get 0."""
        if logits.shape[1] == 1:
            # With two classes sklearn keeps one logit z, of the second class: softmax of
            # (-z/2, z/2) is its (1 - sigmoid(z), sigmoid(z)).
            seen = _softmax(np.concatenate([-logits / 2, logits / 2], axis=1))
        elif self.one_vs_rest:
            odds = 1.0 / (1.0 + np.exp(-logits))
            seen = odds / odds.sum(axis=1, keepdims=True)
        else:
            seen = _softmax(logits)
        probabilities = np.zeros((len(logits), self.shape.classes))
        probabilities[:, self._fitted_state().classes] = seen
        return probabilities

    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        """Class probabilities from the logits; classes absent from training get 0."""
        return self.probabilities_of(self.logits(batch))

    def save(self, folder: Path) -> None:
        if self._state is None:
            raise RuntimeError(f"the {self.arch} model is not fitted: there is nothing to save")
        self._write_spec(folder, {"grams": GRAMS_FILE, "arrays": ARRAYS_FILE})
        (folder / GRAMS_FILE).write_text(json.dumps(self._state.grams) + "\n")
        np.savez(folder / ARRAYS_FILE, **self._state.arrays())

    @classmethod
    def load(cls, folder: Path) -> _NgramLinear:
        spec = _read_spec(folder, cls.arch)
        estimator = cls(ClassifierShape(**spec["shape"]), spec["params"])
        grams = json.loads((folder / spec["grams"]).read_text())
        with np.load(folder / spec["arrays"], allow_pickle=False) as arrays:
            state = cls.state_cls.from_arrays(grams, arrays)
        if not (len(grams) == state.weights.shape[1]):
            raise ValueError(f"{folder}: {len(grams)} n-grams but {state.weights.shape[1]} coefficients per logit; "
                             f"they must agree")
        estimator._set_state(state)
        return estimator


class TfidfLinearEstimator(_NgramLinear):
    """TF-IDF of each text's token 1..``ngram_max``-grams, then a multinomial logistic regression or, with
    ``loss: squared_hinge``, a linear SVM whose scores a temperature fitted on validation makes probabilities
    (scikit-learn).

    Class weights, when the fit data has them, weigh each training text by its class's
    weight in the linear model's loss.
    """

    arch = "tfidf_linear"
    requirements: ClassVar[tuple[str, ...]] = ("scikit-learn",)
    state_cls = _TfidfState

    def _vocabulary_changed(self, grams: list[str]) -> None:
        super()._vocabulary_changed(grams)
        # 1 where a feature column is a character n-gram: the block each TF-IDF value is normalised in.
        self._char_columns = np.fromiter((is_char_gram(g) for g in grams), dtype=np.int64, count=len(grams))

    def features(self, batch: SequenceBatch) -> Any:
        """The L2-normalised TF-IDF rows ``(n, grams)`` the regression reads, a SciPy CSR matrix."""
        from scipy.sparse import csr_matrix

        state = self._fitted_state()
        _check_batch(batch, self.shape, "prediction")
        data, indices, indptr = self._tf(self._grams(batch))
        if self.params.sublinear_tf:
            data = 1.0 + np.log(data)
        data = data * state.idf[indices]
        # Each row's words and characters are two blocks, each scaled to unit norm.
        blocks = np.repeat(np.arange(len(batch)), np.diff(indptr)) * 2 + self._char_columns[indices]
        norms = np.sqrt(np.bincount(blocks, weights=data**2, minlength=2 * len(batch)))
        # A text with no known n-gram keeps its empty row: the regression reads only its intercept.
        data = data / np.where(norms > 0, norms, 1.0)[blocks]
        return csr_matrix((data, indices, indptr), shape=(len(batch), len(state.grams)))

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        started = time.perf_counter()
        documents, labels, present = self._training_texts(data)
        grams, df = self._vocabulary(documents)
        idf = np.log((1.0 + len(documents)) / (1.0 + df)) + 1.0
        # The regression is fitted on the same transform prediction runs, with placeholder coefficients.
        self._set_state(_TfidfState(grams, idf, np.zeros((0, len(grams))), np.zeros(0), present))
        weights = None if data.class_weights is None else np.asarray(data.class_weights, dtype=np.float64)[labels]
        fit_linear = fit_linear_svm if self.params.loss == "squared_hinge" else fit_logistic
        linear = fit_linear(self.features(data.train), labels, self.params, options.name, "the TF-IDF model",
                            sample_weight=weights)
        self._set_state(_TfidfState(grams, idf, linear.coef_.astype(np.float64), linear.intercept_.astype(np.float64),
                                    linear.classes_.astype(np.int64)))
        if self.params.loss == "squared_hinge":
            self._set_state(dataclasses.replace(self._state, temperature=self._validation_temperature(data, options)))
        log.info("[%s] %s: %d n-grams from %d training texts", options.name, self.arch, len(grams), len(documents))
        return self._fitted(data, started, options)

    def _validation_temperature(self, data: ClassifyFitData, options: FitOptions) -> float:
        """The temperature of the scores that minimises the validation split's log loss."""
        from scipy.optimize import minimize_scalar

        if not len(data.val):
            raise ValueError(f"{self.arch} with loss squared_hinge turns its SVM scores into probabilities with a "
                             f"temperature fitted on the validation split, which is empty; give the split a "
                             f"validation share or use loss logistic")
        labels = _check_labels(data.val_labels, data.val, self.shape.classes, "validation")
        scores = self.logits(data.val)
        fitted = minimize_scalar(lambda log_t: log_loss(labels, self.probabilities_of(scores * np.exp(log_t))),
                                 bounds=np.log(TEMPERATURE_RANGE), method="bounded")
        temperature = float(np.exp(fitted.x))
        log.info("[%s] %s: SVM scores times %.3f make the probabilities (validation log loss %.4f)", options.name,
                 self.arch, temperature, fitted.fun)
        return temperature


class NBLinearEstimator(_NgramLinear):
    """NB-LR: each text's n-gram presence scaled by naive Bayes log-count ratios, then logistic regressions.

    Class weights, when the fit data has them, weigh each training text by its class's
    weight in every regression's loss; the ratios count texts unweighted.
    """

    arch = "nb_linear"
    requirements: ClassVar[tuple[str, ...]] = ("scikit-learn",)
    state_cls = _NBState
    one_vs_rest = True

    def features(self, batch: SequenceBatch) -> Any:
        """Each text's presence (1.0) of every known n-gram ``(n, grams)``, a SciPy CSR matrix."""
        from scipy.sparse import csr_matrix

        state = self._fitted_state()
        _check_batch(batch, self.shape, "prediction")
        data, indices, indptr = self._tf(self._grams(batch))
        return csr_matrix((np.ones_like(data), indices, indptr), shape=(len(batch), len(state.grams)))

    def _log_count_ratio(self, presence: Any, positive: np.ndarray) -> np.ndarray:
        """``log((p / |p|_1) / (q / |q|_1))`` of every n-gram, p and q its smoothed presence counts in the positive
        texts and in the others."""
        p = self.params.smoothing + np.asarray(presence[positive].sum(axis=0)).ravel()
        q = self.params.smoothing + np.asarray(presence[~positive].sum(axis=0)).ravel()
        return np.log(p / p.sum()) - np.log(q / q.sum())

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        from scipy.sparse import diags

        started = time.perf_counter()
        documents, labels, present = self._training_texts(data)
        grams, _ = self._vocabulary(documents)
        empty = np.zeros((0, len(grams)))
        self._set_state(_NBState(grams, empty, empty, np.zeros(0), present))
        presence = self.features(data.train)
        weights = None if data.class_weights is None else np.asarray(data.class_weights, dtype=np.float64)[labels]
        # Two classes need one logit, of the second (as sklearn's binary regression keeps it).
        targets = present[1:] if len(present) == 2 else present
        ratios, coef, intercept = [], [], []
        for target in targets:
            positive = labels == target
            ratio = self._log_count_ratio(presence, positive)
            regression = fit_logistic(presence @ diags(ratio), positive.astype(np.int64), self.params, options.name,
                                      f"the NB-LR model of class {int(target)}", sample_weight=weights)
            ratios.append(ratio)
            coef.append(regression.coef_[0].astype(np.float64))
            intercept.append(float(regression.intercept_[0]))
        self._set_state(_NBState(grams, np.stack(ratios), np.stack(coef), np.asarray(intercept), present))
        log.info("[%s] %s: %d n-grams from %d training texts, %d regressions", options.name, self.arch, len(grams),
                 len(documents), len(targets))
        return self._fitted(data, started, options)
