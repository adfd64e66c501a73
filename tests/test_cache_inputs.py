"""Prefect's cache key and DVC's stages come from one declaration (dvc.yaml) and rerun the same steps.

``seqpipe.fingerprint.step_inputs`` hashes exactly the code, data and config that a
step's stage in dvc.yaml declares. These tests check that the declaration is whole (the
code each step runs is listed) and, on a real project copy with DVC, that an edit makes
``dvc status`` and the cache key ask for the same reruns, and that an edit of code no
step runs makes neither rerun anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath

import pytest
import yaml

from conftest import copy_project_code, make_series, write_config
from seqpipe import fingerprint, steps
from seqpipe.config import load_config

MODELS = ("seasonal_naive", "lstm")
STAGES = ("ingest", "validate", "prepare", *(f"train@{m}" for m in MODELS))
# seqpipe files a step runs that do not decide what it writes, so they are no deps.
NOT_OUTPUT_SHAPING = {
    "seqpipe/errors.py": "error messages",
    "seqpipe/environment.py": "logging and quiet defaults",
    "seqpipe/hashing.py": "digests for lineage tags and checkpoint signatures",
    "seqpipe/layout.py": "where outputs go, not what they hold",
    "seqpipe/tracking": "MLflow bookkeeping: runs, params, metrics, tags",
    "seqpipe/steps/runs.py": "the pipeline's MLflow run and lineage tags",
    "seqpipe/steps/transfer.py": "carrying folders through MLflow",
}
# Per step: run, but only for MLflow tags.
NOT_OUTPUT_SHAPING_IN = {"train": {"seqpipe/data/snapshot.py": "the raw snapshot's md5, a lineage tag"}}


def _step(stage: str) -> tuple[str, str | None]:
    step, _, model = stage.partition("@")
    return step, model or None


def _covered(path: str, declared: list[str] | tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared)


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, f"dvc {args}: {result.stdout}\n{result.stderr}"
    return result


class _Tracer:
    """The seqpipe source files whose functions run while it is on (this thread and new ones)."""

    def __init__(self) -> None:
        self.package = str(fingerprint.PACKAGE_ROOT) + os.sep
        self.files: set[str] = set()

    def _trace(self, frame, event, arg):  # noqa: ANN001
        filename = frame.f_code.co_filename
        if filename.startswith(self.package):
            self.files.add(Path(filename).relative_to(fingerprint.CODE_ROOT).as_posix())
        return None  # no line events: only which functions are entered

    def run(self, fn, *args):  # noqa: ANN001
        previous = sys.gettrace()
        sys.settrace(self._trace)
        threading.settrace(self._trace)
        try:
            return fn(*args)
        finally:
            sys.settrace(previous)
            threading.settrace(None)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A DVC project with its own copy of the code, its cached steps run once (traced) and committed to dvc.lock."""
    repo = tmp_path_factory.mktemp("cache_inputs") / "repo"
    repo.mkdir()
    copy_project_code(repo)
    (repo / "README.md").write_text("# a project\n")
    (repo / "input").mkdir()
    make_series().to_csv(repo / "input" / "sales.csv", index=False)
    write_config(repo, models=list(MODELS), training={"max_epochs": 2})
    cfg = load_config(repo / "conf")

    executed: dict[str, set[str]] = {}
    for step, call in (("ingest", steps.ingest), ("validate", steps.validate), ("prepare", steps.prepare)):
        tracer = _Tracer()
        tracer.run(call, cfg)
        executed[step] = tracer.files
    parent = steps.start_pipeline_run(cfg)
    for model in MODELS:
        tracer = _Tracer()
        tracer.run(steps.train, cfg, model, parent)
        executed[f"train@{model}"] = tracer.files
    steps.finish_pipeline_run(cfg, parent, succeeded=True)

    _dvc("init", "--no-scm", "-q", cwd=repo)
    _dvc("commit", "-f", "-q", *STAGES, cwd=repo)
    return repo, executed


def _dvc_changed(repo: Path) -> set[str]:
    return set(json.loads(_dvc("status", "--json", *STAGES, cwd=repo).stdout or "{}"))


def _keys(repo: Path) -> dict[str, str | None]:
    cfg = load_config(repo / "conf")
    return {stage: fingerprint.step_inputs(cfg, *_step(stage), root=repo) for stage in STAGES}


