"""Sequence classification's own implementations of the steps (``seqpipe.tasks`` routes to them).

The shared parts stay in ``seqpipe.steps``: the MLflow runs, training one model
(``train`` takes the ``TrainingJob`` built here), registering a version, concluding the
gate, promotion, rollback and versions. Choice is made on the validation split: the
leaderboard ranks by its validation score, and the test split only reports.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from seqpipe.config import ModelSpec, PipelineConfig
from seqpipe.data.sequence_drift import SequenceDriftReport
from seqpipe.data.snapshot import Manifest, read_snapshot, write_snapshot
from seqpipe.errors import ConfigError, DataValidationError, PredictionError, RegistryError
from seqpipe.estimators import build_estimator, load_estimator
from seqpipe.evaluation.classification import (
    HIGHER_IS_BETTER, classification_scores, confusion_matrix, metric_scorer, per_class_report, predictive_entropy,
)
from seqpipe.evaluation.classification_gate import decide_classifier, mcnemar_exact, paired_bootstrap
from seqpipe.evaluation.classification_plots import plot_confusion_matrix, plot_metric_by_model, write_confusion_csv
from seqpipe.hashing import short_digest
from seqpipe.hyperparams import NOT_IN_WEIGHTS
from seqpipe.io import atomic_dir, read_json, write_json, write_table
from seqpipe.layout import VALIDATED_FILE, Layout
from seqpipe.steps.data import DOCS_DIR, REPORT_FILE, read_validation
from seqpipe.steps.evaluation import evaluation_run, training_records
from seqpipe.steps.fitting import model_training, train_settings
from seqpipe.steps.registry import already_production, champion, conclude_gate, gate_candidates, load_registered
from seqpipe.steps.scheduled import drift_snapshots, publish_drift
from seqpipe.steps.training import TrainingJob
from seqpipe.tasks.classify.inputs import (
    AUDIO, PATH_COLUMN, TEXT, TEXT_COLUMN, input_batch, load_preprocessing, prediction_frame,
)
from seqpipe.tasks.classify.kinds import Prepared, classifier_shape, input_file, input_spec, kind_of, load_prepared
from seqpipe.tracking.lineage import TAG_PREFIX
from seqpipe.tracking.registry import SERVING_REQUIREMENTS, PyfuncPackage, log_and_register
from seqpipe.tracking.runs import log_metrics
from seqpipe.tracking.store import connect
from seqpipe.training import seed_everything

log = logging.getLogger(__name__)

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
METRICS = tuple(HIGHER_IS_BETTER)
EVALUATION_ARTIFACTS = ("leaderboard.csv", "leaderboard.md", "metrics.json", "confusion_matrix.png",
                        "confusion_matrix.csv", "per_class.csv", "metric_by_model.png")
# Sequences of the training split in the registered model's input example.
EXAMPLE_SEQUENCES = 2


# -- ingest, validate, prepare ------------------------------------------------------------------

def ingest(cfg: PipelineConfig, source: Any = None) -> Manifest:
    """Read the labelled sequences into the canonical frame and store it as an immutable raw snapshot."""
    kind = kind_of(cfg)
    frame, origin = kind.read(source or cfg.classify.source, cfg.root)
    manifest = write_snapshot(frame, Layout.of(cfg).raw, origin, ids="sequence_id", order=kind.order)
    log.info(f"ingested {manifest.series} sequences ({manifest.rows} steps) from {origin} -> {manifest.snapshot}")
    return manifest


def validate(cfg: PipelineConfig) -> Any:
    """Run the GX suite on the latest snapshot; only a batch that passes reaches ``data/validated``."""
    layout = Layout.of(cfg)
    frame, manifest = read_snapshot(layout.raw)
    run_reports = layout.reports / manifest.md5
    shutil.rmtree(run_reports, ignore_errors=True)
    report = kind_of(cfg).validate(cfg, frame, manifest.md5, manifest.source, run_reports / DOCS_DIR)
    write_json(run_reports / REPORT_FILE, report.to_dict())
    if not report.success:
        raise DataValidationError(report.failure_message(str(manifest.snapshot_path(layout.raw)),
                                                         cfg.classify.validation.max_offending_listed))
    with atomic_dir(layout.validated) as staging:
        frame.to_parquet(staging / VALIDATED_FILE, index=False)
        write_json(staging / REPORT_FILE, report.to_dict())
    log.info(f"validation passed: {len(report.checks)} expectations on {report.rows} steps of {report.sequences} "
             f"sequences (report and Data Docs in {run_reports})")
    return report


def prepare(cfg: PipelineConfig) -> dict:
    """Split (stratified, seeded); fit the channel scaler or the tokenizer on the training split; write ``data/prepared``."""
    layout = Layout.of(cfg)
    kind = kind_of(cfg)
    prepared = kind.prepare(cfg, pd.read_parquet(layout.validated / VALIDATED_FILE))
    with atomic_dir(layout.prepared) as staging:
        meta = kind.save(prepared, staging, read_validation(cfg)["dataset"])
    log.info(f"prepared {len(prepared.classes)} classes, {len(prepared.channels)} channels: {meta['counts']}")
    return meta


# -- train --------------------------------------------------------------------------------------

def training_job(cfg: PipelineConfig, spec: ModelSpec, layout: Layout) -> TrainingJob:
    """A classifier, seeded, and the prepared training and validation sequences it fits on."""
    prepared = load_prepared(layout.prepared)
    shape = classifier_shape(prepared)
    seed_everything(cfg.training.seed, cfg.training.num_threads)
    try:
        estimator = build_estimator(spec.arch, shape, spec.params)
    except ValueError as exc:
        raise ConfigError(f"{cfg.model_file(spec.name)}: {exc}") from None
    data = prepared.fit_data()
    training = {k: v for k, v in model_training(cfg, spec).items() if k not in NOT_IN_WEIGHTS}
    # The prepared data's own digest: a tokenizer learned with other settings gives other ids for the same dataset.
    signature = {"config": short_digest({"training": training, "model": spec.model_dump(mode="json"),
                                         "class_weighting": cfg.classify.class_weighting}),
                 "prepared": short_digest(read_json(layout.prepared / "meta.json")),
                 "arch": spec.arch, "shape": [shape.channels, shape.classes, shape.max_length, shape.vocabulary],
                 "dataset": read_json(layout.prepared / "meta.json")["dataset"], "train_sequences": len(data.train)}
    return TrainingJob(
        estimator=estimator,
        data_params={"data.classes": ",".join(prepared.classes), "data.channels": len(prepared.channels),
                     "data.max_length": prepared.max_length, "data.class_weighting": cfg.classify.class_weighting,
                     "train_sequences": len(data.train), "val_sequences": len(data.val)},
        signature=signature,
        fit=lambda options: estimator.fit(data, train_settings(cfg, spec), options),
    )


# -- evaluate -----------------------------------------------------------------------------------

def leaderboard_title(cfg: PipelineConfig) -> str:
    return f"ranked by validation {cfg.classify.evaluation.metric}; the test columns only report"


def ranking_column(cfg: PipelineConfig) -> str:
    return f"val_{cfg.classify.evaluation.metric}"


def _ranked(board: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Best first by the validation score of ``metric`` (its own direction), ties by name."""
    higher = HIGHER_IS_BETTER[metric]
    key = board[f"val_{metric}"] * (-1 if higher else 1)
    return board.assign(_key=key).sort_values(["_key", "model"], kind="stable").drop(columns="_key").reset_index(drop=True)


