from pathlib import Path

import pytest
import yaml

from seqpipe.config import load_config
from seqpipe.errors import ConfigError


def _edit(conf: Path, mutate) -> None:
    path = conf / "pipeline.yaml"
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))


def test_repository_config_loads_with_defaults_from_model_files():
    cfg = load_config(Path(__file__).resolve().parents[1] / "conf")
    assert cfg.data.source.name == "tourism-monthly"
    lstm = cfg.model("lstm")
    assert lstm.arch == "lstm" and lstm.params["hidden_size"] == 64


def test_unknown_key_is_named(project):
    _edit(project / "conf", lambda d: d["training"].update(max_epoch=3))
    with pytest.raises(ConfigError, match=r"training\.max_epoch: Extra inputs are not permitted"):
        load_config(project / "conf")


def test_wrong_type_is_named(project):
    _edit(project / "conf", lambda d: d["training"].update(batch_size="big"))
    with pytest.raises(ConfigError, match=r"training\.batch_size"):
        load_config(project / "conf")


def test_model_overrides_merge_over_model_file(project):
    _edit(project / "conf", lambda d: d.update(model_overrides={"lstm": {"hidden_size": 4}}))
    cfg = load_config(project / "conf")
    assert cfg.model("lstm").params == {"hidden_size": 4, "num_layers": 1, "dropout": 0.0}


def test_overrides_for_an_unlisted_model_are_refused(project):
    _edit(project / "conf", lambda d: d.update(model_overrides={"gru": {"hidden_size": 4}}))
    with pytest.raises(ConfigError, match=r"model_overrides names models that 'models' does not list: \['gru'\]"):
        load_config(project / "conf")


def test_missing_model_file_names_the_file(project):
    _edit(project / "conf", lambda d: d.update(models=["transformerx"]))
    with pytest.raises(ConfigError, match=r"models/transformerx\.yaml: config file not found"):
        load_config(project / "conf")


def test_csv_source_needs_a_path(project):
    _edit(project / "conf", lambda d: d["data"]["source"].pop("path"))
    with pytest.raises(ConfigError, match="data.source.path is required"):
        load_config(project / "conf")


def test_bad_model_param_names_the_model_file_even_outside_conf(tmp_path):
    import shutil

    from conftest import write_config
    from seqpipe import steps

    conf = write_config(tmp_path)
    moved = shutil.move(str(conf), str(tmp_path / "settings"))
    (tmp_path / "settings" / "models" / "lstm.yaml").write_text("arch: lstm\nparams: {hidden: 3}\n")
    cfg = load_config(moved)
    with pytest.raises(ConfigError, match=r"settings/models/lstm\.yaml: lstm: unknown params \['hidden'\]"):
        steps.train(cfg, "lstm", parent_run_id="unused")


def test_connecting_does_not_export_the_store_to_child_processes(cfg):
    import os

    from seqpipe.tracking.store import connect

    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    connect(cfg)
    assert {k: os.environ.get(k) for k in before} == before
