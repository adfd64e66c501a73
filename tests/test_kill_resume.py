"""`seqpipe train` killed by the operating system mid-training resumes to the very weights of an uninterrupted run.

tests/test_train_resume.py kills the step in-process (an exception in the epoch loop);
here the training is a real `seqpipe train` process and it dies by SIGKILL, with its
whole process group: no handler, no cleanup.
The rerun resumes from the last checkpoint and, on CPU, writes a model folder byte for
byte equal to that of an uninterrupted run in another project with the same data and config.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import copy_project_code, make_series, run_cli, tree_digest, write_config
from processes import kill_group

pytestmark = pytest.mark.slow

# Enough epochs that the kill lands mid-training (a tiny LSTM takes ~50 ms an epoch), few enough to stay short.
EPOCHS = 200


def _project(root: Path):
    from seqpipe import steps
    from seqpipe.config import load_config

    (root / "input").mkdir(parents=True)
    make_series().to_csv(root / "input" / "sales.csv", index=False)
    write_config(root, training={"max_epochs": EPOCHS, "patience": EPOCHS}, models=["lstm"])
    copy_project_code(root)
    cfg = load_config(root / "conf")
    steps.ingest(cfg)
    steps.validate(cfg)
    steps.prepare(cfg)
    return cfg


def _start_training(cfg) -> subprocess.Popen:
    """`seqpipe train --model lstm` as its own process group (the group a kill takes down)."""
    log_path = cfg.root / f"train-{time.monotonic_ns()}.log"
    process = subprocess.Popen([sys.executable, "-m", "seqpipe.cli", "train", "--model", "lstm",
                                "--conf", str(cfg.conf_dir)],
                               cwd=cfg.root, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    process.log_path = log_path  # type: ignore[attr-defined]
    return process


def test_training_killed_by_sigkill_resumes_to_the_uninterrupted_weights(tmp_path):
    from seqpipe.steps import Layout

    killed, whole = _project(tmp_path / "killed"), _project(tmp_path / "whole")
    checkpoint = Layout.of(killed).checkpoints / "lstm.pt"
    model = Layout.of(killed).models / "lstm"

    uninterrupted = _start_training(whole)  # alongside: the two share nothing but the CPU
    training = _start_training(killed)
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file():
            assert training.poll() is None, (f"`seqpipe train` ended (exit {training.returncode}) before a "
                                             f"checkpoint:\n{training.log_path.read_text()[-4000:]}")
            assert time.monotonic() < deadline, "training wrote no checkpoint within 300 s"
            time.sleep(0.05)
        pids = kill_group(training.pid, "the killed `seqpipe train`")
        training.wait()
        assert training.returncode == -signal.SIGKILL
        assert pids and training.pid in pids  # the group the command leads, gone with it
        saved = torch.load(checkpoint, weights_only=True)["epoch"]
        assert 1 <= saved < EPOCHS, f"the kill did not land mid-training (checkpoint after epoch {saved})"
        assert not model.exists()  # nothing finished, nothing half-written

        resumed = run_cli("train", "--model", "lstm", "--conf", str(killed.conf_dir), cwd=killed.root)
        output = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, output[-4000:]
        assert re.search(rf"\[lstm\] resuming from \S+ after epoch {saved}\b", output), output[-4000:]
        assert not checkpoint.exists()

        assert uninterrupted.wait(timeout=600) == 0, uninterrupted.log_path.read_text()[-4000:]
    finally:
        for process in (training, uninterrupted):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # only when a failed assertion left it running
            process.wait()
    reference = Layout.of(whole).models / "lstm"
    assert (model / "weights.pt").read_bytes() == (reference / "weights.pt").read_bytes()
    assert tree_digest(model) == tree_digest(reference)  # history.json too: every epoch, as if never killed
