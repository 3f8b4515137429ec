"""A DVC project of the tiny demo in a temporary folder, and running `dvc` in it (for the DVC tests)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from tasks.registry import stages_upto
from tests.conftest import REPO, STAGES, tiny_params
from tests.dag import expected_reruns, snapshot

BIN = Path(sys.executable).parent


def sh(project: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def set_params(project: Path, **sections: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params))


def ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def repro_after(project: Path, *targets: str, **sections: dict) -> tuple[set[str], set[str]]:
    """Set params, `dvc repro [TARGETS]`: (the stages DVC ran, the stages whose params, code or input contents
    changed, among those the targets need)."""
    before = snapshot(project)
    set_params(project, **sections)
    output = sh(project, "dvc", "repro", *targets)
    after = snapshot(project)
    expected = expected_reruns(before, after)
    if targets:
        expected &= {stage.name for target in targets for stage in stages_upto(target, after[0])}
    return ran(output), expected


def reproduced_once(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> tuple[Path, set[str]]:
    """A project after its first `dvc repro`, and the stages that run ran: built once per test session, by
    whichever xdist worker asks first while the others wait (a full tiny repro is minutes of CPU). Copy it to
    change it."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # this session's folder, common to its workers
    root = shared / "dvc-reproduced"
    with FileLock(str(shared / "dvc-reproduced.lock")):
        if not (root / "ran.json").is_file():
            shutil.rmtree(root, ignore_errors=True)  # a worker that failed to build it leaves a partial project
            root.mkdir()
            stages = ran(sh(new_project(root / "project"), "dvc", "repro"))
            (root / "ran.json").write_text(json.dumps(sorted(stages)))
    return root / "project", set(json.loads((root / "ran.json").read_text()))


def new_project(project: Path) -> Path:
    """A git + DVC project of the repository's dvc.yaml and tasks/, with the tiny params, never run."""
    project.mkdir()
    shutil.copy(REPO / "dvc.yaml", project)
    shutil.copytree(REPO / "tasks", project / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    sh(project, "git", "init", "-q")
    sh(project, "dvc", "init", "-q")
    sh(project, "dvc", "config", "core.analytics", "false")
    return project
