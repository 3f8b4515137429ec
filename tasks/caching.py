"""A Prefect cache policy keyed on what a step really depends on.

A step's key is made of the *contents* of its input files and folders (not their paths), the
config section it reads, and the source of the modules that implement it. A cached step whose
output has since been deleted runs again rather than pointing at nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

__all__ = ["StepCachePolicy", "fingerprint", "source_fingerprint"]

_CHUNK = 1 << 20
_file_hashes: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256, like DVC's state


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if memo_key not in _file_hashes:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _file_hashes[memo_key] = digest.hexdigest()
    return _file_hashes[memo_key]


def _path_fingerprint(path: Path) -> str:
    if path.is_file():
        return _file_sha256(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode())
            digest.update(_file_sha256(child).encode())
        return digest.hexdigest()
    return "missing"


def fingerprint(value: Any) -> Any:
    """A hashable stand-in for a task input: file contents for paths, field values for configs."""
    if isinstance(value, Path):
        return _path_fingerprint(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fingerprint(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): fingerprint(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [fingerprint(v) for v in value]
    return value


def source_fingerprint(module_name: str) -> str:
    """sha256 of a module's source, or of every .py file of a package."""
    module = importlib.import_module(module_name)
    digest = hashlib.sha256()
    if hasattr(module, "__path__"):
        for file in sorted(Path(next(iter(module.__path__))).rglob("*.py")):
            digest.update(file.read_bytes())
    else:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


def _output_paths(value: Any) -> list[Path]:
    """The paths an output argument names: a path, or every path field of a dataclass."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [v for v in vars(value).values() if isinstance(v, Path)]
    return [Path(value)]


@dataclass
class StepCachePolicy(CachePolicy):
    """Key = input contents + config + implementing source; `outputs` name where the step writes, `places`
    inputs that only say where to look (a project root): both are keyed by path, not content."""

    code: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("out_dir",)
    places: tuple[str, ...] = ()

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        parts = {
            name: str(value) if name in self.outputs or name in self.places else fingerprint(value)
            for name, value in sorted((inputs or {}).items())
        }
        parts["__code__"] = {name: source_fingerprint(name) for name in self.code}
        key = hash_objects(parts, raise_on_failure=True)
        missing_output = any(
            not path.exists() for name in self.outputs if name in inputs for path in _output_paths(inputs[name])
        )
        store = getattr(task_ctx, "result_store", None) if task_ctx else None
        if missing_output and store is not None and store.exists(key):
            return f"{key}-rerun-{uuid4().hex}"
        return key
