"""steps.train resumes a killed run from data/checkpoints/ and cleans up after itself."""

import logging

import pytest
import torch
import yaml

import seqpipe.steps as steps
import seqpipe.steps.training as training_steps
from seqpipe.config import load_config


class Killed(Exception):
    pass


def _weights(cfg):
    return torch.load(steps.Layout.of(cfg).models / "lstm" / "weights.pt", weights_only=True)


def test_train_resumes_after_a_kill_and_ignores_a_stale_checkpoint(cfg, project, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="seqpipe")
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    parent = steps.start_pipeline_run(cfg)
    checkpoint = steps.Layout.of(cfg).checkpoints / "lstm.pt"

    steps.train(cfg, "lstm", parent)
    expected = _weights(cfg)
    assert not checkpoint.exists()

    # Patched where train looks it up, so the kill lands inside train's epoch loop.
    log_metrics = training_steps.log_metrics

    def dies_at_epoch_two(client, run_id, metrics, step=None):
        if step == 2:
            raise Killed
        log_metrics(client, run_id, metrics, step=step)

    monkeypatch.setattr(training_steps, "log_metrics", dies_at_epoch_two)
    with pytest.raises(Killed):
        steps.train(cfg, "lstm", parent)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2
    monkeypatch.setattr(training_steps, "log_metrics", log_metrics)

    steps.train(cfg, "lstm", parent)
    assert "resuming" in caplog.text
    resumed = _weights(cfg)
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    assert not checkpoint.exists()

    # A checkpoint from another learning rate is not this run's: it is dropped, not resumed.
    monkeypatch.setattr(training_steps, "log_metrics", dies_at_epoch_two)
    with pytest.raises(Killed):
        steps.train(cfg, "lstm", parent)
    monkeypatch.setattr(training_steps, "log_metrics", log_metrics)
    pipeline = yaml.safe_load((project / "conf" / "pipeline.yaml").read_text())
    pipeline["training"]["learning_rate"] = 0.01
    (project / "conf" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    caplog.clear()
    steps.train(load_config(project / "conf"), "lstm", parent)
    out = caplog.text
    assert "ignoring checkpoint" in out and "resuming" not in out
    assert not checkpoint.parent.exists()
