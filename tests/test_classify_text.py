"""Text classification through the same pipeline: a labelled table of texts to a served classifier.

The texts carry a planted rule (a review is ``good`` when it holds one of a few words of
praise, ``bad`` when it holds one of blame), buried in filler words, so a trained model
must beat the majority class; the run is the real ``seqpipe run``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import invoke_served, mlflow_model_server, run_cli
from test_classify_pipeline import _tracking, write_classify_config

pytestmark = pytest.mark.slow

FILLER = ("the movie plot actor scene film story cast music screen camera script role ending "
          "director minute hour time people world").split()
CUES = {"good": ("wonderful", "brilliant", "moving", "superb"), "bad": ("dull", "tedious", "clumsy", "awful")}


def make_texts(per_class: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for label, cues in CUES.items():
        for i in range(per_class):
            words = list(rng.choice(FILLER, size=int(rng.integers(4, 14))))
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cues)))
            rows.append({"review": f"{label}-{seed}-{i:03d}", "words": " ".join(words).capitalize() + ".",
                         "verdict": label})
    return pd.DataFrame(rows)


SOURCE = {"kind": "csv", "path": "input/reviews.csv",
          "columns": {"sequence_id": "review", "text": "words", "label": "verdict"}}
MODELS = {
    "majority": {"arch": "majority", "params": {}},
    "tfidf": {"arch": "tfidf_linear", "params": {}},
    "svm": {"arch": "tfidf_linear", "params": {"loss": "squared_hinge", "regularization": 1.0}},
    # Reads each text's words and characters, which every batch of the pipeline carries.
    "chars": {"arch": "tfidf_linear", "params": {"words": "text", "char_ngram_max": 4}},
    # fastText learns at its own rate, over the pipeline's 0.01.
    "fasttext": {"arch": "fasttext", "params": {"embedding_dim": 16, "bigram_buckets": 1000},
                 "training": {"learning_rate": 0.05}},
    "cnn": {"arch": "text_cnn", "params": {"embedding_dim": 16, "widths": [2, 3], "maps": 8}},
    "gru": {"arch": "text_gru", "params": {"embedding_dim": 16, "hidden_size": 16}},
}


def test_a_text_classifier_is_trained_registered_and_served(tmp_path: Path):
    (tmp_path / "input").mkdir()
    make_texts(per_class=100, seed=0).to_csv(tmp_path / "input" / "reviews.csv", index=False)
    write_classify_config(tmp_path, SOURCE, MODELS, classify={
        "text": {"tokenizer": "word", "vocab_size": 500, "min_frequency": 1, "max_tokens": 32}})
    result = run_cli("run", "--conf", str(tmp_path / "conf"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    board = pd.read_csv(tmp_path / "data" / "evaluation" / "leaderboard.csv")
    assert set(board["model"]) == set(MODELS)
    champion = board.iloc[0]
    assert champion["model"] != "majority"
    assert champion["test_accuracy"] >= 0.9  # two balanced classes: the majority class scores a half

    client, uri = _tracking(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("classify-tests").experiment_id])
    rates = {run.info.run_name: run.data.params.get("training.learning_rate") for run in runs}
    assert (rates["fasttext"], rates["cnn"]) == ("0.05", "0.01")
    production = client.get_model_version_by_alias("tiny-classifier", "production")
    assert production.tags["seqpipe.model"] == champion["model"]

    fresh = make_texts(per_class=10, seed=7)
    fresh.drop(columns="verdict").to_csv(tmp_path / "new.csv", index=False)
    predicted = run_cli("predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "labels.csv"),
                        "--conf", str(tmp_path / "conf"), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    labels = pd.read_csv(tmp_path / "labels.csv").set_index("sequence_id")
    truth = fresh.set_index("review")["verdict"]
    assert (labels.loc[truth.index, "label"] == truth).mean() >= 0.9
    np.testing.assert_allclose(labels[["p_bad", "p_good"]].sum(axis=1), 1.0, atol=1e-6)

    served_input = fresh.drop(columns="verdict").rename(columns={"review": "sequence_id", "words": "text"})
    with mlflow_model_server("models:/tiny-classifier@production", uri, tmp_path) as url:
        served = invoke_served(url, served_input).set_index("sequence_id")
    np.testing.assert_allclose(served.loc[truth.index, ["p_bad", "p_good"]].to_numpy(),
                               labels.loc[truth.index, ["p_bad", "p_good"]].to_numpy(), atol=1e-9)

    # An empty text and a table without the text column are refused, naming them; nothing is written.
    empty = fresh.drop(columns="verdict").assign(words=lambda f: f["words"].where(f.index != 3, "   "))
    empty.to_csv(tmp_path / "empty.csv", index=False)
    refused = run_cli("predict", "--input", str(tmp_path / "empty.csv"), "--output", str(tmp_path / "bad.csv"),
                      "--conf", str(tmp_path / "conf"), cwd=tmp_path)
    assert refused.returncode == 6 and fresh["review"][3] in refused.stderr, refused.stderr[-2000:]
    fresh.drop(columns=["verdict", "words"]).to_csv(tmp_path / "no_text.csv", index=False)
    refused = run_cli("predict", "--input", str(tmp_path / "no_text.csv"), "--output", str(tmp_path / "bad.csv"),
                      "--conf", str(tmp_path / "conf"), cwd=tmp_path)
    assert refused.returncode == 6 and "text" in refused.stderr, refused.stderr[-2000:]
    assert not (tmp_path / "bad.csv").exists()
