"""What a change to a project should rerun, by the DAG's own rule: a stage runs again exactly when one of its
declared params, code files or inputs changed (inputs compared by content, before and after the run)."""

from __future__ import annotations

from pathlib import Path

from tasks.caching import fingerprint
from tasks.config import Params, load_params
from tasks.registry import code_files, stages


def snapshot(root: Path) -> tuple[Params, dict[tuple[str, str], object]]:
    """The project's params and the content of every stage's every declared input."""
    params = load_params(root / "params.yaml")
    inputs = {
        (stage.name, dep): fingerprint(stage.resolve(dep, params, root))
        for stage in stages(params)
        for dep in stage.deps
    }
    return params, inputs


def _value(params: Params, dotted: str) -> object:
    value: object = params.model_dump(mode="json")
    for part in dotted.split("."):
        value = value[part]  # type: ignore[index]
    return value


def expected_reruns(before: tuple, after: tuple, edited: frozenset[str] = frozenset()) -> set[str]:
    """The stages whose params, code (`edited` files) or input contents differ between two snapshots."""
    (params_before, inputs_before), (params_after, inputs_after) = before, after
    return {
        stage.name
        for stage in stages(params_after)
        if any(_value(params_before, key) != _value(params_after, key) for key in stage.param_keys)
        or set(code_files(stage.name)) & edited
        or any(inputs_before.get((stage.name, dep)) != inputs_after[(stage.name, dep)] for dep in stage.deps)
    }


def importers(module_file: str) -> set[str]:
    """The stages whose code dependencies include `module_file` (e.g. "tasks/boxes.py")."""
    return {stage.name for stage in stages() if module_file in code_files(stage.name)}
