"""A run killed after some epochs and rerun with its checkpoint ends exactly as an uninterrupted one."""

import pytest
import torch

from seqpipe.models import build_model
from seqpipe.training import TrainSettings, fit, seed_everything
from tests.test_models import SHAPE, _seasonal_windows

SETTINGS = TrainSettings(max_epochs=4, batch_size=32, patience=10, progress=False)
# Dropout draws from the global RNG; the GAN has two optimizers and draws noise; the DBN
# pre-trains before the first epoch, which a resumed run skips (the weights hold its result);
# N-BEATS applies a shared block several times, with dropout; N-HiTS pools and interpolates.
MODELS = {
    "lstm": {"hidden_size": 8, "num_layers": 2, "dropout": 0.2},
    "gan": {},
    "dbn": {"hidden_sizes": [16, 8], "pretrain_epochs": 1},
    "nbeats": {"stack_types": ["trend", "seasonality"], "blocks_per_stack": 2, "share_weights": True, "layers": 2,
               "layer_width": 32, "dropout": 0.1},
    "nhits": {"layers": 2, "layer_width": 32},
}


class Killed(Exception):
    pass


def _train(arch, checkpoint=None, kill_after=None, signature=None):
    seed_everything(5, num_threads=1)
    model = build_model(arch, SHAPE, MODELS[arch])

    def on_epoch(log):
        if log.epoch == kill_after:
            raise Killed

    result = fit(model, _seasonal_windows(192, 1), _seasonal_windows(48, 2), SETTINGS,
                 on_epoch=on_epoch, checkpoint=checkpoint, signature=signature or {"arch": arch})
    return model, result


def _losses(result):
    return [(e.epoch, e.train_loss, e.val_loss, e.learning_rate) for e in result.history]


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_resume_after_a_kill_is_bit_identical(arch, tmp_path):
    expected, expected_result = _train(arch)
    checkpoint = tmp_path / "ckpt" / f"{arch}.pt"
    with pytest.raises(Killed):
        _train(arch, checkpoint, kill_after=2)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    resumed, result = _train(arch, checkpoint)
    for (key, a), b in zip(expected.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    assert _losses(result) == _losses(expected_result)
    assert (result.best_epoch, result.best_val_loss) == (expected_result.best_epoch, expected_result.best_val_loss)


def test_resume_without_the_checkpoint_state_would_differ(tmp_path):
    """Guards the test above: restarting at epoch 3 from the weights alone is not the same run."""
    expected, _ = _train("lstm")
    checkpoint = tmp_path / "lstm.pt"
    with pytest.raises(Killed):
        _train("lstm", checkpoint, kill_after=2)
    saved = torch.load(checkpoint, weights_only=True)
    saved["generator"] = torch.Generator().manual_seed(0).get_state()
    torch.save(saved, checkpoint)
    resumed, _ = _train("lstm", checkpoint)
    assert not all(torch.equal(a, b) for a, b in zip(expected.state_dict().values(), resumed.state_dict().values()))


def test_checkpoint_with_another_signature_is_discarded(tmp_path, caplog):
    checkpoint = tmp_path / "lstm.pt"
    with pytest.raises(Killed):
        _train("lstm", checkpoint, kill_after=1, signature={"config": "old"})
    expected, expected_result = _train("lstm")
    fresh, result = _train("lstm", checkpoint, signature={"config": "new"})
    assert "ignoring checkpoint" in caplog.text
    assert _losses(result) == _losses(expected_result)
    assert all(torch.equal(a, b) for a, b in zip(expected.state_dict().values(), fresh.state_dict().values()))
