"""Lineage tags: what data, code and config a run was made from."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqpipe.config import PipelineConfig
from seqpipe.errors import RegistryError

TAG_PREFIX = "seqpipe."


def git_state(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def lineage_tags(cfg: PipelineConfig, *, dataset_md5: str, source: str, validation: str, flow_run_id: str | None) -> dict[str, str]:
    tags = {
        **git_state(cfg.root),
        "dataset_md5": dataset_md5,
        "dataset_source": source,
        "validation": validation,
        "config_hash": cfg.fingerprint(),
        "prefect_flow_run_id": flow_run_id or "none",
    }
    return {TAG_PREFIX + key: value for key, value in tags.items()}


def _resolve_version(client: MlflowClient, name: str, reference: str):
    try:
        if reference.isdigit():
            return client.get_model_version(name, reference)
        return client.get_model_version_by_alias(name, reference)
    except MlflowException as exc:
        raise RegistryError(f"registered model '{name}' has no version or alias '{reference}': {exc.message}") from None


def version_lineage(client: MlflowClient, name: str, reference: str, alias_history: list[dict]) -> dict[str, Any]:
    """The chain behind one registered version, read back from the registry and the runs.

    ``alias_history`` is the registered model's record of production moves (registry.alias_history).
    """
    version = _resolve_version(client, name, reference)
    tags = dict(version.tags)
    training = client.get_run(tags.get(TAG_PREFIX + "training_run_id") or version.run_id)
    history = [h for h in alias_history
               if str(h.get("to")) == str(version.version) or str(h.get("from")) == str(version.version)]
    return {
        "name": name,
        "version": str(version.version),
        "aliases": list(version.aliases),
        "registered_at": datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds"),
        "source": tags.get(TAG_PREFIX + "dataset_source", "unknown"),
        "dataset_md5": tags.get(TAG_PREFIX + "dataset_md5", "unknown"),
        "validation": tags.get(TAG_PREFIX + "validation", "unknown"),
        "prepared_md5": tags.get(TAG_PREFIX + "prepared_md5", "unknown"),
        "config_hash": tags.get(TAG_PREFIX + "config_hash", "unknown"),
        "git_commit": tags.get(TAG_PREFIX + "git_commit", "unknown"),
        "git_dirty": tags.get(TAG_PREFIX + "git_dirty", "unknown"),
        "prefect_flow_run_id": tags.get(TAG_PREFIX + "prefect_flow_run_id", "none"),
        "pipeline_run_id": tags.get(TAG_PREFIX + "pipeline_run_id", "unknown"),
        "training_run": {
            "run_id": training.info.run_id,
            "name": training.info.run_name,
            "arch": training.data.params.get("arch"),
            "status": training.info.status,
            "metrics": {k: v for k, v in training.data.metrics.items() if k.startswith(("test_", "best_val"))},
        },
        "test_metrics": {k[len(TAG_PREFIX) + len("test_"):]: float(v) for k, v in tags.items()
                         if k.startswith(TAG_PREFIX + "test_")},
        "alias_history": history,
    }


def format_lineage(chain: dict[str, Any]) -> str:
    training = chain["training_run"]
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(chain["test_metrics"].items()))
    dirty = " (uncommitted changes!)" if chain["git_dirty"] == "true" else ""
    lines = [
        f"{chain['name']} version {chain['version']}  aliases: {', '.join(chain['aliases']) or 'none'}",
        f"  source          {chain['source']}",
        f"  raw snapshot    md5 {chain['dataset_md5']}",
        f"  validation      {chain['validation']}",
        f"  prepared data   md5 {chain['prepared_md5']}",
        f"  code, config    git {chain['git_commit']}{dirty}, config hash {chain['config_hash']}",
        f"  training run    {training['name']} ({training['arch']}) {training['run_id']} [{training['status']}]",
        f"  pipeline run    {chain['pipeline_run_id']}  Prefect flow run {chain['prefect_flow_run_id']}",
        f"  registered      {chain['registered_at']}  test: {metrics}",
    ]
    for move in chain["alias_history"] or [{}]:
        if move:
            lines.append(f"  alias history   {move['at']} {move.get('action', 'promote')} production "
                         f"{move['from']} -> {move['to']} by {move['by']}: {move['reason']}")
        else:
            lines.append("  alias history   never promoted")
    return "\n".join(lines)


def reproduce_commands(chain: dict[str, Any], workdir: str) -> list[str]:
    """Shell commands that rebuild a version from its commit; DVC refetches or rebuilds the data."""
    return [
        f"git worktree add --detach {workdir} {chain['git_commit']}",
        f"cd {workdir}",
        "dvc pull --allow-missing || true   # fetch cached outputs when the remote has them",
        "dvc repro                          # rebuild whatever is missing or stale",
        f"# then compare data/evaluation/metrics.json['{chain['training_run']['name']}'] with {chain['test_metrics']}",
    ]
