"""The text classifiers: every text network and the TF-IDF + linear reference, on CPU in seconds.

Texts are token ids whose class is planted by a keyword: class c holds token 10 + c
somewhere among random filler words. Each network maps a padded batch of ids to
``(batch, classes)`` logits whatever padding follows the texts, learns the keyword far
beyond the majority class through the estimator and the one loop, survives a save and
load unchanged, trains bit-identically from a seed and resumes a killed fit exactly. The
TF-IDF reference learns it too, weighs its n-grams as scikit-learn's vectorizer does, and
saves without a pickle; so does NB-LR, whose logits are those of regressions fitted on
the naive Bayes ratio-weighted features it documents.
"""

import functools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from seqpipe.estimators.classification import ClassifyFitData, SequenceBatch
from seqpipe.estimators.interface import FitOptions
from seqpipe.estimators.neural_classifier import NeuralClassifierEstimator
from seqpipe.estimators.ngrams import batch_grams, text_grams
from seqpipe.estimators.text_references import NBLinearEstimator, TfidfLinearEstimator
from seqpipe.evaluation.classification import log_loss
from seqpipe.hyperparams import (
    CLASSIFICATION_ARCHS,
    PARAMS,
    NBLinearParams,
    TEXT_CLASSIFIER_ARCHS,
    TEXT_MEMBER_ARCHS,
    TextDeepEnsembleParams,
    TfidfLinearParams,
)
from seqpipe.models.classifiers import CLASSIFIERS, ClassifierShape, build_classifier
from seqpipe.models.classifiers.ensemble import DeepEnsembleClassifier, is_member_architecture
from seqpipe.models.classifiers.text import (
    EMBEDDING_INIT_BOUND,
    PAD_ID,
    UNK_ID,
    TextClassifier,
    TokenEmbedding,
    bigram_buckets,
)
from seqpipe.training import TrainSettings, seed_everything

VOCABULARY, CLASSES, MIN_LENGTH, MAX_LENGTH = 200, 3, 3, 40
KEYWORD = 10  # class c holds token KEYWORD + c
FILLER = KEYWORD + CLASSES  # filler words are drawn from [FILLER, VOCABULARY)
SHAPE = ClassifierShape(channels=1, classes=CLASSES, max_length=MAX_LENGTH, vocabulary=VOCABULARY)
CNN = {"embedding_dim": 16, "widths": [2, 3, 5], "maps": 8, "dropout": 0.2}
RECURRENT = {"embedding_dim": 16, "hidden_size": 16, "dropout": 0.0}
# Small sizes so each model trains in about a second on one thread; (params, epochs). The
# widest filter (5) is longer than the shortest texts (3).
ZOO = {
    "text_rnn": (RECURRENT, 6),
    "text_lstm": (RECURRENT, 6),
    "text_gru": ({**RECURRENT, "bidirectional": False}, 6),
    "text_cnn": (CNN, 6),
    "text_transformer": ({"embedding_dim": 16, "num_heads": 2, "num_layers": 1, "feedforward": 32,
                          "dropout": 0.0}, 8),
    "fasttext": ({"embedding_dim": 16, "bigram_buckets": 1000}, 8),
    "text_deep_ensemble": ({"members": 3, "member_arch": "text_cnn", "member_params": CNN}, 6),
}
SETTINGS = TrainSettings(batch_size=32, learning_rate=1e-2, progress=False, device="cpu")
TRAIN_TEXTS = 384
# fastText (a mean over a text's words and bigrams, the keyword one among up to 80) and the
# Elman RNN memorise 384 texts by their filler words before they find the keyword: they see more.
MORE_TRAIN_TEXTS = {"fasttext": 1536, "text_rnn": 1024}


class Killed(Exception):
    pass


