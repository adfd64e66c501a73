"""The reference classifiers every network must beat: the majority class and MiniRocket.

Both are saved as ``model.json`` plus plain arrays and load without unpickling anything.

MiniRocket's kernels read a fixed number of steps, so every sequence is brought to one
length first. It is *resampled* (linear interpolation of its real steps) to the longest
training length rather than edge-padded: MiniRocket's features are proportions of
positive values over all positions, so a padded tail would make up a share of each
sequence's features that grows as the sequence gets shorter, while a resampled
sequence's features all describe its content. Resampling also takes a served sequence
longer than any training one without cutting it off. The cost is the sequence's
duration, which resampling removes; prediction resamples the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from seqpipe.estimators.classification import ClassifierEstimator, ClassifyFitData, SequenceBatch
from seqpipe.estimators.interface import FitOptions
from seqpipe.evaluation.classification import log_loss
from seqpipe.hyperparams import parse_params
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.models.persistence import SPEC_FILE
from seqpipe.training import FitResult, TrainSettings

log = logging.getLogger(__name__)

ARRAYS_FILE = "arrays.npz"
# MiniRocket's kernels span 9 steps and it refuses shorter series.
MINIROCKET_MIN_LENGTH = 9
# MiniRocket draws its kernels in groups of 84 (its fixed kernel set), at least one group.
MINIROCKET_KERNEL_GROUP = 84
# The fitted transform, in the order of sktime's ``parameters`` tuple, with the dtypes its numba code requires.
MINIROCKET_PARAMETERS = (
    ("num_channels_per_combination", np.int32),
    ("channel_indices", np.int32),
    ("dilations", np.int32),
    ("num_features_per_dilation", np.int32),
    ("biases", np.float32),
)


def _check_batch(batch: SequenceBatch, shape: ClassifierShape, what: str) -> None:
    if batch.x.ndim != 3 or batch.x.shape[2] != shape.channels:
        raise ValueError(f"{what}: expected sequences (n, length, {shape.channels}), got shape {batch.x.shape}")
    if batch.lengths.shape != (len(batch.x),):
        raise ValueError(f"{what}: {len(batch.x)} sequences but lengths of shape {batch.lengths.shape}")
    if len(batch) and (batch.lengths.min() < 1 or batch.lengths.max() > batch.x.shape[1]):
        raise ValueError(f"{what}: lengths must lie in [1, {batch.x.shape[1]}], found "
                         f"{batch.lengths.min()}..{batch.lengths.max()}")


def _check_labels(labels: np.ndarray, batch: SequenceBatch, classes: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (len(batch),):
        raise ValueError(f"{what}: {len(batch)} sequences but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{what}: labels must lie in [0, {classes}), found {labels.min()}..{labels.max()}")
    return labels.astype(np.int64, copy=False)


def _read_spec(folder: Path, arch: str) -> dict[str, Any]:
    path = folder / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no saved model: {SPEC_FILE} is missing")
    spec = json.loads(path.read_text())
    if spec.get("arch") != arch:
        raise ValueError(f"{path} holds a '{spec.get('arch')}' model, not '{arch}'")
    return spec


class _ReferenceClassifier(ClassifierEstimator):
    """What both references share: no training loop, a JSON spec, the validation log loss as the fit's loss."""

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        super().__init__(shape, parse_params(self.arch, params))

    @property
    def trainable(self) -> bool:
        return False

    def _spec(self) -> dict[str, Any]:
        return {"arch": self.arch, "shape": dataclasses.asdict(self.shape), "params": dataclasses.asdict(self.params)}

    def _write_spec(self, folder: Path, extra: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEC_FILE).write_text(json.dumps({**self._spec(), **extra}, indent=2, sort_keys=True) + "\n")

    def _training_labels(self, data: ClassifyFitData) -> tuple[np.ndarray, np.ndarray]:
        """The training labels, checked against the batch, and the classes present: at least two, for a regression."""
        _check_batch(data.train, self.shape, "training")
        labels = _check_labels(data.train_labels, data.train, self.shape.classes, "training")
        present = np.unique(labels)
        if len(present) < 2:
            raise ValueError(f"{self.arch}'s logistic regression needs at least two classes in training, "
                             f"found {present.tolist()}")
        return labels, present

    def _fitted(self, data: ClassifyFitData, started: float, options: FitOptions) -> FitResult:
        """The fit's result, with the validation log loss where a network would report its best epoch's loss."""
        val_loss = float("nan")
        if len(data.val):
            labels = _check_labels(data.val_labels, data.val, self.shape.classes, "validation")
            val_loss = log_loss(labels, self.predict_proba(data.val))
        seconds = time.perf_counter() - started
        log.info("[%s] fitted %s on %d sequences in %.1fs, validation log loss %.4f", options.name, self.arch,
                 len(data.train), seconds, val_loss)
        return FitResult("cpu", best_epoch=0, best_val_loss=val_loss, epochs_run=0, stopped_early=False,
                         seconds=seconds)


