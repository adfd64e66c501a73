"""Synthetic series from a trained GAN: its generator, run without a history, chained block by block."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqpipe.config import PipelineConfig
from seqpipe.data.domain import bounded
from seqpipe.data.prepare import load_prepared
from seqpipe.errors import ConfigError
from seqpipe.evaluation.forecast import future_timestamps
from seqpipe.io import write_table
from seqpipe.layout import Layout
from seqpipe.models.gan import GANForecaster
from seqpipe.models.persistence import SPEC_FILE, load_model
from seqpipe.tasks import task_step

SYNTHETIC_DIR = "synthetic"
# A generated series this flat has no shape to scale: it stays flat at its level.
FLAT_SPREAD = 1e-8

logger = logging.getLogger(__name__)


@task_step
def synthesize(cfg: PipelineConfig, model: str | None = None, series: int | None = None, length: int | None = None,
               seed: int | None = None, output: Path | None = None) -> Path:
    """Write ``series`` synthetic series of ``length`` points drawn from a trained GAN; return the file.

    The generator works in normalised units (every window on its own level and spread), so
    it gives each series its shape; the level and spread come from a training series picked
    at random (its training part's mean and standard deviation), and the series starts where
    that one starts. The file (CSV or Parquet, by suffix; default ``data/synthetic/<model>.parquet``)
    has the source's column names, so it can be read back as a ``csv`` or ``parquet`` source.
    Arguments left out come from the config's ``synthesis`` section.
    """
    settings = cfg.synthesis
    model = model or settings.model
    series = settings.series if series is None else series
    seed = settings.seed if seed is None else seed
    if series < 1 or (length is not None and length < 2):
        raise ConfigError(f"synthesize: needs at least 1 series of at least 2 points, got {series} of {length}")
    layout = Layout.of(cfg)
    folder = layout.models / model
    if not (folder / SPEC_FILE).is_file():
        raise ConfigError(f"{folder}: no trained model '{model}'; list it in `models` and run `seqpipe train` first")
    generator_model = load_model(folder)
    if not isinstance(generator_model, GANForecaster):
        raise ConfigError(f"{folder}: model '{model}' is a {generator_model.arch}; synthesize needs a gan")
    try:
        prepared = load_prepared(layout.prepared)
    except FileNotFoundError as missing:
        raise ConfigError(f"{layout.prepared}: no prepared data ({missing.filename}); run `seqpipe prepare` first") from None

    # Each series' training part: its length sets the default length, its mean and spread the donors' level.
    by_series = prepared.frame[prepared.frame["split"] == "train"].groupby("series_id", sort=True)
    length = length or settings.length or int(by_series.size().median())
    generator = torch.Generator().manual_seed(seed)
    try:
        normalised = generator_model.synthesize(series, length, generator).double().numpy()
    except ValueError as error:
        raise ConfigError(f"{folder}: {error}") from None

    # Which training series lends each synthetic one its level, spread and start: drawn from the seed too.
    level, spread = by_series["value"].mean(), by_series["value"].std(ddof=0).fillna(0.0)
    donors = level.index.to_numpy()[np.random.default_rng(seed).integers(0, len(level), series)]
    shape = (normalised - normalised.mean(1, keepdims=True)) / np.maximum(normalised.std(1, keepdims=True), FLAT_SPREAD)
    values = bounded(level.reindex(donors).to_numpy()[:, None] + spread.reindex(donors).to_numpy()[:, None] * shape,
                     prepared.lower_bound)
    first = prepared.frame.groupby("series_id", sort=True)["timestamp"].first().reindex(donors)
    stamps = np.concatenate([first.to_numpy()[:, None],
                             future_timestamps(first, length - 1, prepared.spec.freq).reshape(series, -1)], axis=1)
    width = len(str(series))
    columns = cfg.data.source.columns
    frame = pd.DataFrame({
        columns.series_id or "series_id": np.repeat([f"synthetic-{i:0{width}d}" for i in range(1, series + 1)], length),
        columns.timestamp: stamps.ravel(),
        columns.value: values.ravel(),
    })
    target = output or (cfg.data_dir / SYNTHETIC_DIR / f"{model}.parquet")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_table(frame, target)
    logger.info(f"synthesized {series} series of {length} points with '{model}' (seed {seed}) -> {target}")
    return target
