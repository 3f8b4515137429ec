"""One run per project folder at a time: `lightweight run`, `lightweight flow` and deployment runs take it.

The lock is an advisory `flock` on `<root>/.lightweight.lock`: the kernel drops it when its holder dies,
even by SIGKILL, so a stale lock file is simply taken over. The file says who holds it, for the message
the second run fails with.

A flock belongs to the open file, which a forked child shares: a library's forked helper that outlives the run
(OpenVINO's telemetry sends from a `multiprocessing` fork, and hangs without network) would keep the folder
locked after the run released it. So a forked child closes its copies of the held lock files at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tasks.errors import LightweightError

__all__ = ["LOCK_NAME", "ProjectBusyError", "project_lock"]

LOCK_NAME = ".lightweight.lock"

_held: set[int] = set()  # descriptors of the lock files this process holds


def _close_inherited_locks() -> None:
    """In a forked child: drop the parent's lock files, so that only the parent holds the folders."""
    for handle in _held:
        with suppress(OSError):
            os.close(handle)
    _held.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class ProjectBusyError(LightweightError):
    """Another run holds the project folder."""


def _holder(handle: int) -> str:
    os.lseek(handle, 0, os.SEEK_SET)
    raw = os.read(handle, 4096).decode(errors="replace")
    try:
        info = json.loads(raw)
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(info["since"]))
        return f"pid {info['pid']} ({info['command']}) since {since}"
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def project_lock(root: Path, command: str | None = None) -> Iterator[None]:
    """Hold the project folder for this process, or fail at once naming the holder."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProjectBusyError(
                f"{root}: another LightWeight run is using this project folder: {_holder(handle)}; "
                "wait for it to finish (a killed run's lock is released by the system)"
            ) from None
        _held.add(handle)
        info = {"pid": os.getpid(), "command": command or " ".join(sys.argv), "since": time.time()}
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)
    finally:
        _held.discard(handle)
        os.close(handle)  # releases the flock
