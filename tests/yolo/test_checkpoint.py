import json
import pathlib
from datetime import datetime
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner
from yolov5.models.yolo import ClassificationModel, DetectionModel

from flows.cli import app
from tasks.yolo import CheckpointError, UnsafeCheckpointError, describe_checkpoint, load_checkpoint
from tests.conftest import stock_yaml


class _Payload:
    """Pickles to `Path.touch(marker)`: running it is arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def train_py_format(model: torch.nn.Module) -> dict:
    """The dict YOLOv5's train.py saves, after strip_optimizer."""
    return {
        "epoch": -1,
        "best_fitness": None,
        "model": model.half(),
        "ema": None,
        "updates": None,
        "optimizer": None,
        "opt": {"imgsz": 640},
        "git": None,
        "date": datetime.now().isoformat(),
    }


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker), "epoch": 3}, evil)
    with pytest.raises(
        UnsafeCheckpointError, match=r"evil\.pt: refused to load.*\(Unsupported global: GLOBAL getattr\)"
    ) as error:
        load_checkpoint(evil)
    assert "Nothing in the file was executed" in str(error.value)
    assert not marker.exists()


def test_the_malicious_pickle_really_is_live(tmp_path: Path):
    """Guards the test above: the same file without the allow-list does run its payload."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_trained_checkpoint_loads_and_reports_nc_and_names_from_the_file(trained_checkpoint: Path):
    info = describe_checkpoint(trained_checkpoint)
    assert info.nc == 1 and info.names == {0: "person"}
    assert info.layers[-1].module == "Detect" and info.layers[-1].out_channels == 3 * (1 + 5)
    assert 1_000_000 < info.parameters < 2_500_000  # yolov5n
    assert 3.0 < info.gflops_640 < 5.0
    assert info.layers[0].out_channels == 16 and len(info.layers) == 25


def test_nc80_checkpoint_reports_80_classes(tmp_path: Path):
    model = DetectionModel(stock_yaml("yolov5n.yaml"), nc=80)
    model.names = {i: f"class{i}" for i in range(80)}
    path = tmp_path / "coco.pt"
    torch.save(train_py_format(model), path)
    info = describe_checkpoint(path)
    assert info.nc == 80 and len(info.names) == 80 and info.names[79] == "class79"
    assert info.layers[-1].out_channels == 3 * (80 + 5)


def test_checkpoint_from_a_yolov5_git_checkout_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """ultralytics/yolov5's own train.py pickles classes as `models.yolo.DetectionModel`, `models.common.Conv`."""
    import sys

    from yolov5.models import common, yolo

    model = DetectionModel(stock_yaml("yolov5n.yaml"), nc=1)
    model.names = {0: "person"}
    monkeypatch.setitem(sys.modules, "models.yolo", yolo)
    monkeypatch.setitem(sys.modules, "models.common", common)
    for cls in {type(m) for m in model.modules()} | {DetectionModel}:
        if cls.__module__.startswith("yolov5.models."):
            monkeypatch.setattr(cls, "__module__", cls.__module__.removeprefix("yolov5."))
    path = tmp_path / "best.pt"
    torch.save(train_py_format(model), path)
    monkeypatch.undo()
    names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    assert "models.yolo.DetectionModel" in names and "models.common.Conv" in names
    info = describe_checkpoint(path)
    assert info.nc == 1 and info.names == {0: "person"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"this is not a checkpoint", "not a readable torch checkpoint"),
    ],
)
def test_non_checkpoints_get_a_clear_error(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"weights\.pt: {message}"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_named(tmp_path: Path, trained_checkpoint: Path):
    path = tmp_path / "half.pt"
    data = trained_checkpoint.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"half\.pt: truncated or corrupt"):
        load_checkpoint(path)


def test_missing_and_foreign_checkpoints(tmp_path: Path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    state = tmp_path / "state_dict.pt"
    torch.save({"weights": torch.zeros(3)}, state)
    with pytest.raises(CheckpointError, match=r"state_dict\.pt: not a YOLOv5 checkpoint"):
        load_checkpoint(state)


def test_classification_model_is_refused(tmp_path: Path):
    classifier = ClassificationModel(model=DetectionModel(stock_yaml("yolov5n.yaml"), nc=1), nc=5, cutoff=10)
    path = tmp_path / "cls.pt"
    torch.save(train_py_format(classifier), path)
    with pytest.raises(CheckpointError, match=r"cls\.pt: a YOLOv5 classification model, not a detection model"):
        describe_checkpoint(path)


def test_cli_inspect_prints_json_and_fails_clearly(trained_checkpoint: Path, tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(trained_checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["nc"] == 1 and report["names"] == {"0": "person"}
    assert report["has_ema"] is False and report["epoch"] == -1
    text = runner.invoke(app, ["inspect", str(trained_checkpoint)])
    assert "nc=1 {0: 'person'}" in text.stdout
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    failed = runner.invoke(app, ["inspect", str(bad)])
    assert failed.exit_code == 2
    assert "notes.pt: not a readable torch checkpoint" in failed.stderr
