"""The training loop shared by every architecture (torch and numpy only)."""

from seqpipe.training.loop import EpochLog, FitResult, TrainSettings, fit, resolve_device, seed_everything

__all__ = ["EpochLog", "FitResult", "TrainSettings", "fit", "resolve_device", "seed_everything"]
