"""Every architecture by name, network or classical, of either task: build one, load one, list their defaults.

This is the only place that knows which architectures are networks and which are
statistical models or references; everything else goes through the ``Estimator``
interface (forecasting) or the ``ClassifierEstimator`` one (classification).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqpipe.estimators.classification import ClassifierEstimator
from seqpipe.estimators.classifier_ensemble import ClassifierEnsembleEstimator
from seqpipe.estimators.ensemble import EnsembleEstimator
from seqpipe.estimators.interface import Estimator
from seqpipe.estimators.neural import NeuralEstimator
from seqpipe.estimators.neural_classifier import NeuralClassifierEstimator
from seqpipe.estimators.references import MajorityClassEstimator, MiniRocketEstimator
from seqpipe.estimators.statistical import AutoETSEstimator, AutoThetaEstimator
from seqpipe.estimators.text_references import NBLinearEstimator, TfidfLinearEstimator
from seqpipe.hyperparams import CLASSIFICATION_ARCHS, PARAMS
from seqpipe.models import ARCHITECTURES
from seqpipe.models.classifiers import CLASSIFIERS
from seqpipe.models.persistence import SPEC_FILE

AnyEstimator = Estimator | ClassifierEstimator
_LOCAL: dict[str, type[AnyEstimator]] = {
    cls.arch: cls for cls in (AutoETSEstimator, AutoThetaEstimator, MajorityClassEstimator, MiniRocketEstimator,
                              TfidfLinearEstimator, NBLinearEstimator)
}
_BUILDERS: dict[str, Callable[[Any, Any], AnyEstimator]] = {
    **{arch: (lambda shape, params, arch=arch: NeuralEstimator.build(arch, shape, params)) for arch in ARCHITECTURES},
    **{arch: (lambda shape, params, arch=arch: NeuralClassifierEstimator.build(arch, shape, params))
       for arch in CLASSIFIERS},
    **{arch: cls for arch, cls in _LOCAL.items()},
    EnsembleEstimator.arch: EnsembleEstimator.build,
    ClassifierEnsembleEstimator.arch: ClassifierEnsembleEstimator.build,
}
_LOADERS: dict[str, Callable[[Path], AnyEstimator]] = {
    **{arch: NeuralEstimator.load for arch in ARCHITECTURES},
    **{arch: NeuralClassifierEstimator.load for arch in CLASSIFIERS},
    **{arch: cls.load for arch, cls in _LOCAL.items()},
    EnsembleEstimator.arch: EnsembleEstimator.load,
    ClassifierEnsembleEstimator.arch: ClassifierEnsembleEstimator.load,
}


def architectures() -> list[str]:
    return list(_BUILDERS)


def task_of(arch: str) -> str:
    """The task an architecture serves: ``classify`` or ``forecast``."""
    return "classify" if arch in CLASSIFICATION_ARCHS else "forecast"


def build_estimator(arch: str, shape: Any, params: Any) -> AnyEstimator:
    """The estimator of ``arch`` for a problem of ``shape``: a forecaster's ProblemShape, a classifier's ClassifierShape."""
    try:
        builder = _BUILDERS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture '{arch}'; known: {sorted(_BUILDERS)}") from None
    return builder(shape, params)


def load_estimator(folder: Path) -> AnyEstimator:
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
