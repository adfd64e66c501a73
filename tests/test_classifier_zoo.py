"""The classifier zoo: every sequence classifier network, on CPU in seconds.

Each maps a padded, masked batch to ``(batch, classes)`` logits whatever padding follows
the sequences (and at lengths beyond the training set's), learns a planted pattern far
beyond the majority class through the estimator and the one loop, survives a save and
load unchanged, trains bit-identically from a seed, resumes a killed fit exactly, and
carries its class weights in its state dict.
"""

import functools
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from seqpipe.estimators.classification import ClassifyFitData, SequenceBatch
from seqpipe.estimators.interface import FitOptions
from seqpipe.estimators.neural_classifier import NeuralClassifierEstimator
from seqpipe.hyperparams import (
    CLASSIFICATION_ARCHS, CLASSIFIER_MEMBER_ARCHS, PARAMS, TEXT_CLASSIFIER_ARCHS, TEXT_MEMBER_ARCHS,
    DeepEnsembleClassifierParams,
)
from seqpipe.models.classifiers import CLASSIFIERS, ClassifierShape, build_classifier
from seqpipe.models.classifiers.ensemble import is_member_architecture
from seqpipe.training import TrainSettings, seed_everything

CHANNELS, CLASSES, MIN_LENGTH, MAX_LENGTH = 2, 3, 5, 30
SHAPE = ClassifierShape(channels=CHANNELS, classes=CLASSES, max_length=MAX_LENGTH)
GRU = {"hidden_size": 8, "num_layers": 1, "dropout": 0.0, "bidirectional": False}
# Small sizes so each model trains in about a second on one thread; (params, epochs).
ZOO = {
    "rnn_classifier": ({"hidden_size": 16, "num_layers": 1, "dropout": 0.0}, 6),
    "lstm_classifier": ({"hidden_size": 16, "num_layers": 1, "dropout": 0.0}, 6),
    "gru_classifier": ({"hidden_size": 16, "num_layers": 2, "dropout": 0.0}, 6),
    "tcn_classifier": ({"channels": 16, "num_blocks": 3, "dropout": 0.0}, 6),
    "transformer_classifier": ({"d_model": 16, "num_heads": 2, "num_layers": 1, "feedforward": 32,
                                "dropout": 0.0}, 6),
    "dbn_classifier": ({"hidden_sizes": [32, 16], "frames": 8, "pretrain_epochs": 2}, 8),
    "deep_ensemble_classifier": ({"members": 3, "member_arch": "gru_classifier", "member_params": GRU}, 6),
}
SETTINGS = TrainSettings(batch_size=32, learning_rate=1e-2, progress=False, device="cpu")


class Killed(Exception):
    pass


def _sequences(n: int, seed: int, max_length: int = MAX_LENGTH) -> tuple[SequenceBatch, np.ndarray]:
    """Noisy 2-channel sequences of 5 to 30 steps whose class is planted in the order of their steps.

    Channel 0 steps up halfway (class 0), steps down (class 1) or stays flat while channel 1
    is lifted (class 2). Classes 0 and 1 hold the same values in another order, so a model
    blind to order stays near 65% accuracy; the majority class is 40%.
    """
    rng = np.random.default_rng(seed)
    labels = rng.choice(CLASSES, size=n, p=[0.4, 0.35, 0.25])
    lengths = rng.integers(MIN_LENGTH, max_length + 1, n)
    steps = np.arange(max_length)[None, :]
    second_half = (2 * steps >= lengths[:, None]).astype(np.float32)
    x = rng.normal(0, 1.0, (n, max_length, CHANNELS)).astype(np.float32)
    x[:, :, 0] += np.select([labels[:, None] == 0, labels[:, None] == 1], [2 * second_half - 1, 1 - 2 * second_half])
    x[:, :, 1] += labels[:, None] == 2
    x[steps >= lengths[:, None]] = 0.0
    return SequenceBatch(x, lengths.astype(np.int64)), labels.astype(np.int64)


def _fit_data(n_train: int = 384, n_val: int = 128, class_weights: np.ndarray | None = None) -> ClassifyFitData:
    (train, train_labels), (val, val_labels) = _sequences(n_train, 1), _sequences(n_val, 2)
    return ClassifyFitData(train, train_labels, val, val_labels, class_weights)


def _build(arch: str, seed: int = 0) -> NeuralClassifierEstimator:
    seed_everything(seed, num_threads=1)
    return NeuralClassifierEstimator.build(arch, SHAPE, ZOO[arch][0])


