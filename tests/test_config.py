import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from seqpipe.config import load_config
from seqpipe.errors import ConfigError
from seqpipe.hyperparams import AutoETSParams, RecurrentParams


def _edit(conf: Path, mutate) -> None:
    path = conf / "pipeline.yaml"
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))


def test_repository_config_loads_with_defaults_from_model_files():
    cfg = load_config(Path(__file__).resolve().parents[1] / "conf")
    assert cfg.data.source.name == "tourism-monthly"
    ensemble = cfg.model("nbeats_ensemble")
    assert ensemble.arch == "ensemble" and [m["params"]["loss"] for m in ensemble.params.members] == ["mase", "mape", "smape"]
    assert cfg.prepare.scaler == "meanabs"  # what the ensemble's mape and smape members need


def test_every_model_file_of_the_repository_loads(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).resolve().parents[1] / "conf", conf)
    names = sorted(path.stem for path in (conf / "models").glob("*.yaml"))
    _edit(conf, lambda d: d.update(models=names))
    cfg = load_config(conf)
    assert [spec.name for spec in cfg.models] == names
    hybrid = cfg.model("hybrid_ensemble").params
    assert [m["arch"] for m in hybrid.members] == ["ensemble", "auto_ets", "auto_theta"] and hybrid.combine == "mean"


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
    assert cfg.model("lstm").params == RecurrentParams(hidden_size=4, num_layers=1, dropout=0.0)
    assert cfg.model("lstm").model_dump(mode="json") == {
        "name": "lstm", "arch": "lstm", "params": {"hidden_size": 4, "num_layers": 1, "dropout": 0.0, "loss": "mse"},
        "training": {}}


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

    conf = write_config(tmp_path)
    moved = shutil.move(str(conf), str(tmp_path / "settings"))
    (tmp_path / "settings" / "models" / "lstm.yaml").write_text("arch: lstm\nparams: {hidden: 3}\n")
    with pytest.raises(ConfigError, match=r"settings/models/lstm\.yaml: params\.hidden: Extra inputs are not permitted"):
        load_config(moved)


def _write_model(conf: Path, name: str, text: str) -> None:
    (conf / "models" / f"{name}.yaml").write_text(text)
    _edit(conf, lambda d: d.update(models=[name]))


def test_mistyped_model_param_fails_at_load_naming_file_and_key(project):
    _write_model(project / "conf", "lstm", "arch: lstm\nparams: {hidden_size: big}\n")
    with pytest.raises(ConfigError, match=r"conf/models/lstm\.yaml: params\.hidden_size: Input should be a valid "
                                          r"integer \(got 'big'\)"):
        load_config(project / "conf")


def test_unknown_model_param_fails_at_load_naming_it(project):
    _write_model(project / "conf", "lstm", "arch: lstm\nparams: {hidden_size: 8, hiden_layers: 2}\n")
    with pytest.raises(ConfigError, match=r"conf/models/lstm\.yaml: params\.hiden_layers: Extra inputs are not permitted"):
        load_config(project / "conf")


def test_classical_params_are_typed_too(project):
    _write_model(project / "conf", "auto_ets", "arch: auto_ets\nparams: {model: 5}\n")
    with pytest.raises(ConfigError, match=r"conf/models/auto_ets\.yaml: params\.model: Input should be a valid string"):
        load_config(project / "conf")
    _write_model(project / "conf", "auto_ets", "arch: auto_ets\nparams: {model: AAN, damped: null}\n")
    assert load_config(project / "conf").model("auto_ets").params == AutoETSParams(model="AAN", damped=None)


def test_params_are_strict_no_coercion(project):
    _write_model(project / "conf", "dlinear", "arch: dlinear\nparams: {revin: 1, moving_average: '25'}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(project / "conf")
    assert "params.revin: Input should be a valid boolean" in str(raised.value)
    assert "params.moving_average: Input should be a valid integer" in str(raised.value)


def test_unknown_arch_names_file_and_known_archs(project):
    _write_model(project / "conf", "lstm", "arch: lstmm\nparams: {}\n")
    with pytest.raises(ConfigError, match=r"conf/models/lstm\.yaml: arch: unknown architecture 'lstmm'; known: \[.*'lstm'"):
        load_config(project / "conf")


def test_bad_override_names_pipeline_model_overrides(project):
    _edit(project / "conf", lambda d: d.update(model_overrides={"lstm": {"num_layers": 1.5}}))
    with pytest.raises(ConfigError, match=r"pipeline\.yaml: model_overrides\.lstm\.num_layers: Input should be a valid integer"):
        load_config(project / "conf")


def test_ensemble_member_params_are_checked_against_the_member_arch(project):
    _write_model(project / "conf", "deep_ensemble",
                 "arch: deep_ensemble\nparams: {member_arch: gru, member_params: {hidden_size: big}}\n")
    with pytest.raises(ConfigError, match=r"deep_ensemble\.yaml: params\.member_params: .*hidden_size: Input should be "
                                          r"a valid integer.*member_arch 'gru'"):
        load_config(project / "conf")
    _write_model(project / "conf", "deep_ensemble", "arch: deep_ensemble\nparams: {member_arch: grux}\n")
    with pytest.raises(ConfigError, match=r"params\.member_arch: .*unknown architecture 'grux'"):
        load_config(project / "conf")


def test_a_model_file_sets_its_own_training_settings_over_the_pipelines(project):
    from seqpipe.steps.fitting import train_settings

    conf = project / "conf"
    (conf / "models" / "lstm.yaml").write_text("arch: lstm\nparams: {}\ntraining: {learning_rate: 0.05, max_epochs: 2}\n")
    _edit(conf, lambda d: d.update(models=["lstm", "gru"]))
    (conf / "models" / "gru.yaml").write_text("arch: gru\nparams: {}\n")
    cfg = load_config(conf)
    own, plain = train_settings(cfg, cfg.model("lstm")), train_settings(cfg, cfg.model("gru"))
    assert (own.learning_rate, own.max_epochs) == (0.05, 2)
    assert (plain.learning_rate, plain.max_epochs) == (cfg.training.learning_rate, cfg.training.max_epochs)
    assert dataclasses.replace(own, learning_rate=plain.learning_rate, max_epochs=plain.max_epochs) == plain


@pytest.mark.parametrize(("training", "error"), [
    ("{seed: 3}", r"lstm\.yaml: training: .*\['seed'\] cannot be set per model; a model may set \['batch_size'"),
    ("{learning_rate: -1.0}", r"lstm\.yaml: training: .*learning_rate: Input should be greater than 0"),
    ("{learning_rat: 0.1}", r"lstm\.yaml: training: .*\['learning_rat'\] cannot be set per model"),
    ("0.1", r"lstm\.yaml: training: Input should be a valid dictionary"),
])
def test_a_models_own_training_settings_are_checked_naming_the_file(project, training, error):
    _write_model(project / "conf", "lstm", f"arch: lstm\nparams: {{}}\ntraining: {training}\n")
    with pytest.raises(ConfigError, match=error):
        load_config(project / "conf")


def test_typed_params_survive_the_worker_payload(project):
    from seqpipe.config import PipelineConfig

    cfg = load_config(project / "conf")
    again = PipelineConfig.from_payload(cfg.payload(), project / "conf")
    assert again.models == cfg.models and again.fingerprint() == cfg.fingerprint()
    assert all(dataclasses.is_dataclass(spec.params) for spec in again.models)


def test_connecting_does_not_export_the_store_to_child_processes(cfg):
    import os

    from seqpipe.tracking.store import connect

    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    connect(cfg)
    assert {k: os.environ.get(k) for k in before} == before
