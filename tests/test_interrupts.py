"""SIGKILL a real stage at several moments: every output stays the complete old or the complete new version.

Each stage runs as DVC runs it (`lightweight run STAGE` in its own process). It is killed at fractions of an
uninterrupted run's duration and right after its first temporary appears (mid-write); after each kill, every
output is checked against the version before the change and the version an uninterrupted run writes; a final
run completes and must equal the uninterrupted one, with no temporaries left behind.
"""

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tasks.caching import fingerprint, is_temporary
from tasks.config import load_params
from tasks.detections import DETECTION_COLUMNS, VideoReport, write_summary
from tasks.layout import Layout
from tasks.registry import load_stage
from tests.conftest import TINY_DEMO, tiny_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FRACTIONS = (0.7, 0.95)


def _project(root: Path, tiny_demo: Path, weights: Path) -> Path:
    layout = Layout(root)
    params = tiny_params()
    params["detect"]["weights"] = "models/finetuned.pt"
    (root / "params.yaml").parent.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(tiny_demo, layout.demo_data)
    layout.base_weights.parent.mkdir(parents=True)
    shutil.copy(weights, layout.base_weights)
    shutil.copy(weights, layout.finetuned_weights)
    return root


def _true_people_as_detections(root: Path) -> None:
    """data/detections made of the demo's ground truth: boxes to crop, without depending on a 1-epoch detector."""
    layout = Layout(root)
    reports = []
    layout.detections.mkdir(parents=True)
    for truth in sorted(layout.demo_data.glob("videos/*.csv")):
        with truth.open() as handle:
            people = list(csv.DictReader(handle))
        with (layout.detections / truth.name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(DETECTION_COLUMNS)
            for p in people:
                left, top, width, height = (int(p[k]) for k in ("left", "top", "width", "height"))
                writer.writerow((p["frame"], 0, left, top, left + width, top + height, 0.9, 0))
        video = truth.with_suffix(".mp4")
        reports.append(
            VideoReport(
                video=str(video),
                name=truth.stem,
                status="ok",
                frames=TINY_DEMO.video_frames,
                fps=5,
                sampled=TINY_DEMO.video_frames,
            )
        )
    write_summary(layout.detections, reports, root)


def _set(root: Path, dotted: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    section, key = dotted.split(".")
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _start(root: Path, stage: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "lightweight"), "run", stage, "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(root: Path, stage: str) -> float:
    start = time.perf_counter()
    process = _start(root, stage)
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    return time.perf_counter() - start


def _output_paths(root: Path, stage: str) -> dict[str, Path]:
    declared = load_stage(stage)
    params = load_params(root / "params.yaml")
    return {out: declared.resolve(out, params, root) for out in declared.outputs}


def _outputs(root: Path, stage: str) -> dict[str, object]:
    return {out: fingerprint(path) for out, path in _output_paths(root, stage).items()}


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temporary(p.name) and ".venv" not in p.parts]


def _write_folders(root: Path, stage: str) -> list[Path]:
    """Where the stage's atomic writes put their temporaries: beside each output, and inside an output folder."""
    outputs = _output_paths(root, stage).values()
    return sorted({folder for out in outputs for folder in (out.parent, out)})


def _writing(folders: list[Path]) -> bool:
    """A temporary in one of `folders`: cheap enough to ask every 2 ms (a whole-tree scan takes a core)."""
    for folder in folders:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
            if any(is_temporary(entry.name) for entry in entries):
                return True
    return False


def _kill_when(process: subprocess.Popen, ready) -> None:
    while process.poll() is None and not ready():
        time.sleep(0.002)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize(
    ("stage", "before", "change"),
    [
        ("prune", [], ("prune.ratio", 0.3)),
        ("detect", [], ("detect.interval", 1)),
        ("crop", [_true_people_as_detections], ("crop.pad", 0.3)),
    ],
)
def test_sigkill_leaves_old_or_new_outputs_and_a_rerun_completes(
    stage, before, change, tmp_path: Path, tiny_demo: Path, trained_checkpoint: Path
):
    reference = _project(tmp_path / "reference", tiny_demo, trained_checkpoint)
    for prepare in before:
        prepare(reference)
    _run(reference, stage)
    project = Path(shutil.copytree(reference, tmp_path / "project"))  # the same first run, without running it twice
    old = _outputs(project, stage)
    assert all(value != "missing" for value in old.values()), old

    _set(reference, *change)
    duration = _run(reference, stage)
    new = _outputs(reference, stage)
    assert new != old  # the change matters, or the test proves nothing

    _set(project, *change)
    folders = _write_folders(project, stage)
    for moment in (*FRACTIONS, "mid-write"):
        end = time.perf_counter() + (0 if moment == "mid-write" else moment * duration)
        process = _start(project, stage)
        if moment == "mid-write":
            _kill_when(process, lambda: _writing(folders))
        else:
            _kill_when(process, lambda end=end: time.perf_counter() >= end)
        now = _outputs(project, stage)
        for out, value in now.items():
            assert value in (old[out], new[out]), f"{stage}: {out} is neither the old nor the new version"

    _run(project, stage)
    assert _outputs(project, stage) == new
    assert _temporaries(project) == []
