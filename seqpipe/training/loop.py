"""The one training loop every architecture runs in.

It owns the device, mixed precision, batching, early stopping on validation loss,
the learning-rate schedule and gradient clipping. A model that trains differently
overrides ``TrainableModel.loss``, ``training_step``, ``configure_optimizers`` or
``pretrain``; it still runs here.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqpipe.hyperparams import TrainSettings
from seqpipe.models.base import TrainableModel

LR_DECAY_FACTOR = 0.5
LR_DECAY_PATIENCE = 2

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    learning_rate: float
    seconds: float


@dataclass
class FitResult:
    device: str
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    history: list[EpochLog] = field(default_factory=list)
    members: list[MemberFit] = field(default_factory=list)  # an ensemble's members' fits, in member order


@dataclass
class MemberFit:
    """One fitted member of an ensemble: its label, the params to log for it, and its own fit."""

    label: str
    params: dict[str, Any]
    result: FitResult


def resolve_device(preference: str) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is available")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def seed_everything(seed: int, num_threads: int | None = None) -> None:
    """Seed every generator a model touches; call before building the model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(num_threads or os.cpu_count() or 1)


def _batches(n: int, batch_size: int, generator: torch.Generator | None,
             device: torch.device | None = None) -> list[torch.Tensor]:
    # The order is drawn on the CPU (the seeded generator lives there, so CPU and CUDA runs
    # shuffle alike) and moved to the device in one copy per epoch, not one per batch.
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.to(device).split(batch_size)) if device is not None else list(order.split(batch_size))


