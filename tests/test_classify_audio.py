"""Raw audio through the classify pipeline: WAV files and a label table in, a served classifier of WAV paths out.

The fixture (``tests/fixtures/speech``) is real speech: espeak-ng saying "zero" to "four"
in 6 voices at 2 speeds. ``seqpipe run`` (Prefect, GX, MLflow) computes MFCC frames,
trains, ranks on validation and registers the champion with its frame extractor;
``seqpipe predict`` then classifies held-back files by path, computing the same
features. The last tests check, in-process, that neither the scaler, the training
arrays nor the champion choice can see the test split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import yaml

from conftest import REPO, run_cli
from test_classify_pipeline import write_classify_config

SPEECH = REPO / "tests" / "fixtures" / "speech"
WORDS = ("four", "one", "three", "two", "zero")  # sorted: the class order
PER_WORD = 12
# labels.csv names files relative to the WAV folder (source.labels: "file relative to path").
AUDIO_SOURCE = {"kind": "audio", "path": "input/speech/wav", "labels": "input/speech/labels.csv"}
MODELS = {
    "majority": {"arch": "majority", "params": {}},
    "minirocket": {"arch": "minirocket", "params": {"num_kernels": 840}},
    "gru": {"arch": "gru_classifier", "params": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0}},
}
REGISTERED = "audio-classifier"
# 12 files a word: 3 to test, 2 to validation, 7 to training.
SPLIT = {"test_share": 0.25, "validation_share": 0.25, "seed": 0}
TEST_PER_WORD = 3
# Five balanced classes: the majority class scores exactly 1/5 on test.
CHAMPION_MIN_TEST_ACCURACY = 0.6


def _tracking(root: Path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri), uri


def _wav(root: Path, sequence_id: str) -> Path:
    return root / "input" / "speech" / "wav" / f"{sequence_id}.wav"


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> tuple[Path, object]:
    """One real ``seqpipe run`` on the speech fixture; the project root and the finished process."""
    root = tmp_path_factory.mktemp("audio")
    shutil.copytree(SPEECH, root / "input" / "speech", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    write_classify_config(
        root, AUDIO_SOURCE, MODELS,
        classify={"split": SPLIT, "validation": {"min_per_class": 3, "min_length": 2}},
        training={"max_epochs": 25, "batch_size": 16, "patience": 8, "learning_rate": 0.01, "num_threads": 1,
                  "seed": 7, "progress": False},
        tracking={"experiment": "audio-tests", "registered_model": REGISTERED, "system_metrics": False},
    )
    return root, run_cli("run", "--conf", str(root / "conf"), cwd=root)


def _production_config(root: Path) -> tuple[dict, dict]:
    """The production version's pyfunc model config (MLmodel: flavors.python_function.config), and its tags."""
    import mlflow

    from seqpipe.tracking.store import mlflow_uris

    client, _ = _tracking(root)
    production = client.get_model_version_by_alias(REGISTERED, "production")
    with mlflow_uris(client):
        folder = Path(mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}/{production.version}",
                                                          dst_path=str(root / "downloaded")))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    return mlmodel["flavors"]["python_function"]["config"], {**production.tags, "version": production.version,
                                                                   "signature": mlmodel.get("signature", {})}


def _prepared(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "data" / "prepared" / "sequences.parquet")


