"""Prefect cache policies keyed on what a stage really depends on, as DVC keys it.

A stage's key is made of the *contents* of the data it declares (not their paths), the parameters it
declares, and the files of its code dependencies (derived from its imports, tasks/registry.py). A cached
stage whose output has since been deleted runs again rather than pointing at nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from tasks.digest import sha256_file

__all__ = [
    "ItemCachePolicy",
    "StageCachePolicy",
    "code_fingerprint",
    "fingerprint",
    "is_temporary",
]


def is_temporary(name: str) -> bool:
    """The name of an atomic write's temporary sibling (tasks/atomic.py): never an input, never hashed."""
    return name.startswith(".") and name.endswith(".tmp")


def _path_fingerprint(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(path.rglob("*")):
            relative = child.relative_to(path)
            if not child.is_file() or any(is_temporary(part) for part in relative.parts):
                continue
            digest.update(relative.as_posix().encode())
            digest.update(sha256_file(child).encode())
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


def code_fingerprint(stage: str) -> dict[str, str]:
    """sha256 of every file of the stage's code dependencies, by path."""
    from tasks.registry import PROJECT, code_files

    return {name: sha256_file(PROJECT / name) for name in code_files(stage)}


def _output_paths(value: Any) -> list[Path]:
    """The paths an output argument names: a path, or every path field of a dataclass."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [v for v in vars(value).values() if isinstance(v, Path)]
    return [Path(value)]


def _fresh_if_missing(key: str, task_ctx: TaskRunContext | None, outputs: list[Path]) -> str:
    """`key`, or a new one when an output is gone but a result is stored: the step runs again."""
    store = getattr(task_ctx, "result_store", None) if task_ctx else None
    if any(not path.exists() for path in outputs) and store is not None and store.exists(key):
        return f"{key}-rerun-{uuid4().hex}"
    return key


def _param_value(params: BaseModel, dotted: str) -> Any:
    value: Any = params.model_dump(mode="json")
    for part in dotted.split("."):
        value = value[part]
    return value


@dataclass
class StageCachePolicy(CachePolicy):
    """The key of a registry stage run as `run(params, root)`: the declared params' values, the declared
    deps' contents and the code files, exactly what `dvc status` compares."""

    stage: str = ""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        from tasks.registry import load_stage

        declared = load_stage(self.stage)
        params, root = inputs["params"], Path(inputs["root"])
        parts = {
            "stage": self.stage,
            "params": {key: _param_value(params, key) for key in declared.param_keys},
            "deps": {dep: fingerprint(declared.resolve(dep, params, root)) for dep in declared.deps},
            "code": code_fingerprint(self.stage),
        }
        key = hash_objects(parts, raise_on_failure=True)
        return _fresh_if_missing(key, task_ctx, [declared.resolve(out, params, root) for out in declared.outputs])


@dataclass
class ItemCachePolicy(CachePolicy):
    """One item of a fanned-out stage (a video of `detect`): the stage's own key (declared params, deps and
    code, as DVC keys the stage), the item's contents, and where it writes, relative to the project root."""

    stage: str = ""
    item: str = ""
    output: str = ""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        root, out = Path(inputs["root"]).resolve(), Path(inputs[self.output]).resolve()
        parts = {
            "stage": StageCachePolicy(stage=self.stage).compute_key(None, inputs, flow_parameters),
            "item": fingerprint(inputs[self.item]),
            "output": out.relative_to(root).as_posix() if out.is_relative_to(root) else str(out),
        }
        return _fresh_if_missing(hash_objects(parts, raise_on_failure=True), task_ctx, [out])
