"""A pipeline stage, declared once in its own module as `STAGE = Stage(...)`.

`dvc.yaml`, `lightweight run STAGE`, the Prefect flows and the tests' stage lists are all read from these
declarations (see tasks/registry.py). A stage's name is its module name (`tasks/<name>.py`), its `dvc.yaml`
stage, its Prefect task and, when it has one, its `params.yaml` section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Stage", "fill"]


@dataclass(frozen=True)
class Stage:
    """What a stage reads and writes, relative to the project root, and the function that does it.

    Paths may name a parameter as dvc.yaml does, e.g. "${detect.weights}". Code dependencies are not
    listed here: they are the project modules the stage's module imports (tasks/registry.py derives them).
    """

    name: str  # = tasks/<name>.py = dvc.yaml stage = Prefect task name = params.yaml section (if any)
    run: Callable[..., Any]  # run(params, root) -> result: validated Params and the project root
    deps: tuple[str, ...] = ()  # data inputs (files or folders)
    outs: tuple[str, ...] = ()  # outputs DVC caches and versions
    uncached: tuple[str, ...] = ()  # outputs kept in git, not in the DVC cache (reports)
    metrics: tuple[str, ...] = ()  # JSON metrics (`dvc metrics show`), not cached
    plots: tuple[str, ...] = ()  # CSV/PNG plots (`dvc plots show`), not cached
    params: tuple[str, ...] | None = None  # params.yaml sections or dotted keys it reads; None: (name,)

    @property
    def param_keys(self) -> tuple[str, ...]:
        return (self.name,) if self.params is None else self.params

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every path the stage writes."""
        return (*self.outs, *self.uncached, *self.metrics, *self.plots)

    def resolve(self, path: str, params: Any, root: Path) -> Path:
        """A declared path with its "${section.key}" filled from `params`, under `root` unless absolute."""
        filled = Path(fill(path, params))
        return filled if filled.is_absolute() else root / filled


def fill(path: str, params: Any) -> str:
    """`path` with a "${section.key}" reference replaced by that parameter's value."""
    if path.startswith("${") and path.endswith("}"):
        value: Any = params
        for part in path[2:-1].split("."):
            value = getattr(value, part)
        return str(value)
    return path