@functools.cache
def _trained(arch: str) -> NeuralClassifierEstimator:
    """One training run per architecture, shared by the tests that only read the result."""
    estimator = _build(arch)
    epochs = ZOO[arch][1]
    estimator.fit(_fit_data(), replace(SETTINGS, max_epochs=epochs, patience=epochs),
                  FitOptions(name=arch))
    return estimator


def _masked(batch: SequenceBatch) -> torch.Tensor:
    return torch.from_numpy(batch.masked())


def _losses(result) -> list[tuple[int, float, float, float]]:
    return [(log.epoch, log.train_loss, log.val_loss, log.learning_rate) for log in result.history]


def test_the_catalog_covers_every_classifier_arch_and_the_zoo_covers_the_catalog():
    # The text classifiers' zoo is tests/test_text_models.py.
    assert set(ZOO) == set(CLASSIFIERS) - TEXT_CLASSIFIER_ARCHS
    assert set(CLASSIFIERS) <= CLASSIFICATION_ARCHS
    assert all(PARAMS[arch] is CLASSIFIERS[arch].Params for arch in CLASSIFIERS)
    # The config's check of an ensemble's members and the model's own agree.
    assert CLASSIFIER_MEMBER_ARCHS == {arch for arch, cls in CLASSIFIERS.items()
                                       if is_member_architecture(cls)} - TEXT_MEMBER_ARCHS