class MajorityClassEstimator(_ReferenceClassifier):
    """The training class frequencies for every sequence: what a model knows without reading the sequence.

    The frequencies are the plain shares of the training labels, with nothing added to
    the counts: a class absent from training gets probability 0. ``class_weights`` are
    ignored, since reweighting would make the reference predict a distribution the
    training data does not have.
    """

    arch = "majority"

    def __init__(self, shape: ClassifierShape, params: Any = None) -> None:
        super().__init__(shape, {} if params is None else params)
        self.probabilities: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        return {"classes": self.shape.classes, "fitted": "training class frequencies"}

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        started = time.perf_counter()
        _check_batch(data.train, self.shape, "training")
        labels = _check_labels(data.train_labels, data.train, self.shape.classes, "training")
        if not len(labels):
            raise ValueError("the majority class needs at least one training sequence")
        self.probabilities = np.bincount(labels, minlength=self.shape.classes) / len(labels)
        return self._fitted(data, started, options)

    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        if self.probabilities is None:
            raise RuntimeError("the majority class is not fitted: call fit or load first")
        _check_batch(batch, self.shape, "prediction")
        return np.tile(self.probabilities, (len(batch), 1))

    def save(self, folder: Path) -> None:
        if self.probabilities is None:
            raise RuntimeError("the majority class is not fitted: there is nothing to save")
        self._write_spec(folder, {"probabilities": self.probabilities.tolist()})

    @classmethod
    def load(cls, folder: Path) -> MajorityClassEstimator:
        spec = _read_spec(folder, cls.arch)
        estimator = cls(ClassifierShape(**spec["shape"]), spec["params"])
        probabilities = np.asarray(spec["probabilities"], dtype=np.float64)
        if probabilities.shape != (estimator.shape.classes,):
            raise ValueError(f"{folder / SPEC_FILE}: {probabilities.shape[0]} probabilities for "
                             f"{estimator.shape.classes} classes")
        estimator.probabilities = probabilities
        return estimator


@dataclasses.dataclass(frozen=True)
class _MiniRocketState:
    """Everything a fitted MiniRocket predicts from, as plain arrays (what ``arrays.npz`` holds)."""

    parameters: tuple[np.ndarray, ...]  # sktime's fitted transform, in MINIROCKET_PARAMETERS' order
    mean: np.ndarray  # (features,) of the training features
    std: np.ndarray  # (features,), 1 where a feature is constant on training
    coef: np.ndarray  # (classes seen, features), or (1, features) with two classes, as sklearn keeps it
    intercept: np.ndarray
    classes: np.ndarray  # the class indices the logistic regression saw, its output columns' order

    def arrays(self) -> dict[str, np.ndarray]:
        named = {name: array for (name, _), array in zip(MINIROCKET_PARAMETERS, self.parameters)}
        return {**named, "mean": self.mean, "std": self.std, "coef": self.coef, "intercept": self.intercept,
                "classes": self.classes}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> _MiniRocketState:
        parameters = tuple(np.ascontiguousarray(arrays[name], dtype=dtype) for name, dtype in MINIROCKET_PARAMETERS)
        return cls(parameters, arrays["mean"], arrays["std"], arrays["coef"], arrays["intercept"],
                   arrays["classes"].astype(np.int64))


