"""Lineage tags: what data, code and config a run was made from."""

from __future__ import annotations

import subprocess
from pathlib import Path

from seqpipe.config import PipelineConfig

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
