"""The export adapter: ONNX as YOLOv5 writes it, an FP32 IR, both equal to the checkpoint, detectors on them."""

import copy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from tasks.dataset import resolved_dataset_yaml
from tasks.runtimes import ExportedDetector, ExportError, import_package, open_session, read_exported
from tasks.yolo import detection_model, load_checkpoint
from tasks.yolo.export import check_export, export_model, export_onnx, export_openvino, sample_images, stock_val_map50
from tasks.yolo.inference import Detector, stock_detect
from tasks.yolo.runtime import yolov5_runtime
from tests.conftest import REPO, TINY_DEMO

IMGSZ = 64  # export size: tiny, and the dynamic export runs at any other size too


@pytest.fixture(scope="module")
def varied(pruned, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pruned test checkpoint with seeded noise on every weight, saved as train.py saves a model.

    The 1-epoch detector scores dozens of boxes per frame exactly alike, so which of them NMS keeps turns on
    rounding in the last bit, in torch from one batch size to another as much as between runtimes. With its
    weights spread out (by twice their spread: at 0.3x, half the scores still tied), boxes have scores of their
    own and equal boxes mean equal outputs.
    """
    model = copy.deepcopy(detection_model(load_checkpoint(pruned[0].weights)))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter += 2.0 * parameter.std().nan_to_num(0.1) * noise
    path = tmp_path_factory.mktemp("varied") / "varied.pt"
    torch.save({"epoch": -1, "model": model, "ema": None, "optimizer": None}, path)
    return path


@pytest.fixture(scope="module")
def exported(varied: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`varied` as a dynamic ONNX file and an IR converted from it."""
    out = tmp_path_factory.mktemp("exported")
    onnx_file = out / "pruned.onnx"
    export_onnx(varied, onnx_file, imgsz=IMGSZ, opset=17, dynamic=True)
    return {"onnxruntime": onnx_file, "openvino": export_openvino(onnx_file, out / "pruned_openvino", "pruned").parent}


def test_onnx_carries_yolov5_metadata_and_loads_in_detect_multi_backend(exported, varied):
    onnx_file = exported["onnxruntime"]
    meta = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert meta == {"stride": "32", "names": "{0: 'person'}"}  # exactly what YOLOv5 7.0's export.py writes
    with yolov5_runtime():
        from yolov5.models.common import DetectMultiBackend

        backend = DetectMultiBackend(str(onnx_file.resolve()), device=torch.device("cpu"))
    assert backend.onnx and backend.stride == 32 and backend.names == {0: "person"}
    image = torch.rand(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = export_model(varied)(image)[0]
    assert torch.allclose(backend(image), reference, atol=1e-3)


def test_exports_equal_the_checkpoint_on_real_images(exported, varied, tiny_demo: Path, tmp_path: Path):
    images = sample_images(resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path), 4, IMGSZ)
    assert images.shape == (4, 3, IMGSZ, IMGSZ) and images.dtype == np.float32 and 0 < images.mean() < 1
    _, checks = check_export(varied, exported, images=images, data_yaml=None, imgsz=IMGSZ)
    assert set(checks) == {"onnxruntime", "openvino"}
    for check in checks.values():
        assert check.max_abs_diff < 1e-3, check  # FP32 both sides: rounding, not approximation
        assert check.map50 is None
    ir = read_exported(exported["openvino"])
    assert ir.path.name == "pruned.xml" and ir.stride == 32 and ir.names == {0: "person"}
    assert 'element_type="f16"' not in ir.path.read_text()  # FP32 weights kept: no compression to FP16


def test_static_export_is_yolov5s_default_shape(varied, tmp_path: Path):
    onnx_file = tmp_path / "static.onnx"
    export_onnx(varied, onnx_file, imgsz=IMGSZ, opset=12, dynamic=False)
    session = open_session(onnx_file, "onnxruntime")
    assert session.input_shape == (1, 3, IMGSZ, IMGSZ)
    images = sample_images(None, 3, IMGSZ)  # more than its batch of one: fed one at a time
    assert session(images).shape[0] == 3
    with pytest.raises(ExportError, match=r"exported for 64x64 inputs, cannot run at imgsz 128"):
        ExportedDetector(onnx_file, "onnxruntime", 128, 0.25, 0.45, 10)


def _video_frames(video: Path, every: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames[::every]


def _textured(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames at 128x96 (no letterbox padding) with seeded pixel noise: no two image patches alike.

    Identical patches (flat road, grey padding) give identical scores, and NMS orders exact ties arbitrarily
    (torch's argsort is not stable): the runtimes are compared where their outputs, not tie-breaking, decide.
    """
    rng = np.random.default_rng(0)
    return [
        np.clip(cv2.resize(f, (128, 96)).astype(np.int16) + rng.integers(-12, 13, (96, 128, 3)), 0, 255).astype(
            np.uint8
        )
        for f in frames
    ]


def _detect(detector, frames: list[np.ndarray], batch: int) -> list[np.ndarray]:
    results: list[np.ndarray] = []
    letterboxed = [detector.letterbox(frame) for frame in frames]
    for start in range(0, len(frames), batch):
        results += detector(letterboxed[start : start + batch], frames[0].shape)
    return results


def _assert_same_boxes(mine: np.ndarray, theirs: np.ndarray) -> None:
    """Each box matched one-to-one within 1 px, same class, same score (NMS may list equal scores in any order)."""
    unused = list(range(len(theirs)))
    for box in mine:
        distances = [np.abs(box[:4] - theirs[j, :4]).max() for j in unused]
        j = unused.pop(int(np.argmin(distances)))
        assert min(distances) <= 1.0 and box[5] == theirs[j, 5] and abs(box[4] - theirs[j, 4]) < 1e-3


@pytest.mark.parametrize(
    ("runtime", "threads", "split"),
    [("onnxruntime", 1, True), ("onnxruntime", 2, True), ("openvino", 2, False), ("openvino", 2, True)],
)
def test_exported_detector_boxes_equal_the_torch_detectors_on_video(
    exported, varied, tiny_demo: Path, runtime: str, threads: int, split: bool
):
    frames = _textured(_video_frames(next((tiny_demo / "videos").glob("*.mp4")), every=2))
    imgsz, conf = 128, 0.01  # 128x96 frames: a 128x96 letterbox, not square; the 1-epoch detector is unsure
    torch_boxes = _detect(Detector(varied, imgsz, conf, 0.45, 300), frames, batch=4)
    detector = ExportedDetector(exported[runtime], runtime, imgsz, conf, 0.45, 300, threads=threads, split=split)
    assert detector.names == {0: "person"} and detector.imgsz == imgsz
    assert detector.letterbox(frames[0]).shape == (3, 96, 128)
    boxes = _detect(detector, frames, batch=4)  # 6 frames: a full batch and a partial one
    assert sum(len(b) for b in torch_boxes) > 0, "the reference found nothing: the comparison would be empty"
    assert [len(b) for b in boxes] == [len(b) for b in torch_boxes]
    for mine, theirs in zip(boxes, torch_boxes, strict=True):
        _assert_same_boxes(mine, theirs)


def test_stock_val_and_detect_run_the_onnx_export_unchanged(exported, varied, tiny_demo: Path, tmp_path: Path):
    data = resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path / "data")
    images = sample_images(data, 2, IMGSZ)
    exports = {"onnxruntime": exported["onnxruntime"]}
    _, checks = check_export(varied, exports, images=images, data_yaml=data, imgsz=IMGSZ)
    # val.py on an export: DetectMultiBackend, batch 1, square letterbox: what the check's loader gives every runtime
    stock = stock_val_map50(exported["onnxruntime"], data, IMGSZ, tmp_path / "val")
    assert stock == pytest.approx(checks["onnxruntime"].map50, abs=1e-9)
    video = next((tiny_demo / "videos").glob("*.mp4"))
    labels = stock_detect(exported["onnxruntime"], video, tmp_path / "detect", IMGSZ, 0.01, 0.45, 2, save=False)
    # detect.py --vid-stride 2, boxes in every sampled frame
    assert len(list(labels.glob("*.txt"))) == len(range(0, TINY_DEMO.video_frames, 2))


def test_bad_exports_and_missing_runtimes_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ExportError, match=r"absent\.onnx: exported model not found"):
        read_exported(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(ExportError, match=r"garbage\.onnx: not a readable ONNX model"):
        read_exported(garbage)
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX model, but not exported from YOLOv5
    torch.onnx.export(torch.nn.Conv2d(3, 1, 1), torch.zeros(1, 3, 8, 8), str(foreign), dynamo=False)
    with pytest.raises(ExportError, match=r"foreign\.onnx: no YOLOv5 stride/names metadata"):
        read_exported(foreign)
    (tmp_path / "empty_openvino").mkdir()
    with pytest.raises(ExportError, match=r"expected one OpenVINO \.xml in the folder, found 0"):
        read_exported(tmp_path / "empty_openvino")
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an environment without the package looks like
    with pytest.raises(ExportError, match=r"openvino is not installed: pip install openvino"):
        import_package("openvino")


def test_a_signal_after_openvino_ran_and_was_freed_reaches_its_python_handler(exported):
    """Each OpenVINO model installs a signal stack on the thread that runs it and, freed, puts back the one before:
    with two models freed in the order they came, that is the first one's, already unmapped. The next signal
    handled in Python (a loader worker's SIGCHLD, a subprocess's) then killed the process with SIGSEGV."""
    code = (
        "import gc, os, signal, sys\n"
        "import numpy as np\n"
        "from tasks.runtimes import open_session\n"
        "first, second = (open_session(sys.argv[1], 'openvino', threads=n) for n in (1, 2))\n"
        "first(np.zeros((1, 3, 64, 64), np.float32)); second(np.zeros((1, 3, 64, 64), np.float32))\n"
        "del first; gc.collect(); del second; gc.collect()  # as the latency matrix frees them\n"
        "signal.signal(signal.SIGUSR1, lambda *_: print('handled'))\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
    )
    # -X faulthandler gives the main thread a signal stack of Python's own, as pytest's faulthandler plugin does
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code, str(exported["openvino"])],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("handled")
