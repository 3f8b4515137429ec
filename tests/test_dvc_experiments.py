"""A ratio sweep as DVC experiments, and `lightweight select` picking from it (on a copy of the project that
tests/test_dvc_pipeline.py reproduces)."""

import csv
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.select import collect_candidates
from tests.dvc_project import BIN, reproduced_once, sh

pytestmark = pytest.mark.slow


@pytest.fixture
def reproduced(tmp_path_factory: pytest.TempPathFactory, worker_id: str, tmp_path: Path) -> Path:
    """A copy of the project after its first `dvc repro` (shared with test_dvc_pipeline.py), to change at will."""
    project, _ = reproduced_once(tmp_path_factory, worker_id)
    return Path(shutil.copytree(project, tmp_path / "project", symlinks=True))


def test_ratio_sweep_with_dvc_experiments(reproduced: Path):
    """`dvc exp run --queue -S prune.ratio=...`, `--run-all`, then `dvc exp show` compares the ratios."""
    project = reproduced
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "baseline")
    for ratio in (0.25, 0.75):
        # up to val, the stage whose metrics `select` compares: the video stages would add minutes and nothing
        sh(project, "dvc", "exp", "run", "--queue", "-S", f"prune.ratio={ratio}", "val")
    sh(project, "dvc", "exp", "run", "--run-all", "--jobs", "2")  # two at a time, as on a machine with cores to spare
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

    # A budget nobody meets (below the best candidate's drop) fails, naming it, and writes no checkpoint.
    (project / "models" / "selected.pt").unlink()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = ["lightweight", "select", "--max-drop", repr(drops[0] - 0.01)]
    failed = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and "no experiment within a mAP50 drop of" in failed.stderr
    assert not (project / "models" / "selected.pt").exists()
