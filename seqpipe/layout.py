"""Where each step writes, under the configured data folder: one map for the steps and the cache keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqpipe.config import PipelineConfig

VALIDATED_FILE = "series.parquet"


@dataclass(frozen=True)
class Layout:
    """Where each step writes, under the configured data folder."""

    raw: Path
    validated: Path
    quarantine: Path
    reports: Path
    prepared: Path
    models: Path
    runs: Path  # MLflow run ids per trained model: local bookkeeping, not a DVC output
    evaluation: Path
    checkpoints: Path
    backtest: Path
    selection: Path

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Layout:
        root = cfg.data_dir
        return cls(root / "raw", root / "validated", root / "quarantine", root / "reports" / "validation", root / "prepared",
                   root / "models", root / "runs", root / "evaluation", root / "checkpoints", root / "backtest",
                   root / "selection")
