"""The stage registry: every `tasks/<name>.py` that declares `STAGE = Stage(...)` is a stage of the DAG.

From the declarations come `lightweight run STAGE`, the Prefect flow's steps, `dvc.yaml` (`lightweight dag`
writes it, a test holds it equal) and each stage's code dependencies, derived from its imports.
"""

from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tasks.atomic import atomic_file
from tasks.errors import LightweightError
from tasks.stage import Stage, fill

__all__ = [
    "PLUMBING",
    "PROJECT",
    "StageError",
    "code_files",
    "declared_names",
    "dvc_differences",
    "dvc_stage",
    "import_closure",
    "load_stage",
    "stage_names",
    "stages",
    "stages_from",
    "stages_upto",
    "write_dvc_yaml",
]

PROJECT = Path(__file__).resolve().parents[1]
TASKS = PROJECT / "tasks"

# Plumbing that cannot change what a stage computes, left out of every stage's code dependencies: atomic
# writes, the cache key, params parsing (DVC and the cache key track the values), the path layout.
# Everything else a stage imports, transitively, is a code dependency.
PLUMBING = frozenset(
    {
        "tasks/atomic.py",
        "tasks/caching.py",
        "tasks/config.py",
        "tasks/layout.py",
    }
)


_AST_RACE = "AST constructor recursion depth mismatch"


def _parse_source(path: Path, attempts: int = 3) -> ast.Module:
    """`ast.parse` of a file, again when CPython 3.11.7's AST constructor reports a depth mismatch.

    That SystemError is CPython's own bug (gh-106905, fixed in 3.11.8): the AST constructor's depth counter is shared,
    so another thread building an AST at the same moment trips it (it failed a served flow run at its start here).
    The file is fine, and parsing it again succeeds.
    """
    source = path.read_text()
    for _ in range(attempts - 1):
        try:
            return ast.parse(source, str(path))
        except SystemError as error:
            if _AST_RACE not in str(error):
                raise
    return ast.parse(source, str(path))


def _declares_stage(path: Path) -> bool:
    tree = _parse_source(path)
    return any(
        isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "STAGE" for t in node.targets)
        for node in tree.body
    )


class StageError(LightweightError):
    """A stage that does not exist, or a dvc.yaml that disagrees with the stages' modules."""


@cache
def declared_names() -> tuple[str, ...]:
    """The stage names, found by reading the modules' source (nothing imported), sorted."""
    return tuple(sorted(path.stem for path in TASKS.glob("*.py") if _declares_stage(path)))


def load_stage(name: str) -> Stage:
    """The declaration in tasks/<name>.py (imports that module only)."""
    if name not in declared_names():
        raise StageError(f"no stage {name!r}: stages are {', '.join(declared_names())}")
    stage = importlib.import_module(f"tasks.{name}").STAGE
    if stage.name != name:
        raise StageError(f"tasks/{name}.py declares STAGE named {stage.name!r}: a stage is named after its module")
    return stage


def _produces(stage: Stage, path: str) -> bool:
    return any(path == out or path.startswith(f"{out}/") or out.startswith(f"{path}/") for out in stage.outputs)


def _order(declared: list[Stage], params: Any) -> list[Stage]:
    """Producers before consumers; among stages that are ready at once, in name order."""
    upstream = _edges(declared, params)
    ordered: list[Stage] = []
    while len(ordered) < len(declared):
        done = {s.name for s in ordered}
        ready = [s for s in declared if s.name not in done and upstream[s.name] <= done]
        if not ready:
            raise StageError(f"stages depend on each other in a cycle: {sorted(set(upstream) - done)}")
        ordered.append(ready[0])
    return ordered


def stages(params: Any = None) -> list[Stage]:
    """Every stage, in an order that runs producers first ("${...}" deps read from `params`, or the defaults)."""
    return _order([load_stage(name) for name in declared_names()], params if params is not None else _defaults())


def stage_names() -> list[str]:
    """The names of every stage, in DAG order."""
    return [stage.name for stage in stages()]


# -- code dependencies ---------------------------------------------------------------------------------


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (PROJECT.joinpath(*parts).with_suffix(".py"), PROJECT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    tree = _parse_source(path)
    package = path.relative_to(PROJECT).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):  # function-level imports count: they run when the stage does
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _project_imports(path: Path) -> set[Path]:
    found: set[Path] = set()
    for name in _imported_names(path):
        parts = name.split(".")
        for end in range(len(parts), 0, -1):  # the module and the __init__ of every package on its way
            module = _module_file(".".join(parts[:end]))
            if module is not None:
                found.add(module)
    return found


def import_closure(path: Path) -> set[Path]:
    """Every project file `path` imports, transitively, itself included."""
    seen: set[Path] = set()
    todo = [path.resolve()]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(_project_imports(current) - seen)
    return seen


def code_files(name: str) -> list[str]:
    """The project files stage `name` runs, relative to the project, plumbing and empty `__init__.py` left out."""
    files = {
        path.relative_to(PROJECT).as_posix()
        for path in import_closure(TASKS / f"{name}.py")
        if path.stat().st_size or path.name != "__init__.py"
    }
    return sorted(files - PLUMBING)


