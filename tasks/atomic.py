"""Atomic outputs: write to a temporary sibling, then rename, so a crash never leaves half a file.

Even a SIGKILL leaves each output either its complete old version or its complete new one: a file is
replaced by one rename, a folder by one exchange of two names (Linux `renameat2(RENAME_EXCHANGE)`).
Temporaries are named `.<name>.*.tmp` (ignored by DVC and by the cache keys); a killed run's leftovers
are removed when the same output is written next.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_file", "write_json", "write_png", "write_torch"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_RANDOM = "?" * 8  # the random part of a tempfile name: leftovers of this target only, not of "<name>.more"
_libc = ctypes.CDLL(None, use_errno=True)


def _backup(target: Path) -> Path:
    """Where the fallback swap parks the old folder (only where the exchange is unsupported)."""
    return target.with_name(f".{target.name}.old.tmp")


def _clean_leftovers(target: Path) -> None:
    """Remove the temporaries a killed run left beside `target`; bring back a parked old folder first."""
    backup = _backup(target)
    if backup.exists() and not target.exists():
        os.replace(backup, target)
    for leftover in [backup, *target.parent.glob(f".{glob.escape(target.name)}.{_RANDOM}.tmp")]:
        if not leftover.exists():
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the kernel or file system cannot."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@contextmanager
def atomic_file(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp makes it private; outputs are ordinary files
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield an empty temporary directory beside `target`; on success it replaces `target` in one step."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        if not target.exists():
            os.replace(tmp, target)
        elif not _exchange(tmp, target):  # then: park the old folder, move the new one in, drop the old
            os.replace(target, _backup(target))  # a kill here is undone by the next _clean_leftovers
            os.replace(tmp, target)
            shutil.rmtree(_backup(target), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the old version


def write_json(target: Path | str, payload: Any) -> Path:
    """Write `payload` as indented JSON, atomically."""
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return Path(target)


def write_torch(target: Path | str, payload: Any) -> Path:
    """`torch.save`, atomically and byte-reproducibly.

    Given a path, torch names the archive inside after the file (here a random temporary) and the same
    checkpoint saved twice differs; given a file object it writes the fixed name "archive".
    """
    import torch

    with atomic_file(target) as tmp, tmp.open("wb") as handle:
        torch.save(payload, handle)
    return Path(target)


def write_png(figure: Any, target: Path | str) -> Path:
    """Save a matplotlib `Figure` as PNG, atomically."""
    with atomic_file(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(target)
