"""Forecast accuracy on the Tourism and M1 competitions: the configured models against classical references.

For each dataset this builds a throw-away project (a config, an MLflow store, ``data/``)
in a temporary folder and runs the pipeline's own step functions on it: ingest, validate,
prepare, train every model, evaluate. It prints each leaderboard (MAPE, sMAPE, MASE on the
test horizon, and the validation MASE that ranks it) with the model the pipeline's
selection rule registers marked ``selected``: chosen on the validation window, without
looking at the test scores beside it.

    .venv/bin/python bench/accuracy.py                      # all six, every model in conf/models/
    .venv/bin/python bench/accuracy.py --datasets tourism-quarterly tourism-yearly \\
        --models seasonal_naive naive dlinear lstm auto_ets auto_theta --epochs 5 --json out.json  # a quick run

``--select backtest --select-folds K`` chooses as ``evaluation.selection.method: backtest``
does: every model is also refitted at K origins before the test window (fold 1 forecasts
the validation window) and the mean over those folds ranks (the ``sel_`` columns); the
line under each table names what the validation window alone would have chosen.

Series shorter than ``lookback + 2 x horizon`` (15 yearly series of 11 points) have no
validation window; they are quarantined, and the table says how many series were scored.

Besides the trained models, each table has a row ``combination``: the equal-weight mean of
the test forecasts of the models that learn from the data (neither a baseline nor a
classical reference; an ensemble with a network among its members counts). It is fixed
before any test score is seen, so it is a fair forecast combination, but it lives in this
script only; a combination the pipeline trains, scores and registers is an ``ensemble``
model (``conf/models/hybrid_ensemble.yaml``).

``--json FILE`` writes ``{dataset: {model: {mape, smape, mase, val_mape, val_smape, val_mase,
[sel_mape, sel_smape, sel_mase,] fit_seconds, selected}}}``, ``selected`` true for the
pipeline's choice only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from seqpipe import steps
from seqpipe.config import load_config
from seqpipe.data.prepare import load_prepared
from seqpipe.evaluation.leaderboard import to_markdown
from seqpipe.evaluation.metrics import score
from seqpipe.evaluation.scoring import scoring_targets
from seqpipe.steps.fitting import seeded_estimator

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("tourism-monthly", "tourism-quarterly", "tourism-yearly", "m1-monthly", "m1-quarterly", "m1-yearly")
REFERENCES = ("seasonal_naive", "naive", "auto_ets", "auto_theta")
SCORES = ["mape", "smape", "mase"]
VALIDATION_SCORES = [f"val_{m}" for m in SCORES]
SELECTION_SCORES = [f"sel_{m}" for m in SCORES]
COLUMNS = ["rank", "model", "arch", *SCORES, *VALIDATION_SCORES]


def every_model() -> list[str]:
    """Each file in conf/models/, references last."""
    names = sorted(path.stem for path in (REPO / "conf" / "models").glob("*.yaml"))
    return [n for n in names if n not in REFERENCES] + [r for r in REFERENCES if r in names]


def write_project(root: Path, dataset: str, models: list[str], args: argparse.Namespace) -> Path:
    conf = root / "conf"
    shutil.copytree(REPO / "conf" / "models", conf / "models")
    (conf / "pipeline.yaml").write_text(yaml.safe_dump({
        "data": {"source": {"kind": "builtin", "name": dataset}, "lookback": args.lookback},
        "validation": {"policy": "quarantine", "min_retained_share": args.min_retained_share},
        "prepare": {"window_stride": args.window_stride, "scaler": args.scaler, "pad_history": args.pad_history},
        "training": {"max_epochs": args.epochs, "patience": args.patience, "num_threads": args.threads,
                     "seed": args.seed, "progress": False},
        "evaluation": {"metric": "mase", "selection": {"method": args.select, "folds": args.select_folds}},
        "models": models,
        "tracking": {"system_metrics": False},
    }, sort_keys=False))
    return conf


def run_dataset(dataset: str, models: list[str], args: argparse.Namespace) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="seqpipe-accuracy-") as folder:
        cfg = load_config(write_project(Path(folder), dataset, models, args))
        steps.ingest(cfg)
        report = steps.validate(cfg)
        steps.prepare(cfg)
        parent = steps.start_pipeline_run(cfg)
        started = time.perf_counter()
        steps.select(cfg, parent)  # nothing to do when the validation window chooses
        select_seconds = time.perf_counter() - started
        seconds = {}
        for name in models:
            started = time.perf_counter()
            steps.train(cfg, name, parent)
            seconds[name] = time.perf_counter() - started
        steps.finish_pipeline_run(cfg, parent, succeeded=True)
        board = steps.evaluate(cfg)
        # The models that learn from the data: neither a baseline nor a classical reference.
        combined = combination(cfg, [s.name for s in cfg.models if seeded_estimator(cfg, s).trainable])
    # The pipeline's leaderboard is ranked before the test window: its first row is what register registers.
    columns = COLUMNS + (SELECTION_SCORES if args.select == "backtest" else [])
    board = board[columns].assign(fit_seconds=board["model"].map(seconds).round(1),
                                  selected=np.arange(len(board)) == 0)
    if combined is not None:
        board = pd.concat([board, combined.assign(selected=False)], ignore_index=True)
    return board.assign(dataset=dataset, series=report.series - len(report.quarantined),
                        select_seconds=round(select_seconds, 1))


def combination(cfg, trained: list[str]) -> pd.DataFrame | None:
    """The equal-weight mean of the ``trained`` models' test forecasts, scored like a model."""
    if len(trained) < 2:
        return None
    layout = steps.Layout.of(cfg)
    prepared = load_prepared(layout.prepared)
    actual, scale = scoring_targets(prepared)
    forecasts = pd.read_parquet(layout.evaluation / "forecasts.parquet")
    mean = sum(forecasts.loc[forecasts["model"] == name, "forecast"].to_numpy() for name in trained) / len(trained)
    scores = score(actual, mean.reshape(actual.shape), scale)
    return pd.DataFrame([{"rank": 0, "model": "combination", "arch": f"mean of {len(trained)} trained",
                          **{metric: float(np.mean(scores[metric])) for metric in SCORES},
                          **{v: float("nan") for v in VALIDATION_SCORES}, "fit_seconds": float("nan")}])


