"""What training and the backtest share: build a configured estimator from its seed and fit it on prepared data."""

from __future__ import annotations

from typing import Any

from seqpipe.config import ModelSpec, PipelineConfig
from seqpipe.data.catalog import series_spec
from seqpipe.data.prepare import PreparedData
from seqpipe.errors import ConfigError
from seqpipe.estimators import Estimator, FitOptions, build_estimator
from seqpipe.estimators.inputs import fit_data
from seqpipe.models import ProblemShape
from seqpipe.steps.data import input_features
from seqpipe.training import FitResult, TrainSettings, seed_everything


def model_training(cfg: PipelineConfig, spec: ModelSpec) -> dict[str, Any]:
    """The training settings ``spec`` fits with: the pipeline's ``training``, and over them the model's own."""
    return {**cfg.training.model_dump(mode="json"), **spec.training}


def train_settings(cfg: PipelineConfig, spec: ModelSpec) -> TrainSettings:
    return TrainSettings(**model_training(cfg, spec))


def seeded_estimator(cfg: PipelineConfig, spec: ModelSpec) -> Estimator:
    """Seed every generator, then build the configured model: its initial weights follow from the seed."""
    data = series_spec(cfg.data)
    seed_everything(cfg.training.seed, cfg.training.num_threads)
    try:
        features = input_features(cfg)
        shape = ProblemShape(data.lookback, data.horizon, data.season, features.channels, masked=features.mask)
        return build_estimator(spec.arch, shape, spec.params)
    except ValueError as exc:
        raise ConfigError(f"{cfg.model_file(spec.name)}: {exc}") from None


def fit_estimator(cfg: PipelineConfig, spec: ModelSpec, estimator: Estimator, prepared: PreparedData,
                  options: FitOptions = FitOptions()) -> FitResult:
    """Fit on the training part, stopping early on the validation window, with the model's training settings: the
    recipe train and backtest share."""
    return estimator.fit(fit_data(prepared), train_settings(cfg, spec), options)
