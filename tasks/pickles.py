"""What a pickle file would import, found without importing or running anything; torch's refusals in our words.

Used for every checkpoint LightWeight loads (YOLOv5's and the classifier's): a refused file is reported
with the globals it names, never with torch's advice to load it unsafely.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["is_refusal", "pickle_globals", "torch_refusal_detail"]


# What torch's weights-only unpickler says when it refuses a file, rather than fails to parse it.
_REFUSALS = ("Unsupported global", "is blocked", "unrecognized function", "Can only create new object")
# Lines of torch's error that advise about its loader (among them: to load it with the unsafe loader), not the file.
_ADVICE = ("weights_only", "Weights only load failed", "Please file an issue", "Check the documentation")


def torch_refusal_detail(error: Exception) -> str:
    """The part of torch's error that describes the file, without its advice to load it unsafely."""
    text = str(error).split("WeightsUnpickler error:")[-1]
    facts = [line.strip() for line in text.splitlines() if line.strip() and not any(a in line for a in _ADVICE)]
    detail = facts[0].split(" was not an allowed global")[0] if facts else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def is_refusal(detail: str) -> bool:
    """Whether torch's error text says it refused the file (rather than failed to parse it)."""
    return any(marker in detail for marker in _REFUSALS)


class _Inert:
    """Stands in for every global while a pickle is replayed: accepts any call, state or item, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _GlobalRecorder(pickle.Unpickler):
    """Python's own unpickler with every global swapped for `_Inert`: it lists what a pickle imports.

    `find_class` is the one door through which a pickle reaches code (GLOBAL, STACK_GLOBAL, INST,
    extension codes), so the replay sees each global as the real loader would, however the pickle
    spells or nests it, and never imports or calls anything the file names.
    """

    def __init__(self, file: BinaryIO, seen: list[str]) -> None:
        super().__init__(file, encoding="latin1")
        self.seen = seen

    def find_class(self, module: str, name: str) -> type[_Inert]:
        # Protocol 2 (torch.save's) writes Python 2 names such as `__builtin__`; torch maps them back the same way.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        self.seen.append(f"{module}.{name}")
        return _Inert

    def persistent_load(self, pid: Any) -> None:
        return None  # tensor storages: their bytes say nothing about what the pickle imports


# A legacy (non-zip) torch file is up to five pickles in a row (magic number, protocol, sys info, object,
# storage keys); raw tensor bytes follow and are not read as a pickle.
_LEGACY_PICKLES = 5


def _pickle_streams(path: Path) -> list[bytes]:
    """The pickles of a file: each `*.pkl` record of a torch zip, else the file itself."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return [archive.read(name) for name in archive.namelist() if name.endswith(".pkl")]
    return [path.read_bytes()]


def _globals_in(stream: bytes) -> list[str]:
    seen: list[str] = []
    file = io.BytesIO(stream)
    for _ in range(_LEGACY_PICKLES):
        try:
            _GlobalRecorder(file, seen).load()
        except Exception:  # the end of the pickles, raw tensor bytes or a malformed stream: keep what was seen
            break
    return seen


def pickle_globals(path: Path | str) -> list[str]:
    """Every global the pickles of a file reference, in file order, without duplicates; [] if unreadable.

    Named as torch names them: `module.name`, builtins bare (`getattr`), `os.system` as `posix.system`.
    """
    try:
        streams = _pickle_streams(Path(path))
    except (OSError, zipfile.BadZipFile):
        return []
    names = [name for stream in streams for name in _globals_in(stream)]
    return [name.removeprefix("builtins.") for name in dict.fromkeys(names)]
