"""Classification scores, plots, the classifier gate's paired tests and the two reference classifiers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as sk

from seqpipe.estimators.classification import ClassifyFitData, SequenceBatch
from seqpipe.estimators.references import ARRAYS_FILE, MajorityClassEstimator, MiniRocketEstimator
from seqpipe.evaluation.classification import (
    HIGHER_IS_BETTER, PROBABILITY_EPSILON, brier, classification_leaderboard, classification_scores,
    confusion_matrix, ece, macro_f1, metric_scorer, per_class_report, predictive_entropy,
)
from seqpipe.evaluation.classification_gate import decide_classifier, mcnemar_exact, paired_bootstrap
from seqpipe.evaluation.classification_plots import plot_confusion_matrix, plot_metric_by_model, write_confusion_csv
from seqpipe.hyperparams import MiniRocketParams, TrainSettings
from seqpipe.models.classifiers.shape import ClassifierShape

CHANNELS, CLASSES, MIN_LENGTH, MAX_LENGTH = 4, 3, 20, 40
FAST_ROCKET = MiniRocketParams(num_kernels=840, max_dilations_per_kernel=16)


def _random_predictions(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    probabilities = rng.dirichlet(np.ones(k), n)
    # Lean the true class up a little so the scores are not all those of chance.
    probabilities[np.arange(n), labels] += 0.3
    return labels, probabilities / probabilities.sum(axis=1, keepdims=True)


# -- scores ------------------------------------------------------------------------------------

def test_scores_match_sklearn():
    labels, probabilities = _random_predictions(300, 5, seed=0)
    scores = classification_scores(labels, probabilities, calibration_bins=10)
    predicted = probabilities.argmax(axis=1)
    assert set(scores) == set(HIGHER_IS_BETTER)
    assert scores["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert scores["macro_f1"] == pytest.approx(sk.f1_score(labels, predicted, average="macro"))
    assert scores["log_loss"] == pytest.approx(sk.log_loss(labels, probabilities, labels=range(5)))
    assert 0 <= scores["ece"] <= 1 and 0 <= scores["brier"] <= 2


def test_macro_f1_leaves_out_classes_absent_from_truth_and_predictions():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.eye(6)[[0, 1, 1, 1, 2, 4]] * 0.9 + 0.1 / 6  # class 3 and 5: never true, never predicted
    predicted = probabilities.argmax(axis=1)
    assert macro_f1(labels, probabilities) == pytest.approx(sk.f1_score(labels, predicted, average="macro"))
    # Class 4 is predicted but never true: it counts, as 0.
    assert macro_f1(labels, probabilities) == pytest.approx((2 / 3 + 0.8 + 2 / 3 + 0) / 4)


def test_log_loss_clips_a_zero_probability_of_the_true_class():
    probabilities = np.array([[0.0, 1.0], [0.5, 0.5]])
    expected = (-math.log(PROBABILITY_EPSILON) - math.log(0.5)) / 2
    assert classification_scores(np.array([0, 0]), probabilities, 5)["log_loss"] == pytest.approx(expected)


def test_brier_is_the_mean_summed_squared_error_against_one_hot():
    labels = np.array([0, 1])
    probabilities = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert brier(labels, probabilities) == pytest.approx((0 + 0.25 + 0.25) / 2)
    assert brier(np.array([2]), np.array([[1.0, 0.0, 0.0]])) == pytest.approx(2.0)


def test_ece_weights_each_bins_calibration_gap_by_its_share():
    # Top probabilities 0.4 (right), 0.3 (wrong) fall in (0, 0.5]: accuracy 0.5, confidence 0.35.
    # 0.9 (right) and 0.7 (wrong) fall in (0.5, 1]: accuracy 0.5, confidence 0.8.
    probabilities = np.array([
        [0.4, 0.2, 0.2, 0.2],
        [0.3, 0.25, 0.25, 0.2],
        [0.9, 0.05, 0.03, 0.02],
        [0.7, 0.1, 0.1, 0.1],
    ])
    labels = np.array([0, 1, 0, 1])
    assert ece(labels, probabilities, calibration_bins=2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.3)
    # A top probability of exactly 0.5 belongs to the first of two bins (right-closed bins).
    assert ece(np.array([0]), np.array([[0.5, 0.5]]), 2) == pytest.approx(0.5)
    certain = np.eye(3)[[0, 1, 2]]
    assert ece(np.array([0, 1, 2]), certain, 15) == 0.0


def test_confusion_matrix_and_per_class_report_match_sklearn():
    labels, probabilities = _random_predictions(200, 4, seed=1)
    predicted = probabilities.argmax(axis=1)
    np.testing.assert_array_equal(confusion_matrix(labels, predicted, 4),
                                  sk.confusion_matrix(labels, predicted, labels=range(4)))
    report = per_class_report(labels, predicted, ["a", "b", "c", "d"])
    precision, recall, f1, support = sk.precision_recall_fscore_support(labels, predicted, labels=range(4),
                                                                         zero_division=0)
    assert list(report.columns) == ["class", "precision", "recall", "f1", "support"]
    assert list(report["class"]) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(report["precision"], precision)
    np.testing.assert_allclose(report["recall"], recall)
    np.testing.assert_allclose(report["f1"], f1)
    np.testing.assert_array_equal(report["support"], support)
    with pytest.raises(ValueError, match="must lie in"):
        confusion_matrix(labels, predicted, 3)


def test_predictive_entropy_is_zero_when_certain_and_log_k_when_uniform():
    entropy = predictive_entropy(np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]))
    np.testing.assert_allclose(entropy, [0.0, math.log(3)])


def test_leaderboard_ranks_best_first_in_each_metrics_direction_and_breaks_ties_by_name():
    rows = {
        "zeta": {"accuracy": 0.9, "log_loss": 0.3},
        "alpha": {"accuracy": 0.9, "log_loss": 0.5},
        "mid": {"accuracy": 0.7, "log_loss": 0.2},
    }
    by_accuracy = classification_leaderboard(rows, "accuracy")
    assert list(by_accuracy["model"]) == ["alpha", "zeta", "mid"]
    assert list(by_accuracy["rank"]) == [1, 2, 3]
    assert list(classification_leaderboard(rows, "log_loss")["model"]) == ["mid", "zeta", "alpha"]
    prefixed = {name: {f"val_{m}": v for m, v in scores.items()} for name, scores in rows.items()}
    assert list(classification_leaderboard(prefixed, "val_log_loss")["model"]) == ["mid", "zeta", "alpha"]
    with pytest.raises(ValueError, match="unknown classification metric"):
        classification_leaderboard(rows, "mase")
    with pytest.raises(ValueError, match="no 'brier' score"):
        classification_leaderboard(rows, "brier")


def test_plots_and_confusion_csv_are_written(tmp_path):
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    classes = ["one", "two", "three"]
    assert plot_confusion_matrix(matrix, classes, tmp_path / "cm.png", "test confusion").stat().st_size > 0
    board = classification_leaderboard({"a": {"test_macro_f1": 0.8}, "b": {"test_macro_f1": 0.6}}, "test_macro_f1")
    assert plot_metric_by_model(board, "test_macro_f1", tmp_path / "f1.png").stat().st_size > 0
    table = pd.read_csv(write_confusion_csv(matrix, classes, tmp_path / "cm.csv"))
    assert list(table.columns) == ["true", *classes]
    np.testing.assert_array_equal(table[classes].to_numpy(), matrix)


# -- the gate's paired tests -------------------------------------------------------------------

def _pairs(b: int, c: int, both: int = 3, neither: int = 2) -> tuple[np.ndarray, np.ndarray]:
    challenger = np.array([True] * b + [False] * c + [True] * both + [False] * neither)
    production = np.array([False] * b + [True] * c + [True] * both + [False] * neither)
    return challenger, production


@pytest.mark.parametrize("b, c", [(5, 1), (3, 3), (0, 4), (12, 2), (1, 0)])
def test_mcnemar_exact_matches_scipys_one_sided_binomial_test(b, c):
    test = mcnemar_exact(*_pairs(b, c))
    assert (test.name, test.challenger_only, test.production_only, test.statistic) == ("mcnemar", b, c, b - c)
    assert test.points == b + c + 5
    assert test.p_value == pytest.approx(stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue)


def test_mcnemar_without_disagreements_is_no_evidence():
    assert mcnemar_exact(*_pairs(0, 0)).p_value == 1.0


def _two_models(n: int = 200, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    def model(accuracy: float) -> np.ndarray:
        right = rng.random(n) < accuracy
        predicted = np.where(right, labels, (labels + rng.integers(1, 3, n)) % 3)
        return np.eye(3)[predicted] * 0.7 + 0.1
    return labels, model(0.9), model(0.6)


def test_paired_bootstrap_is_repeatable_and_detects_a_clearly_better_challenger():
    labels, good, poor = _two_models()
    f1 = metric_scorer("macro_f1", 15)
    first = paired_bootstrap(labels, good, poor, f1, samples=300, seed=7, higher_is_better=True)
    assert first == paired_bootstrap(labels, good, poor, f1, samples=300, seed=7, higher_is_better=True)
    assert first.name == "bootstrap" and first.samples == 300 and first.statistic > 0
    assert first.p_value < 0.01
    assert paired_bootstrap(labels, poor, good, f1, samples=300, seed=7, higher_is_better=True).p_value > 0.99
    # A lower-is-better metric reads the same way round.
    loss = paired_bootstrap(labels, good, poor, metric_scorer("log_loss", 15), 300, 7)
    assert loss.p_value < 0.01 and loss.statistic > 0
    assert loss == paired_bootstrap(labels, good, poor, lambda y, p: -np.log(p[np.arange(len(y)), y]).mean(), 300, 7,
                                    higher_is_better=False)
    with pytest.raises(ValueError, match="higher_is_better"):
        paired_bootstrap(labels, good, poor, lambda y, p: 0.0, 300, 7)


def test_decide_classifier_outcomes():
    strong = mcnemar_exact(*_pairs(12, 1))
    weak = mcnemar_exact(*_pairs(3, 2))
    first = decide_classifier("macro_f1", 0.7, None, None, margin=0.01, significance=0.05)
    assert first.promote and first.reason == "no production version yet"
    better = decide_classifier("macro_f1", 0.85, 0.80, strong, margin=0.01, significance=0.05)
    assert better.promote and better.improvement == pytest.approx(0.05) and better.test is strong
    assert not decide_classifier("macro_f1", 0.805, 0.80, strong, margin=0.01, significance=0.05).promote
    not_significant = decide_classifier("macro_f1", 0.85, 0.80, weak, margin=0.01, significance=0.05)
    assert not not_significant.promote and "not below" in not_significant.reason
    worse = decide_classifier("macro_f1", 0.75, 0.80, strong, margin=0.0, significance=0.05)
    assert not worse.promote and worse.improvement == pytest.approx(-0.05)
    tie = decide_classifier("accuracy", 0.8, 0.8, strong, margin=0.0, significance=0.05)
    assert not tie.promote
    lower_loss = decide_classifier("log_loss", 0.30, 0.40, strong, margin=0.05, significance=0.05)
    assert lower_loss.promote and lower_loss.improvement == pytest.approx(0.10)
    with pytest.raises(ValueError, match="unknown classification metric"):
        decide_classifier("mase", 1.0, 2.0, strong, 0.0, 0.05)


# -- the reference classifiers -----------------------------------------------------------------

def _sequences(n: int, seed: int) -> tuple[SequenceBatch, np.ndarray]:
    """Noisy sinusoids whose frequency and loudest channel depend on the class; variable lengths, zero-padded."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    lengths = rng.integers(MIN_LENGTH, MAX_LENGTH + 1, n)
    x = np.zeros((n, MAX_LENGTH, CHANNELS), dtype=np.float32)
    for i, (label, length) in enumerate(zip(labels, lengths)):
        t = np.arange(length)
        signal = rng.normal(0, 0.6, (length, CHANNELS))
        signal[:, label] += np.sin(2 * np.pi * t / (4 + 3 * label) + rng.uniform(0, 2 * np.pi)) * 1.5
        x[i, :length] = signal
    return SequenceBatch(x, lengths.astype(np.int64)), labels.astype(np.int64)


