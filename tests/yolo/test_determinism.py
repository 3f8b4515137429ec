"""Reruns reproduce: the same training twice gives the same checkpoint bytes, the same validation twice the same mAP.

What made them differ, each pinned by a test here: the process's thread count (ATen's CPU reductions add
per-thread partial sums), YOLOv5's wall-clock limit on NMS (val mAP, hence best.pt, and detections depended
on how busy the CPU was), the wall-clock date and scratch paths train.py writes into the checkpoint, and other
threads drawing from the `random` module's generator, which YOLOv5's augmentations shared (Prefect's workers).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.dataset import resolved_dataset_yaml
from tasks.runtimes import open_session
from tasks.yolo import load_checkpoint, train, validate, yolov5_runtime
from tasks.yolo.export import export_onnx
from tests.conftest import REPO


@contextmanager
def process_threads(threads: int) -> Iterator[None]:
    """The caller's thread count, as it differs between machines (one per core) or after another stage."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_settings() -> tuple[int, bool]:
    return torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()


@dataclass(frozen=True)
class Run:
    best: Path
    settings_before: tuple[int, bool]
    settings_after: tuple[int, bool]


def _train(tiny_demo: Path, run_dir: Path, workers: int = 2, noval: bool = True) -> Path:
    data = resolved_dataset_yaml(tiny_demo / "data.yaml", run_dir)
    return train(
        data=data,
        cfg="yolov5n.yaml",
        weights="",
        run_dir=run_dir,
        epochs=2,
        imgsz=64,
        batch=4,
        workers=workers,  # loader processes draw the mosaic/HSV/flip augmentations: their seeding is under test too
        patience=0,
        seed=0,
        noval=noval,  # as params.yaml trains: no validation between epochs
        cache="ram",  # ... from decoded images kept in memory (YOLOv5 samples 30 of them with `random` first)
    )


