"""Sequence classifier networks behind one interface, and a catalog from name to class.

Each maps a padded batch ``(batch, length, channels + 1)``, the mask last, to class
logits ``(batch, classes)``. The text classifiers (``seqpipe.models.classifiers.text``)
read token ids in channel 0 and need a shape with a ``vocabulary``; the others read
numeric frames. Imports torch, numpy and the standard library only.
"""

from __future__ import annotations

from typing import Any

from seqpipe.hyperparams import TEXT_CLASSIFIER_ARCHS
from seqpipe.models.classifiers.attention import TransformerClassifier
from seqpipe.models.classifiers.base import SequenceClassifier
from seqpipe.models.classifiers.convolutional import TCNClassifier
from seqpipe.models.classifiers.dbn import DBNClassifier
from seqpipe.models.classifiers.ensemble import DeepEnsembleClassifier
from seqpipe.models.classifiers.recurrent import GRUClassifier, LSTMClassifier, RNNClassifier
from seqpipe.models.classifiers.shape import ClassifierShape
from seqpipe.models.classifiers.text import (
    FastTextClassifier,
    TextCNNClassifier,
    TextDeepEnsembleClassifier,
    TextGRUClassifier,
    TextLSTMClassifier,
    TextRNNClassifier,
    TextTransformerClassifier,
)

CLASSIFIERS: dict[str, type[SequenceClassifier]] = {
    cls.arch: cls
    for cls in (
        RNNClassifier, LSTMClassifier, GRUClassifier, TCNClassifier, TransformerClassifier, DBNClassifier,
        DeepEnsembleClassifier,
        TextRNNClassifier, TextLSTMClassifier, TextGRUClassifier, TextCNNClassifier, TextTransformerClassifier,
        FastTextClassifier, TextDeepEnsembleClassifier,
    )
}


def build_classifier(arch: str, shape: ClassifierShape, params: dict[str, Any] | Any) -> SequenceClassifier:
    """``params``: the arch's typed params (seqpipe.hyperparams) or a mapping, validated the same way.

    A text architecture needs a shape with a vocabulary, and a numeric one a shape
    without: token ids read as numbers would mean nothing.
    """
    try:
        cls = CLASSIFIERS[arch]
    except KeyError:
        raise ValueError(f"unknown classifier architecture '{arch}'; known: {sorted(CLASSIFIERS)}") from None
    if arch in TEXT_CLASSIFIER_ARCHS and not shape.is_text:
        raise ValueError(f"'{arch}' classifies texts (token ids), but the sequences are numeric frames "
                         f"(vocabulary=0); use one of {sorted(set(CLASSIFIERS) - TEXT_CLASSIFIER_ARCHS)}")
    if arch not in TEXT_CLASSIFIER_ARCHS and shape.is_text:
        raise ValueError(f"'{arch}' reads numeric frames, but the sequences are texts (vocabulary="
                         f"{shape.vocabulary}); use one of {sorted(TEXT_CLASSIFIER_ARCHS)}")
    return cls(shape, cls.parse_params(params))


__all__ = ["CLASSIFIERS", "ClassifierShape", "SequenceClassifier", "build_classifier"]
