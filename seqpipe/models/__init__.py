"""Forecasting architectures behind one interface, and a catalog from name to class.

Imports torch (and the standard library) only: no MLflow, no Prefect, no pandas.
"""

from __future__ import annotations

from typing import Any

from seqpipe.models.base import Forecaster, ProblemShape
from seqpipe.models.attention import TransformerForecaster
from seqpipe.models.baselines import Naive, SeasonalNaive
from seqpipe.models.convolutional import TCNForecaster
from seqpipe.models.dbn import DBNForecaster
from seqpipe.models.ensemble import DeepEnsembleForecaster
from seqpipe.models.gan import GANForecaster
from seqpipe.models.linear import DLinearForecaster
from seqpipe.models.nbeats import NBEATSForecaster, NHITSForecaster
from seqpipe.models.recurrent import GRUForecaster, LSTMForecaster, RNNForecaster
from seqpipe.models.vae import CVAEForecaster

ARCHITECTURES: dict[str, type[Forecaster]] = {
    cls.arch: cls
    for cls in (
        Naive, SeasonalNaive, RNNForecaster, LSTMForecaster, GRUForecaster,
        TCNForecaster, TransformerForecaster, DLinearForecaster, NBEATSForecaster, NHITSForecaster,
        CVAEForecaster, GANForecaster, DBNForecaster, DeepEnsembleForecaster,
    )
}


def build_model(arch: str, shape: ProblemShape, params: dict[str, Any] | Any) -> Forecaster:
    """``params``: the arch's typed params (seqpipe.hyperparams) or a mapping, validated the same way."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture '{arch}'; known: {sorted(ARCHITECTURES)}") from None
    return cls(shape, cls.parse_params(params))


__all__ = ["ARCHITECTURES", "Forecaster", "ProblemShape", "build_model"]
