"""The DVC pipeline: `dvc repro` reruns exactly the stages whose code, data or params changed (DVC experiments
are in test_dvc_experiments.py: another worker runs them on a copy of the same reproduced project)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.registry import stages_upto
from tests.conftest import STAGES, TINY_DETECT
from tests.dag import expected_reruns, importers, snapshot
from tests.dvc_project import BIN, new_project, ran, repro_after, set_params, sh
from tests.dvc_project import reproduced_once as shared_reproduction

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project that has never run."""
    return new_project(tmp_path / "project")


@pytest.fixture(scope="module")
def reproduced_once(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> tuple[Path, set[str]]:
    """A project after its first `dvc repro` (tests work on copies), and what ran."""
    return shared_reproduction(tmp_path_factory, worker_id)


@pytest.fixture
def reproduced(reproduced_once: tuple[Path, set[str]], tmp_path: Path) -> Path:
    """A copy of the project after its first `dvc repro`, to change at will."""
    return Path(shutil.copytree(reproduced_once[0], tmp_path / "project", symlinks=True))


def test_a_first_repro_runs_every_stage_and_a_second_none(reproduced_once: tuple[Path, set[str]], reproduced: Path):
    project = reproduced
    assert reproduced_once[1] == set(STAGES)
    assert (project / "models" / "base.pt").is_file() and (project / "models" / "finetuned.pt").is_file()
    metrics = yaml.safe_load((project / "metrics" / "base.json").read_text())
    assert set(metrics) >= {"precision", "recall", "map50", "map50_95"}

    again = sh(project, "dvc", "repro")
    assert ran(again) == set() and "Data and pipelines are up to date" in again
    assert "up to date" in sh(project, "dvc", "status")


def test_a_detect_param_reruns_exactly_what_follows_detect(reproduced: Path):
    project = reproduced
    assert json.loads((project / "metrics" / "flow.json").read_text())["interval"] == TINY_DETECT.interval
    done, expected = repro_after(project, detect={"interval": 3})
    assert done == expected  # exactly what changed, by params, code and input contents
    assert {"detect", "flow_report", "macs", "track"} <= done  # at least what reads the changed params
    assert not done & {stage.name for stage in stages_upto("finetune")}
    assert json.loads((project / "metrics" / "flow.json").read_text())["interval"] == 3


def test_pruning_and_finetune_params_rerun_exactly_what_they_change(reproduced: Path):
    """Up to `finetune`: what follows it reruns by the same rule (input contents), checked above for detect."""
    project = reproduced
    for change, certain in (
        ({"prune": {"ratio": 0.37, "iterative_steps": 2}, "finetune": {"epochs_per_step": 1}}, {"prune", "finetune"}),
        ({"finetune": {"epochs": 2}}, {"finetune"}),  # the final fine-tune only: prune's is unchanged
    ):
        done, expected = repro_after(project, "finetune", **change)
        assert done == expected, change
        assert certain <= done and "base" not in done, change
        if "ratio" in change.get("prune", {}):
            assert json.loads((project / "metrics" / "prune.json").read_text())["ratio"] == 0.37
        if "iterative_steps" in change.get("prune", {}):
            steps = json.loads((project / "metrics" / "prune.json").read_text())["steps"]
            assert [step.get("epochs") for step in steps] == [1, None]  # trained between steps, not after the last

    # a base change (everything after base) is checked in tests/flows/test_pipeline.py


def test_editing_a_helper_module_reruns_exactly_its_importers(reproduced: Path):
    project = reproduced
    before = snapshot(project)
    with (project / "tasks" / "boxes.py").open("a") as handle:
        handle.write("\n# an edit that changes nothing computed\n")
    users = importers("tasks/boxes.py")
    assert {"crop", "classifier", "classify", "flow_report"} <= users and not users & {"base", "detect"}
    assert set(json.loads(sh(project, "dvc", "status", "--json"))) == users
    done = ran(sh(project, "dvc", "repro"))
    assert done == users == expected_reruns(before, snapshot(project), frozenset({"tasks/boxes.py"}))


def test_a_bad_param_fails_the_stage_before_any_work(project: Path):
    set_params(project, base={"epochs": 0})
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "base.epochs: Input should be greater than or equal to 1" in result.stdout + result.stderr
    assert not (project / "data" / "demo").exists()
