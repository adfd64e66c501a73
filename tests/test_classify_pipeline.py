"""Sequence classification through the same pipeline: one Prefect flow run from a labelled CSV to a served model.

The data has a planted pattern (each class is a sine of its own frequency on channel
``a`` and a level on ``b``), so a trained classifier must beat the majority class; the
run is the real ``seqpipe run`` (Prefect, GX, MLflow), then ``seqpipe predict`` and
``mlflow models serve`` answer with the promoted classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, invoke_served, mlflow_model_server, run_cli, tree_digest

pytestmark = pytest.mark.slow

CLASSES = ("low", "mid", "high")
FREQUENCIES = {"low": 0.05, "mid": 0.15, "high": 0.3}


def make_sequences(per_class: int, seed: int, prefix: str = "u") -> pd.DataFrame:
    """Labelled two-channel sequences of 8 to 30 steps, in the long layout a user would export."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, label in enumerate(CLASSES):
        for i in range(per_class):
            length = int(rng.integers(8, 31))
            t = np.arange(length)
            a = np.sin(2 * np.pi * FREQUENCIES[label] * t + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.2, length)
            b = 0.5 * c + rng.normal(0, 0.4, length)
            rows.append(pd.DataFrame({"utterance": f"{prefix}{c}{i:03d}", "frame": t, "a": a.round(5),
                                      "b": b.round(5), "digit": label}))
    return pd.concat(rows, ignore_index=True)


def write_classify_config(root: Path, source: dict, models: dict[str, dict], **sections) -> Path:
    conf = root / "conf"
    (conf / "models").mkdir(parents=True, exist_ok=True)
    for name, spec in models.items():
        (conf / "models" / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    pipeline = {
        "task": "classify",
        "classify": {"source": source, "split": {"test_share": 0.25, "validation_share": 0.25, "seed": 0},
                     "validation": {"min_per_class": 5, "min_length": 2}, **sections.pop("classify", {})},
        "training": {"max_epochs": 12, "batch_size": 32, "patience": 4, "learning_rate": 0.01, "num_threads": 1,
                     "seed": 7, "progress": False},
        "models": list(models),
        "model_overrides": {},
        "tracking": {"experiment": "classify-tests", "registered_model": "tiny-classifier", "system_metrics": False},
        **sections,
    }
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return conf


CSV_SOURCE = {"kind": "csv", "path": "input/frames.csv",
              "columns": {"sequence_id": "utterance", "step": "frame", "label": "digit"}}
MODELS = {
    "majority": {"arch": "majority", "params": {}},
    "minirocket": {"arch": "minirocket", "params": {"num_kernels": 840}},
    "gru": {"arch": "gru_classifier", "params": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0}},
    "tcn": {"arch": "tcn_classifier", "params": {}},
    "transformer": {"arch": "transformer_classifier", "params": {}},
    "dbn": {"arch": "dbn_classifier", "params": {}},
    "lstm": {"arch": "lstm_classifier", "params": {"hidden_size": 8, "num_layers": 1, "dropout": 0.0}},
    "rnn": {"arch": "rnn_classifier", "params": {"hidden_size": 8, "num_layers": 1, "dropout": 0.0,
                                                 "bidirectional": False}},
    "ensemble": {"arch": "deep_ensemble_classifier",
                 "params": {"members": 2, "member_arch": "gru_classifier",
                            "member_params": {"hidden_size": 8, "num_layers": 1, "dropout": 0.0}}},
}


@pytest.fixture
def classify_project(tmp_path: Path) -> Path:
    (tmp_path / "input").mkdir()
    make_sequences(per_class=24, seed=0).to_csv(tmp_path / "input" / "frames.csv", index=False)
    write_classify_config(tmp_path, CSV_SOURCE, MODELS)
    return tmp_path


def _tracking(root: Path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri), uri