@torch.no_grad()
def evaluate_loss(model: TrainableModel, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    model.eval()
    # Summed on the device in float64 (what Python floats would give) and read once: a
    # read per batch would stall the GPU queue each time.
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for index in _batches(len(x), batch_size, None, x.device):
        with _autocast(x.device):
            total += model.loss(x[index], y[index]).double() * len(index)
    return float(total) / max(len(x), 1)


def _autocast(device: torch.device) -> torch.autocast:
    # bf16 keeps fp32's exponent range, so no loss scaling is needed; CPU stays fp32.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def fit(
    model: TrainableModel,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    settings: TrainSettings,
    *,
    name: str = "model",
    on_epoch: Callable[[EpochLog], None] | None = None,
    checkpoint: Path | None = None,
    signature: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` in place and leave it holding its best (lowest validation loss) weights.

    With ``checkpoint``, every finished epoch is saved there; a later call with the same
    path (after a kill) resumes at the next epoch and ends exactly as an uninterrupted run
    would. A checkpoint whose ``signature`` differs from the one given is discarded.
    """
    started = time.perf_counter()
    device = resolve_device(settings.device)
    model.to(device)
    # Small datasets live on the device whole: no loader, no per-batch host copies.
    train_x, train_y = (_to_device(a, device) for a in train)
    val_x, val_y = (_to_device(a, device) for a in val)

    if not model.trainable or len(train_x) == 0:
        loss = evaluate_loss(model, val_x, val_y, settings.batch_size)
        _say(settings, f"[{name}] nothing to train; validation loss {loss:.4f}")
        return FitResult(str(device), 0, loss, 0, False, time.perf_counter() - started)

    generator = torch.Generator().manual_seed(settings.seed)
    saved = _read_checkpoint(checkpoint, signature or {}, settings, name)
    if saved is None:
        model.pretrain(train_x, train_y, lambda: _batches(len(train_x), settings.batch_size, generator, device))
    optimizers = model.configure_optimizers(settings.learning_rate, settings.weight_decay)
    schedulers = [
        torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=LR_DECAY_FACTOR, patience=LR_DECAY_PATIENCE)
        for o in optimizers
    ]
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    history: list[EpochLog] = []
    stopped_early = False
    first_epoch = 1
    if saved is not None:
        # Pre-training already happened before the checkpoint: its result is in the weights.
        model.load_state_dict(saved["model"])
        for optimizer, state in zip(optimizers, saved["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(schedulers, saved["schedulers"], strict=True):
            scheduler.load_state_dict(state)
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and saved["cuda_rng"] is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        best_loss, best_epoch, best_state = saved["best_loss"], saved["best_epoch"], saved["best_state"]
        history = [EpochLog(**entry) for entry in saved["history"]]
        stopped_early = saved["stopped_early"]
        first_epoch = saved["epoch"] + 1
        _say(settings, f"[{name}] resuming from {checkpoint} after epoch {saved['epoch']}")

    clipped = {id(o): [p for group in o.param_groups for p in group["params"]] for o in optimizers}

    def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        # Backward under autocast is discouraged; it reuses the forward's dtypes anyway.
        with torch.autocast(device_type=device.type, enabled=False):
            loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(clipped[id(optimizer)], settings.grad_clip)
        optimizer.step()

    for epoch in range(first_epoch, settings.max_epochs + 1):
        if stopped_early:
            break
        epoch_start = time.perf_counter()
        model.train()
        # As in evaluate_loss: no read from the device until the epoch ends.
        running = torch.zeros((), dtype=torch.float64, device=device)
        batches = _batches(len(train_x), settings.batch_size, generator, device)
        with _EpochProgress(settings, name, epoch, len(batches), len(train_x)) as progress:
            for index in batches:
                with _autocast(device):
                    loss = model.training_step(train_x[index], train_y[index], optimizers, step)
                running += loss.detach().double() * len(index)
                progress.advance(len(index), running)
        val_loss = evaluate_loss(model, val_x, val_y, settings.batch_size)
        for scheduler in schedulers:
            scheduler.step(val_loss)
        log = EpochLog(epoch, float(running) / len(train_x), val_loss, optimizers[0].param_groups[0]["lr"],
                       time.perf_counter() - epoch_start)
        history.append(log)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        stopped_early = epoch - best_epoch >= settings.patience
        if checkpoint is not None:
            _write_checkpoint(checkpoint, {
                "signature": signature or {}, "epoch": epoch, "model": model.state_dict(),
                "optimizers": [o.state_dict() for o in optimizers], "schedulers": [s.state_dict() for s in schedulers],
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "best_loss": best_loss, "best_epoch": best_epoch, "best_state": best_state,
                "history": [asdict(entry) for entry in history], "stopped_early": stopped_early,
            })
        # After the checkpoint, so a caller that dies here has lost no finished epoch.
        if on_epoch:
            on_epoch(log)
        _say(
            settings,
            f"[{name}] epoch {epoch:>3}/{settings.max_epochs}  train {log.train_loss:.4f}  val {val_loss:.4f}"
            f"{' *' if improved else '  '}  lr {log.learning_rate:.1e}  {log.seconds:.1f}s",
        )
        if stopped_early:
            _say(settings, f"[{name}] early stop: no improvement for {settings.patience} epochs")
            break

    model.load_state_dict(best_state)
    model.eval()
    return FitResult(str(device), best_epoch, best_loss, len(history), stopped_early, time.perf_counter() - started, history)


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file and swap it in, so a kill mid-write leaves the last good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    torch.save(state, staging)
    os.replace(staging, path)


def _read_checkpoint(path: Path | None, signature: dict[str, Any], settings: TrainSettings, name: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    # Tensors, numbers, lists and dicts only: loading never unpickles code.
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("signature") != signature:
        path.unlink()
        logger.warning(f"[{name}] ignoring checkpoint {path}: it was written for {saved.get('signature')}, "
                       f"this run is {signature}")
        return None
    return saved


def _say(settings: TrainSettings, line: str) -> None:
    if settings.progress:
        logger.info(line)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class _EpochProgress:
    """Progress through one epoch's batches, so that a long epoch is never silent.

    On a terminal (stderr) it is a tqdm bar, cleared when the epoch ends; elsewhere (a log
    file, a Prefect worker, CI) a log line every ``settings.progress_interval`` seconds.
    ``settings.progress = False`` shows neither. Only the line reads the running loss from
    the device, once per interval: nothing here syncs the GPU per batch or touches the RNG.
    """

    def __init__(self, settings: TrainSettings, name: str, epoch: int, batches: int, examples: int) -> None:
        self.enabled = settings.progress
        self.interval = settings.progress_interval
        self.label = f"[{name}] epoch {epoch:>3}/{settings.max_epochs}"
        # Examples: a forecaster's history windows, a classifier's sequences.
        self.batches, self.examples = batches, examples
        self.done = self.seen = 0
        self.started = self.last = time.perf_counter()
        self.bar = None
        if self.enabled and _stderr_is_terminal():
            from tqdm import tqdm  # only here: the training package needs torch and numpy alone

            self.bar = tqdm(total=batches, desc=self.label, unit="batch", leave=False, file=sys.stderr,
                            dynamic_ncols=True)

    def __enter__(self) -> "_EpochProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def advance(self, examples: int, running: torch.Tensor) -> None:
        if not self.enabled:
            return
        self.done += 1
        self.seen += examples
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now - self.last >= self.interval and self.done < self.batches:
            self.last = now
            logger.info(f"{self.label}  batch {self.done}/{self.batches} ({self.seen}/{self.examples} examples)"
                        f"  train {float(running) / self.seen:.4f} so far  {now - self.started:.1f}s")
