"""The leaderboard: one row per model, best first by the configured metric on a window before the test window.

Each model has its validation scores (``val_mase``, ...) and its test scores (``mase``,
...), which only report: choosing on the split that reports the choice's score would
bias that score. The validation scores rank, unless the champion is chosen on backtest
folds before the test window (``evaluation.selection``): then each model's mean over
those folds (``sel_mase``, ...) ranks.
"""

from __future__ import annotations

import pandas as pd

KEYS = ("model", "arch", "series_id")
VALIDATION_PREFIX = "val_"
SELECTION_PREFIX = "sel_"
RANKED_ON = {"validation": VALIDATION_PREFIX, "backtest": SELECTION_PREFIX}


def ranking_column(metric: str, method: str = "validation") -> str:
    """The leaderboard column that ranks under selection ``method``: ``metric`` on the validation window or the selection folds."""
    return f"{RANKED_ON[method]}{metric}"


def before_test(column: str) -> bool:
    """Whether a leaderboard column is a score from before the test window (``val_`` or ``sel_``), one that may choose."""
    return column.startswith(tuple(RANKED_ON.values()))


def before_test_scores(row: pd.Series) -> dict[str, float]:
    """A leaderboard row's scores from before the test window, leaving out those it has none of."""
    return {column: float(row[column]) for column in row.index if before_test(column) and pd.notna(row[column])}


def build_leaderboard(per_series: pd.DataFrame, metric: str, selection: pd.DataFrame | None = None) -> pd.DataFrame:
    """Aggregate per-series scores (columns: model, arch, series_id, metrics) into the mean per model.

    ``selection`` (indexed by model, a column per metric: the means over the selection
    folds) adds the ``sel_`` columns and ranks by ``sel_<metric>``; without it
    ``val_<metric>`` ranks. Ties go by name. Probabilistic scores (CRPS, coverage) are
    empty for point forecasters.
    """
    scores = [c for c in per_series.columns if c not in KEYS]
    board = per_series.groupby(["model", "arch"], sort=False)[scores].mean().reset_index()
    if selection is not None:
        for column in selection.columns:
            board[f"{SELECTION_PREFIX}{column}"] = board["model"].map(selection[column]).astype(float)
    ranked_by = ranking_column(metric, "validation" if selection is None else "backtest")
    board = board.sort_values([ranked_by, "model"], kind="stable").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board


def board_metrics(board: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each model's scores (test ones unprefixed, the others ``val_`` or ``sel_``), leaving out those it has none of (JSON has no NaN)."""
    scores = [c for c in board.columns if c not in (*KEYS, "rank")]
    return {row["model"]: {m: float(row[m]) for m in scores if pd.notna(row[m])} for _, row in board.iterrows()}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if pd.isna(value) else f"{value:.3f}"
    return str(value)


def to_markdown(board: pd.DataFrame) -> str:
    headers = list(board.columns)
    rows = [[_cell(v) for v in row] for row in board.itertuples(index=False)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]) + "\n"
