"""The pipeline steps: one plain function each, shared by the CLI, the Prefect flow and DVC.

Steps hand over data as files under ``data/`` (see ``Layout``), never as objects, so
any step can be rerun alone and DVC can hash what each one wrote. Every output is
written into a staging file or folder and swapped in only when complete.

Each group lives in its own module; every step is importable from here:

- ``data``: ingest, validate, prepare.
- ``runs``: the pipeline run's MLflow bookkeeping (open, attach validation, find by key, close).
- ``fitting``: build a configured model from its seed and fit it (training and the backtest share it).
- ``training``: train one model into its own MLflow run.
- ``transfer``: carry prepared data and trained models between machines through MLflow.
- ``evaluation``: score the trained models on the test split, the leaderboard.
- ``backtesting``: the rolling-origin backtest, and the fold refits that selection shares.
- ``selection``: choose the champion on backtest folds before the test window.
- ``registry``: register, gate, promote, roll back, list versions, predict.
- ``scheduled``: scheduled retraining's checks: production's data, drift.
- ``provenance``: lineage of a registered version, and reproducing it.
- ``synthesis``: synthetic series from a trained GAN's generator.

Module names differ from the step names (``training``, not ``train``) so that
``seqpipe.steps.train`` stays the step function.
"""

from seqpipe.layout import Layout
from seqpipe.steps.backtesting import BACKTEST_ARTIFACTS, backtest
from seqpipe.steps.data import (
    DOCS_DIR, REPORT_FILE, ingest, input_features, prepare, read_validation, validate, validation_rules,
)
from seqpipe.steps.evaluation import EVALUATION_ARTIFACTS, evaluate, leaderboard_markdown, leaderboard_title
from seqpipe.steps.provenance import lineage, reproduce
from seqpipe.steps.registry import VERSION_COLUMNS, gate, predict, promote, register, rollback, versions
from seqpipe.steps.runs import (
    PIPELINE_KEY_TAG, finish_pipeline_run, pipeline_key, pipeline_run_for, pipeline_run_of_data, record_decision, record_validation,
    start_pipeline_run,
)
from seqpipe.steps.selection import select
from seqpipe.steps.scheduled import DRIFT_DIR, check_drift, production_dataset, retraining_decision
from seqpipe.steps.synthesis import SYNTHETIC_DIR, synthesize
from seqpipe.steps.training import HISTORY_FILE, PREPARED_TAG, train, training_record
from seqpipe.steps.transfer import (
    MODEL_FILES, PREPARED_FILES, fetch_prepared, fetch_trained, fetch_training_summary, publish_prepared,
    publish_training_summary,
)

__all__ = [
    "Layout",
    # data
    "DOCS_DIR", "REPORT_FILE", "ingest", "input_features", "prepare", "read_validation", "validate",
    "validation_rules",
    # runs
    "PIPELINE_KEY_TAG", "finish_pipeline_run", "pipeline_key", "pipeline_run_for", "pipeline_run_of_data", "record_decision",
    "record_validation", "start_pipeline_run",
    # training
    "HISTORY_FILE", "PREPARED_TAG", "train", "training_record",
    # transfer
    "MODEL_FILES", "PREPARED_FILES", "fetch_prepared", "fetch_trained", "fetch_training_summary", "publish_prepared",
    "publish_training_summary",
    # evaluation, backtesting, selection
    "EVALUATION_ARTIFACTS", "evaluate", "leaderboard_markdown", "leaderboard_title", "BACKTEST_ARTIFACTS", "backtest",
    "select",
    # registry
    "VERSION_COLUMNS", "gate", "predict", "promote", "register", "rollback", "versions",
    # scheduled, provenance, synthesis
    "DRIFT_DIR", "check_drift", "production_dataset", "retraining_decision", "lineage", "reproduce", "SYNTHETIC_DIR", "synthesize",
]
