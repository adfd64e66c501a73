"""The classifier ensemble: members of any kind (references and networks, several seeds), their probabilities averaged.

Unit tests on the keyword texts of ``test_text_models``; the pipeline test runs the real
``seqpipe run`` on a table of reviews and checks the ensemble's MLflow runs, registration
and served probabilities.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import seqpipe.estimators.neural_classifier as neural_classifier
from seqpipe.config import load_config
from seqpipe.errors import ConfigError
from seqpipe.estimators import FitOptions, build_estimator, load_estimator
from seqpipe.estimators.classifier_ensemble import greedy_weights
from seqpipe.evaluation.classification import log_loss
from seqpipe.training import seed_everything
from test_text_models import SETTINGS, SHAPE, _accuracy, _fit_data, _texts

FASTTEXT = {"embedding_dim": 16, "bigram_buckets": 1000}
PARAMS = {"members": [{"arch": "nb_linear"}, {"arch": "fasttext", "params": FASTTEXT}], "seeds": 2}
ENSEMBLE_SETTINGS = replace(SETTINGS, max_epochs=4, patience=4, num_threads=1)


def _fitted(checkpoint: Path | None = None):
    seed_everything(3, num_threads=1)
    ensemble = build_estimator("classifier_ensemble", SHAPE, PARAMS)
    result = ensemble.fit(_fit_data(1024), ENSEMBLE_SETTINGS,
                          FitOptions(name="ensemble", checkpoint=checkpoint, signature={"arch": "ensemble"}))
    return ensemble, result


@pytest.fixture(scope="module")
def fitted():
    return _fitted()


def test_members_are_every_entry_and_copy_and_the_prediction_is_their_mean_probability(fitted):
    ensemble, result = fitted
    assert [(plan.arch, plan.copy) for plan in ensemble.plans] == [
        ("nb_linear", 0), ("nb_linear", 1), ("fasttext", 0), ("fasttext", 1)]
    # Copies of a network start from seeds of their own, so they differ.
    assert len({plan.seed for plan in ensemble.plans}) == 4
    batch, labels = _texts(256, 6)
    each = [member.predict_proba(batch) for member in ensemble.members]
    assert not np.array_equal(each[2], each[3])
    probabilities = ensemble.predict_proba(batch)
    np.testing.assert_array_equal(probabilities, np.mean(each, axis=0))
    assert _accuracy(probabilities, labels) > 0.9
    # One fit result per member, in member order; the ensemble's own loss is its validation log loss.
    data = _fit_data(1024)
    assert [fit.label for fit in result.members] == [plan.label(i) for i, plan in enumerate(ensemble.plans)]
    assert result.best_val_loss == pytest.approx(log_loss(data.val_labels, ensemble.predict_proba(data.val)))
    assert ensemble.trainable and set(ensemble.requirements) == {"scikit-learn"}
    # What it fitted is what its members fitted: the regressions' coefficients and the networks' weights.
    assert ensemble.describe()["parameters"] == (2 * ensemble.members[0].describe()["coefficients"]
                                                 + 2 * ensemble.members[2].describe()["parameters"])


def test_save_load_round_trip_predicts_identically_and_the_same_seed_refits_identically(fitted, tmp_path):
    ensemble, _ = fitted
    ensemble.save(tmp_path / "ensemble")
    loaded = load_estimator(tmp_path / "ensemble")
    batch, _ = _texts(64, 8)
    np.testing.assert_array_equal(loaded.predict_proba(batch), ensemble.predict_proba(batch))
    assert sorted(p.name for p in (tmp_path / "ensemble" / "members").iterdir()) == [
        "00-nb_linear-copy0", "01-nb_linear-copy1", "02-fasttext-copy0", "03-fasttext-copy1"]
    refitted, _ = _fitted()
    np.testing.assert_array_equal(refitted.predict_proba(batch), ensemble.predict_proba(batch))


def test_an_ensemble_killed_in_a_network_member_resumes_to_the_uninterrupted_result(fitted, tmp_path, monkeypatch):
    class Killed(Exception):
        pass

    original, calls = neural_classifier.fit, []

    def dies_in_the_second_networks_second_epoch(*args, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            def on_epoch(log):
                if log.epoch == 2:
                    raise Killed
            kwargs["on_epoch"] = on_epoch
        return original(*args, **kwargs)

    checkpoint = tmp_path / "checkpoints" / "ensemble.pt"
    monkeypatch.setattr(neural_classifier, "fit", dies_in_the_second_networks_second_epoch)
    with pytest.raises(Killed):
        _fitted(checkpoint)
    monkeypatch.setattr(neural_classifier, "fit", original)
    assert calls == ["ensemble/02-fasttext-copy0", "ensemble/03-fasttext-copy1"]
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["ensemble.member-02.pt", "ensemble.member-03.pt"]
    batch, _ = _texts(64, 8)
    np.testing.assert_array_equal(_fitted(checkpoint)[0].predict_proba(batch), fitted[0].predict_proba(batch))


def test_an_unfitted_ensemble_describes_itself_without_a_size():
    seed_everything(3, num_threads=1)
    described = build_estimator("classifier_ensemble", SHAPE, PARAMS).describe()
    assert described == {"combine": "mean", "members": 4, "member_archs": "fasttext,nb_linear", "seeds": 2}


def test_a_member_fits_with_its_own_training_settings_over_the_ensembles():
    seed_everything(3, num_threads=1)
    params = {"members": [{"arch": "fasttext", "params": FASTTEXT, "training": {"max_epochs": 1}},
                          {"arch": "fasttext", "params": FASTTEXT}]}
    ensemble = build_estimator("classifier_ensemble", SHAPE, params)
    result = ensemble.fit(_fit_data(256, 64), ENSEMBLE_SETTINGS)
    short, plain = result.members
    assert (short.result.epochs_run, plain.result.epochs_run) == (1, ENSEMBLE_SETTINGS.max_epochs)
    assert short.params["training.max_epochs"] == 1 and "training.max_epochs" not in plain.params
    with pytest.raises(ValueError, match=r"member 00-fasttext-copy0: training settings \['device'\] cannot be set"):
        build_estimator("classifier_ensemble", SHAPE, {"members": [{"arch": "fasttext", "training": {"device": "cpu"}}]})


def test_a_member_that_cannot_read_the_data_is_refused_naming_it():
    numeric = replace(SHAPE, vocabulary=0, channels=3)
    with pytest.raises(ValueError, match=r"classifier_ensemble: member 00-nb_linear-copy0: nb_linear classifies texts"):
        build_estimator("classifier_ensemble", numeric, PARAMS)


def test_greedy_weights_start_from_the_best_member_and_never_add_a_useless_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    sharp = np.full((400, 3), 0.05)
    sharp[np.arange(400), labels] = 0.9
    sharp[:40] = sharp[40:80]  # wrong on a tenth of the texts
    flat = np.full((400, 3), 1 / 3)
    noisy = rng.dirichlet(np.ones(3), 400)
    members = [flat, noisy, sharp]
    single = [log_loss(labels, p) for p in members]
    one_round = greedy_weights(members, labels, rounds=1)
    np.testing.assert_array_equal(one_round, np.eye(3)[int(np.argmin(single))])
    weights = greedy_weights(members, labels, rounds=10)
    assert weights.sum() == pytest.approx(1.0) and weights[1] == 0.0 and weights[2] > 0.5
    assert log_loss(labels, sum(w * p for w, p in zip(weights, members))) <= min(single)


def test_a_greedy_ensemble_weighs_its_members_on_validation_and_keeps_the_weights(tmp_path):
    seed_everything(3, num_threads=1)
    params = {"members": [{"arch": "majority"}, {"arch": "nb_linear"}], "weighting": "greedy", "greedy_rounds": 5}
    ensemble = build_estimator("classifier_ensemble", SHAPE, params)
    data = _fit_data(512)
    result = ensemble.fit(data, ENSEMBLE_SETTINGS)
    # The majority class adds nothing to a model that reads the keyword.
    assert ensemble.weights.tolist() == [0.0, 1.0]
    assert [fit.params["weight"] for fit in result.members] == [0.0, 1.0]
    assert ensemble.describe()["combine"] == "greedy weighted mean"
    batch, labels = _texts(128, 8)
    np.testing.assert_array_equal(ensemble.predict_proba(batch), ensemble.members[1].predict_proba(batch))
    assert result.best_val_loss == pytest.approx(log_loss(data.val_labels, ensemble.members[1].predict_proba(data.val)))
    ensemble.save(tmp_path / "greedy")
    loaded = load_estimator(tmp_path / "greedy")
    assert loaded.weights.tolist() == [0.0, 1.0]
    np.testing.assert_array_equal(loaded.predict_proba(batch), ensemble.predict_proba(batch))
    empty = replace(data, val=replace(data.val, x=data.val.x[:0], lengths=data.val.lengths[:0]),
                    val_labels=data.val_labels[:0])
    with pytest.raises(ValueError, match=r"weighting greedy chooses its weights on the validation split, which is empty"):
        build_estimator("classifier_ensemble", SHAPE, params).fit(empty, ENSEMBLE_SETTINGS)


# -- through the pipeline ------------------------------------------------------------------------

def test_member_specs_are_checked_at_load_naming_the_member(tmp_path):
    from test_classify_pipeline import write_classify_config
    from test_classify_text import SOURCE

    for members, message in [
        ([{"arch": "lstm"}], r"members\[0\]\.arch: 'lstm' is not a classifier an ensemble can hold"),
        ([{"arch": "classifier_ensemble"}], r"members\[0\]\.arch: 'classifier_ensemble' is not a classifier"),
        ([{"arch": "fasttext", "params": {"buckets": 5}}], r"members\[0\]\.params\.buckets: Extra inputs"),
        ([{"arch": "nb_linear", "parms": {}}], r"members\[0\]: a member is \{arch, params, training\}"),
        ([{"arch": "fasttext", "training": {"seed": 1}}], r"members\[0\]\.training: \['seed'\] cannot be set per model"),
        ([{"arch": "fasttext", "training": {"patience": 0}}],
         r"members\[0\]\.training\.patience: Input should be greater than 0"),
    ]:
        write_classify_config(tmp_path, SOURCE, {"combo": {"arch": "classifier_ensemble",
                                                           "params": {"members": members}}})
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "conf")


@pytest.mark.slow
def test_the_pipeline_trains_logs_registers_and_predicts_with_an_ensemble_as_one_model(tmp_path):
    from conftest import run_cli
    from test_classify_pipeline import _tracking, write_classify_config
    from test_classify_text import SOURCE, make_texts

    (tmp_path / "input").mkdir()
    make_texts(per_class=100, seed=0).to_csv(tmp_path / "input" / "reviews.csv", index=False)
    models = {"majority": {"arch": "majority", "params": {}},
              "ensemble": {"arch": "classifier_ensemble",
                           "params": {"members": [{"arch": "nb_linear"}, {"arch": "fasttext", "params": FASTTEXT}]}}}
    write_classify_config(tmp_path, SOURCE, models, classify={
        "text": {"tokenizer": "word", "vocab_size": 500, "min_frequency": 1, "max_tokens": 32}})
    result = run_cli("run", "--conf", str(tmp_path / "conf"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    board = pd.read_csv(tmp_path / "data" / "evaluation" / "leaderboard.csv")
    assert board.iloc[0]["model"] == "ensemble" and board.iloc[0]["test_accuracy"] >= 0.9
    client, _ = _tracking(tmp_path)
    production = client.get_model_version_by_alias("tiny-classifier", "production")
    assert production.tags["seqpipe.model"] == "ensemble"
    # One training run for the ensemble, a child run per member under it.
    runs = {run.info.run_name: run
            for run in client.search_runs([client.get_experiment_by_name("classify-tests").experiment_id])}
    ensemble_run = runs["ensemble"]
    children = {name: run for name, run in runs.items()
                if run.data.tags.get("mlflow.parentRunId") == ensemble_run.info.run_id}
    assert sorted(children) == ["ensemble/00-nb_linear-copy0", "ensemble/01-fasttext-copy0"]
    assert children["ensemble/01-fasttext-copy0"].data.params["model.arch"] == "fasttext"
    assert [children[name].data.params["model.weight"] for name in sorted(children)] == ["0.5", "0.5"]
    assert ensemble_run.data.params["model.members"] == "2"
    assert not list((tmp_path / "data").glob("checkpoints/*.pt"))

    # The served prediction is the mean of the saved members' probabilities.
    fresh = make_texts(per_class=10, seed=7)
    fresh.drop(columns="verdict").to_csv(tmp_path / "new.csv", index=False)
    predicted = run_cli("predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "labels.csv"),
                        "--conf", str(tmp_path / "conf"), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    labels = pd.read_csv(tmp_path / "labels.csv").set_index("sequence_id")
    truth = fresh.set_index("review")["verdict"]
    assert (labels.loc[truth.index, "label"] == truth).mean() >= 0.9
    saved = yaml.safe_load((tmp_path / "data" / "models" / "ensemble" / "model.json").read_text())
    assert [member["arch"] for member in saved["members"]] == ["nb_linear", "fasttext"]