def evaluate(cfg: PipelineConfig, parent_run_id: str | None = None) -> pd.DataFrame:
    """Score every trained classifier on the validation and test splits; rank on validation.

    Writes the leaderboard, per-model metrics, the champion's confusion matrix (PNG and
    CSV) and per-class report on the test split, and each model's test predictions.
    """
    layout = Layout.of(cfg)
    settings = cfg.classify.evaluation
    prepared = load_prepared(layout.prepared)
    val_batch, val_labels = prepared.batch_of("val")
    test_batch, test_labels = prepared.test_batch()

    runs = training_records(cfg)
    rows, probabilities = [], {}
    for spec in cfg.models:
        estimator = load_estimator(layout.models / spec.name)
        val_scores = classification_scores(val_labels, estimator.predict_proba(val_batch), settings.calibration_bins)
        probabilities[spec.name] = estimator.predict_proba(test_batch)
        test_scores = classification_scores(test_labels, probabilities[spec.name], settings.calibration_bins)
        # How unsure the model is on average (nats): an ensemble's disagreement shows here.
        entropy = float(predictive_entropy(probabilities[spec.name]).mean())
        rows.append({"model": spec.name, "arch": spec.arch, **{f"val_{m}": val_scores[m] for m in METRICS},
                     **{f"test_{m}": test_scores[m] for m in METRICS}, "test_entropy": entropy})
    board = _ranked(pd.DataFrame(rows), settings.metric)
    best = str(board.iloc[0]["model"])
    predicted = probabilities[best].argmax(axis=1)
    matrix = confusion_matrix(test_labels, predicted, len(prepared.classes))
    predictions = pd.concat([pd.DataFrame({
        "model": name, "sequence_id": prepared.test_ids, "label": np.asarray(prepared.classes)[test_labels],
        "predicted": np.asarray(prepared.classes)[p.argmax(axis=1)],
        **{f"p_{c}": p[:, i] for i, c in enumerate(prepared.classes)}}) for name, p in probabilities.items()],
        ignore_index=True)
    metrics = {str(r["model"]): {k: float(v) for k, v in r.items() if k not in ("model", "arch")}
               for r in board.to_dict("records")}

    with atomic_dir(layout.evaluation) as staging:
        board.to_csv(staging / "leaderboard.csv", index=False)
        (staging / "leaderboard.md").write_text(_markdown(board))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        predictions.to_parquet(staging / "predictions.parquet", index=False)
        write_confusion_csv(matrix, prepared.classes, staging / "confusion_matrix.csv")
        plot_confusion_matrix(matrix, prepared.classes, staging / "confusion_matrix.png",
                              f"{best}: test split confusion matrix")
        per_class_report(test_labels, predicted, prepared.classes).to_csv(staging / "per_class.csv", index=False)
        plot_metric_by_model(board, f"test_{settings.metric}", staging / "metric_by_model.png")

    if runs:
        _log_evaluation(cfg, board, runs, parent_run_id)
    log.info("leaderboard (%d test sequences, ranked by validation %s) written to %s", len(test_labels),
             settings.metric, layout.evaluation)
    return board


