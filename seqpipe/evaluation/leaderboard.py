"""The leaderboard: one row per model, best first by the configured metric."""

from __future__ import annotations

import pandas as pd

from seqpipe.evaluation.metrics import METRICS


def build_leaderboard(per_series: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Aggregate per-series scores (columns: model, arch, series_id, metrics) into the mean per model."""
    board = per_series.groupby(["model", "arch"], sort=False)[list(METRICS)].mean().reset_index()
    board = board.sort_values([metric, "model"], kind="stable").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board


def to_markdown(board: pd.DataFrame) -> str:
    headers = list(board.columns)
    rows = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in board.itertuples(index=False)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]) + "\n"
