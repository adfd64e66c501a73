"""The training loop shared by every architecture (torch and numpy only)."""

from seqpipe.training.loop import EpochLog, FitResult, MemberFit, TrainSettings, fit, resolve_device, seed_everything

__all__ = ["EpochLog", "FitResult", "MemberFit", "TrainSettings", "fit", "resolve_device", "seed_everything"]