def _markdown(board: pd.DataFrame) -> str:
    columns = list(board.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in board.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _log_evaluation(cfg: PipelineConfig, board: pd.DataFrame, runs: dict[str, dict], parent: str | None) -> None:
    layout = Layout.of(cfg)
    client, _ = connect(cfg)
    for row in board.to_dict("records"):
        if row["model"] in runs:
            log_metrics(client, runs[row["model"]]["run_id"],
                        {k: float(v) for k, v in row.items() if k.startswith(("val_", "test_"))})
    best = board.iloc[0]
    parent = evaluation_run(runs, best["model"], parent)
    for artifact in EVALUATION_ARTIFACTS:
        client.log_artifact(parent, str(layout.evaluation / artifact), "evaluation")
    log_metrics(client, parent, {f"best_{k}": float(best[k]) for k in board.columns if k.startswith(("val_", "test_"))})
    client.set_tag(parent, "seqpipe.best_model", best["model"])


# -- register, gate, predict, drift --------------------------------------------------------------------

def sequences_as_input(cfg: PipelineConfig, prepared: Prepared, ids: list[str]) -> pd.DataFrame:
    """The sequences ``ids`` in the form their model takes: frames, texts, or for audio their files' paths."""
    spec = input_spec(prepared)
    if spec.kind == AUDIO:
        folder = cfg.path(cfg.classify.source.path)
        files = pd.read_csv(cfg.path(cfg.classify.source.labels))["file"].astype(str)
        by_id = {str(Path(f).with_suffix("")): str(folder / f) for f in files}
        return pd.DataFrame({PATH_COLUMN: [by_id[i] for i in ids]})
    frame = prepared.frame
    rows = frame[frame["sequence_id"].isin(ids)]
    columns = ["sequence_id", TEXT_COLUMN] if spec.kind == TEXT else ["sequence_id", "step", *prepared.channels]
    return rows[columns].reset_index(drop=True)


def register(cfg: PipelineConfig) -> str:
    """Register the leaderboard's first model (chosen on validation), whatever its kind, as challenger."""
    client, _ = connect(cfg)  # an unreachable store fails here, before anything is logged
    layout = Layout.of(cfg)
    board, best, run = champion(cfg)
    prepared = load_prepared(layout.prepared)
    spec = input_spec(prepared)
    train_ids = sorted(map(str, prepared.ids_of("train")))
    example = sequences_as_input(cfg, prepared, train_ids[:EXAMPLE_SEQUENCES])
    trained_from = {k: v for k, v in client.get_run(run["run_id"]).data.tags.items() if k.startswith(TAG_PREFIX)}
    tags = {**trained_from, "seqpipe.task": "classify", "seqpipe.model": best["model"], "seqpipe.arch": best["arch"],
            "seqpipe.pipeline_run_id": run["parent_run_id"], "seqpipe.training_run_id": run["run_id"],
            **{f"seqpipe.{k}": f"{best[k]:.6f}" for k in board.columns if k.startswith(("val_", "test_"))}}

    def package() -> PyfuncPackage:
        estimator = load_estimator(layout.models / best["model"])
        preprocessing = load_preprocessing(spec, inputs)
        ids, batch = input_batch(example, spec, preprocessing)
        output = prediction_frame(ids, estimator.predict_proba(batch), list(prepared.classes))
        return PyfuncPackage(
            code=PYFUNC_CODE, artifacts={"model": str(layout.models / best["model"]), "inputs": str(inputs)},
            model_config={"classes": list(prepared.classes), "inputs": spec.to_dict()}, example=example,
            example_output=output, params=None,
            requirements=[*SERVING_REQUIREMENTS, *(["librosa", "soundfile"] if spec.kind == AUDIO else []),
                          *estimator.requirements])

    inputs = layout.prepared / input_file(prepared)
    version = log_and_register(client, run["run_id"], cfg.tracking.registered_model, package, tags)
    metric = ranking_column(cfg)
    log.info(f"registered {cfg.tracking.registered_model} version {version} ({best['model']}, "
             f"{metric} {best[metric]:.4f}, test {cfg.classify.evaluation.metric} "
             f"{best['test_' + cfg.classify.evaluation.metric]:.4f}) with alias 'challenger'")
    return version


def _version_probabilities(cfg: PipelineConfig, version: str, model_input: pd.DataFrame, ids: list[str],
                           classes: list[str]) -> np.ndarray:
    """A registered version's class probabilities for the sequences ``ids``, columns in ``classes`` order.

    A version trained on fewer classes gives the others probability 0.
    """
    loaded, uri = load_registered(cfg, version)
    try:
        output = loaded.predict(model_input).set_index("sequence_id")
    except PredictionError as exc:
        raise RegistryError(f"{uri} cannot classify the current test split: {exc}") from None
    columns = [f"p_{c}" for c in classes]
    return output.reindex(index=ids, columns=columns).fillna(0.0).to_numpy(np.float64)


def gate(cfg: PipelineConfig) -> dict:
    """Compare the challenger with production on the same test sequences; promote it when it is clearly better.

    The paired test is McNemar's exact test on the sequences one version gets right and
    the other wrong, or a paired bootstrap of the metric (``classify.promotion.test``).
    """
    challenger, production = gate_candidates(cfg)
    if production == challenger:
        return already_production(challenger)
    settings, evaluation = cfg.classify.promotion, cfg.classify.evaluation
    prepared = load_prepared(Layout.of(cfg).prepared)
    _, labels = prepared.test_batch()
    ids = list(prepared.test_ids)
    model_input = sequences_as_input(cfg, prepared, ids)

    def scored(version: str) -> tuple[np.ndarray, float]:
        probabilities = _version_probabilities(cfg, version, model_input, ids, prepared.classes)
        return probabilities, classification_scores(labels, probabilities, evaluation.calibration_bins)[evaluation.metric]

    challenger_p, challenger_score = scored(challenger)
    production_score, test = None, None
    if production is not None:
        production_p, production_score = scored(production)
        if settings.test == "mcnemar":
            test = mcnemar_exact(challenger_p.argmax(1) == labels, production_p.argmax(1) == labels)
        else:
            test = paired_bootstrap(labels, challenger_p, production_p,
                                    metric_scorer(evaluation.metric, evaluation.calibration_bins),
                                    settings.bootstrap_samples, settings.seed)
    decision = decide_classifier(evaluation.metric, challenger_score, production_score, test, settings.margin,
                                 settings.significance)
    test_tags = {"seqpipe.gate.test": settings.test,
                 "seqpipe.gate.p_value": "none" if test is None else f"{test.p_value:.6g}",
                 "seqpipe.gate.statistic": "none" if test is None else f"{test.statistic:.6g}"}
    summary = "no production version" if test is None else f"{test.name} p-value {test.p_value:.4g}"
    result = conclude_gate(cfg, challenger, production, decision, cfg.promotion.auto_promote, test_tags, summary)
    return {**result, "p_value": None if test is None else test.p_value}


def predict(cfg: PipelineConfig, model: str, input_path: Path, output_path: Path, horizon: int | None = None) -> pd.DataFrame:
    """Classify every sequence (or WAV file, for a model trained on audio) in ``input_path``; write ``output_path``."""
    if horizon is not None:
        raise ConfigError("--horizon is a forecasting option: a classifier gives one label per sequence")
    if not input_path.is_file():
        raise PredictionError(f"{input_path}: no such input file")
    frame = pd.read_parquet(input_path) if input_path.suffix.lower() == ".parquet" else pd.read_csv(input_path)
    # The file speaks the source's column names, the registered model the canonical ones.
    columns = cfg.classify.source.columns
    renamed = {columns.sequence_id: "sequence_id", columns.step: "step", columns.text: TEXT_COLUMN}
    frame = frame.rename(columns={k: v for k, v in renamed.items() if k})
    loaded, uri = load_registered(cfg, model)
    schema = loaded.metadata.get_input_schema()
    if schema is not None:
        wanted = schema.input_names()
        absent = [c for c in wanted if c not in frame.columns]
        if absent:
            channels = [c for c in wanted if c not in ("sequence_id", "step", TEXT_COLUMN, PATH_COLUMN)]
            reads = (f"it classifies sequences of {len(channels)} channels {channels} per step" if channels
                     else f"it reads the columns {wanted}")
            raise PredictionError(f"{input_path}: missing columns {absent} that {uri} reads: {reads}; "
                                  f"columns present: {list(map(str, frame.columns))}")
        frame = frame[wanted]
    try:
        output = loaded.predict(frame)
    except PredictionError as exc:
        raise PredictionError(f"{input_path}: {exc}") from None
    except MlflowException as exc:
        raise PredictionError(f"{input_path}: {exc.message}") from None
    write_table(output, output_path)
    log.info(f"wrote labels of {len(output)} sequences to {output_path} ({uri})")
    return output


def check_drift(cfg: PipelineConfig, reference_md5: str, run_id: str | None = None) -> SequenceDriftReport | None:
    """Compare the latest snapshot with ``reference_md5``'s: labels, lengths, and channel means or unknown tokens.

    Reads, writes and logs as forecasting's check does (the metrics count quantities, not series);
    None when the reference snapshot is not here.
    """
    snapshots = drift_snapshots(cfg, reference_md5)
    if snapshots is None:
        return None
    reference, current, current_md5 = snapshots
    report = kind_of(cfg).drift(cfg, reference, current, reference_md5, current_md5)
    publish_drift(cfg, report, current_md5, run_id)
    return report
