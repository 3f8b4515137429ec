"""Stage `detect`: sampled detection equals YOLOv5's detect.py on the same frames; bad videos do not stop it."""

import csv
import json
from pathlib import Path

import pytest

from tasks.config import DetectConfig
from tasks.detect import DetectError, deployed_model, detect_videos, find_videos
from tasks.detections import DETECTION_COLUMNS
from tasks.yolo.inference import stock_detect
from tests.videos import write_numbered_video


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == DETECTION_COLUMNS
        return list(reader)


def _stock_boxes(labels: Path, stem: str, interval: int, width: int, height: int) -> dict[int, list[tuple]]:
    """detect.py's labels as {frame index: [(x1, y1, x2, y2, conf)]}; its n-th sampled frame is index n*k - 1."""
    boxes: dict[int, list[tuple]] = {}
    for file in labels.glob(f"{stem}_*.txt"):
        frame = int(file.stem.rsplit("_", 1)[1]) * interval - 1
        for line in file.read_text().split("\n"):
            if line.strip():
                _, x, y, w, h, conf = map(float, line.split())
                box = ((x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height, conf)
                boxes.setdefault(frame, []).append(box)
    return boxes


@pytest.mark.slow
def test_same_frames_and_boxes_as_yolov5_detect(trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path):
    video = next((tiny_demo / "videos").glob("*.mp4"))
    interval, conf = 3, 0.01  # a low threshold: the one-epoch test detector is unsure of everything
    # detect.py's vid_stride=k grabs k frames before its first retrieve: it samples frames k-1, 2k-1, …
    cfg = DetectConfig(
        weights=str(trained_checkpoint),
        videos=[str(video)],
        interval=interval,
        start=interval - 1,
        imgsz=64,
        conf=conf,
        batch=4,
    )
    (report,) = detect_videos(cfg, root=tmp_path, out_dir=tmp_path / "detections")
    ours: dict[int, list[tuple]] = {}
    for row in _rows(tmp_path / "detections" / f"{video.stem}.csv"):
        ours.setdefault(int(row["frame"]), []).append(tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2", "conf")))
    labels = stock_detect(
        trained_checkpoint, video, tmp_path / "stock", imgsz=64, conf=conf, iou=0.45, vid_stride=interval, save=False
    )
    stock = _stock_boxes(labels, video.stem, interval, report.width, report.height)

    assert report.sampled == len(range(interval - 1, report.frames, interval))
    assert sum(len(b) for b in stock.values()) > 0, "the reference found nothing: the comparison would be empty"
    assert set(stock) <= set(range(interval - 1, report.frames, interval))
    assert {f: len(b) for f, b in ours.items()} == {f: len(b) for f, b in stock.items()}
    for frame, boxes in stock.items():
        pairs = zip(sorted(boxes, key=lambda b: -b[4]), sorted(ours[frame], key=lambda b: -b[4]), strict=True)
        for theirs, mine in pairs:
            assert max(abs(a - b) for a, b in zip(theirs[:4], mine[:4], strict=True)) <= 1.0, f"frame {frame}"
            assert abs(theirs[4] - mine[4]) < 1e-3


@pytest.mark.slow
def test_bad_videos_are_reported_and_the_others_still_processed(trained_checkpoint: Path, tmp_path: Path):
    write_numbered_video(tmp_path / "good.avi", 12, size=(96, 64))
    write_numbered_video(tmp_path / "empty.avi", 0)
    (tmp_path / "garbage.mp4").write_text("not a video")
    cfg = DetectConfig(
        weights=str(trained_checkpoint),
        videos=["good.avi", "missing.mp4", "garbage.mp4", "empty.avi", "nothing/*.mp4"],
        interval=2,
        imgsz=64,
        conf=0.9,
    )
    reports = {r.name: r for r in detect_videos(cfg, root=tmp_path, out_dir=tmp_path / "out")}

    assert reports["good"].status == "ok" and reports["good"].sampled == 6 and reports["good"].frames_read == 12
    assert reports["empty"].status == "ok" and reports["empty"].sampled == 0
    assert reports["missing"].status == "failed" and "missing.mp4: video not found" in reports["missing"].error
    assert reports["garbage"].status == "failed" and "garbage.mp4: cannot open video" in reports["garbage"].error
    assert reports["*"].status == "failed" and "nothing/*.mp4: no videos found" in reports["*"].error
    for name in ("good", "empty", "missing", "garbage"):
        assert _rows(tmp_path / "out" / f"{name}.csv") == []  # conf 0.9: no detections is an empty CSV, no crash
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {v["name"]: v["status"] for v in summary["videos"]} == {k: r.status for k, r in reports.items()}


def test_nothing_to_process_is_an_error_before_loading_the_model(tmp_path: Path):
    cfg = DetectConfig(weights=str(tmp_path / "absent.pt"), videos=["clips/*.mp4"])
    with pytest.raises(DetectError, match=r"no videos to process:\n  clips/\*\.mp4: no videos found"):
        detect_videos(cfg, root=tmp_path, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_two_videos_with_one_name_are_refused(tmp_path: Path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_numbered_video(tmp_path / folder / "cam.avi", 2)
    with pytest.raises(DetectError, match=r"cam\.avi and .*cam\.avi would both write cam\.csv"):
        find_videos(["a", "b"], tmp_path)


def test_folders_and_globs_expand_to_videos_only(tmp_path: Path):
    write_numbered_video(tmp_path / "one.avi", 1)
    write_numbered_video(tmp_path / "two.avi", 1)
    (tmp_path / "notes.txt").write_text("x")
    videos, failures = find_videos([".", "*.avi"], tmp_path)
    assert [v.name for v in videos] == ["one.avi", "two.avi"] and failures == []


def _exported(root: Path, weights_bytes: bytes, recorded: bytes, runtimes: tuple[str, ...]) -> Path:
    """models/finetuned.pt, its exports, and a metrics/export.json saying they came from `recorded`."""
    import hashlib
    import json

    (root / "models" / "finetuned_openvino").mkdir(parents=True)
    (root / "models" / "finetuned.pt").write_bytes(weights_bytes)
    (root / "models" / "finetuned.onnx").write_bytes(b"onnx")
    report = {"torch": {"sha256": hashlib.sha256(recorded).hexdigest()}} | {r: {"map50": 0.5} for r in runtimes}
    (root / "metrics").mkdir()
    (root / "metrics" / "export.json").write_text(json.dumps({"models": {"finetuned": report}}))
    return root / "models" / "finetuned.pt"


def test_auto_runs_the_fastest_export_that_passed_and_was_made_from_these_weights(tmp_path: Path):
    weights = _exported(tmp_path, b"weights", b"weights", ("onnxruntime", "openvino"))
    assert deployed_model(DetectConfig(runtime="auto"), tmp_path) == ("onnxruntime", tmp_path / "models/finetuned.onnx")
    assert deployed_model(DetectConfig(runtime="openvino"), tmp_path) == (
        "openvino",
        tmp_path / "models/finetuned_openvino",
    )
    assert deployed_model(DetectConfig(runtime="torch"), tmp_path) == ("torch", weights)


def test_an_int8_model_runs_only_when_export_kept_it(tmp_path: Path):
    _exported(tmp_path, b"weights", b"weights", ("onnxruntime",))
    (tmp_path / "models" / "int8").mkdir()
    (tmp_path / "models" / "int8" / "finetuned.onnx").write_bytes(b"int8 onnx")
    metrics = tmp_path / "metrics" / "export.json"
    report = json.loads(metrics.read_text())
    report["models"]["finetuned"]["onnxruntime_int8"] = {"map50": 0.4, "kept": False}
    metrics.write_text(json.dumps(report))
    with pytest.raises(DetectError, match=r"detect\.runtime: onnxruntime_int8: no export of .*finetuned\.pt"):
        deployed_model(DetectConfig(runtime="onnxruntime_int8"), tmp_path)
    report["models"]["finetuned"]["onnxruntime_int8"]["kept"] = True
    metrics.write_text(json.dumps(report))
    assert deployed_model(DetectConfig(runtime="onnxruntime_int8"), tmp_path) == (
        "onnxruntime_int8",
        tmp_path / "models/int8/finetuned.onnx",
    )
    assert deployed_model(DetectConfig(runtime="auto"), tmp_path)[0] == "onnxruntime"  # auto: FP32 exports only


def test_a_stale_export_is_never_used(tmp_path: Path):
    weights = _exported(tmp_path, b"retrained weights", b"weights", ("onnxruntime", "openvino"))
    assert deployed_model(DetectConfig(runtime="auto"), tmp_path) == ("torch", weights)
    with pytest.raises(DetectError, match=r"detect\.runtime: onnxruntime: no export of .*finetuned\.pt"):
        deployed_model(DetectConfig(runtime="onnxruntime"), tmp_path)


def test_a_runtime_without_its_export_is_a_named_error_before_any_video_is_read(tmp_path: Path):
    _exported(tmp_path, b"weights", b"weights", ("onnxruntime",))
    cfg = DetectConfig(runtime="openvino", videos=["nowhere.mp4"])
    with pytest.raises(DetectError, match=r"detect\.runtime: openvino: no export .*\(run the export stage"):
        detect_videos(cfg, root=tmp_path, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
