"""Pull steps that prefect.yaml's deployments run on a worker before loading the flow."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ENV = "SEQPIPE_PROJECT_DIR"


def enter_project(default: str) -> dict[str, str]:
    """The project folder on *this* worker's machine: its own SEQPIPE_PROJECT_DIR, else ``default``.

    ``default`` is the deploying machine's folder, baked in at deploy time; a GPU worker
    on another machine keeps its checkout wherever it likes, and `seqpipe worker` tells
    its flow runs where that is.
    """
    directory = Path(os.environ.get(PROJECT_ENV) or default).resolve()
    if not (directory / "flows" / "pipeline.py").is_file():
        raise FileNotFoundError(f"{directory} is not a seqpipe project (no flows/pipeline.py); "
                                f"start the worker with `seqpipe worker` from the project, or set {PROJECT_ENV}")
    return {"directory": str(directory)}
