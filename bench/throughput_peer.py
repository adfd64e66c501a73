"""The peer half of bench/throughput.py: NeuralForecast's LSTM, run by bench/.peer-venv's python.

    bench/.peer-venv/bin/python bench/throughput_peer.py FOLDER

FOLDER holds ``data.npz`` (``values``: every series' scaled training part, concatenated;
``lengths``) and ``config.json``, both written by bench/throughput.py. This writes
``result.json`` (training seconds, steps, windows, versions) and ``forecast.npy``
(``(series, horizon)``: the forecast from the end of each training part, i.e. for the
validation window) into it. bench/throughput.py's docstring says what is matched and what
is not.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    import torch

    torch.set_num_threads(config["threads"])
    import neuralforecast
    import pandas as pd
    import pytorch_lightning as pl
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MSE
    from neuralforecast.models import LSTM

    cuda = config["device"] == "cuda"

    # NeuralForecast deep-copies its models, callbacks included: the clock writes here.
    timing: dict[str, float] = {}

    class Clock(pl.Callback):
        """Wall time of the training loop alone: after the trainer is set up, before predict."""

        def on_train_start(self, trainer, module):
            if cuda:
                torch.cuda.synchronize()
            timing["started"] = time.perf_counter()

        def on_train_end(self, trainer, module):
            if cuda:
                torch.cuda.synchronize()
            timing["seconds"] = time.perf_counter() - timing["started"]
            timing["steps"] = trainer.global_step

    data = np.load(folder / "data.npz")
    lengths = data["lengths"]
    frame = pd.DataFrame({
        "unique_id": np.repeat(np.arange(len(lengths)), lengths),
        "ds": np.concatenate([np.arange(n) for n in lengths]),
        "y": data["values"].astype(np.float32),
    })
    model = LSTM(
        h=config["horizon"],
        input_size=config["lookback"],
        encoder_n_layers=config["num_layers"],
        encoder_hidden_size=config["hidden_size"],
        encoder_dropout=config["dropout"],
        decoder_layers=1,  # one linear layer, as seqpipe's head
        loss=MSE(),
        valid_loss=MSE(),
        max_steps=config["max_steps"],
        learning_rate=config["learning_rate"],
        num_lr_decays=-1,
        val_check_steps=config["max_steps"],
        batch_size=config["series_batch"],
        windows_batch_size=config["batch_size"],
        inference_windows_batch_size=-1,
        scaler_type="standard",
        # Only windows whose input and target are complete: seqpipe's training windows.
        training_data_availability_threshold=[1.0, 1.0],
        random_seed=config["seed"],
        # Lightning trainer settings.
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed" if cuda else "32-true",
        gradient_clip_val=config["grad_clip"],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=[Clock()],
    )
    forecaster = NeuralForecast(models=[model], freq=1)
    forecaster.fit(df=frame, val_size=0)
    forecast = forecaster.predict().sort_values(["unique_id", "ds"])
    values = forecast["LSTM"].to_numpy(np.float32).reshape(len(lengths), config["horizon"])
    np.save(folder / "forecast.npy", values)
    (folder / "result.json").write_text(json.dumps({
        "seconds": timing["seconds"],
        "steps": timing["steps"],
        "windows": timing["steps"] * config["batch_size"],
        "neuralforecast": neuralforecast.__version__,
        "torch": torch.__version__,
        "lightning": pl.__version__,
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
