"""Stage `flow_report`: counts per sampled frame, class tallies, and ground truth recall/MAE/colour accuracy."""

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.boxes import box_iou
from tasks.config import DetectConfig, FlowReportConfig
from tasks.detections import DETECTION_COLUMNS, VideoReport, write_summary
from tasks.flow_report import flow_report, match_boxes
from tasks.layout import Layout


def _write(path: Path, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_box_iou_and_greedy_matching():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    # the first (most confident) detection takes the truth it overlaps best; the second cannot take it again
    assert match_boxes([(0, 0, 10, 10), (1, 0, 11, 10)], [(0, 0, 10, 10)], 0.5) == {0: 0}
    assert match_boxes([(0, 0, 10, 10)], [(6, 0, 16, 10)], 0.5) == {}


def test_counts_ground_truth_and_failures(tmp_path: Path):
    root = tmp_path
    layout = Layout(root)
    videos = root / "videos"
    (videos).mkdir()
    (videos / "cam.avi").write_bytes(b"")  # only its ground truth beside it is read
    _write(
        videos / "cam.csv",
        [
            ("frame", "id", "left", "top", "width", "height", "colour", "colour_name", "visible"),
            (0, 1, 10, 10, 20, 40, 0, "red", 1.0),
            (0, 2, 50, 10, 20, 40, 1, "green", 1.0),
            (2, 1, 12, 10, 20, 40, 0, "red", 1.0),
            (2, 3, 90, 10, 20, 40, 2, "blue", 0.2),  # mostly occluded: not expected
            (4, 1, 14, 10, 20, 40, 0, "red", 1.0),
            (4, 4, 95, 50, 30, 40, 3, "yellow", 1.0),  # crosses the frame edge: clipped, still counted
        ],
    )
    _write(
        layout.detections / "cam.csv",
        [
            DETECTION_COLUMNS,
            (0, 0.0, 10, 10, 30, 50, 0.9, 0),  # row 0: matches person 1 (red)
            (0, 0.0, 50, 10, 70, 50, 0.8, 0),  # row 1: matches person 2 (green)
            (2, 0.2, 60, 60, 80, 90, 0.5, 0),  # row 2: a false positive
            (4, 0.4, 14, 10, 34, 50, 0.7, 0),  # row 3: matches person 1 again
        ],
    )
    write_summary(
        layout.detections,
        [
            VideoReport(
                video="videos/cam.avi",
                name="cam",
                status="ok",
                frames=6,
                fps=10,
                width=100,
                height=80,
                frames_read=6,
                sampled=3,
                detections=4,
            ),
            VideoReport(
                video="videos/lost.mp4", name="lost", status="failed", error="videos/lost.mp4: video not found"
            ),
        ],
    )
    _write(
        layout.crops_index,
        [
            ("crop", "video", "frame", "detection", "x1", "y1", "x2", "y2", "conf"),
            ("cam/000000_0.jpg", "cam", 0, 0, 8, 6, 32, 54, 0.9),
            ("cam/000000_1.jpg", "cam", 0, 1, 48, 6, 72, 54, 0.8),
            ("cam/000002_0.jpg", "cam", 2, 2, 58, 57, 82, 93, 0.5),
            ("cam/000004_0.jpg", "cam", 4, 3, 12, 6, 36, 54, 0.7),
        ],
    )
    _write(
        layout.predictions,
        [
            ("crop", "class", "probability"),
            ("cam/000000_0.jpg", "red", 0.9),
            ("cam/000000_1.jpg", "blue", 0.6),  # wrong: person 2 wears green
            ("cam/000002_0.jpg", "white", 0.7),
            ("cam/000004_0.jpg", "red", 0.8),
        ],
    )
    out = layout.flow_outputs
    result = flow_report(
        FlowReportConfig(gt_min_height=16),
        DetectConfig(interval=2),
        root=root,
        detections_dir=layout.detections,
        crops_index=layout.crops_index,
        predictions=layout.predictions,
        out=out,
    )

    cam = result["videos"]["cam"]
    assert cam["sampled_frames"] == 3 and cam["detections"] == 4
    assert cam["people_per_frame_mean"] == pytest.approx(4 / 3, abs=1e-4) and cam["people_per_frame_max"] == 2
    assert cam["classes"] == {"blue": 1, "red": 2, "white": 1}
    truth = cam["ground_truth"]
    assert truth["count_mae"] == pytest.approx((0 + 0 + 1) / 3, abs=1e-4)  # frame 4: 1 found of 2 people
    assert truth["recall_iou50"] == pytest.approx(3 / 5)  # frames 0, 2, 4: 2 of 2, 0 of 1, 1 of 2
    assert truth["colour_accuracy"] == pytest.approx(2 / 3, abs=1e-4) and truth["colour_judged"] == 3
    assert result["failed"] == ["lost"] and "video not found" in result["videos"]["lost"]["error"]
    assert json.loads(out.metrics.read_text()) == result
    with (out.counts_dir / "cam.csv").open() as handle:
        assert [(r["frame"], r["detected"], r["ground_truth"]) for r in csv.DictReader(handle)] == [
            ("0", "2", "2"),
            ("2", "1", "1"),
            ("4", "1", "2"),
        ]
    assert out.counts_png.stat().st_size > 0 and out.classes_png.stat().st_size > 0


def test_no_detections_is_zero_counts_not_a_crash(tmp_path: Path):
    layout = Layout(tmp_path)
    _write(layout.detections / "cam.csv", [DETECTION_COLUMNS])
    write_summary(
        layout.detections, [VideoReport(video="cam.avi", name="cam", status="ok", frames=10, frames_read=10, sampled=2)]
    )
    _write(layout.crops_index, [("crop", "video", "frame", "detection", "x1", "y1", "x2", "y2", "conf")])
    _write(layout.predictions, [("crop", "class", "probability")])
    result = flow_report(
        FlowReportConfig(),
        DetectConfig(interval=5),
        root=tmp_path,
        detections_dir=layout.detections,
        crops_index=layout.crops_index,
        predictions=layout.predictions,
        out=layout.flow_outputs,
    )
    assert result["videos"]["cam"]["people_per_frame_mean"] == 0.0
    assert result["videos"]["cam"]["sampled_frames"] == 2 and result["classes"] == {}


def test_a_person_the_detector_need_not_find_counts_neither_way(tmp_path: Path):
    """A mostly hidden or tiny true person is not expected; finding it is no error, and not a hit either."""
    layout = Layout(tmp_path)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "cam.avi").write_bytes(b"")
    _write(
        tmp_path / "videos" / "cam.csv",
        [
            ("frame", "id", "left", "top", "width", "height", "colour", "colour_name", "visible"),
            (0, 1, 10, 10, 20, 40, 0, "red", 1.0),
            (0, 2, 50, 10, 20, 40, 1, "green", 0.2),  # mostly hidden: ignored
            (0, 3, 80, 10, 4, 8, 2, "blue", 1.0),  # 8 px tall: ignored
            (5, 1, 10, 10, 20, 40, 0, "red", 1.0),
        ],
    )
    _write(
        layout.detections / "cam.csv",
        [
            DETECTION_COLUMNS,
            (0, 0.0, 10, 10, 30, 50, 0.9, 0),  # the red person
            (0, 0.0, 50, 10, 70, 50, 0.8, 0),  # the hidden one: not counted against
            (0, 0.0, 80, 10, 84, 18, 0.7, 0),  # the tiny one: not counted against
            (5, 0.5, 10, 10, 30, 50, 0.9, 0),
            (5, 0.5, 50, 60, 70, 79, 0.6, 0),  # nobody there: a false positive, counted
        ],
    )
    report = VideoReport(video="videos/cam.avi", name="cam", status="ok", frames=10, fps=10, width=100, height=80)
    write_summary(layout.detections, [replace(report, frames_read=10, sampled=2, detections=5)])
    _write(layout.crops_index, [("crop", "video", "frame", "detection", "x1", "y1", "x2", "y2", "conf")])
    _write(layout.predictions, [("crop", "class", "probability")])
    result = flow_report(
        FlowReportConfig(gt_min_visible=0.5, gt_min_height=16),
        DetectConfig(interval=5),
        root=tmp_path,
        detections_dir=layout.detections,
        crops_index=layout.crops_index,
        predictions=layout.predictions,
        out=layout.flow_outputs,
    )
    cam = result["videos"]["cam"]
    assert cam["people_per_frame_mean"] == 2.5  # what the detector reports, as it is
    assert cam["ground_truth"]["count_mae"] == 0.5  # frame 0: 1 vs 1; frame 5: 2 vs 1
    assert cam["ground_truth"]["recall_iou50"] == 1.0