def fit_logistic(features: Any, labels: np.ndarray, params: Any, name: str, what: str, **options: Any) -> Any:
    """scikit-learn's logistic regression (``params.regularization`` is C) fitted on ``features``; a warning naming
    ``what`` if it stops before converging. ``options`` go to ``fit`` (``sample_weight``) or the model."""
    from sklearn.linear_model import LogisticRegression

    sample_weight = options.pop("sample_weight", None)
    regression = LogisticRegression(C=params.regularization, max_iter=params.max_iter, **options)
    return _fit_warning_unconverged(regression, features, labels, sample_weight, params, name,
                                    f"{what}'s logistic regression")


def fit_linear_svm(features: Any, labels: np.ndarray, params: Any, name: str, what: str,
                   sample_weight: np.ndarray | None = None) -> Any:
    """scikit-learn's ``LinearSVC`` (squared hinge, one class against the rest; ``params.regularization`` is C)
    fitted on ``features``; a warning naming ``what`` if it stops before converging."""
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=params.regularization, max_iter=params.max_iter)
    return _fit_warning_unconverged(svm, features, labels, sample_weight, params, name, f"{what}'s linear SVM")


def _fit_warning_unconverged(model: Any, features: Any, labels: np.ndarray, sample_weight: np.ndarray | None,
                             params: Any, name: str, what: str) -> Any:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features, labels, sample_weight=sample_weight)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("[%s] %s did not converge in max_iter=%d iterations; raise max_iter or lower regularization",
                    name, what, params.max_iter)
    return model


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class MiniRocketEstimator(_ReferenceClassifier):
    """MiniRocket's random dilated kernels (sktime) on resampled sequences, then a multinomial logistic regression.

    The features are standardised with the training mean and standard deviation before
    the regression, so its L2 penalty weighs every feature alike.
    """

    arch = "minirocket"
    requirements: ClassVar[tuple[str, ...]] = ("sktime", "scikit-learn")

    def __init__(self, shape: ClassifierShape, params: Any) -> None:
        super().__init__(shape, params)
        self.seed: int | None = None
        self._transformer: Any = None
        self._state: _MiniRocketState | None = None

    @property
    def length(self) -> int:
        """The steps every sequence is resampled to: the longest training length, at least MiniRocket's minimum."""
        return max(self.shape.max_length, MINIROCKET_MIN_LENGTH)

    @property
    def features_count(self) -> int:
        """The features MiniRocket draws: ``num_kernels`` rounded down to whole groups of 84, at least one."""
        groups = self.params.num_kernels // MINIROCKET_KERNEL_GROUP
        return max(1, groups) * MINIROCKET_KERNEL_GROUP

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.params), "resampled_length": self.length, "features": self.features_count,
                "coefficients": (self.features_count + 1) * self.shape.classes}

    def _build_transformer(self, seed: int):
        from sktime.transformations.rocket import MiniRocketMultivariate

        return MiniRocketMultivariate(num_kernels=self.params.num_kernels,
                                      max_dilations_per_kernel=self.params.max_dilations_per_kernel,
                                      n_jobs=self.params.n_jobs, random_state=seed)

    def _panel(self, batch: SequenceBatch) -> np.ndarray:
        """Each sequence's real steps linearly resampled to ``length``: sktime's numpy3D ``(n, channels, length)``."""
        if not len(batch):
            return np.zeros((0, self.shape.channels, self.length), dtype=np.float32)
        steps = batch.lengths.astype(np.int64)
        position = np.linspace(0.0, 1.0, self.length)[None, :] * (steps[:, None] - 1)
        before = np.floor(position).astype(np.int64)
        after = np.minimum(before + 1, steps[:, None] - 1)
        weight = (position - before)[..., None]
        rows = np.arange(len(batch))[:, None]
        x = batch.x.astype(np.float64, copy=False)
        resampled = x[rows, before] * (1.0 - weight) + x[rows, after] * weight
        return np.ascontiguousarray(resampled.transpose(0, 2, 1), dtype=np.float32)

    def _raw_features(self, batch: SequenceBatch) -> np.ndarray:
        _check_batch(batch, self.shape, "prediction")
        if self._transformer is None:
            raise RuntimeError("MiniRocket is not fitted: call fit or load first")
        if not len(batch):
            return np.zeros((0, self.features_count))
        return self._transformer.transform(self._panel(batch)).to_numpy(np.float64)

    def features(self, batch: SequenceBatch) -> np.ndarray:
        """The standardised MiniRocket features ``(n, features)`` the logistic regression reads."""
        raw = self._raw_features(batch)
        return (raw - self._state.mean) / self._state.std

    def fit(self, data: ClassifyFitData, settings: TrainSettings, options: FitOptions = FitOptions()) -> FitResult:
        started = time.perf_counter()
        labels, present = self._training_labels(data)
        transformer = self._build_transformer(settings.seed)
        # sktime seeds numpy's global generator; keeping its state means fitting MiniRocket
        # never changes what anything else in the process draws.
        global_state = np.random.get_state()
        try:
            raw = transformer.fit_transform(self._panel(data.train)).to_numpy(np.float64)
        finally:
            np.random.set_state(global_state)
        mean, std = raw.mean(axis=0), raw.std(axis=0)
        # A feature constant on training carries nothing; dividing by 1 keeps it finite and at 0.
        std = np.where(std > 0, std, 1.0)
        weights = None if data.class_weights is None else {int(c): float(data.class_weights[c]) for c in present}
        regression = fit_logistic((raw - mean) / std, labels, self.params, options.name, "MiniRocket",
                                  class_weight=weights)
        self.seed, self._transformer = settings.seed, transformer
        self._state = _MiniRocketState(tuple(transformer.parameters), mean, std, regression.coef_.astype(np.float64),
                                       regression.intercept_.astype(np.float64),
                                       regression.classes_.astype(np.int64))
        return self._fitted(data, started, options)

    def predict_proba(self, batch: SequenceBatch) -> np.ndarray:
        """Softmax of the regression's logits, as sklearn's ``predict_proba``; classes absent from training get 0."""
        state = self._state
        if state is None:
            raise RuntimeError("MiniRocket is not fitted: call fit or load first")
        logits = self.features(batch) @ state.coef.T + state.intercept
        if state.coef.shape[0] == 1:
            # With two classes sklearn keeps one logit z, of the second class: softmax of
            # (-z/2, z/2) is its (1 - sigmoid(z), sigmoid(z)).
            logits = np.concatenate([-logits / 2, logits / 2], axis=1)
        probabilities = np.zeros((len(batch), self.shape.classes))
        probabilities[:, state.classes] = _softmax(logits)
        return probabilities

    def save(self, folder: Path) -> None:
        if self._state is None:
            raise RuntimeError("MiniRocket is not fitted: there is nothing to save")
        self._write_spec(folder, {"seed": self.seed, "length": self.length, "arrays": ARRAYS_FILE})
        np.savez(folder / ARRAYS_FILE, **self._state.arrays())

    @classmethod
    def load(cls, folder: Path) -> MiniRocketEstimator:
        spec = _read_spec(folder, cls.arch)
        estimator = cls(ClassifierShape(**spec["shape"]), spec["params"])
        if spec["length"] != estimator.length:
            raise ValueError(f"{folder / SPEC_FILE}: saved for sequences of {spec['length']} steps, but its shape "
                             f"gives {estimator.length}")
        with np.load(folder / spec["arrays"], allow_pickle=False) as arrays:
            state = _MiniRocketState.from_arrays({name: arrays[name] for name in arrays.files})
        transformer = estimator._build_transformer(spec["seed"])
        # What sktime's fit leaves behind and its transform reads: the fitted arrays, the
        # true kernel count, and the flags BaseTransformer checks before transforming.
        transformer.parameters = state.parameters
        transformer.num_kernels_ = estimator.features_count
        transformer._is_vectorized = False
        transformer._is_fitted = True
        estimator.seed, estimator._transformer, estimator._state = spec["seed"], transformer, state
        return estimator
