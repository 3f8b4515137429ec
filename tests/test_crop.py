"""Stage `crop`: crops come from the detected frame, padded and clipped, never empty, all indexed."""

import csv
from pathlib import Path

import cv2
import pytest

from tasks.config import CropConfig
from tasks.crop import CropError, crop_box, crop_detections
from tasks.crop_index import CROP_INDEX_COLUMNS, read_crop_index
from tasks.detections import DETECTION_COLUMNS, VideoReport, write_summary
from tests.videos import frame_number, write_numbered_video


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((10, 10, 30, 40), (8, 7, 32, 43)),  # 10% of 20x30 on each side
        ((-5, -5, 20, 20), (0, 0, 23, 23)),  # 2.5 px margins round outwards  # crossing the top-left corner: clipped
        ((50, 30, 70, 60), (48, 27, 64, 48)),  # crossing the bottom-right edge: clipped
        ((62, 10, 70, 30), None),  # mostly outside the frame: what is left is too narrow
        ((5, 5, 6, 6), None),  # too small, even with its margins rounded outwards
    ],
)
def test_crop_box_pads_clips_and_filters(box, expected):
    assert crop_box((48, 64, 3), box, pad=0.1, min_size=4) == expected


def _detections(folder: Path, video: Path, rows: list[tuple]) -> Path:
    folder.mkdir()
    with (folder / f"{video.stem}.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([DETECTION_COLUMNS, *rows])
    write_summary(folder, [VideoReport(video=video.name, name=video.stem, status="ok", frames=20)])
    return folder


def test_each_detection_is_cropped_from_its_own_frame(tmp_path: Path):
    video = write_numbered_video(tmp_path / "cam.avi", 20, size=(64, 48))
    rows = [
        (5, 0.5, 10, 10, 30, 40, 0.9, 0),
        (5, 0.5, 40, 20, 80, 60, 0.8, 0),
        (15, 1.5, 1, 1, 2, 2, 0.7, 0),
        (15, 1.5, 0, 0, 20, 20, 0.6, 0),
    ]
    detections = _detections(tmp_path / "detections", video, rows)
    index = crop_detections(
        CropConfig(pad=0.1, min_size=4), root=tmp_path, detections_dir=detections, out_dir=tmp_path / "crops"
    )

    entries = read_crop_index(index)
    assert tuple(entries[0]) == CROP_INDEX_COLUMNS
    # the 1x1 box (row 2) is 3x3 even with its margins: dropped
    assert [(e["frame"], e["detection"]) for e in entries] == [("5", "0"), ("5", "1"), ("15", "3")]
    for entry in entries:
        image = cv2.imread(str(tmp_path / "crops" / entry["crop"]))
        x1, y1, x2, y2 = (int(entry[k]) for k in ("x1", "y1", "x2", "y2"))
        assert image.shape[:2] == (y2 - y1, x2 - x1) and image.size > 0
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 48
        assert frame_number(image) == int(entry["frame"])
    assert entries[1]["crop"] == "cam/000005_1.jpg" and (entries[1]["x2"], entries[1]["y2"]) == ("64", "48")


def test_no_detections_gives_an_empty_index(tmp_path: Path):
    video = write_numbered_video(tmp_path / "cam.avi", 3)
    detections = _detections(tmp_path / "detections", video, [])
    assert (
        read_crop_index(
            crop_detections(CropConfig(), root=tmp_path, detections_dir=detections, out_dir=tmp_path / "crops")
        )
        == []
    )


def test_a_vanished_video_is_named_before_any_crop_is_written(tmp_path: Path):
    video = write_numbered_video(tmp_path / "cam.avi", 3)
    detections = _detections(tmp_path / "detections", video, [(1, 0.1, 0, 0, 20, 20, 0.9, 0)])
    video.unlink()
    with pytest.raises(CropError, match=r"cam\.avi: the video these detections came from is gone"):
        crop_detections(CropConfig(), root=tmp_path, detections_dir=detections, out_dir=tmp_path / "crops")
    assert not (tmp_path / "crops").exists()