@pytest.fixture(scope="module")
def dataset() -> dict[str, tuple[SequenceBatch, np.ndarray]]:
    return {"train": _sequences(200, 0), "val": _sequences(60, 1), "test": _sequences(120, 2)}


@pytest.fixture(scope="module")
def fit_data(dataset) -> ClassifyFitData:
    (train, train_labels), (val, val_labels) = dataset["train"], dataset["val"]
    return ClassifyFitData(train, train_labels, val, val_labels)


SHAPE = ClassifierShape(channels=CHANNELS, classes=CLASSES, max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def rocket(fit_data) -> tuple[MiniRocketEstimator, object]:
    estimator = MiniRocketEstimator(SHAPE, FAST_ROCKET)
    return estimator, estimator.fit(fit_data, TrainSettings(seed=3))


def test_majority_predicts_training_frequencies_and_round_trips_as_json(fit_data, dataset, tmp_path):
    estimator = MajorityClassEstimator(SHAPE)
    result = estimator.fit(fit_data, TrainSettings())
    expected = np.bincount(fit_data.train_labels, minlength=CLASSES) / len(fit_data.train_labels)
    test, _ = dataset["test"]
    probabilities = estimator.predict_proba(test)
    np.testing.assert_allclose(probabilities, np.tile(expected, (len(test), 1)))
    assert result.device == "cpu" and result.epochs_run == 0 and not estimator.trainable
    assert result.best_val_loss == pytest.approx(sk.log_loss(fit_data.val_labels, estimator.predict_proba(fit_data.val),
                                                             labels=range(CLASSES)))
    estimator.save(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["arch"] == "majority"
    np.testing.assert_array_equal(MajorityClassEstimator.load(tmp_path).predict_proba(test), probabilities)


def test_minirocket_beats_the_majority_class(rocket, fit_data, dataset):
    estimator, result = rocket
    test, labels = dataset["test"]
    majority = MajorityClassEstimator(SHAPE)
    majority.fit(fit_data, TrainSettings())
    rocket_scores = classification_scores(labels, estimator.predict_proba(test), 15)
    majority_scores = classification_scores(labels, majority.predict_proba(test), 15)
    assert rocket_scores["accuracy"] > 0.8 > majority_scores["accuracy"] + 0.3
    assert rocket_scores["log_loss"] < majority_scores["log_loss"]
    assert result.best_val_loss < majority.fit(fit_data, TrainSettings()).best_val_loss
    np.testing.assert_allclose(estimator.predict_proba(test).sum(axis=1), 1.0)
    assert not estimator.trainable and estimator.requirements == ("sktime", "scikit-learn")


def test_minirocket_probabilities_are_sklearns(rocket, fit_data, dataset):
    from sklearn.linear_model import LogisticRegression

    estimator, _ = rocket
    regression = LogisticRegression(C=FAST_ROCKET.regularization, max_iter=FAST_ROCKET.max_iter)
    regression.fit(estimator.features(fit_data.train), fit_data.train_labels)
    test, _ = dataset["test"]
    np.testing.assert_allclose(estimator.predict_proba(test), regression.predict_proba(estimator.features(test)),
                               atol=1e-6)


def test_minirocket_saves_without_pickles_and_loads_identical(rocket, dataset, tmp_path):
    estimator, _ = rocket
    estimator.save(tmp_path)
    spec = json.loads((tmp_path / "model.json").read_text())
    assert spec["arch"] == "minirocket" and spec["params"]["num_kernels"] == 840 and spec["seed"] == 3
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as arrays:
        assert {"biases", "dilations", "coef", "intercept", "classes", "mean", "std"} <= set(arrays.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARRAYS_FILE, "model.json"]
    loaded = MiniRocketEstimator.load(tmp_path)
    test, _ = dataset["test"]
    np.testing.assert_array_equal(loaded.features(test), estimator.features(test))
    np.testing.assert_array_equal(loaded.predict_proba(test), estimator.predict_proba(test))


def test_minirocket_is_repeatable_for_a_seed_fast_and_leaves_numpys_global_generator_alone(rocket, fit_data, dataset):
    estimator, _ = rocket
    np.random.seed(11)
    expected_draw = np.random.random()
    np.random.seed(11)
    again = MiniRocketEstimator(SHAPE, FAST_ROCKET)
    # The module fixture's fit compiled (or loaded) numba's kernels; this one times the fit alone.
    result = again.fit(fit_data, TrainSettings(seed=3))
    assert np.random.random() == expected_draw
    assert result.seconds < 10
    test, _ = dataset["test"]
    np.testing.assert_array_equal(again.predict_proba(test), estimator.predict_proba(test))
    other = MiniRocketEstimator(SHAPE, FAST_ROCKET)
    other.fit(fit_data, TrainSettings(seed=4))
    assert not np.array_equal(other.predict_proba(test), estimator.predict_proba(test))


def test_minirocket_with_two_classes_and_a_class_absent_from_training(fit_data, dataset, tmp_path):
    keep = fit_data.train_labels != 2
    train = SequenceBatch(fit_data.train.x[keep], fit_data.train.lengths[keep])
    data = ClassifyFitData(train, fit_data.train_labels[keep], fit_data.val, fit_data.val_labels)
    estimator = MiniRocketEstimator(SHAPE, FAST_ROCKET)
    estimator.fit(data, TrainSettings(seed=0))
    test, _ = dataset["test"]
    probabilities = estimator.predict_proba(test)
    assert probabilities.shape == (len(test), CLASSES) and (probabilities[:, 2] == 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    estimator.save(tmp_path)
    np.testing.assert_array_equal(MiniRocketEstimator.load(tmp_path).predict_proba(test), probabilities)


def test_references_refuse_mismatched_inputs(fit_data, tmp_path):
    estimator = MiniRocketEstimator(SHAPE, FAST_ROCKET)
    with pytest.raises(RuntimeError, match="not fitted"):
        estimator.predict_proba(fit_data.val)
    wrong = SequenceBatch(fit_data.val.x[:, :, :2], fit_data.val.lengths)
    majority = MajorityClassEstimator(SHAPE)
    majority.fit(fit_data, TrainSettings())
    with pytest.raises(ValueError, match="expected sequences"):
        majority.predict_proba(wrong)
    majority.save(tmp_path)
    with pytest.raises(ValueError, match="not 'minirocket'"):
        MiniRocketEstimator.load(tmp_path)


def test_minirocket_resamples_sequences_longer_than_any_in_training(rocket, dataset):
    estimator, _ = rocket
    test, labels = dataset["test"]
    # Each sequence stretched to twice its length: resampling brings it back to the training length.
    stretched = np.repeat(test.x, 2, axis=1)
    probabilities = estimator.predict_proba(SequenceBatch(stretched, test.lengths * 2))
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.8
