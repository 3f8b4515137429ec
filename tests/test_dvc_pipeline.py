"""The DVC pipeline: `dvc repro` reruns exactly the stages whose code, data or params changed."""

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.registry import stages_upto
from tasks.select import collect_candidates
from tests.conftest import REPO, STAGES, TINY_DETECT, tiny_params
from tests.dag import expected_reruns, importers, snapshot

pytestmark = pytest.mark.slow

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


def _new_project(project: Path) -> Path:
    project.mkdir()
    shutil.copy(REPO / "dvc.yaml", project)
    shutil.copytree(REPO / "tasks", project / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    sh(project, "git", "init", "-q")
    sh(project, "dvc", "init", "-q")
    sh(project, "dvc", "config", "core.analytics", "false")
    return project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project that has never run."""
    return _new_project(tmp_path / "project")


@pytest.fixture(scope="module")
def reproduced_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A project after its first `dvc repro` (run once for the module; tests work on copies), and what ran."""
    project = _new_project(tmp_path_factory.mktemp("reproduced") / "project")
    return project, ran(sh(project, "dvc", "repro"))


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


def test_ratio_sweep_with_dvc_experiments(reproduced: Path):
    """`dvc exp run --queue -S prune.ratio=...`, `--run-all`, then `dvc exp show` compares the ratios."""
    project = reproduced
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "baseline")
    for ratio in (0.25, 0.75):
        # up to val, the stage whose metrics `select` compares: the video stages would add minutes and nothing
        sh(project, "dvc", "exp", "run", "--queue", "-S", f"prune.ratio={ratio}", "val")
    sh(project, "dvc", "exp", "run", "--run-all")
    shown = json.loads(sh(project, "dvc", "exp", "show", "--json", "--no-fetch"))
    found = {}
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs", []):
                data = revision.get("data", {})
                ratio = data["params"]["params.yaml"]["data"]["prune"]["ratio"]
                found[ratio] = data["metrics"]["metrics/val.json"]["data"]["finetuned"]["parameters"]
    assert set(found) == {0.25, 0.75}
    assert found[0.75] < found[0.25]  # more pruning, fewer parameters

    # A budget that excludes the least accurate candidate: the pick is the fastest of the rest, and
    # models/selected.pt is that experiment's fine-tuned checkpoint, byte for byte, out of the DVC cache.
    candidates = collect_candidates(project)
    drops = sorted({c.map50_drop for c in candidates})
    assert len(drops) > 1, f"all candidates scored alike, no budget tells them apart: {candidates}"
    budget = (drops[-1] + drops[-2]) / 2
    excluded = [c for c in candidates if c.map50_drop > budget]
    expected = min((c for c in candidates if c.map50_drop <= budget), key=lambda c: c.latency_ms)
    picked = sh(project, "lightweight", "select", "--max-drop", repr(budget))
    assert f"selected {expected.name}:" in picked and excluded
    lock = (
        sh(project, "git", "show", f"{expected.rev}:dvc.lock") if expected.rev else (project / "dvc.lock").read_text()
    )
    (finetuned,) = yaml.safe_load(lock)["stages"]["finetune"]["outs"]
    assert hashlib.md5((project / "models" / "selected.pt").read_bytes()).hexdigest() == finetuned["md5"]
    rows = {row["name"]: row for row in csv.DictReader((project / "reports" / "candidates.csv").open())}
    assert [name for name, row in rows.items() if row["selected"] == "True"] == [expected.name]
    assert (project / "reports" / "pareto.png").read_bytes().startswith(b"\x89PNG")
    from tasks.yolo import describe_checkpoint

    assert describe_checkpoint(project / "models" / "selected.pt").nc == 1

    # A budget nobody meets fails, naming it, and writes no checkpoint.
    (project / "models" / "selected.pt").unlink()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = ["lightweight", "select", "--max-drop", repr(drops[0] / 2)] if drops[0] > 0 else None
    if command:
        failed = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
        assert failed.returncode == 2 and "no experiment within a mAP50 drop of" in failed.stderr
        assert not (project / "models" / "selected.pt").exists()