@pytest.mark.slow
def test_raw_audio_trains_registers_and_classifies_held_back_files(audio_run):
    import librosa

    from seqpipe.data.audio import EXTRACTOR_VERSION

    root, result = audio_run
    assert result.returncode == 0, result.stderr[-3000:]

    board = pd.read_csv(root / "data" / "evaluation" / "leaderboard.csv")
    print("\n" + board[["model", "val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1"]].to_string())
    assert set(board["model"]) == set(MODELS)
    assert list(board["val_macro_f1"]) == sorted(board["val_macro_f1"], reverse=True)
    majority = board.set_index("model").loc["majority"]
    champion = board.iloc[0]
    assert majority["test_accuracy"] == pytest.approx(1 / len(WORDS))
    # Trained on some speakers' and speeds' files, it labels held-back files of the same words.
    assert champion["model"] != "majority"
    assert champion["test_accuracy"] >= CHAMPION_MIN_TEST_ACCURACY

    # The production version records the extractor it was trained with, and reads WAV paths.
    model_config, tags = _production_config(root)
    assert tags["seqpipe.model"] == champion["model"] and str(tags["version"]) == "1"
    assert model_config["classes"] == list(WORDS)
    inputs = model_config["inputs"]
    assert inputs["kind"] == "audio"
    assert inputs["channels"] == [f"mfcc_{i:02d}" for i in range(13)]
    extractor = inputs["extractor"]
    assert {k: extractor[k] for k in ("kind", "sample_rate", "n_mfcc", "n_fft", "hop_length", "trim_db")} == {
        "kind": "mfcc", "sample_rate": 8000, "n_mfcc": 13, "n_fft": 256, "hop_length": 128, "trim_db": 30.0}
    assert extractor["librosa"] == librosa.__version__ and extractor["version"] == EXTRACTOR_VERSION
    assert "path" in str(tags["signature"].get("inputs"))

    # The held-back test files, named by path: one label each, as evaluation labelled them.
    prepared = _prepared(root)
    test_ids = sorted(prepared.loc[prepared["split"] == "test", "sequence_id"].unique())
    assert len(test_ids) == TEST_PER_WORD * len(WORDS)
    pd.DataFrame({"path": [str(_wav(root, i)) for i in test_ids]}).to_csv(root / "files.csv", index=False)
    predicted = run_cli("predict", "--input", str(root / "files.csv"), "--output", str(root / "labels.csv"),
                        "--conf", str(root / "conf"), cwd=root)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    labels = pd.read_csv(root / "labels.csv")
    assert len(labels) == len(test_ids)
    assert sorted(labels["sequence_id"]) == sorted(str(_wav(root, i)) for i in test_ids)
    probabilities = [f"p_{w}" for w in WORDS]
    assert set(probabilities) <= set(labels.columns)
    np.testing.assert_allclose(labels[probabilities].sum(axis=1), 1.0, atol=1e-6)
    labels.index = [Path(p).stem for p in labels["sequence_id"]]
    evaluation = pd.read_parquet(root / "data" / "evaluation" / "predictions.parquet")
    evaluation = evaluation[evaluation["model"] == champion["model"]].set_index("sequence_id").loc[test_ids]
    assert list(labels.loc[test_ids, "label"]) == list(evaluation["predicted"])
    np.testing.assert_allclose(labels.loc[test_ids, probabilities].to_numpy(), evaluation[probabilities].to_numpy(),
                               atol=1e-5)
    assert (labels.loc[test_ids, "label"] == evaluation["label"]).mean() == pytest.approx(champion["test_accuracy"])

    # A file that is no audio: refused by `seqpipe predict` with exit code 6, naming it; nothing written.
    good = str(_wav(root, test_ids[0]))
    text = root / "bad.wav"
    text.write_text("file,label\nthis is no audio\n")
    pd.DataFrame({"path": [good, str(text)]}).to_csv(root / "bad_input.csv", index=False)
    refused = run_cli("predict", "--input", str(root / "bad_input.csv"), "--output", str(root / "bad_out.csv"),
                      "--conf", str(root / "conf"), cwd=root)
    assert refused.returncode == 6, refused.stderr[-3000:]
    assert f"{text}: not a readable audio file" in refused.stderr, refused.stderr[-3000:]
    assert good not in refused.stderr
    assert not (root / "bad_out.csv").exists()