def _train_in_a_fresh_process(tiny_demo: Path, run_dir: Path, threads: int) -> Run:
    """As `lightweight run base` trains: a new process, loader workers forked from it."""
    code = (
        "import json, sys, torch\n"
        "from pathlib import Path\n"
        "from tests.yolo.test_determinism import _train, torch_settings\n"
        "torch.set_num_threads(int(sys.argv[3]))\n"
        "before = torch_settings()\n"
        "best = _train(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "print(json.dumps([str(best), before, torch_settings()]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tiny_demo), str(run_dir), str(threads)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    best, before, after = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(Path(best), tuple(before), tuple(after))


def _run_openvino(weights: Path, scratch: Path) -> None:
    """What export, val and detect do in a flow before a later training in the same process: OpenVINO left the
    process a dangling signal stack, and the loader workers' SIGCHLD then killed it (see tasks/runtimes.py)."""
    onnx = scratch / "model.onnx"
    export_onnx(weights, onnx, imgsz=64, opset=12, dynamic=False)
    sessions = [open_session(onnx, "openvino", threads=n) for n in (1, 2)]  # two, freed in order: the matrix
    for session in sessions:
        session(np.zeros((1, 3, 64, 64), np.float32))
    del session
    sessions.clear()


@pytest.fixture(scope="module")
def reruns(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    """The same training twice: in a fresh process with 1 thread (as a DVC stage), then in this process with 3
    threads after OpenVINO ran here (as in a flow), in different scratch folders."""
    first = _train_in_a_fresh_process(tiny_demo, tmp_path_factory.mktemp("rerun-1-thread"), threads=1)
    _run_openvino(first.best, tmp_path_factory.mktemp("openvino"))
    with process_threads(3):
        before = torch_settings()
        best = _train(tiny_demo, tmp_path_factory.mktemp("rerun-3-threads"))
        second = Run(best, before, torch_settings())
    return first, second


@contextmanager
def another_thread_drawing_random_numbers() -> Iterator[None]:
    """What Prefect's log and event workers do in a flow: draw from the `random` module now and then."""
    stop = threading.Event()

    def draw() -> None:
        while not stop.wait(0.001):
            random.random()

    drawer = threading.Thread(target=draw, daemon=True)
    drawer.start()
    try:
        yield
    finally:
        stop.set()
        drawer.join()


@pytest.mark.slow
def test_training_in_process_ignores_other_threads_drawing_random_numbers(tiny_demo: Path, tmp_path: Path):
    """With loader workers=0 the augmentations are drawn in this process, where other threads draw too."""
    weights = []
    for name, busy in (("quiet", False), ("busy", True)):
        with another_thread_drawing_random_numbers() if busy else nullcontext():
            best = _train(tiny_demo, tmp_path / name, workers=0)
        weights.append(load_checkpoint(best)["model"].state_dict())
    assert _differing_tensors(*weights) == []


def test_noval_skips_validations_and_trains_the_same_weights(tiny_demo: Path, tmp_path: Path):
    """Validating between epochs draws no random numbers and changes no weight: noval's best.pt is the last
    epoch of a run that validates every epoch, to the bit."""
    validated = _train(tiny_demo, tmp_path / "validated", workers=0, noval=False)
    skipped = _train(tiny_demo, tmp_path / "skipped", workers=0, noval=True)
    last_validated = load_checkpoint(validated.parent / "last.pt")["model"].state_dict()
    assert _differing_tensors(last_validated, load_checkpoint(skipped)["model"].state_dict()) == []
    logged = (skipped.parents[1] / "results.csv").read_text().splitlines()
    assert len(logged) == 3 and all(float(value) == 0 for row in logged[1:] for value in row.split(",")[4:8])


def _differing_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [name for name in a if not torch.equal(a[name], b[name])]


@pytest.mark.slow
def test_training_twice_gives_identical_weights(reruns: tuple[Run, Run]):
    first, second = (load_checkpoint(run.best)["model"].state_dict() for run in reruns)
    assert _differing_tensors(first, second) == []


@pytest.mark.slow
def test_training_twice_gives_identical_bytes(reruns: tuple[Run, Run]):
    """What `dvc repro -f` compares with dvc.lock: no date, no scratch or clone paths in the file."""
    first, second = reruns
    assert first.best.read_bytes() == second.best.read_bytes()
    ckpt = load_checkpoint(first.best)
    assert ckpt["date"] is None
    assert ckpt["opt"]["save_dir"] == "train" and ckpt["opt"]["data"] == "data.yaml"
    assert ckpt["opt"]["cfg"] == "yolov5/models/yolov5n.yaml"
    assert not [value for value in ckpt["opt"].values() if isinstance(value, str) and value.startswith("/")]


@pytest.mark.slow
def test_training_gives_the_process_its_settings_back(reruns: tuple[Run, Run]):
    """Thread count and YOLOv5's process-wide `use_deterministic_algorithms(True)` are undone after training."""
    assert [run.settings_after for run in reruns] == [run.settings_before for run in reruns]
    assert [run.settings_after[0] for run in reruns] == [1, 3]


@pytest.mark.slow
def test_validating_twice_gives_identical_metrics(reruns: tuple[Run, Run], tiny_demo: Path, tmp_path: Path):
    weights = reruns[0].best
    data = resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path)
    metrics = []
    for threads in (1, 3):
        with process_threads(threads):
            metrics.append(validate(weights=weights, data=data, imgsz=64, batch=4, workers=2, run_dir=tmp_path))
    assert metrics[0] == metrics[1]
    assert metrics[0].pr_curve  # the curve is compared too, not only the summary numbers


def test_cpu_sums_depend_on_the_thread_count():
    """Why training fixes its thread count: the same sum with 1 and 2 threads differs in the last bits."""
    values = torch.randn(1 << 22, generator=torch.Generator().manual_seed(0))
    sums = []
    for threads in (1, 2):
        with process_threads(threads):
            sums.append(values.sum())
    assert not torch.equal(sums[0], sums[1])


def _predictions(images: int, boxes: int = 50) -> torch.Tensor:
    """YOLOv5 raw output for one class, `boxes` well-separated confident boxes per image: (x, y, w, h, obj, cls)."""
    centers = torch.arange(boxes, dtype=torch.float32) * 20 + 10
    one = torch.stack([centers, centers, torch.full_like(centers, 8), torch.full_like(centers, 8)], dim=1)
    one = torch.cat([one, torch.full((boxes, 2), 0.9)], dim=1)
    return one.expand(images, boxes, 6).clone()


def test_nms_keeps_every_image_however_slow_the_cpu(monkeypatch: pytest.MonkeyPatch):
    """YOLOv5 returns no boxes for the rest of a batch once NMS ran 0.5 + 0.05 * batch seconds; ours never stops."""
    with yolov5_runtime():
        from yolov5 import val
        from yolov5.utils import general

    untimed = general.non_max_suppression
    assert val.non_max_suppression is untimed  # val.py imported it by name before the runtime existed
    clock = iter(range(0, 10_000, 10))  # every reading of the clock 10 s later than the last
    monkeypatch.setattr(time, "time", lambda: float(next(clock)))
    kept = [len(boxes) for boxes in untimed(_predictions(4), 0.25, 0.45)]
    cut = [len(boxes) for boxes in untimed.__wrapped__(_predictions(4), 0.25, 0.45)]
    assert kept == [50, 50, 50, 50]
    assert cut == [50, 0, 0, 0]  # guards the test: stock YOLOv5 under the same clock drops three images


def test_absolute_paths_in_the_record_do_not_depend_on_the_clone(tmp_path: Path):
    from tasks.yolo.training import _portable

    folders = ((tmp_path / "run", "."), (tmp_path / "venv/yolov5", "yolov5"))
    assert _portable(str(tmp_path / "run/train"), folders) == "train"
    assert _portable(str(tmp_path / "venv/yolov5/models/yolov5n.yaml"), folders) == "yolov5/models/yolov5n.yaml"
    assert _portable(str(tmp_path / "clone/models/pruned.pt"), folders) == "pruned.pt"
    assert _portable("models/pruned.pt", folders) == "models/pruned.pt" and _portable(640, folders) == 640


def test_a_path_through_a_symlinked_virtualenv_is_recorded_as_from_a_plain_one(tmp_path: Path):
    from tasks.yolo.training import _portable

    (tmp_path / "venv/yolov5/models").mkdir(parents=True)
    (tmp_path / "venv/yolov5/models/yolov5n.yaml").write_text("")
    (tmp_path / "clone").mkdir()
    (tmp_path / "clone/.venv").symlink_to(tmp_path / "venv")
    package = tmp_path / "clone/.venv/yolov5"  # the package as the clone imports it
    folders = ((tmp_path / "run", "."), (package, "yolov5"))
    for found in (tmp_path / "venv/yolov5/models/yolov5n.yaml", package / "models/yolov5n.yaml"):
        assert _portable(str(found), folders) == "yolov5/models/yolov5n.yaml"