def test_the_cache_key_reads_the_stages_as_dvc_does(project):
    """fingerprint's reading of dvc.yaml (code, data, params per stage) is DVC's own, stage by stage."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo, _ = project
    with Repo(str(repo)) as dvc:
        stages = {stage.name: stage for stage in dvc.index.stages}
        for name in STAGES:
            declared = fingerprint.declared_inputs(*_step(name), root=repo)
            deps = [PurePosixPath(d.def_path).as_posix() for d in stages[name].deps
                    if not isinstance(d, ParamsDependency)]
            params = sorted(((d.def_path, key) for d in stages[name].deps if isinstance(d, ParamsDependency)
                             for key in (d.params or [None])), key=str)
            assert sorted(declared.code + declared.data) == sorted(deps), name
            assert sorted(declared.params, key=str) == sorted(params, key=str), name
            # The data a step reads is what the steps before it wrote.
            upstream = {o.def_path for stage in stages.values() for o in stage.outs}
            assert set(declared.data) <= upstream, name


def test_the_declaration_names_real_code_and_known_config():
    """Every code path a cached stage lists exists, and every param maps to a config value."""
    cfg = load_config(fingerprint.CODE_ROOT / "conf")
    for step in fingerprint.CACHED_STEPS:
        for model in ([m.name for m in cfg.models] if step == "train" else [None]):
            declared = fingerprint.declared_inputs(step, model)
            missing = [p for p in declared.code if not (fingerprint.CODE_ROOT / p).exists()]
            assert not missing, f"dvc.yaml: stage {step} depends on {missing}, which do not exist: update its deps"
            assert declared.code, step
            values = fingerprint.declared_config(cfg, step, model)
            assert set(values) == {f"{file}:{key or ''}" for file, key in declared.params}


def test_the_code_each_step_runs_is_declared(project):
    """Every seqpipe file whose functions a step ran is in its stage's deps, or decides nothing it writes.

    Traced on a real run of each step. Module-level constants are not seen by the trace:
    this checks that the deps are not too few for the functions run, not that they are enough.
    """
    repo, executed = project
    undeclared = {}
    for stage, files in executed.items():
        step, model = _step(stage)
        declared = fingerprint.declared_inputs(step, model).code
        exempt = [*NOT_OUTPUT_SHAPING, *NOT_OUTPUT_SHAPING_IN.get(step, {})]
        missing = sorted(f for f in files if not _covered(f, declared) and not _covered(f, exempt))
        if missing:
            undeclared[stage] = missing
    assert not undeclared, (f"code the steps run but dvc.yaml does not list as their deps: {undeclared}; add them "
                            "to the stage's deps (or, if they shape nothing the step writes, to NOT_OUTPUT_SHAPING)")
    assert "seqpipe/training/loop.py" in executed["train@lstm"]  # the trace saw the training loop


def test_after_the_first_run_dvc_is_up_to_date(project):
    repo, _ = project
    assert _dvc_changed(repo) == set()
    assert None not in _keys(repo).values()


def test_the_prefect_policy_uses_the_declared_key(project):
    from flows.tasks import StepInputs

    repo, _ = project
    cfg = load_config(repo / "conf")
    for stage in STAGES:
        step, model = _step(stage)
        key = StepInputs(step=step).compute_key(None, {"cfg": cfg, "name": model}, {})
        assert key is not None and key == fingerprint.step_inputs(cfg, step, model)


def _append(text: str):
    return lambda old: old + text


def _yaml_edit(path: list[str], value):  # noqa: ANN001
    def edit(old: str) -> str:
        loaded = yaml.safe_load(old)
        node = loaded
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        return yaml.safe_dump(loaded, sort_keys=False)
    return edit


TRAIN = {f"train@{m}" for m in MODELS}
# (file in the project, edit, the stages that must rerun: by DVC and by the cache key alike)
EDITS = [
    ("seqpipe/steps/training.py", _append("\n# edited\n"), TRAIN),
    ("seqpipe/models/recurrent.py", _append("\n# edited\n"), TRAIN),
    ("seqpipe/data/prepare.py", _append("\n# edited\n"), {"prepare", *TRAIN}),
    ("seqpipe/data/validation.py", _append("\n# edited\n"), {"validate"}),
    ("seqpipe/config.py", _append("\n# edited\n"), set(STAGES)),
    # Code no cached step runs, and files that are no code: nothing reruns.
    ("seqpipe/cli.py", _append("\n# edited\n"), set()),
    ("seqpipe/evaluation/plots.py", _append("\n# edited\n"), set()),
    ("README.md", _append("more words\n"), set()),
    # Config: one model's file retrains that model; a section no cached step reads, nothing.
    ("conf/models/lstm.yaml", _yaml_edit(["params", "hidden_size"], 8), {"train@lstm"}),
    ("conf/pipeline.yaml", _yaml_edit(["training", "max_epochs"], 3), TRAIN),
    ("conf/pipeline.yaml", _yaml_edit(["evaluation", "metric"], "smape"), set()),
]


@pytest.mark.parametrize("relative,edit,expected", EDITS, ids=[f"{e[0]}-{i}" for i, e in enumerate(EDITS)])
def test_an_edit_reruns_the_same_steps_under_dvc_and_prefect(project, relative, edit, expected):
    repo, _ = project
    before = _keys(repo)
    path = repo / relative
    original = path.read_text()
    path.write_text(edit(original))
    try:
        after = _keys(repo)
        by_key = {stage for stage in STAGES if after[stage] != before[stage]}
        by_dvc = _dvc_changed(repo)
    finally:
        path.write_text(original)
    assert by_dvc == by_key == expected, f"dvc status: {sorted(by_dvc)}, cache key: {sorted(by_key)}"
    assert _keys(repo) == before  # undone: content, not time, is what counts


def test_one_models_override_reruns_every_model_under_dvc_and_that_model_under_prefect(project):
    """The one place the two differ, by design: DVC cannot name one model's override (a missing key is an error)."""
    repo, _ = project
    before = _keys(repo)
    path = repo / "conf" / "pipeline.yaml"
    original = path.read_text()
    path.write_text(_yaml_edit(["model_overrides", "lstm"], {"hidden_size": 4})(original))
    try:
        after = _keys(repo)
        by_dvc = _dvc_changed(repo)
    finally:
        path.write_text(original)
    assert {stage for stage in STAGES if after[stage] != before[stage]} == {"train@lstm"}
    assert by_dvc == TRAIN