def _texts(n: int, seed: int, max_length: int = MAX_LENGTH) -> tuple[SequenceBatch, np.ndarray]:
    """Texts of 3 to 40 filler words (a few unknown) holding their class's keyword once; majority class 40%."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(CLASSES, size=n, p=[0.4, 0.35, 0.25])
    lengths = rng.integers(MIN_LENGTH, max_length + 1, n)
    ids = rng.integers(FILLER, VOCABULARY, (n, max_length))
    ids[rng.random((n, max_length)) < 0.05] = UNK_ID
    ids[np.arange(n), (rng.random(n) * lengths).astype(np.int64)] = KEYWORD + labels
    ids[np.arange(max_length)[None, :] >= lengths[:, None]] = PAD_ID
    return SequenceBatch(ids[..., None].astype(np.float32), lengths.astype(np.int64)), labels.astype(np.int64)


def _fit_data(n_train: int = TRAIN_TEXTS, n_val: int = 128, class_weights: np.ndarray | None = None) -> ClassifyFitData:
    (train, train_labels), (val, val_labels) = _texts(n_train, 1), _texts(n_val, 2)
    return ClassifyFitData(train, train_labels, val, val_labels, class_weights)


def _build(arch: str, seed: int = 0) -> NeuralClassifierEstimator:
    seed_everything(seed, num_threads=1)
    return NeuralClassifierEstimator.build(arch, SHAPE, ZOO[arch][0])


@functools.cache
def _trained(arch: str) -> NeuralClassifierEstimator:
    """One training run per architecture, shared by the tests that only read the result."""
    estimator = _build(arch)
    epochs = ZOO[arch][1]
    estimator.fit(_fit_data(MORE_TRAIN_TEXTS.get(arch, TRAIN_TEXTS)), replace(SETTINGS, max_epochs=epochs,
                                                                              patience=epochs), FitOptions(name=arch))
    return estimator


@functools.cache
def _tfidf() -> TfidfLinearEstimator:
    estimator = TfidfLinearEstimator(SHAPE, {})
    estimator.fit(_fit_data(), SETTINGS)
    return estimator


def _masked(batch: SequenceBatch) -> torch.Tensor:
    return torch.from_numpy(batch.masked())


def _losses(result) -> list[tuple[int, float, float, float]]:
    return [(log.epoch, log.train_loss, log.val_loss, log.learning_rate) for log in result.history]


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(1) == labels).mean())


def test_the_catalog_holds_every_text_arch_with_its_params():
    text = {arch for arch, cls in CLASSIFIERS.items() if issubclass(cls, TextClassifier)}
    assert set(ZOO) == TEXT_CLASSIFIER_ARCHS == text | {"text_deep_ensemble"}
    assert TEXT_MEMBER_ARCHS == {arch for arch in text if is_member_architecture(CLASSIFIERS[arch])}
    assert TEXT_CLASSIFIER_ARCHS | {"tfidf_linear"} <= CLASSIFICATION_ARCHS
    assert all(PARAMS[arch] is CLASSIFIERS[arch].Params for arch in ZOO)
    assert PARAMS["tfidf_linear"] is TfidfLinearParams and TfidfLinearEstimator.arch == "tfidf_linear"
    assert PARAMS["nb_linear"] is NBLinearParams and NBLinearEstimator.arch == "nb_linear"
    assert {"nb_linear", "classifier_ensemble"} <= CLASSIFICATION_ARCHS


def test_token_embeddings_start_small_and_padding_at_zero():
    torch.manual_seed(0)
    table = TokenEmbedding(5000, 64).table.weight.detach()
    assert torch.equal(table[PAD_ID], torch.zeros(64))
    assert table.abs().max() <= EMBEDDING_INIT_BOUND
    # Uniform in +-bound: its standard deviation is bound / sqrt(3).
    assert table[1:].std().item() == pytest.approx(EMBEDDING_INIT_BOUND / 3**0.5, rel=0.02)


def test_a_shape_saved_before_texts_existed_loads_as_numeric_frames():
    shape = ClassifierShape(**{"channels": 13, "classes": 10, "max_length": 80})
    assert shape.vocabulary == 0 and not shape.is_text and shape.inputs == 14
    assert SHAPE.is_text and SHAPE.inputs == 2


def test_text_and_numeric_architectures_refuse_each_others_sequences():
    numeric = ClassifierShape(channels=1, classes=CLASSES, max_length=MAX_LENGTH)
    with pytest.raises(ValueError, match="classifies texts"):
        build_classifier("text_cnn", numeric, {})
    with pytest.raises(ValueError, match="reads numeric frames"):
        build_classifier("gru_classifier", SHAPE, {})
    with pytest.raises(ValueError, match="classifies texts"):
        TfidfLinearEstimator(numeric, {})


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_default_params_map_a_padded_batch_of_token_ids_to_class_logits(arch):
    torch.manual_seed(0)
    model = build_classifier(arch, SHAPE, {}).eval()
    batch, _ = _texts(5, 3)
    # Longer than any training text, and texts of one and two tokens, shorter than the widest filter.
    long, _ = _texts(4, 4, max_length=3 * MAX_LENGTH)
    short = SequenceBatch(np.array([[[20.0], [0.0]], [[30.0], [31.0]]], dtype=np.float32), np.array([1, 2]))
    with torch.no_grad():
        assert model(_masked(batch)).shape == (5, CLASSES)
        for texts in (long, short):
            logits = model(_masked(texts))
            assert logits.shape == (len(texts), CLASSES) and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_padding_never_changes_the_logits(arch):
    model = _trained(arch).network.eval()
    batch, _ = _texts(16, 5)
    x = _masked(batch)
    # More padding than the longest training text, holding any ids at all: the mask alone says it is padding.
    extra = torch.zeros(len(x), 2 * MAX_LENGTH, 2)
    extra[..., 0] = torch.randint(0, 3 * VOCABULARY, extra.shape[:2], generator=torch.Generator().manual_seed(0))
    padded = torch.cat([x, extra], dim=1)
    garbled = x.clone()
    garbled[..., 0] += (garbled[..., -1] == 0) * (KEYWORD + 2)
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(model(padded), logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(model(garbled), logits, rtol=0, atol=1e-5)
        # The same text alone, unpadded, as in a batch of its own.
        alone = model(x[:1, : int(batch.lengths[0])])
    torch.testing.assert_close(alone, logits[:1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["text_cnn", "fasttext"])
def test_an_id_outside_the_vocabulary_reads_as_unknown(arch):
    model = _trained(arch).network.eval()
    x = _masked(_texts(8, 10)[0])
    outside, unknown = x.clone(), x.clone()
    outside[:, 0, 0], unknown[:, 0, 0] = float(VOCABULARY + 7), float(UNK_ID)
    with torch.no_grad():
        torch.testing.assert_close(model(outside), model(unknown), rtol=0, atol=0)


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_learns_the_keyword_far_beyond_the_majority_class(arch):
    estimator = _trained(arch)
    val, labels = _texts(256, 6)
    probabilities = estimator.predict_proba(val)
    assert probabilities.shape == (256, CLASSES) and probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-9)
    accuracy, majority = _accuracy(probabilities, labels), float(np.bincount(labels).max() / len(labels))
    assert accuracy > 0.85 and majority < 0.5, (accuracy, majority)


@pytest.mark.parametrize("arch", sorted(ZOO))
def test_save_load_round_trip_predicts_identically(arch, tmp_path):
    estimator = _trained(arch)
    estimator.save(tmp_path / arch)
    spec = json.loads((tmp_path / arch / "model.json").read_text())
    assert spec["arch"] == arch
    assert spec["shape"] == {"channels": 1, "classes": CLASSES, "max_length": MAX_LENGTH, "vocabulary": VOCABULARY}
    loaded = NeuralClassifierEstimator.load(tmp_path / arch)
    assert loaded.arch == arch and loaded.params == estimator.params and loaded.shape == SHAPE
    batch, _ = _texts(40, 7)
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
    settings = replace(SETTINGS, max_epochs=3, patience=3)
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
    assert epochs == [3] and result.epochs_run == 3
    assert _losses(result) == expected_history
    state = resumed.network.state_dict()
    assert state.keys() == expected.keys()
    for name in expected:
        assert torch.equal(state[name], expected[name]), name


def test_the_text_ensemble_predicts_the_mean_of_its_members_probabilities():
    estimator = _trained("text_deep_ensemble")
    network = estimator.network
    assert isinstance(network, DeepEnsembleClassifier)
    batch, _ = _texts(32, 9)
    with torch.no_grad():
        members = network.member_probabilities(_masked(batch))
        alone = torch.stack([torch.softmax(m(_masked(batch)), -1) for m in network.members], dim=1)
    assert members.shape == (32, 3, CLASSES)
    torch.testing.assert_close(members, alone)
    np.testing.assert_allclose(estimator.predict_proba(batch), members.mean(1).double().numpy(), rtol=0, atol=1e-6)
    # Members start from seeds of their own, and their trained predictions still differ.
    assert not torch.allclose(members[:, 0], members[:, 1])


def test_each_ensemble_holds_only_members_of_its_own_kind():
    numeric = ClassifierShape(channels=1, classes=CLASSES, max_length=MAX_LENGTH)
    for member in ("gru_classifier", "text_deep_ensemble", "tfidf_linear"):
        with pytest.raises(ValueError, match="text_deep_ensemble: member_arch .* cannot be a member"):
            build_classifier("text_deep_ensemble", SHAPE, {"member_arch": member})
    with pytest.raises(ValueError, match="deep_ensemble_classifier: member_arch 'text_gru' cannot be a member"):
        build_classifier("deep_ensemble_classifier", numeric, {"member_arch": "text_gru"})
    with pytest.raises(ValueError, match="member_params: text_cnn: unknown params"):
        build_classifier("text_deep_ensemble", SHAPE, {"member_params": {"filters": 3}})
    model = build_classifier("text_deep_ensemble", SHAPE, {"members": 2, "member_arch": "fasttext",
                                                           "member_params": {"bigram_buckets": 0}})
    assert [m.arch for m in model.members] == ["fasttext", "fasttext"] and model.members[0].bigrams is None

    from pydantic import ValidationError

    from seqpipe.config import PARAMS_SCHEMAS

    schema = PARAMS_SCHEMAS[TextDeepEnsembleParams]
    schema.model_validate({"member_arch": "text_transformer", "member_params": {"num_heads": 2}})
    with pytest.raises(ValidationError, match="not a text classifier network"):
        schema.model_validate({"member_arch": "gru_classifier"})
    with pytest.raises(ValidationError, match="maps"):
        schema.model_validate({"member_params": {"maps": "many"}})


def test_bigram_hashing_is_deterministic_within_its_buckets_and_reads_word_order():
    first, second = torch.tensor([5, 17, 199, 17]), torch.tensor([17, 5, 3, 5])
    buckets = bigram_buckets(first, second, 1000)
    assert torch.equal(buckets, bigram_buckets(first, second, 1000))
    assert buckets.dtype == torch.int64 and bool(((buckets >= 0) & (buckets < 1000)).all())
    assert buckets[0] != buckets[1] and buckets[1] == buckets[3]
    # With bigrams, the same words in another order make another text; without, the same one.
    torch.manual_seed(0)
    forward = torch.tensor([[[20.0, 1.0], [30.0, 1.0], [40.0, 1.0]]])
    backward = forward.flip(1)
    with torch.no_grad():
        for buckets, differs in ((1000, True), (0, False)):
            model = build_classifier("fasttext", SHAPE, {"embedding_dim": 8, "bigram_buckets": buckets}).eval()
            torch.nn.init.normal_(model.head.weight)  # fastText starts its output layer at zero
            assert differs != torch.allclose(model(forward), model(backward), rtol=0, atol=1e-6)


def test_text_grams_are_words_then_bigrams_of_the_real_tokens():
    assert text_grams(np.array([12, 40, 7]), 2) == ["12", "40", "7", "12_40", "40_7"]
    assert text_grams(np.array([12]), 3) == ["12"]
    batch = SequenceBatch(np.array([[[12.0], [40.0], [0.0]], [[3.0], [0.0], [0.0]]], dtype=np.float32),
                          np.array([2, 1]))
    assert batch_grams(batch, 2) == [["12", "40", "12_40"], ["3"]]


def test_tfidf_weighs_the_grams_as_scikit_learns_vectorizer_does():
    from sklearn.feature_extraction.text import TfidfVectorizer

    estimator = _tfidf()
    batch, _ = _texts(64, 11)
    vectorizer = TfidfVectorizer(analyzer=lambda grams: grams, sublinear_tf=True, min_df=1)
    vectorizer.fit(batch_grams(_fit_data().train, 2))
    assert vectorizer.get_feature_names_out().tolist() == estimator._state.grams
    np.testing.assert_allclose(estimator.features(batch).toarray(),
                               vectorizer.transform(batch_grams(batch, 2)).toarray(), rtol=1e-12, atol=1e-12)


def test_tfidf_linear_learns_the_keyword_and_reports_its_validation_log_loss():
    data = _fit_data()
    estimator = TfidfLinearEstimator(SHAPE, {})
    result = estimator.fit(data, SETTINGS)
    assert result.best_val_loss == pytest.approx(log_loss(data.val_labels, estimator.predict_proba(data.val)))
    assert result.epochs_run == 0 and not estimator.trainable
    val, labels = _texts(256, 6)
    probabilities = estimator.predict_proba(val)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-12)
    assert _accuracy(probabilities, labels) > 0.9
    assert estimator.describe()["grams"] == len(estimator._state.grams) > VOCABULARY - FILLER


def test_tfidf_linear_saves_without_a_pickle_and_loads_identically(tmp_path):
    estimator = _tfidf()
    estimator.save(tmp_path / "tfidf")
    spec = json.loads((tmp_path / "tfidf" / "model.json").read_text())
    assert spec["arch"] == "tfidf_linear" and spec["shape"]["vocabulary"] == VOCABULARY
    assert spec["params"] == {"ngram_max": 2, "min_df": 1, "words": "tokens", "char_ngram_min": 2,
                              "char_ngram_max": 0, "sublinear_tf": True, "loss": "logistic",
                              "regularization": 10.0, "max_iter": 1000}
    grams = json.loads((tmp_path / "tfidf" / spec["grams"]).read_text())
    with np.load(tmp_path / "tfidf" / spec["arrays"], allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
        assert arrays["coef"].shape == (CLASSES, len(grams))
    loaded = TfidfLinearEstimator.load(tmp_path / "tfidf")
    batch, _ = _texts(40, 7)
    assert np.array_equal(loaded.predict_proba(batch), estimator.predict_proba(batch))


def test_tfidf_linear_fits_deterministically_and_weighs_classes_by_sample():
    data = _fit_data(192, 32)
    first, second = TfidfLinearEstimator(SHAPE, {}), TfidfLinearEstimator(SHAPE, {})
    first.fit(data, SETTINGS)
    second.fit(data, SETTINGS)
    assert first._state.grams == second._state.grams
    for name, array in first._state.arrays().items():
        assert np.array_equal(array, second._state.arrays()[name]), name
    weighted = TfidfLinearEstimator(SHAPE, {"ngram_max": 1, "min_df": 2})
    weighted.fit(replace(data, class_weights=np.array([1.0, 1.0, 5.0])), SETTINGS)
    assert all("_" not in gram for gram in weighted._state.grams)
    val, _ = _texts(128, 12)
    plain = TfidfLinearEstimator(SHAPE, {"ngram_max": 1, "min_df": 2})
    plain.fit(data, SETTINGS)
    # Weighing class 2 up moves probability towards it.
    assert weighted.predict_proba(val)[:, 2].mean() > plain.predict_proba(val)[:, 2].mean()


def _binary_texts(n: int, seed: int) -> tuple[SequenceBatch, np.ndarray]:
    """The keyword texts of the first two classes only."""
    batch, labels = _texts(n * 2, seed)
    keep = np.flatnonzero(labels < 2)[:n]
    return SequenceBatch(batch.x[keep], batch.lengths[keep]), labels[keep]


@pytest.mark.parametrize("classes", [2, CLASSES])
def test_tfidf_svm_predicts_as_linearsvc_with_the_validation_log_loss_minimising_temperature(classes):
    from sklearn.svm import LinearSVC

    shape = replace(SHAPE, classes=classes)
    data = _fit_data(192, 96)
    # Two classes: the third class's texts join the second.
    data = replace(data, train_labels=np.minimum(data.train_labels, classes - 1),
                   val_labels=np.minimum(data.val_labels, classes - 1))
    estimator = TfidfLinearEstimator(shape, {"loss": "squared_hinge", "regularization": 1.0})
    result = estimator.fit(data, SETTINGS)
    svm = LinearSVC(C=1.0).fit(estimator.features(data.train), data.train_labels)
    test, _ = _texts(128, 13)
    probabilities = estimator.predict_proba(test)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-12)
    # The temperature scales the SVM's scores: the predicted class is the SVM's own.
    assert np.array_equal(probabilities.argmax(1), svm.predict(estimator.features(test)))
    temperature = estimator._state.temperature
    assert temperature != 1.0 and result.best_val_loss == pytest.approx(
        log_loss(data.val_labels, estimator.predict_proba(data.val)))

    def val_loss_at(t: float) -> float:
        return log_loss(data.val_labels, estimator.probabilities_of(estimator.logits(data.val) * t / temperature))

    assert val_loss_at(temperature) < min(val_loss_at(temperature * 1.2), val_loss_at(temperature / 1.2))


def test_tfidf_svm_learns_the_keyword_saves_its_temperature_and_needs_a_validation_split(tmp_path):
    data = _fit_data()
    estimator = TfidfLinearEstimator(SHAPE, {"loss": "squared_hinge", "regularization": 1.0})
    estimator.fit(data, SETTINGS)
    test, labels = _texts(256, 6)
    assert _accuracy(estimator.predict_proba(test), labels) > 0.9
    estimator.save(tmp_path / "svm")
    loaded = TfidfLinearEstimator.load(tmp_path / "svm")
    assert loaded._state.temperature == estimator._state.temperature
    assert np.array_equal(loaded.predict_proba(test), estimator.predict_proba(test))
    empty = replace(data, val=SequenceBatch(data.val.x[:0], data.val.lengths[:0]), val_labels=data.val_labels[:0])
    with pytest.raises(ValueError, match="loss squared_hinge .* validation split, which is empty"):
        TfidfLinearEstimator(SHAPE, {"loss": "squared_hinge"}).fit(empty, SETTINGS)
    with pytest.raises(ValueError, match="param 'loss'"):
        TfidfLinearEstimator(SHAPE, {"loss": "hinge"})


@pytest.mark.parametrize("classes", [2, CLASSES])
def test_nb_linear_is_logistic_regressions_on_naive_bayes_weighted_presence(classes):
    from scipy.sparse import diags
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    (train, train_labels), (val, val_labels) = (_binary_texts(384, 1), _binary_texts(128, 2)) if classes == 2 else \
        (_texts(384, 1), _texts(128, 2))
    data = ClassifyFitData(train, train_labels, val, val_labels)
    estimator = NBLinearEstimator(SHAPE, {})
    result = estimator.fit(data, SETTINGS)
    assert result.best_val_loss == pytest.approx(log_loss(val_labels, estimator.predict_proba(val)))
    assert result.epochs_run == 0 and not estimator.trainable

    # The same features and regressions written out with scikit-learn's own vectorizer.
    vectorizer = CountVectorizer(analyzer=lambda grams: grams, binary=True)
    presence = vectorizer.fit_transform(batch_grams(train, 2)).astype(np.float64)
    assert vectorizer.get_feature_names_out().tolist() == estimator._state.grams
    targets = [1] if classes == 2 else list(range(classes))
    logits = []
    test, test_labels = _texts(256, 6) if classes > 2 else _binary_texts(256, 6)
    for target in targets:
        positive = train_labels == target
        p = 1.0 + np.asarray(presence[positive].sum(0)).ravel()
        q = 1.0 + np.asarray(presence[~positive].sum(0)).ravel()
        ratio = np.log(p / p.sum()) - np.log(q / q.sum())
        regression = LogisticRegression(C=1.0, max_iter=1000).fit(presence @ diags(ratio), positive.astype(int))
        logits.append(regression.decision_function(vectorizer.transform(batch_grams(test, 2)) @ diags(ratio)))
    logits = np.stack(logits, axis=1)
    if classes == 2:
        expected = np.zeros((len(test), CLASSES))
        expected[:, 1] = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        expected[:, 0] = 1.0 - expected[:, 1]
    else:
        odds = 1.0 / (1.0 + np.exp(-logits))
        expected = odds / odds.sum(axis=1, keepdims=True)
    probabilities = estimator.predict_proba(test)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-12)
    # It learned the keyword far beyond the majority class (40%).
    assert _accuracy(probabilities, test_labels) > 0.9


def test_nb_linear_saves_without_a_pickle_loads_identically_and_refits_identically(tmp_path):
    data = _fit_data()
    estimator = NBLinearEstimator(SHAPE, {"smoothing": 0.5})
    estimator.fit(data, SETTINGS)
    estimator.save(tmp_path / "nb")
    spec = json.loads((tmp_path / "nb" / "model.json").read_text())
    assert spec["arch"] == "nb_linear" and spec["params"]["smoothing"] == 0.5
    with np.load(tmp_path / "nb" / spec["arrays"], allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
        assert arrays["ratios"].shape == arrays["coef"].shape == (CLASSES, len(estimator._state.grams))
    loaded = NBLinearEstimator.load(tmp_path / "nb")
    batch, _ = _texts(40, 7)
    assert np.array_equal(loaded.predict_proba(batch), estimator.predict_proba(batch))
    again = NBLinearEstimator(SHAPE, {"smoothing": 0.5})
    again.fit(data, SETTINGS)
    for name, array in estimator._state.arrays().items():
        assert np.array_equal(array, again._state.arrays()[name]), name


def test_the_ngram_references_refuse_numeric_frames_and_a_single_class():
    numeric = ClassifierShape(channels=3, classes=2, max_length=10)
    for cls in (TfidfLinearEstimator, NBLinearEstimator):
        with pytest.raises(ValueError, match=f"{cls.arch} classifies texts"):
            cls(numeric, {})
    data = _fit_data(64, 16)
    one_class = replace(data, train_labels=np.zeros_like(data.train_labels))
    with pytest.raises(ValueError, match=r"nb_linear's logistic regression needs at least two classes"):
        NBLinearEstimator(SHAPE, {}).fit(one_class, SETTINGS)


# -- words and characters of the text ------------------------------------------------------------

# A review is good when it holds a word ending in "ful", bad when one ending in "less". The
# test reviews' cue words never occur in training: a tokenizer learned there maps them to
# [UNK], while their characters still carry the suffix.
SUFFIX_CUES = {
    "train": {"good": ("wonderful", "joyful", "graceful", "powerful", "masterful", "soulful"),
              "bad": ("hopeless", "pointless", "witless", "aimless", "lifeless", "toothless")},
    "test": {"good": ("delightful", "colorful", "tasteful", "playful"),
             "bad": ("charmless", "humorless", "tasteless", "spineless")},
}
SUFFIX_FILLER = "the movie plot actor scene film story cast music screen camera script role ending".split()
CHARS = {"words": "text", "char_ngram_max": 5}


def _suffix_texts(n: int, seed: int, cues: dict[str, tuple[str, ...]]) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for label in labels:
        words = [str(w) for w in rng.choice(SUFFIX_FILLER, size=int(rng.integers(3, 10)))]
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cues[("bad", "good")[label]])))
        texts.append(" ".join(words).capitalize() + ".")
    return texts, labels.astype(np.int64)


@functools.cache
def _suffix_data() -> tuple[ClassifyFitData, SequenceBatch, np.ndarray, ClassifierShape]:
    from seqpipe.config import TextConfig
    from seqpipe.data.text_prepare import TextTokenizer

    (train, train_labels), (val, val_labels) = (_suffix_texts(300, 1, SUFFIX_CUES["train"]),
                                                _suffix_texts(80, 2, SUFFIX_CUES["train"]))
    test, test_labels = _suffix_texts(200, 3, SUFFIX_CUES["test"])
    tokenizer = TextTokenizer.train(train, TextConfig(min_frequency=1))
    shape = ClassifierShape(channels=1, classes=2, max_length=MAX_LENGTH, vocabulary=tokenizer.vocabulary_size)
    data = ClassifyFitData(tokenizer.batch(train), train_labels, tokenizer.batch(val), val_labels)
    return data, tokenizer.batch(test), test_labels, shape


def test_word_and_character_grams_are_scikit_learns_analyzers():
    from sklearn.feature_extraction.text import CountVectorizer

    from seqpipe.estimators.ngrams import char_grams, word_grams

    texts = ["The film's a delight, really: 10/10!", "a b  cd\tdéjà-vu", "I"]
    words = CountVectorizer(ngram_range=(1, 2)).build_analyzer()
    chars = CountVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    for text in texts:
        assert word_grams(text, 2) == ["w:" + gram for gram in words(text)]
        assert char_grams(text, 2, 5) == ["c:" + gram for gram in chars(text)]


def test_tfidf_of_words_and_characters_is_a_union_of_scikit_learns_vectorizers():
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    data, test, _, shape = _suffix_data()
    estimator = TfidfLinearEstimator(shape, {**CHARS, "char_ngram_min": 3})
    estimator.fit(data, SETTINGS)
    vectorizers = {"w:": TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                   "c:": TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)}
    for vectorizer in vectorizers.values():
        vectorizer.fit(data.train.texts)
    union = hstack([v.transform(test.texts) for v in vectorizers.values()]).toarray()
    offsets = {"w:": 0, "c:": len(vectorizers["w:"].vocabulary_)}
    columns = [offsets[g[:2]] + vectorizers[g[:2]].vocabulary_[g[2:]] for g in estimator._state.grams]
    assert len(columns) == union.shape[1]
    np.testing.assert_allclose(estimator.features(test).toarray(), union[:, columns], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [TfidfLinearEstimator, NBLinearEstimator], ids=["tfidf_linear", "nb_linear"])
def test_character_grams_classify_words_the_tokenizer_never_saw(cls, tmp_path):
    data, test, labels, shape = _suffix_data()
    tokens, chars = cls(shape, {}), cls(shape, CHARS)
    tokens.fit(data, SETTINGS)
    chars.fit(data, SETTINGS)
    # Every test cue word is [UNK] to the tokenizer: the token model is left with the filler.
    assert _accuracy(tokens.predict_proba(test), labels) < 0.7
    assert _accuracy(chars.predict_proba(test), labels) > 0.95
    chars.save(tmp_path / "chars")
    assert np.array_equal(cls.load(tmp_path / "chars").predict_proba(test), chars.predict_proba(test))


def test_a_model_that_reads_characters_refuses_a_batch_without_them():
    data, test, _, shape = _suffix_data()
    estimator = TfidfLinearEstimator(shape, CHARS)
    estimator.fit(data, SETTINGS)
    with pytest.raises(ValueError, match=r"tfidf_linear with words: text and char_ngram_max 5 reads each text's "
                                         r"characters, which this batch does not carry"):
        estimator.predict_proba(replace(test, texts=None))


def test_a_character_range_that_ends_before_it_starts_is_refused():
    from pydantic import ValidationError

    from seqpipe.config import PARAMS_SCHEMAS

    with pytest.raises(ValueError, match="char_ngram_max 3 is below char_ngram_min 4"):
        TfidfLinearEstimator(SHAPE, {"char_ngram_min": 4, "char_ngram_max": 3})
    with pytest.raises(ValidationError, match="char_ngram_max 3 is below char_ngram_min 4"):
        PARAMS_SCHEMAS[NBLinearParams].model_validate({"char_ngram_min": 4, "char_ngram_max": 3})
    assert TfidfLinearParams(char_ngram_min=4).char_ngram_max == 0  # no characters: the minimum is unused
