"""Progress inside an epoch: a log line every ``progress_interval`` seconds off a terminal, a bar on one,
nothing with ``progress = False``, and never a change to the weights."""

import logging
import re

import torch

import seqpipe.training.loop as loop
from seqpipe.models import build_model
from seqpipe.training import TrainSettings, fit, seed_everything
from tests.test_models import SHAPE, _seasonal_windows

# Batches of one window: a long epoch (96 batches) for a tiny model.
WINDOWS = 96
BATCH_LINE = re.compile(r"\[dlinear\] epoch +1/2  batch (\d+)/96 \((\d+)/96 examples\)  train [\d.]+ so far")


def _train(**settings):
    seed_everything(3, num_threads=1)
    model = build_model("dlinear", SHAPE, {})
    fit(model, _seasonal_windows(WINDOWS, 1), _seasonal_windows(16, 2),
        TrainSettings(max_epochs=2, batch_size=1, patience=5, **settings), name="dlinear")
    return model.state_dict()


def test_a_long_epoch_logs_its_progress_off_a_terminal(caplog, monkeypatch):
    monkeypatch.setattr(loop, "_stderr_is_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="seqpipe")
    _train(progress_interval=1e-9)
    messages = [r.getMessage() for r in caplog.records if r.name == "seqpipe.training.loop"]
    inside = [m for m in messages if BATCH_LINE.match(m)]
    assert inside, messages
    # Inside the epoch: before its epoch line, counting batches that are done.
    first_epoch_line = next(i for i, m in enumerate(messages) if m.startswith("[dlinear] epoch   1/2  train"))
    assert messages.index(inside[0]) < first_epoch_line
    done = [int(BATCH_LINE.match(m).group(1)) for m in inside]
    assert done == sorted(done) and 0 < done[0] < WINDOWS


def test_the_interval_spaces_the_lines(caplog, monkeypatch):
    monkeypatch.setattr(loop, "_stderr_is_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="seqpipe")
    _train(progress_interval=3600)
    assert not [r for r in caplog.records if "batch" in r.getMessage()]
    # The per-epoch lines stay.
    assert sum("[dlinear] epoch " in r.getMessage() for r in caplog.records) == 2


def test_a_terminal_gets_a_bar_not_lines(caplog, capsys, monkeypatch):
    monkeypatch.setattr(loop, "_stderr_is_terminal", lambda: True)
    caplog.set_level(logging.INFO, logger="seqpipe")
    _train(progress_interval=1e-9)
    err = capsys.readouterr().err
    assert "[dlinear] epoch   1/2" in err and "/96 [" in err and "batch/s" in err
    assert not [r for r in caplog.records if BATCH_LINE.match(r.getMessage())]


def test_progress_off_prints_nothing_per_batch(caplog, capsys, monkeypatch):
    for terminal in (False, True):
        monkeypatch.setattr(loop, "_stderr_is_terminal", lambda: terminal)
        caplog.set_level(logging.DEBUG, logger="seqpipe")
        caplog.clear()
        _train(progress=False, progress_interval=1e-9)
        assert not [r for r in caplog.records if r.name.startswith("seqpipe.training")]
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == ""


def test_progress_settings_do_not_change_the_weights(monkeypatch):
    monkeypatch.setattr(loop, "_stderr_is_terminal", lambda: False)
    quiet = _train(progress=False)
    chatty = _train(progress=True, progress_interval=1e-9)
    monkeypatch.setattr(loop, "_stderr_is_terminal", lambda: True)
    bar = _train(progress=True, progress_interval=1e-9)
    for key in quiet:
        assert torch.equal(quiet[key], chatty[key]) and torch.equal(quiet[key], bar[key]), key
