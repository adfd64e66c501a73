"""Every architecture by name, network or classical: build one, load one, list their defaults.

This is the only place that knows which architectures are networks and which are
statistical models; everything else goes through the ``Estimator`` interface.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqpipe.estimators.interface import Estimator
from seqpipe.estimators.neural import NeuralEstimator
from seqpipe.estimators.statistical import AutoETSEstimator, AutoThetaEstimator
from seqpipe.hyperparams import PARAMS
from seqpipe.models import ARCHITECTURES
from seqpipe.models.base import ProblemShape
from seqpipe.models.persistence import SPEC_FILE

_STATISTICAL: dict[str, type[Estimator]] = {cls.arch: cls for cls in (AutoETSEstimator, AutoThetaEstimator)}
_BUILDERS: dict[str, Callable[[ProblemShape, Any], Estimator]] = {
    **{arch: (lambda shape, params, arch=arch: NeuralEstimator.build(arch, shape, params)) for arch in ARCHITECTURES},
    **{arch: cls for arch, cls in _STATISTICAL.items()},
}
_LOADERS: dict[str, Callable[[Path], Estimator]] = {
    **{arch: NeuralEstimator.load for arch in ARCHITECTURES},
    **{arch: cls.load for arch, cls in _STATISTICAL.items()},
}


def architectures() -> list[str]:
    return list(_BUILDERS)


def build_estimator(arch: str, shape: ProblemShape, params: Any) -> Estimator:
    try:
        builder = _BUILDERS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture '{arch}'; known: {sorted(_BUILDERS)}") from None
    return builder(shape, params)


def load_estimator(folder: Path) -> Estimator:
    """The estimator saved in ``folder``, whatever its kind (its ``model.json`` names the architecture)."""
    arch = json.loads((folder / SPEC_FILE).read_text())["arch"]
    try:
        loader = _LOADERS[arch]
    except KeyError:
        raise ValueError(f"{folder}: unknown architecture '{arch}'; known: {sorted(_LOADERS)}") from None
    return loader(folder)


def default_params() -> dict[str, dict[str, Any]]:
    """Each architecture's params as ``conf/models/<name>.yaml`` starts from them."""
    return {arch: dataclasses.asdict(PARAMS[arch]()) for arch in _BUILDERS}
