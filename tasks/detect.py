"""Stage `detect`: every `interval`-th frame of each video through the detector, boxes to one CSV per video."""

from __future__ import annotations

import csv
import glob
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from tasks.atomic import atomic_dir, atomic_file
from tasks.config import DetectConfig, Params
from tasks.detections import DETECTION_COLUMNS, VideoReport, write_summary
from tasks.digest import sha256_file
from tasks.errors import LightweightError
from tasks.frames import ReadStats, VideoError, open_video, prefetched, sampled_frames
from tasks.layout import Layout, export_paths
from tasks.runtimes import FORMAT_RUNTIME, ExportedDetector
from tasks.stage import Stage

if TYPE_CHECKING:
    from tasks.yolo.inference import Detector

__all__ = [
    "DetectError",
    "detect_video",
    "detect_videos",
    "find_videos",
    "load_detector",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".asf", ".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".wmv"})
_PREFETCH_BATCHES = 2  # decoded batches waiting for the detector: bounded, so memory does not grow with length


class DetectError(LightweightError, ValueError):
    """Detection settings that cannot work, found before any video is read."""


def find_videos(entries: list[str], root: Path) -> tuple[list[Path], list[VideoReport]]:
    """Expand files, folders and globs into videos; entries that name nothing become failed reports."""
    root = root.resolve()  # videos are found as absolute paths; summary.json shows them relative to root
    videos: list[Path] = []
    failures: list[VideoReport] = []
    for entry in entries:
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        if glob.has_magic(entry):
            found = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
            found = [p for p in found if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            found = [path]  # a missing or unreadable file fails when it is opened, by name
        if not found:
            error = f"{entry}: no videos found ({', '.join(sorted(VIDEO_SUFFIXES))})"
            failures.append(VideoReport(video=entry, name=Path(entry).stem, status="failed", error=error))
        videos.extend(p for p in found if p not in videos)
    names: dict[str, Path] = {}
    for video in videos:
        if video.stem in names:
            raise DetectError(f"{names[video.stem]} and {video} would both write {video.stem}.csv: rename one")
        names[video.stem] = video
    return videos, failures


EXPORT_METRICS = "metrics/export.json"
_AUTO = ("onnxruntime", "openvino")  # fastest first, as benchmarks/runtime_speed.py measured them here


def _passed_exports(weights: Path, root: Path) -> dict[str, Path]:
    """{runtime: model} exported from exactly these weights (same sha256) that passed the equality check."""
    path = root / EXPORT_METRICS
    if not path.is_file() or not weights.is_file():
        return {}
    digest = sha256_file(weights)
    found: dict[str, Path] = {}
    for name, runtimes in json.loads(path.read_text()).get("models", {}).items():
        if runtimes.get("torch", {}).get("sha256") != digest:
            continue  # another checkpoint, or an export older than this .pt: never used
        for fmt, model in export_paths(weights.parent, name).items():  # as stage export writes them
            runtime = FORMAT_RUNTIME[fmt]
            if runtime in runtimes and runtimes[runtime].get("kept", True) and model.exists():
                found[runtime] = model  # FP32 exports are in the metrics only when they passed; INT8 when kept
    return found


def deployed_model(cfg: DetectConfig, root: Path) -> tuple[str, Path]:
    """(runtime, model) that detection runs: `detect.runtime`, or for `auto` the fastest passed export."""
    weights = cfg.weights_path(root)
    if cfg.runtime == "torch":
        return "torch", weights
    exported = _passed_exports(weights, root)
    if cfg.runtime == "auto":
        return next(((r, exported[r]) for r in _AUTO if r in exported), ("torch", weights))
    if cfg.runtime not in exported:
        raise DetectError(
            f"detect.runtime: {cfg.runtime}: no export of {weights} for it that passed the equality check in "
            f"{root / EXPORT_METRICS} (run the export stage, or set detect.runtime: torch or auto)"
        )
    return cfg.runtime, exported[cfg.runtime]


def load_detector(cfg: DetectConfig, model: Path, runtime: str = "torch") -> Detector | ExportedDetector:
    """The detector with the stage's thresholds, on `runtime` (`model`: a .pt, .onnx or OpenVINO IR folder).

    Only the torch runtime imports torch and yolov5: a deployed export runs without them (a smaller process).
    """
    classes = tuple(cfg.classes) if cfg.classes is not None else None
    if runtime == "torch":
        from tasks.yolo.inference import Detector

        return Detector(model, cfg.imgsz, cfg.conf, cfg.iou, cfg.max_det, classes, threads=cfg.threads)
    return ExportedDetector(model, runtime, cfg.imgsz, cfg.conf, cfg.iou, cfg.max_det, classes, threads=cfg.threads)


def _batches(detector: Detector, frames: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[tuple]:
    indices: list[int] = []
    images: list[np.ndarray] = []
    shape: tuple[int, ...] = ()
    for index, frame in frames:
        if images and frame.shape != shape:  # a resolution change mid-stream: letterbox shapes differ
            yield indices, images, shape
            indices, images = [], []
        shape = frame.shape
        indices.append(index)
        images.append(detector.letterbox(frame))  # in the reader thread, with decoding
        if len(images) == size:
            yield indices, images, shape
            indices, images = [], []
    if images:
        yield indices, images, shape


def detect_video(detector: Detector, cfg: DetectConfig, video: Path, out_csv: Path) -> VideoReport:
    """Detect on the sampled frames of one video and write its CSV; an unreadable video gives a failed report."""
    started = time.perf_counter()
    try:
        capture, info = open_video(video)
    except VideoError as error:
        log.error("%s", error)
        _write_rows(out_csv, [])
        return VideoReport(video=str(video), name=video.stem, status="failed", error=str(error))
    stats = ReadStats()
    fps = info.fps or 1.0
    sampled = detections = 0
    total = (info.frames if cfg.end is None else min(cfg.end, info.frames)) or None  # None: length unknown
    frames = sampled_frames(capture, info, stats, cfg.interval, cfg.start, cfg.end)
    try:  # rows go straight to the temporary CSV: nothing grows with the video's length
        with (
            atomic_file(out_csv) as tmp,
            tmp.open("w", newline="") as handle,
            tqdm(total=total, desc=video.name, unit="frame", leave=False) as progress,
        ):
            writer = csv.writer(handle)
            writer.writerow(DETECTION_COLUMNS)
            for indices, images, shape in prefetched(_batches(detector, frames, cfg.batch), _PREFETCH_BATCHES):
                for index, boxes in zip(indices, detector(images, shape), strict=True):
                    writer.writerows(
                        (index, round(index / fps, 4), *(int(v) for v in box[:4]), round(float(box[4]), 5), int(box[5]))
                        for box in boxes
                    )
                    detections += len(boxes)
                sampled += len(indices)
                progress.update(min(indices[-1] + 1, total or indices[-1] + 1) - progress.n)  # frames done / total
    finally:
        capture.release()
    report = VideoReport(
        video=str(video),
        name=video.stem,
        status="ok",
        frames=info.frames,
        fps=info.fps,
        width=info.width,
        height=info.height,
        frames_read=stats.frames_read,
        sampled=sampled,
        decode_failures=stats.decode_failures,
        detections=detections,
    )
    if stats.decode_failures:
        log.warning("%s: %d frames did not decode and were skipped", video, stats.decode_failures)
    # Wall time goes to the log, not the outputs: the same inputs give byte-identical outputs (DVC skips what follows).
    log.info(
        "%s: %d sampled frames, %d detections, %.1f s", video.name, sampled, detections, time.perf_counter() - started
    )
    return report


def _write_rows(out_csv: Path, rows: list[tuple]) -> None:
    with atomic_file(out_csv) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DETECTION_COLUMNS)
        writer.writerows(rows)


def detect_videos(cfg: DetectConfig, *, root: Path, out_dir: Path) -> list[VideoReport]:
    """Sampled detection over every configured video into `out_dir` (replaced as a whole)."""
    runtime, model = deployed_model(cfg, root)
    videos, reports = find_videos(cfg.videos, root)
    if not videos and reports:
        raise DetectError("no videos to process:\n  " + "\n  ".join(r.error for r in reports))
    detector = load_detector(cfg, model, runtime)
    log.info("detecting with %s on %s", model, runtime)
    with atomic_dir(out_dir) as tmp:
        for video in videos:
            reports.append(detect_video(detector, cfg, video, tmp / f"{video.stem}.csv"))
        write_summary(tmp, reports, root)
    failed = [r for r in reports if r.status == "failed"]
    for report in failed:
        log.error("failed: %s", report.error)
    return reports


def _run(params: Params, root: Path) -> list[VideoReport]:
    return detect_videos(params.detect, root=root, out_dir=Layout(root).detections)


STAGE = Stage(
    name="detect",
    run=_run,
    # the exports and their check: detect.runtime auto/onnxruntime/openvino run them (tasks/export.py)
    deps=(
        "${detect.weights}",
        "data/demo/videos",
        EXPORT_METRICS,
        "models/finetuned.onnx",
        "models/finetuned_openvino",
        "models/int8",
    ),
    outs=("data/detections",),
)
