"""Drift of labelled texts: the label mix, token lengths and the share of words production never learned."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqpipe.config import DriftConfig, SequenceSplitConfig, TextConfig
from seqpipe.data.text_drift import UNKNOWN_QUANTITY, detect_text_drift

VOCABULARY = [f"w{i}" for i in range(60)]
NEW_WORDS = [f"new{i}" for i in range(60)]
SETTINGS, TEXT, SPLIT = DriftConfig(), TextConfig(min_frequency=1), SequenceSplitConfig()


def _texts(n: int, seed: int, words: list[str], labels=("a", "b"), length=(5, 15), prefix="t") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "sequence_id": [f"{prefix}{i:04d}" for i in range(n)],
        "text": [" ".join(rng.choice(words, size=int(rng.integers(*length)))) for _ in range(n)],
        "label": rng.choice(labels, size=n),
    })


def _drifted(report) -> set[str]:
    return {q.name for q in report.quantities if q.drifted}


def test_the_same_kind_of_text_does_not_drift():
    report = detect_text_drift(_texts(400, 0, VOCABULARY), _texts(400, 1, VOCABULARY, prefix="n"), SETTINGS, TEXT,
                               SPLIT, "ref", "new")
    assert report.tested == 3 and _drifted(report) == set()


def test_words_production_never_learned_drift_the_unknown_share():
    current = _texts(400, 1, VOCABULARY + NEW_WORDS, prefix="n")
    report = detect_text_drift(_texts(400, 0, VOCABULARY), current, SETTINGS, TEXT, SPLIT, "ref", "new")
    assert _drifted(report) == {UNKNOWN_QUANTITY}


def test_longer_texts_and_another_label_mix_drift_their_own_quantities():
    current = _texts(400, 1, VOCABULARY, labels=("a", "a", "a", "b"), length=(30, 60), prefix="n")
    report = detect_text_drift(_texts(400, 0, VOCABULARY), current, SETTINGS, TEXT, SPLIT, "ref", "new")
    assert _drifted(report) == {"label", "length"}
