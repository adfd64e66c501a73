"""The shape of a sequence classification problem, shared by the networks and the estimators."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierShape:
    channels: int  # features per step (13 MFCCs, a sensor's axes); 1 for text, the token id
    classes: int
    max_length: int  # the longest training sequence: the padded batches' length
    # 0: numeric frames; above 0, text: each step's channel 0 holds a token id below it (0 [PAD], 1 [UNK]).
    # Defaulted, so a shape saved before text existed still loads.
    vocabulary: int = 0

    @property
    def inputs(self) -> int:
        """Channels a network reads per step: the features and the mask (1 on real steps, 0 on padding)."""
        return self.channels + 1

    @property
    def is_text(self) -> bool:
        """Whether the steps are token ids (``vocabulary > 0``) rather than numeric features."""
        return self.vocabulary > 0