def test_importing_the_classifiers_pulls_in_no_pandas_mlflow_or_sklearn():
    code = ("import sys, seqpipe.models.classifiers; "
            "print(sorted(m for m in ('pandas', 'mlflow', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_default_params_map_a_padded_batch_to_class_logits(arch):
    torch.manual_seed(0)
    model = build_classifier(arch, SHAPE, {}).eval()
    batch, _ = _sequences(5, 3)
    # Longer than any training sequence: every classifier must still read it.
    long, _ = _sequences(4, 4, max_length=3 * MAX_LENGTH)
    with torch.no_grad():
        assert model(_masked(batch)).shape == (5, CLASSES)
        logits = model(_masked(long))
    assert logits.shape == (4, CLASSES) and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_padding_never_changes_the_logits(arch):
    model = _trained(arch).network.eval()
    batch, _ = _sequences(16, 5)
    x = _masked(batch)
    # More padding than the longest training sequence, its features garbage: the mask alone says it is padding.
    extra = torch.randn(len(x), 2 * MAX_LENGTH, CHANNELS + 1, generator=torch.Generator().manual_seed(0))
    extra[..., -1] = 0.0
    padded = torch.cat([x, extra], dim=1)
    garbled = x.clone()
    garbled[..., :-1] += (garbled[..., -1:] == 0) * 7.0
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(model(padded), logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(model(garbled), logits, rtol=0, atol=1e-5)
        # The same sequence alone, unpadded, as in a batch of its own.
        alone = model(x[:1, : int(batch.lengths[0])])
    torch.testing.assert_close(alone, logits[:1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_learns_the_planted_pattern_far_beyond_the_majority_class(arch):
    estimator = _trained(arch)
    val, labels = _sequences(256, 6)
    probabilities = estimator.predict_proba(val)
    assert probabilities.shape == (256, CLASSES) and probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-9)
    accuracy = float((probabilities.argmax(1) == labels).mean())
    majority = float(np.bincount(labels).max() / len(labels))
    print(f"{arch}: accuracy {accuracy:.3f}, majority class {majority:.3f}")
    # Above what a model blind to the steps' order could reach (about 65%).
    assert accuracy > 0.85 and majority < 0.5


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_save_load_round_trip_predicts_identically(arch, tmp_path):
    estimator = _trained(arch)
    estimator.save(tmp_path / arch)
    spec = json.loads((tmp_path / arch / "model.json").read_text())
    assert spec["arch"] == arch
    assert spec["shape"] == {"channels": CHANNELS, "classes": CLASSES, "max_length": MAX_LENGTH, "vocabulary": 0}
    loaded = NeuralClassifierEstimator.load(tmp_path / arch)
    assert loaded.arch == arch and loaded.params == estimator.params
    batch, _ = _sequences(40, 7)
    assert np.array_equal(loaded.predict_proba(batch), estimator.predict_proba(batch))


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_same_seed_trains_bit_identical_weights(arch):
    def train_once(seed: int) -> dict[str, torch.Tensor]:
        estimator = _build(arch, seed)
        estimator.fit(_fit_data(96, 32), replace(SETTINGS, max_epochs=1))
        return estimator.network.state_dict()

    first, second, other = train_once(3), train_once(3), train_once(4)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert not all(torch.equal(first[name], other[name]) for name in first)


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_a_killed_fit_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(arch, tmp_path):
    data = _fit_data(96, 32, class_weights=np.array([1.0, 1.5, 2.0]))
    settings = replace(SETTINGS, max_epochs=4, patience=4)
    signature = {"arch": arch}

    uninterrupted = _build(arch)
    expected_history = _losses(uninterrupted.fit(data, settings))
    expected = uninterrupted.network.state_dict()

    def dies_after_epoch_two(log):
        if log.epoch == 2:
            raise Killed

    checkpoint = tmp_path / f"{arch}.pt"
    with pytest.raises(Killed):
        _build(arch).fit(data, settings, FitOptions(checkpoint=checkpoint, signature=signature,
                                                    on_epoch=dies_after_epoch_two))
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2
    epochs = []
    resumed = _build(arch)
    result = resumed.fit(data, settings, FitOptions(checkpoint=checkpoint, signature=signature,
                                                    on_epoch=lambda log: epochs.append(log.epoch)))
    assert epochs == [3, 4] and result.epochs_run == 4
    # The losses of the epochs after the kill too: the best weights may be from before it.
    assert _losses(result) == expected_history
    state = resumed.network.state_dict()
    assert state.keys() == expected.keys()
    for name in expected:
        assert torch.equal(state[name], expected[name]), name


def test_class_weights_are_saved_in_the_state_dict_and_weigh_the_loss(tmp_path):
    weights = np.array([0.5, 1.0, 4.0])
    estimator = _build("gru_classifier")
    estimator.fit(_fit_data(96, 32, class_weights=weights), replace(SETTINGS, max_epochs=1))
    network = estimator.network
    assert torch.equal(network.state_dict()["class_weights"], torch.tensor(weights, dtype=torch.float32))
    estimator.save(tmp_path / "gru")
    assert torch.equal(NeuralClassifierEstimator.load(tmp_path / "gru").network.class_weights, network.class_weights)

    batch, labels = _sequences(64, 8)
    x, y = _masked(batch), torch.from_numpy(labels.astype(np.float32))
    with torch.no_grad():
        weighted = network.loss(x, y)
        per_sequence = torch.nn.functional.cross_entropy(network(x), y.long(), reduction="none")
        w = network.class_weights[y.long()]
        torch.testing.assert_close(weighted, (w * per_sequence).sum() / w.sum())
        network.set_class_weights(torch.ones(CLASSES))
        assert not torch.isclose(network.loss(x, y), weighted)
        torch.testing.assert_close(network.loss(x, y), per_sequence.mean())
    with pytest.raises(ValueError, match="class weights of shape"):
        network.set_class_weights(torch.ones(CLASSES + 1))


def test_the_deep_ensemble_predicts_the_mean_of_its_members_probabilities():
    estimator = _trained("deep_ensemble_classifier")
    network = estimator.network
    batch, _ = _sequences(32, 9)
    with torch.no_grad():
        members = network.member_probabilities(_masked(batch))
        alone = torch.stack([torch.softmax(m(_masked(batch)), -1) for m in network.members], dim=1)
    assert members.shape == (32, 3, CLASSES)
    torch.testing.assert_close(members, alone)
    np.testing.assert_allclose(estimator.predict_proba(batch), members.mean(1).double().numpy(), rtol=0, atol=1e-6)
    # Members start from seeds of their own, and their trained predictions still differ.
    assert not torch.allclose(members[:, 0], members[:, 1])


def test_the_deep_ensemble_checks_its_members():
    with pytest.raises(ValueError, match="cannot be a member"):
        build_classifier("deep_ensemble_classifier", SHAPE, {"member_arch": "deep_ensemble_classifier"})
    with pytest.raises(ValueError, match="cannot be a member"):
        build_classifier("deep_ensemble_classifier", SHAPE, {"member_arch": "gru"})
    with pytest.raises(ValueError, match="member_params: gru_classifier: unknown params"):
        build_classifier("deep_ensemble_classifier", SHAPE, {"member_params": {"hidden": 3}})

    from pydantic import ValidationError

    from seqpipe.config import PARAMS_SCHEMAS

    schema = PARAMS_SCHEMAS[DeepEnsembleClassifierParams]
    schema.model_validate({"member_arch": "tcn_classifier", "member_params": {"channels": 8}})
    with pytest.raises(ValidationError, match="not a classifier network"):
        schema.model_validate({"member_arch": "gru"})
    with pytest.raises(ValidationError, match="hidden_size"):
        schema.model_validate({"member_params": {"hidden_size": "big"}})
