"""Forecast accuracy on the Tourism competition: the configured models against classical references.

For each dataset this builds a throw-away project (a config, an MLflow store, ``data/``)
in a temporary folder and runs the pipeline's own step functions on it: ingest, validate,
prepare, train every model, evaluate. It prints each leaderboard (MAPE, sMAPE, MASE on the
test horizon) and finally all of them in one table.

    .venv/bin/python bench/accuracy.py                      # all three, every model in conf/models/
    .venv/bin/python bench/accuracy.py --datasets tourism-quarterly tourism-yearly \\
        --models seasonal_naive naive dlinear lstm auto_ets auto_theta --epochs 5   # a quick run

Series shorter than ``lookback + 2 x horizon`` (15 yearly series of 11 points) have no
validation window; they are quarantined, and the table says how many series were scored.

Besides the trained models, each table has a row ``combination``: the equal-weight mean of
the neural models' test forecasts (every model that is neither a baseline nor a classical
reference). It is fixed before any test score is seen, so it is a fair forecast combination,
but it lives in this script only: the pipeline registers single models.
"""

from __future__ import annotations

import argparse
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
DATASETS = ("tourism-monthly", "tourism-quarterly", "tourism-yearly")
REFERENCES = ("seasonal_naive", "naive", "auto_ets", "auto_theta")
COLUMNS = ["rank", "model", "arch", "mape", "smape", "mase"]


def every_model() -> list[str]:
    """Each file in conf/models/, references last."""
    names = sorted(path.stem for path in (REPO / "conf" / "models").glob("*.yaml"))
    return [n for n in names if n not in REFERENCES] + [r for r in REFERENCES if r in names]


def write_project(root: Path, dataset: str, models: list[str], args: argparse.Namespace) -> Path:
    conf = root / "conf"
    shutil.copytree(REPO / "conf" / "models", conf / "models")
    (conf / "pipeline.yaml").write_text(yaml.safe_dump({
        "data": {"source": {"kind": "builtin", "name": dataset}},
        "validation": {"policy": "quarantine", "min_retained_share": args.min_retained_share},
        "prepare": {"window_stride": args.window_stride},
        "training": {"max_epochs": args.epochs, "patience": args.patience, "num_threads": args.threads,
                     "seed": args.seed, "progress": False},
        "evaluation": {"metric": "mase"},
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
        seconds = {}
        for name in models:
            started = time.perf_counter()
            steps.train(cfg, name, parent)
            seconds[name] = time.perf_counter() - started
        steps.finish_pipeline_run(cfg, parent, succeeded=True)
        board = steps.evaluate(cfg)
        # The models that learn from the data: neither a baseline nor a classical reference.
        combined = combination(cfg, [s.name for s in cfg.models if seeded_estimator(cfg, s).trainable])
    board = board[COLUMNS].assign(fit_seconds=board["model"].map(seconds).round(1))
    if combined is not None:
        board = pd.concat([board, combined]).sort_values("mase", kind="stable").reset_index(drop=True)
        board["rank"] = range(1, len(board) + 1)
    return board.assign(dataset=dataset, series=report.series - len(report.quarantined))


def combination(cfg, neural: list[str]) -> pd.DataFrame | None:
    """The equal-weight mean of the neural models' test forecasts, scored like a model."""
    if len(neural) < 2:
        return None
    layout = steps.Layout.of(cfg)
    prepared = load_prepared(layout.prepared)
    actual, scale = scoring_targets(prepared)
    forecasts = pd.read_parquet(layout.evaluation / "forecasts.parquet")
    mean = sum(forecasts.loc[forecasts["model"] == name, "forecast"].to_numpy() for name in neural) / len(neural)
    scores = score(actual, mean.reshape(actual.shape), scale)
    return pd.DataFrame([{"rank": 0, "model": "combination", "arch": f"mean of {len(neural)} neural",
                          **{metric: float(np.mean(scores[metric])) for metric in ("mape", "smape", "mase")},
                          "fit_seconds": float("nan")}])


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
    parser.add_argument("--min-retained-share", type=float, default=0.9,
                        help="validation: the share of series that must survive quarantine")
    args = parser.parse_args()
    models = args.models or every_model()

    boards = [run_dataset(dataset, models, args) for dataset in args.datasets]
    print("\n# Tourism accuracy (test horizon; mean over series; ranked by MASE)\n")
    for board in boards:
        print(f"## {board['dataset'].iloc[0]} ({board['series'].iloc[0]} series, {args.epochs} epochs max, "
              f"window stride {args.window_stride})\n")
        print(to_markdown(board.drop(columns=["dataset", "series"])))


if __name__ == "__main__":
    main()
