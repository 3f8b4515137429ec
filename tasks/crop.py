"""Stage `crop`: each detection cut from its original frame (padded, clipped), one JPEG each, plus an index."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.atomic import atomic_dir, atomic_file
from tasks.boxes import padded_box
from tasks.config import CropConfig, Params
from tasks.crop_index import CROP_INDEX_COLUMNS, INDEX_NAME
from tasks.detections import read_summary
from tasks.errors import LightweightError
from tasks.frames import ReadStats, VideoError, frames_at, open_video
from tasks.layout import Layout
from tasks.stage import Stage

__all__ = ["CropError", "crop_box", "crop_detections"]

log = logging.getLogger(__name__)


class CropError(LightweightError, ValueError):
    """Detections that cannot be cropped: their video changed or is gone."""


@dataclass(frozen=True)
class _Detection:
    row: int  # row number in the video's detection CSV (0 = first data row)
    frame: int
    box: tuple[int, int, int, int]
    conf: float


def crop_box(
    frame_shape: tuple[int, ...], box: tuple[int, int, int, int], pad: float, min_size: int
) -> tuple[int, int, int, int] | None:
    """The padded box clipped to the frame, or None when what is left is smaller than `min_size`."""
    clipped = padded_box(frame_shape, box, pad)
    if clipped is None or clipped[2] - clipped[0] < min_size or clipped[3] - clipped[1] < min_size:
        return None
    return clipped


def _read_detections(path: Path) -> list[_Detection]:
    with path.open(newline="") as handle:
        return [
            _Detection(row, int(r["frame"]), (int(r["x1"]), int(r["y1"]), int(r["x2"]), int(r["y2"])), float(r["conf"]))
            for row, r in enumerate(csv.DictReader(handle))
        ]


def _crop_video(cfg: CropConfig, video: Path, name: str, detections: list[_Detection], out_dir: Path) -> list[tuple]:
    by_frame: dict[int, list[_Detection]] = {}
    for detection in detections:
        by_frame.setdefault(detection.frame, []).append(detection)
    rows: list[tuple] = []
    if not by_frame:
        return rows
    capture, info = open_video(video)
    (out_dir / name).mkdir(parents=True, exist_ok=True)
    try:
        for index, frame in frames_at(capture, info, ReadStats(), by_frame):
            for n, detection in enumerate(by_frame.pop(index)):
                rows.extend(_save_crop(cfg, frame, detection, out_dir, name, f"{name}/{index:06d}_{n}.jpg"))
    finally:
        capture.release()
    if by_frame:
        raise CropError(f"{video}: frames {sorted(by_frame)[:5]}… of the detections could not be read again")
    return rows


def _save_crop(cfg: CropConfig, frame: np.ndarray, detection: _Detection, out_dir: Path, name: str, crop: str) -> list:
    clipped = crop_box(frame.shape, detection.box, cfg.pad, cfg.min_size)
    if clipped is None:
        return []
    left, top, right, bottom = clipped
    ok, encoded = cv2.imencode(".jpg", frame[top:bottom, left:right], [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:
        raise CropError(f"{crop}: JPEG encoding failed")
    (out_dir / crop).write_bytes(encoded.tobytes())
    return [(crop, name, detection.frame, detection.row, left, top, right, bottom, detection.conf)]


def crop_detections(cfg: CropConfig, *, root: Path, detections_dir: Path, out_dir: Path) -> Path:
    """Crops of every detection of every processed video into `out_dir` (replaced as a whole); returns the index."""
    reports = [r for r in read_summary(detections_dir) if r.status == "ok"]
    for report in reports:
        if not (detections_dir / f"{report.name}.csv").is_file():
            raise CropError(f"{detections_dir / report.name}.csv: missing; run the detect stage again")
        video = report.path(root)
        if not video.is_file():
            raise CropError(f"{video}: the video these detections came from is gone")
    with atomic_dir(out_dir) as tmp:
        rows: list[tuple] = []
        for report in reports:
            video = report.path(root)
            detections = _read_detections(detections_dir / f"{report.name}.csv")
            try:
                video_rows = _crop_video(cfg, video, report.name, detections, tmp)
            except VideoError as error:
                raise CropError(str(error)) from None
            log.info("%s: %d crops of %d detections", report.name, len(video_rows), len(detections))
            rows.extend(video_rows)
        with atomic_file(tmp / INDEX_NAME) as index, index.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CROP_INDEX_COLUMNS)
            writer.writerows(rows)
    return out_dir / INDEX_NAME


def _run(params: Params, root: Path) -> Path:
    layout = Layout(root)
    return crop_detections(params.crop, root=root, detections_dir=layout.detections, out_dir=layout.crops_dir)


STAGE = Stage(name="crop", run=_run, deps=("data/detections", "data/demo/videos"), outs=("data/crops",))
