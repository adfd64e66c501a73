"""Drift of a batch of labelled texts against the batch production was trained on.

Three quantities, each compared as sequence classification's drift compares its own
(``seqpipe.data.sequence_drift``): the label mix, each text's length in tokens and its
share of unknown tokens. Tokens are those of a tokenizer learned, as prepare learns it,
on the reference's training split; the reference side of the unknown share is its
held-out texts (validation and test), which that tokenizer never saw, so an unchanged
vocabulary shows no drift and new words do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqpipe.config import DriftConfig, SequenceSplitConfig, TextConfig
from seqpipe.data.sequence_drift import LENGTH_QUANTITY, SequenceDriftReport, compare_per_sequence
from seqpipe.data.text_prepare import TextTokenizer, split_texts
from seqpipe.data.texts import LABEL, SEQUENCE_ID, TEXT

TEXT_PREFIX = "text:"
UNKNOWN_QUANTITY = TEXT_PREFIX + "unknown_share"


def _per_text(frame: pd.DataFrame, tokenizer: TextTokenizer) -> pd.DataFrame:
    texts = frame[TEXT].fillna("").astype(str).tolist()
    tokens, unknown = tokenizer.token_counts(texts)
    share = np.divide(unknown, tokens, out=np.zeros(len(tokens), dtype=np.float64), where=tokens > 0)
    return pd.DataFrame({LABEL: frame[LABEL].to_numpy(), LENGTH_QUANTITY: tokens, UNKNOWN_QUANTITY: share},
                        index=frame[SEQUENCE_ID].astype(str).to_numpy())


def detect_text_drift(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftConfig, text: TextConfig,
                      split: SequenceSplitConfig, reference_md5: str, current_md5: str) -> SequenceDriftReport:
    """Compare two canonical text frames: the label mix, token lengths and the share of unknown tokens."""
    splits = split_texts(reference, split)
    tokenizer = TextTokenizer.train(reference.loc[splits == "train", TEXT].astype(str).tolist(), text)
    ref = _per_text(reference, tokenizer)
    # Training texts know every one of their words: only held-out texts tell how often production meets new ones.
    ref.loc[splits == "train", UNKNOWN_QUANTITY] = np.nan
    return compare_per_sequence(ref, _per_text(current, tokenizer), settings, reference_md5, current_md5,
                                prefix=TEXT_PREFIX)
