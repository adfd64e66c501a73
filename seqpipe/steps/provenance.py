"""From a registered version back to its data, code and config; rebuild it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from seqpipe.config import PipelineConfig
from seqpipe.io import read_json
from seqpipe.tracking.lineage import format_lineage, reproduce_commands, version_lineage
from seqpipe.tracking.registry import alias_history
from seqpipe.tracking.store import connect

logger = logging.getLogger(__name__)

def lineage(cfg: PipelineConfig, reference: str = "production") -> dict:
    """The chain from source data to a registered version (``production``, ``challenger`` or a number)."""
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    chain = version_lineage(client, name, reference, alias_history(client, name))
    logger.info(format_lineage(chain))
    return chain


def reproduce(cfg: PipelineConfig, reference: str, run: bool = False, workdir: Path | None = None) -> dict:
    """Print the commands that rebuild a version; with ``run``, execute them in a temporary worktree.

    The rebuild runs the version's own code (its commit, first on PYTHONPATH) with its own
    config, into the worktree's own MLflow store, then compares test metrics with the
    version's: on CPU they must be equal to the last digit recorded.
    """
    client, _ = connect(cfg)
    name = cfg.tracking.registered_model
    chain = version_lineage(client, name, reference, alias_history(client, name))
    target = workdir or Path(tempfile.mkdtemp(prefix=f"seqpipe-v{chain['version']}-")) / "checkout"
    commands = reproduce_commands(chain, str(target))
    logger.info("\n".join(commands))
    if not run:
        return {"commands": commands}
    if chain["git_dirty"] == "true":
        logger.warning("warning: the version was trained from a tree with uncommitted changes; they cannot be reproduced")
    env = {**os.environ, "PYTHONPATH": str(target) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run(["git", "worktree", "add", "--detach", str(target), chain["git_commit"]], cwd=cfg.root, check=True)
    try:
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=target, env=env, check=True)
        rebuilt = read_json(target / cfg.data.dir / "evaluation" / "metrics.json")[chain["training_run"]["name"]]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(target)], cwd=cfg.root, check=False)
    recorded = chain["test_metrics"]
    matches = {m: round(rebuilt[m], 6) == round(recorded[m], 6) for m in recorded}
    verdict = "reproduced" if all(matches.values()) else "NOT reproduced"
    logger.log(logging.INFO if all(matches.values()) else logging.WARNING,
               f"{verdict}: recorded {recorded}, rebuilt { {m: round(rebuilt[m], 6) for m in recorded} }")
    return {"commands": commands, "recorded": recorded, "rebuilt": rebuilt, "reproduced": all(matches.values())}