def as_json(boards: list[pd.DataFrame]) -> dict:
    """``{dataset: {model: {scores..., fit_seconds, selected}}}``, NaN left out."""
    result = {}
    for board in boards:
        rows = {}
        for row in board.to_dict("records"):
            rows[row["model"]] = {k: (bool(v) if k == "selected" else float(v))
                                  for k, v in row.items()
                                  if k in (*SCORES, *VALIDATION_SCORES, *SELECTION_SCORES, "fit_seconds", "selected")
                                  and not (isinstance(v, float) and np.isnan(v))}
        result[board["dataset"].iloc[0]] = rows
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=None,
                        help="names in conf/models/; default: every one")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads; default all cores")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--window-stride", type=int, default=1,
                        help="prepare.window_stride: every k-th training window, to bound the cost on long series")
    parser.add_argument("--scaler", default="meanabs", choices=["standard", "minmax", "robust", "meanabs"],
                        help="prepare.scaler; meanabs keeps ratios, which mape and smape losses need")
    parser.add_argument("--lookback", type=int, default=None, help="data.lookback; default: the dataset's")
    parser.add_argument("--pad-history", action="store_true",
                        help="prepare.pad_history: keep series shorter than lookback + 2 x horizon, zero-padded and masked")
    parser.add_argument("--min-retained-share", type=float, default=0.9,
                        help="validation: the share of series that must survive quarantine")
    parser.add_argument("--select", default="validation", choices=["validation", "backtest"],
                        help="evaluation.selection.method: what chooses the model the pipeline registers")
    parser.add_argument("--select-folds", type=int, default=2,
                        help="evaluation.selection.folds: origins before the test window, with --select backtest")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores to this JSON file")
    args = parser.parse_args()
    models = args.models or every_model()

    boards = []
    for dataset in args.datasets:
        boards.append(run_dataset(dataset, models, args))
        if args.json:  # after each dataset, so a long run that is stopped keeps what it measured
            args.json.write_text(json.dumps(as_json(boards), indent=2) + "\n")
    ranked_by = ("validation MASE" if args.select == "validation" else
                 f"mean MASE over {args.select_folds} folds before the test window")
    print(f"\n# Forecast accuracy (test horizon; mean over series; ranked by {ranked_by}; "
          "selected: what the pipeline registers)\n")
    for board in boards:
        print(f"## {board['dataset'].iloc[0]} ({board['series'].iloc[0]} series, {args.epochs} epochs max, "
              f"window stride {args.window_stride})\n")
        print(to_markdown(board.drop(columns=["dataset", "series", "select_seconds"])))
        if args.select == "backtest":
            models = board[board["model"] != "combination"]
            by_validation = models.loc[models["val_mase"].idxmin(), "model"]
            print(f"The validation window alone would choose {by_validation}; the selection folds took "
                  f"{board['select_seconds'].iloc[0]:.1f} s.\n")


if __name__ == "__main__":
    main()
