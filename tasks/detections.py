"""The output format of stage `detect`, for the stages that read it: one CSV per video and summary.json.

Kept apart from tasks/detect.py so that a reader of detections does not depend on the detector's code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tasks.atomic import write_json
from tasks.errors import LightweightError

__all__ = ["DETECTION_COLUMNS", "SUMMARY_NAME", "DetectionsError", "VideoReport", "read_summary", "write_summary"]

DETECTION_COLUMNS = ("frame", "time_s", "x1", "y1", "x2", "y2", "conf", "class")
SUMMARY_NAME = "summary.json"


class DetectionsError(LightweightError, ValueError):
    """Detections that are missing or unreadable."""


@dataclass(frozen=True)
class VideoReport:
    """What happened to one video; a failed video names its error and still gets a (header-only) CSV."""

    video: str  # the path as found
    name: str  # the CSV is <name>.csv
    status: str  # "ok" | "failed"
    error: str = ""
    frames: int = 0  # frame count the container reports
    fps: float = 0.0
    width: int = 0
    height: int = 0
    frames_read: int = 0  # frame positions consumed
    sampled: int = 0  # frames that went through the detector
    decode_failures: int = 0  # frames skipped because they did not decode
    detections: int = 0

    def path(self, root: Path) -> Path:
        """The video file, for a project folder `root`."""
        return Path(self.video) if Path(self.video).is_absolute() else root / self.video


def write_summary(out_dir: Path, reports: list[VideoReport], root: Path | None = None) -> Path:
    """summary.json beside the CSVs: one report per video, failures included.

    Videos inside the project folder `root` are written relative to it, so the same project gives the same
    file wherever it is checked out (readers resolve them against their root again).
    """
    rows = []
    for report in reports:
        video = Path(report.video)
        if root is not None and video.is_absolute() and video.is_relative_to(root.resolve()):
            report = replace(report, video=video.relative_to(root.resolve()).as_posix())
        rows.append(asdict(report))
    return write_json(out_dir / SUMMARY_NAME, {"videos": rows})


def read_summary(out_dir: Path) -> list[VideoReport]:
    """The reports of the last detect run."""
    path = out_dir / SUMMARY_NAME
    if not path.is_file():
        raise DetectionsError(f"{path}: not found; run the detect stage first")
    return [VideoReport(**item) for item in json.loads(path.read_text())["videos"]]