def test_every_classifier_is_tracked_and_the_champion_serves(classify_project: Path):
    """Every classifier architecture and both references in one flow run, then predict and serve."""
    root = classify_project
    result = run_cli("run", "--conf", str(root / "conf"), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ranked by validation macro_f1" in result.stdout + result.stderr

    board = pd.read_csv(root / "data" / "evaluation" / "leaderboard.csv")
    assert set(board["model"]) == set(MODELS)
    # Ranked on validation, best first; the test columns are there to report.
    assert list(board["val_macro_f1"]) == sorted(board["val_macro_f1"], reverse=True)
    majority = board.set_index("model").loc["majority"]
    champion = board.iloc[0]
    assert champion["model"] != "majority"
    assert champion["test_accuracy"] > majority["test_accuracy"] + 0.3
    for artifact in ("confusion_matrix.png", "confusion_matrix.csv", "per_class.csv"):
        assert (root / "data" / "evaluation" / artifact).is_file()

    client, uri = _tracking(root)
    production = client.get_model_version_by_alias("tiny-classifier", "production")
    assert str(production.version) == "1"
    assert production.tags["seqpipe.model"] == champion["model"]
    assert production.tags["seqpipe.task"] == "classify"
    assert production.tags["seqpipe.gate.test"] == "mcnemar"
    parent = client.get_run(production.tags["seqpipe.pipeline_run_id"])
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/per_class.csv"} <= logged
    runs = client.search_runs([parent.info.experiment_id])
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == set(MODELS)
    for name, run in children.items():
        assert run.info.status == "FINISHED", name
        assert {"val_macro_f1", "test_macro_f1", "test_log_loss"} <= set(run.data.metrics), name

    # New sequences of the same classes: the promoted classifier labels them.
    held_back = make_sequences(per_class=10, seed=99, prefix="new")
    held_back.drop(columns="digit").to_csv(root / "new.csv", index=False)
    predicted = run_cli("predict", "--input", str(root / "new.csv"), "--output", str(root / "labels.csv"),
                        "--conf", str(root / "conf"), cwd=root)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    labels = pd.read_csv(root / "labels.csv")
    truth = held_back.groupby("utterance")["digit"].first()
    assert len(labels) == truth.size
    assert {f"p_{c}" for c in CLASSES} <= set(labels.columns)
    np.testing.assert_allclose(labels[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-6)
    accuracy = (labels.set_index("sequence_id")["label"] == truth.reindex(labels["sequence_id"]).to_numpy()).mean()
    assert accuracy > 0.7  # three balanced classes: the majority class scores a third

    # The served model answers exactly as the in-process one.
    frames = held_back.drop(columns="digit").rename(columns={"utterance": "sequence_id", "frame": "step"})
    with mlflow_model_server("models:/tiny-classifier@production", uri, root) as url:
        served = invoke_served(url, frames)
    np.testing.assert_allclose(served.sort_values("sequence_id")[[f"p_{c}" for c in CLASSES]].to_numpy(),
                               labels.sort_values("sequence_id")[[f"p_{c}" for c in CLASSES]].to_numpy(), atol=1e-9)

    # A sequence with the wrong number of channels is refused, naming what the model reads; nothing is written.
    held_back.drop(columns=["digit", "b"]).to_csv(root / "one_channel.csv", index=False)
    refused = run_cli("predict", "--input", str(root / "one_channel.csv"), "--output", str(root / "bad.csv"),
                      "--conf", str(root / "conf"), cwd=root)
    assert refused.returncode == 6
    assert "['b']" in refused.stderr and "2 channels" in refused.stderr
    assert not (root / "bad.csv").exists()


def test_a_missing_label_fails_validation_naming_the_sequence_and_keeps_what_was_good(classify_project: Path):
    from seqpipe import steps
    from seqpipe.config import load_config

    root = classify_project
    cfg = load_config(root / "conf")
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    good = {name: tree_digest(root / "data" / name) for name in ("validated", "prepared")}

    frame = make_sequences(per_class=24, seed=0)
    frame.loc[frame["utterance"] == "u1003", "digit"] = np.nan
    frame.to_csv(root / "input" / "frames.csv", index=False)
    snapshots = tree_digest(root / "data" / "raw" / "snapshots")
    result = run_cli("run", "--conf", str(root / "conf"), cwd=root)
    assert result.returncode == 4, result.stderr[-3000:]
    assert "u1003" in result.stderr and "label" in result.stderr
    assert {name: tree_digest(root / "data" / name) for name in ("validated", "prepared")} == good
    # Earlier snapshots stay as they were; the rejected batch is kept beside them.
    after = tree_digest(root / "data" / "raw" / "snapshots")
    assert all(after[name] == content for name, content in snapshots.items())


def test_a_winning_reference_is_registered_and_classifies_like_a_network(tmp_path: Path):
    """MiniRocket, a reference saved as arrays, becomes the registered champion and predicts through its pyfunc."""
    from seqpipe import steps
    from seqpipe.config import load_config

    (tmp_path / "input").mkdir()
    make_sequences(per_class=20, seed=3).to_csv(tmp_path / "input" / "frames.csv", index=False)
    conf = write_classify_config(tmp_path, CSV_SOURCE, {"majority": MODELS["majority"],
                                                        "minirocket": MODELS["minirocket"]})
    cfg = load_config(conf)
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    with steps.pipeline_run_of_data(cfg) as parent:
        for spec in cfg.models:
            steps.train(cfg, spec.name, parent)
    board = steps.evaluate(cfg)
    assert board.iloc[0]["model"] == "minirocket"
    version = steps.register(cfg)
    assert steps.gate(cfg)["action"] == "promoted"

    client, _ = _tracking(tmp_path)
    registered = client.get_model_version("tiny-classifier", version)
    assert registered.tags["seqpipe.arch"] == "minirocket"
    import mlflow

    from seqpipe.tracking.store import mlflow_uris

    with mlflow_uris(client):
        requirements = Path(mlflow.pyfunc.get_model_dependencies(f"models:/tiny-classifier/{version}")).read_text()
    assert "sktime" in requirements and "scikit-learn" in requirements

    held_back = make_sequences(per_class=6, seed=42, prefix="new").drop(columns="digit")
    held_back.to_csv(tmp_path / "new.csv", index=False)
    labels = steps.predict(cfg, "production", tmp_path / "new.csv", tmp_path / "labels.csv")
    assert len(labels) == held_back["utterance"].nunique()
    assert (tmp_path / "labels.csv").is_file()


def test_each_task_says_how_its_leaderboard_ranks():
    from seqpipe import steps
    from seqpipe.config import load_config

    assert steps.leaderboard_title(load_config(REPO / "examples" / "spoken-digits" / "conf")).startswith(
        "ranked by validation macro_f1")
    assert steps.leaderboard_title(load_config(REPO / "conf")).startswith("ranked by validation mase (val_mase)")