@pytest.mark.slow
def test_an_empty_or_missing_recording_is_refused_naming_it(audio_run):
    """The same predict step in-process (a CLI start costs seconds): the error the CLI exits 6 with, naming the file."""
    from seqpipe.config import load_config
    from seqpipe.errors import PredictionError
    from seqpipe.tasks.classify.steps import predict

    root, result = audio_run
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = load_config(root / "conf")
    good = str(_wav(root, "one_en-us_s125"))
    empty = root / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 8000, subtype="PCM_16")
    assert soundfile.info(empty).frames == 0
    missing = root / "missing.wav"
    not_finite = root / "not_finite.wav"  # a float WAV can hold NaN, which librosa refuses without naming the file
    soundfile.write(not_finite, np.array([0.1, np.nan, -0.1] * 800, dtype=np.float32), 8000, subtype="FLOAT")
    for bad, reason in ((empty, "the audio file holds no samples"), (missing, "audio file not found"),
                        (not_finite, "the audio file holds non-finite samples")):
        listing = root / f"{bad.stem}.csv"
        pd.DataFrame({"path": [good, str(bad)]}).to_csv(listing, index=False)
        output = root / f"{bad.stem}_labels.csv"
        with pytest.raises(PredictionError) as refused:
            predict(cfg, "production", listing, output)
        assert refused.value.exit_code == 6
        assert f"{bad}: {reason}" in str(refused.value) and good not in str(refused.value)
        assert not output.exists()
    # A row without a path is refused as such, not looked up as a file named "nan".
    pd.DataFrame({"path": [good, None]}).to_csv(root / "blank.csv", index=False)
    with pytest.raises(PredictionError, match=r"input rows \[1\] have no 'path'"):
        predict(cfg, "production", root / "blank.csv", root / "blank_labels.csv")
    assert not (root / "blank_labels.csv").exists()
    # The good file alone is classified: the refusals above are the bad files'.
    pd.DataFrame({"path": [good]}).to_csv(root / "good.csv", index=False)
    assert list(predict(cfg, "production", root / "good.csv", root / "good_labels.csv")["sequence_id"]) == [good]


@pytest.mark.slow
def test_prediction_computes_the_frames_training_saw(audio_run):
    """The recorded extractor, rebuilt as serving rebuilds it, gives each training file's prepared frames exactly."""
    from seqpipe.data.audio import FrameExtractor

    root, result = audio_run
    assert result.returncode == 0, result.stderr[-3000:]
    model_config, _ = _production_config(root)
    extractor = FrameExtractor.from_dict(model_config["inputs"]["extractor"])
    prepared = _prepared(root)
    channels = model_config["inputs"]["channels"]
    train = prepared[prepared["split"] == "train"]
    assert train["sequence_id"].nunique() == (PER_WORD - TEST_PER_WORD - 2) * len(WORDS)
    for sequence_id, rows in train.groupby("sequence_id"):
        recorded = rows.sort_values("step")[channels].to_numpy(np.float64)
        np.testing.assert_array_equal(extractor.frames(_wav(root, sequence_id)), recorded, err_msg=sequence_id)
    # The comparison can tell one recording from another (two voices whose first frames coincide).
    first, second = sorted(train["sequence_id"].unique())[:2]
    other = prepared[prepared["sequence_id"] == second].sort_values("step")[channels].to_numpy(np.float64)
    ours = extractor.frames(_wav(root, first))
    assert ours.shape != other.shape or not np.array_equal(ours, other)


# -- leakage: nothing about the test split reaches training or the champion choice ---------------

@pytest.fixture(scope="module")
def speech_frame() -> pd.DataFrame:
    from seqpipe.config import SequenceSourceConfig
    from seqpipe.data.sequences import read_sequence_source

    source = SequenceSourceConfig(kind="audio", path=str(SPEECH / "wav"), labels=str(SPEECH / "labels.csv"))
    frame, _ = read_sequence_source(source, REPO)
    return frame