# -- dvc.yaml ------------------------------------------------------------------------------------------


def dvc_stage(stage: Stage) -> dict[str, Any]:
    """The stage as a dvc.yaml entry.

    Every output is `persist`: DVC would otherwise delete it before running the stage, and a run killed
    then would leave nothing; the stage replaces each output atomically itself (tasks/atomic.py).
    """
    entry: dict[str, Any] = {"cmd": f"lightweight run {stage.name}", "deps": [*stage.deps, *code_files(stage.name)]}
    if stage.param_keys:
        entry["params"] = list(stage.param_keys)
    kept, uncached = {"persist": True}, {"cache": False, "persist": True}
    sections = {
        "outs": [*({path: dict(kept)} for path in stage.outs), *({path: dict(uncached)} for path in stage.uncached)],
        "metrics": [{path: dict(uncached)} for path in stage.metrics],
        "plots": [{path: dict(uncached)} for path in stage.plots],
    }
    entry |= {name: paths for name, paths in sections.items() if paths}
    return entry


def dvc_differences(dvc_yaml: dict[str, Any]) -> list[str]:
    """Where a parsed dvc.yaml disagrees with the registry, one line each; empty when they agree."""
    declared = dvc_yaml.get("stages") or {}
    problems = [
        f"dvc.yaml stage {name!r}: no tasks/{name}.py declares it" for name in declared if name not in declared_names()
    ]
    for stage in stages():
        if stage.name not in declared:
            problems.append(f"dvc.yaml: stage {stage.name!r} is missing")
            continue
        want, have = dvc_stage(stage), declared[stage.name]
        for field in ("cmd", "deps", "params", "outs", "metrics", "plots"):
            expected, found = want.get(field, []), have.get(field, [])
            if field == "cmd":
                if expected != found:
                    problems.append(f"dvc.yaml stage {stage.name!r}: cmd is {found!r}, expected {expected!r}")
                continue
            expected_keys, found_keys = {_key(item) for item in expected}, {_key(item) for item in found}
            for item in sorted(expected_keys - found_keys):
                problems.append(f"dvc.yaml stage {stage.name!r}: {field} lacks {item}")
            for item in sorted(found_keys - expected_keys):
                problems.append(f"dvc.yaml stage {stage.name!r}: {field} has {item}, which the stage does not use")
    return problems


_HEADER = """\
# The LightWeight DAG, written by `lightweight dag --write` from the STAGE declared in each tasks/<stage>.py:
# edit those, not this file (a test holds the two equal). Code deps are the modules each stage imports.
"""


def write_dvc_yaml(path: Path) -> None:
    """Rewrite the stages of dvc.yaml from the registry; its top-level plots (and anything else) are kept."""
    current = yaml.safe_load(path.read_text()) if path.is_file() else {}
    document = {"stages": {stage.name: dvc_stage(stage) for stage in stages()}}
    document |= {key: value for key, value in (current or {}).items() if key != "stages"}
    with atomic_file(path) as tmp:
        tmp.write_text(_HEADER + yaml.safe_dump(document, sort_keys=False, width=120))


def _key(item: Any) -> str:
    if isinstance(item, dict):
        ((path, options),) = item.items()
        settings = ", ".join(f"{k}: {str(v).lower()}" for k, v in sorted((options or {}).items()))
        return f"{path} ({settings})" if settings else str(path)
    return str(item)


# -- sub-DAGs ------------------------------------------------------------------------------------------


def _edges(ordered: list[Stage], params: Any) -> dict[str, set[str]]:
    """stage -> the stages whose outputs it reads."""
    return {
        stage.name: {
            other.name
            for dep in stage.deps
            for other in ordered
            if other is not stage and _produces(other, fill(dep, params))
        }
        for stage in ordered
    }


def _closure(start: set[str], step: dict[str, set[str]]) -> set[str]:
    found, todo = set(start), list(start)
    while todo:
        for nxt in step[todo.pop()] - found:
            found.add(nxt)
            todo.append(nxt)
    return found


def _dag(params: Any) -> tuple[list[Stage], dict[str, set[str]]]:
    """The stages in DAG order, and for each the stages whose outputs it reads."""
    ordered = stages(params)
    return ordered, _edges(ordered, params if params is not None else _defaults())


def stages_from(name: str, params: Any = None) -> list[Stage]:
    """Stage `name`, every stage after it, and what those need that `name` does not (in DAG order)."""
    ordered, upstream = _dag(params)
    downstream = {s.name: {t for t, ups in upstream.items() if s.name in ups} for s in ordered}
    after = _closure({name}, downstream)
    before_name = _closure({name}, upstream) - {name}
    needed = _closure(after, upstream) - before_name
    return [stage for stage in ordered if stage.name in needed]


def stages_upto(name: str, params: Any = None) -> list[Stage]:
    """Stage `name` and every stage it needs, what `dvc repro NAME` runs on a new project (in DAG order)."""
    ordered, upstream = _dag(params)
    needed = _closure({name}, upstream)
    return [stage for stage in ordered if stage.name in needed]


def _defaults() -> Any:
    from tasks.config import Params

    return Params()
