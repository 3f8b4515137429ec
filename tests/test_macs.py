"""Stage `macs`: detector per frame, classifier per crop, every frame versus every interval-th."""

import csv
from pathlib import Path

import pytest

from tasks.config import DetectConfig
from tasks.detections import VideoReport, write_summary
from tasks.macs import compute_costs


def test_sampling_divides_the_detector_cost_by_the_interval(trained_checkpoint: Path, tiny_classifier, tmp_path):
    classifier, _ = tiny_classifier
    detections = tmp_path / "detections"
    write_summary(
        detections,
        [
            VideoReport(
                video="a.mp4", name="a", status="ok", frames=100, width=640, height=360, frames_read=100, sampled=20
            ),
            VideoReport(video="b.mp4", name="b", status="failed", error="b.mp4: video not found"),
        ],
    )
    index = tmp_path / "index.csv"
    with index.open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["crop", "video", "frame", "detection", "x1", "y1", "x2", "y2", "conf"])
        rows.writerows([(f"a/{i:06d}_0.jpg", "a", i, i, 0, 0, 10, 20, 0.9) for i in range(0, 100, 5)][:30])
    out = tmp_path / "macs.json"
    result = compute_costs(
        DetectConfig(interval=5, imgsz=640),
        detectors={"detect": trained_checkpoint},
        classifier=classifier,
        detections_dir=detections,
        crops_index=index,
        out=out,
    )

    per_frame = result["detectors"]["detect"]["384x640"]["gmacs_per_frame"]  # 640x360 letterboxed as detect.py
    per_crop = result["classifier"]["gmacs_per_crop"]
    assert per_frame > 0.1 and 0 < per_crop < per_frame
    video = result["videos"]["a"]
    assert set(result["videos"]) == {"a"}  # a failed video has no cost
    assert video["gmacs_interval_5"] == pytest.approx(20 * per_frame + 20 * per_crop, rel=1e-3)
    assert video["gmacs_interval_1"] == pytest.approx(100 * (per_frame + per_crop), rel=1e-3)
    assert video["saving"] == pytest.approx(5.0, abs=0.01) and 0.5 < video["detector_share"] < 1
    assert out.is_file()