def _altered(frame: pd.DataFrame, prepared, split: str) -> pd.DataFrame:
    """``frame`` with every channel value of ``split``'s sequences replaced by large noise."""
    from seqpipe.data.sequences import channel_columns

    chosen = frame["sequence_id"].isin(prepared.ids_of(split)).to_numpy()
    changed = frame.copy()
    channels = channel_columns(frame)
    rng = np.random.default_rng(3)
    changed.loc[chosen, channels] = rng.normal(500.0, 80.0, (int(chosen.sum()), len(channels)))
    return changed


def test_test_sequences_values_reach_neither_the_scaler_nor_the_training_arrays(speech_frame):
    from seqpipe.config import SequenceSplitConfig
    from seqpipe.data.sequence_prepare import prepare_sequences

    split = SequenceSplitConfig(**SPLIT)
    before = prepare_sequences(speech_frame, split, "none")
    after = prepare_sequences(_altered(speech_frame, before, "test"), split, "none")

    np.testing.assert_array_equal(after.sequence_splits, before.sequence_splits)
    np.testing.assert_array_equal(after.scaler.mean, before.scaler.mean)
    np.testing.assert_array_equal(after.scaler.std, before.scaler.std)
    assert after.max_length == before.max_length
    fit_before, fit_after = before.fit_data(), after.fit_data()
    for name in ("train", "val"):
        np.testing.assert_array_equal(getattr(fit_after, name).x, getattr(fit_before, name).x)
        np.testing.assert_array_equal(getattr(fit_after, name).lengths, getattr(fit_before, name).lengths)
        np.testing.assert_array_equal(getattr(fit_after, f"{name}_labels"), getattr(fit_before, f"{name}_labels"))
    # The change did land on the test split ...
    assert not np.array_equal(after.test_batch()[0].x, before.test_batch()[0].x)
    # ... and the same change to training sequences does move the scaler: the checks above can fail.
    moved = prepare_sequences(_altered(speech_frame, before, "train"), split, "none")
    assert not np.allclose(moved.scaler.mean, before.scaler.mean)


def test_the_champion_is_chosen_on_validation_only():
    from seqpipe.evaluation.classification import HIGHER_IS_BETTER
    from seqpipe.tasks.classify.steps import METRICS, _ranked

    rng = np.random.default_rng(0)
    names = [f"m{i}" for i in range(6)]
    board = pd.DataFrame({"model": names, "arch": "x",
                          **{f"val_{m}": rng.uniform(0.1, 0.9, len(names)) for m in METRICS},
                          **{f"test_{m}": rng.uniform(0.1, 0.9, len(names)) for m in METRICS},
                          "test_entropy": rng.uniform(0.0, 1.6, len(names))})
    board.loc[[1, 4], "val_macro_f1"] = 0.5  # a tie on validation: broken by name, never by test
    for metric in METRICS:
        order = list(_ranked(board, metric)["model"])
        values = board.set_index("model").loc[order, f"val_{metric}"].to_numpy()
        expected = np.sort(values)[::-1] if HIGHER_IS_BETTER[metric] else np.sort(values)
        np.testing.assert_array_equal(values, expected)
        test_columns = [c for c in board.columns if c.startswith("test_")]
        # Test scores that agree with the order, that contradict it (hugely, either sign), and shuffled ones.
        position = board["model"].map({name: i for i, name in enumerate(order)}).to_numpy(np.float64)
        trials = [{c: position * scale for c in test_columns} for scale in (1e6, -1e6)]
        trials += [{c: rng.permutation(board[c].to_numpy()) for c in test_columns} for _ in range(3)]
        for trial, columns in enumerate(trials):
            assert list(_ranked(board.assign(**columns), metric)["model"]) == order, (metric, trial)
        # The validation column does decide: reversing it reverses the order (no ties in it but the planted one).
        if metric != "macro_f1":
            flipped = board.assign(**{f"val_{metric}": -board[f"val_{metric}"]})
            assert list(_ranked(flipped, metric)["model"]) == order[::-1], metric
    tied = [m for m in _ranked(board, "macro_f1")["model"] if m in ("m1", "m4")]
    assert tied == ["m1", "m4"]
