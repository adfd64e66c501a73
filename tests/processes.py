"""Kill a process group for real and prove that every process in it is gone (the kill tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil


def alive(process: psutil.Process) -> bool:
    """Still running: not exited, not a zombie (a zombie holds no memory or files and runs no code)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of process group ``pgid``."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and alive(process):
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def kill_group(pgid: int, what: str, timeout: float = 30, members: list[psutil.Process] | None = None) -> list[int]:
    """SIGKILL process group ``pgid`` and wait until none of its processes runs; their pids.

    ``members``: the group's processes as listed before (default: now). Fails, naming
    ``what`` and the survivors, when one still runs after ``timeout`` seconds.
    """
    members = group_members(pgid) if members is None else members
    assert members, f"{what}: process group {pgid} has no live process to kill"
    with contextlib.suppress(ProcessLookupError):  # members listed earlier may have died since
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in members) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [f"{p.pid} ({' '.join(p.cmdline()[:4])})" for p in members if alive(p)]
    assert not survivors, f"{what}: still running {timeout:g} s after SIGKILL of group {pgid}: {survivors}"
    return [p.pid for p in members]
