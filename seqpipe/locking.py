"""One run at a time per data folder: a lock held for the whole of a run, with its holder on record.

A cron retraining that starts while someone runs ``seqpipe run`` by hand, or two ``dvc
repro``s, share ``data/``, the checkpoints and the registry. Each command that writes them
(the CLI wrappers of the steps, the ``retrain`` flow) runs inside ``project_lock``, an OS
file lock (``filelock``, ``flock`` on Unix) on ``<data>/.seqpipe.lock``. Whoever takes it
writes who they are (pid, host, start time, command) to ``<data>/.seqpipe.lock.json``; a
second run waits up to ``orchestration.lock_timeout`` seconds, then fails with
``ProjectLockedError`` naming that holder, before it has written anything.

The lock is the process's, not a step's: there is one lock object per data folder per
process, reentrant across threads, so the flow's tasks, its local training subflows and
nested ``project_lock`` blocks share the hold the outermost block took. A training flow
run on a work pool's worker does not lock: its parent pipeline holds the lock meanwhile.

A process that is killed loses its lock with it (the kernel drops an ``flock`` when the
holder's last descriptor closes; filelock closes its descriptors in forked children), so
a lock is never stale; only the holder file is, and the next run that takes the lock
reports the run that ended without releasing it and replaces the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from seqpipe.config import PipelineConfig
from seqpipe.errors import ProjectLockedError

LOCK_FILE = ".seqpipe.lock"
HOLDER_FILE = LOCK_FILE + ".json"
POLL_SECONDS = 0.2

log = logging.getLogger(__name__)


@dataclass
class _ProcessLock:
    """This process's lock on one data folder: the file lock and how deep the nested holds go."""

    lock: FileLock
    holder_file: Path
    pid: int
    depth: int = 0
    # Held while the depth changes, and while the outermost block waits for the file lock, so two
    # threads entering at once take the file lock once.
    guard: threading.Lock = field(default_factory=threading.Lock)


_LOCKS: dict[Path, _ProcessLock] = {}
_LOCKS_GUARD = threading.Lock()
CONFIGURED: Any = ...  # project_lock's timeout: orchestration.lock_timeout


def lock_paths(data_dir: Path) -> tuple[Path, Path]:
    """The lock file and its holder file (JSON) of a data folder."""
    return data_dir / LOCK_FILE, data_dir / HOLDER_FILE


def _process_lock(data_dir: Path) -> _ProcessLock:
    key = data_dir.resolve()
    with _LOCKS_GUARD:
        found = _LOCKS.get(key)
        if found is None or found.pid != os.getpid():  # a forked child builds its own
            lock_file, holder_file = lock_paths(key)
            # thread_local=False: one hold for the process, whichever thread (a Prefect task's) enters again.
            found = _LOCKS[key] = _ProcessLock(FileLock(lock_file, thread_local=False), holder_file, os.getpid())
        return found


def read_holder(data_dir: Path) -> dict[str, Any] | None:
    """What the holder file says (pid, host, started, command), or None when there is none or it is unreadable."""
    try:
        holder = json.loads(lock_paths(data_dir)[1].read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a process that has not recorded itself yet (no holder file)"
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
            f" ({holder.get('command', '?')})")


def process_alive(pid: int) -> bool:
    """Whether a process of that id runs on this host (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_gone(holder: dict[str, Any] | None) -> bool:
    """The holder is known to have ended: it ran on this host and its pid is not running."""
    return bool(holder) and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
        and not process_alive(holder["pid"])


def _write_holder(path: Path, command: str) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": command, "argv": sys.argv}
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(holder, indent=2) + "\n")
    os.replace(staging, path)


def _report_takeover(data_dir: Path, previous: dict[str, Any] | None) -> None:
    """The lock was free but a holder file remained: its run ended without releasing (killed, most likely)."""
    if previous is None or (previous.get("pid") == os.getpid() and previous.get("host") == socket.gethostname()):
        return
    state = "its process is gone" if _is_gone(previous) else "it no longer holds the lock"
    log.warning(f"taking over the lock on {data_dir}: the run that held it ({describe(previous)}) ended without "
                f"releasing it ({state}); steps swap their outputs in only when complete, so what it left is "
                f"earlier outputs, not half-written ones")


def _acquire(entry: _ProcessLock, data_dir: Path, timeout: float | None) -> None:
    try:
        entry.lock.acquire(blocking=False)
        return
    except Timeout:
        pass
    holder = read_holder(data_dir)
    wait = "as long as it takes" if timeout is None else f"up to {timeout:g} s"
    log.info(f"{data_dir} is in use by another seqpipe run ({describe(holder)}); waiting {wait} "
             f"(orchestration.lock_timeout)")
    started = time.monotonic()
    try:
        entry.lock.acquire(timeout=-1 if timeout is None else timeout, poll_interval=POLL_SECONDS)
    except Timeout:
        holder = read_holder(data_dir) or holder
        note = (" Its process is no longer running, yet the lock is still held: by a process it started that "
                "outlived it; end that one." if _is_gone(holder) else "")
        raise ProjectLockedError(
            f"{data_dir} is in use by another seqpipe run: {describe(holder)}. Waited "
            f"{time.monotonic() - started:.0f} s (orchestration.lock_timeout = {timeout:g}); nothing was written. "
            f"Run again when it has finished, or raise orchestration.lock_timeout to wait longer.{note}"
        ) from None


@contextlib.contextmanager
def project_lock(cfg: PipelineConfig, command: str, timeout: float | None = CONFIGURED) -> Iterator[None]:
    """Hold the lock on ``cfg``'s data folder for the block: wait for another run, up to the timeout, then fail.

    ``command`` says what holds it, in the holder file and the messages. ``timeout`` defaults to
    ``orchestration.lock_timeout`` (None waits without limit). Nested blocks in this process, in any
    thread, enter at once and share the outermost block's hold.
    """
    if timeout is CONFIGURED:
        timeout = cfg.orchestration.lock_timeout
    if timeout is not None and math.isinf(timeout):
        timeout = None
    data_dir = cfg.data_dir
    entry = _process_lock(data_dir)
    with entry.guard:
        if not entry.depth:
            data_dir.mkdir(parents=True, exist_ok=True)
            _acquire(entry, data_dir, timeout)
            try:
                _report_takeover(data_dir, read_holder(data_dir))
                _write_holder(entry.holder_file, command)
            except BaseException:
                entry.lock.release()
                raise
        entry.depth += 1
    try:
        yield
    finally:
        with entry.guard:
            entry.depth -= 1
            if not entry.depth:
                # The holder file goes first: whoever finds the lock free finds no record of this run.
                with contextlib.suppress(FileNotFoundError):
                    entry.holder_file.unlink()
                entry.lock.release()


def held(cfg: PipelineConfig) -> bool:
    """Whether this process holds the lock on ``cfg``'s data folder."""
    entry = _LOCKS.get(cfg.data_dir.resolve())
    return bool(entry and entry.pid == os.getpid() and entry.depth)
