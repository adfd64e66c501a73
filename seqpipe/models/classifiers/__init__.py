"""Sequence classifier networks behind one interface, and a catalog from name to class.

Each maps a padded batch ``(batch, length, channels + 1)``, the mask last, to class
logits ``(batch, classes)``. Imports torch, numpy and the standard library only.
"""

from __future__ import annotations

from typing import Any

from seqpipe.models.classifiers.attention import TransformerClassifier
from seqpipe.models.classifiers.base import SequenceClassifier
from seqpipe.models.classifiers.convolutional import TCNClassifier
from seqpipe.models.classifiers.dbn import DBNClassifier
from seqpipe.models.classifiers.ensemble import DeepEnsembleClassifier
from seqpipe.models.classifiers.recurrent import GRUClassifier, LSTMClassifier, RNNClassifier
from seqpipe.models.classifiers.shape import ClassifierShape

CLASSIFIERS: dict[str, type[SequenceClassifier]] = {
    cls.arch: cls
    for cls in (
        RNNClassifier, LSTMClassifier, GRUClassifier, TCNClassifier, TransformerClassifier, DBNClassifier,
        DeepEnsembleClassifier,
    )
}


def build_classifier(arch: str, shape: ClassifierShape, params: dict[str, Any] | Any) -> SequenceClassifier:
    """``params``: the arch's typed params (seqpipe.hyperparams) or a mapping, validated the same way."""
    try:
        cls = CLASSIFIERS[arch]
    except KeyError:
        raise ValueError(f"unknown classifier architecture '{arch}'; known: {sorted(CLASSIFIERS)}") from None
    return cls(shape, cls.parse_params(params))


__all__ = ["CLASSIFIERS", "ClassifierShape", "SequenceClassifier", "build_classifier"]
