"""The shape of a sequence classification problem, shared by the networks and the estimators."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierShape:
    channels: int  # features per step (13 MFCCs, a sensor's axes)
    classes: int
    max_length: int  # the longest training sequence: the padded batches' length

    @property
    def inputs(self) -> int:
        """Channels a network reads per step: the features and the mask (1 on real steps, 0 on padding)."""
        return self.channels + 1
