"""MLflow's own conventions for data: the raw snapshot as a dataset input, and the experiment's kind.

Lineage tags (``seqpipe.dataset_md5``) say what data a run saw, but only to someone who
knows the tags; MLflow's UI reads dataset inputs instead (its Datasets column, the run
page, the dataset drawer). So the snapshot is logged as a metadata-only dataset: its
name, the snapshot's MD5 as the digest, where it came from, its columns and a small
profile. No rows travel: the data stays in ``data/raw`` under DVC.

Everything goes through an explicit ``MlflowClient``, never the fluent API, so nothing
process-wide (active run, tracking URI) is needed.

MLflow keeps one link per run and (name, digest): the same dataset logged again to the
same run is a no-op (retries are safe), and a second context on it would be dropped.
So each split is its own input, named ``<name>-<context>``, all with the snapshot's MD5.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.entities import Dataset, DatasetInput, Experiment, InputTag
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

# What the splits are called in MLflow's UI and its autologging.
SPLITS = ("training", "validation", "test")
REJECTED = "rejected"  # a snapshot validation turned away: seen, never trained on

# The experiment's type as MLflow 3's UI stores it (its type selector writes this tag);
# values as in the UI's ExperimentKind: custom_model_development is "Machine learning",
# genai_development "GenAI apps & agents". Where the UI picks an experiment's tabs by
# its type, this one opens on its runs, not the GenAI overview. MLflow 3.17's UI picks
# them by the sidebar's GenAI / Model training switch instead (kept per browser, or
# ``?workflowType=machine_learning`` in the URL), and without it opens every
# experiment on the GenAI overview whatever the tag says.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"

_GLOB = re.compile(r"[*?\[]")


def dataset_name(origin: str) -> str:
    """A short name for a source description as ingest writes it (``manifest.source``).

    ``builtin:tourism-monthly`` -> ``tourism-monthly``; a file -> its stem; a folder or
    glob of files -> the folder's name; ``sql:<url>`` -> ``sql``.
    """
    if origin.startswith("builtin:"):
        return origin[len("builtin:"):]
    if origin.startswith("sql:"):
        return "sql"
    path = Path(re.sub(r" \(\d+ files\)$", "", origin))
    while _GLOB.search(path.name) and path.parent != path:
        path = path.parent
    stem = path.name.split(".")[0] if path.suffix else path.name
    return stem or "dataset"


def _source(origin: str) -> tuple[str, str]:
    """(source_type, source) in the form MLflow's UI reads: JSON with a ``uri`` it shows for local data."""
    kind = "code" if origin.startswith("builtin:") else "sql" if origin.startswith("sql:") else "local"
    return kind, json.dumps({"uri": origin})


_ARROW_TYPES = (
    (pa.types.is_boolean, DataType.boolean), (pa.types.is_int32, DataType.integer),
    (pa.types.is_integer, DataType.long), (pa.types.is_float32, DataType.float),
    (pa.types.is_floating, DataType.double), (pa.types.is_timestamp, DataType.datetime),
    (pa.types.is_date, DataType.datetime), (pa.types.is_string, DataType.string),
    (pa.types.is_large_string, DataType.string), (pa.types.is_binary, DataType.binary),
)


def parquet_schema(path: Path) -> str | None:
    """The file's columns as MLflow ColSpec JSON (what ``mlflow.data`` logs), read from its footer only."""
    columns = []
    for field in pq.read_schema(path):
        kind = next((dtype for test, dtype in _ARROW_TYPES if test(field.type)), None)
        if pa.types.is_dictionary(field.type):
            kind = DataType.string
        if kind is None:
            return None  # a column MLflow has no type for: better no schema than a wrong one
        columns.append(ColSpec(kind, field.name))
    return json.dumps({"mlflow_colspec": Schema(columns).to_dict()})


def snapshot_inputs(name: str, digest: str, origin: str, *, schema: str | None = None,
                    profile: Mapping[str, object] | None = None,
                    contexts: Iterable[str] = SPLITS) -> list[DatasetInput]:
    """One dataset input per context, each ``<name>-<context>`` with the snapshot's digest."""
    source_type, source = _source(origin)
    inputs = []
    for context in contexts:
        dataset = Dataset(name=f"{name}-{context}", digest=digest, source_type=source_type, source=source,
                          schema=schema, profile=json.dumps({**(profile or {}), "split": context}))
        inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs


def log_snapshot_inputs(client: MlflowClient, run_id: str, name: str, digest: str, origin: str, *,
                        schema: str | None = None, profile: Mapping[str, object] | None = None,
                        contexts: Iterable[str] = SPLITS) -> list[DatasetInput]:
    """Log a snapshot on a run as metadata-only dataset inputs; logging it again changes nothing."""
    inputs = snapshot_inputs(name, digest, origin, schema=schema, profile=profile, contexts=contexts)
    client.log_inputs(run_id, datasets=inputs)
    return inputs


def mark_model_training(client: MlflowClient, experiment: Experiment) -> None:
    """Tag an experiment as model training, unless it already says what it is (a user's choice stays)."""
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
