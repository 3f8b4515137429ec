"""The sha256 of a file: the one helper every stage and the cache policy use (imports nothing heavy)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["sha256_file"]

_CHUNK = 1 << 20
_file_hashes: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256, like DVC's state


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks; remembered per (path, mtime, size) as DVC's state does."""
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if memo_key not in _file_hashes:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _file_hashes[memo_key] = digest.hexdigest()
    return _file_hashes[memo_key]
