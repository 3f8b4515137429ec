"""Stage `interval_sweep`: a row per interval and video, cost exactly 1/interval, the knee from the rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tasks.config import ConfigError, DetectConfig, IntervalSweepConfig, Params, TrackConfig, load_params
from tasks.detections import DETECTION_COLUMNS, VideoReport
from tasks.frames import open_video, sampled_indices
from tasks.interval_sweep import (
    COLUMNS,
    STAGE,
    SweepError,
    SweepRow,
    knee_interval,
    mean_idf1,
    read_sweep,
    sweep_intervals,
)
from tasks.letterbox import letterbox_shape
from tasks.registry import code_files
from tasks.track import TruthFilter, read_truth
from tasks.yolo import count_gflops, detection_model, load_checkpoint
from tests.conftest import TINY_DEMO, TINY_DETECT

INTERVALS = [1, 2, 3, 5, 8, 12]


def row(interval: int, idf1: float | None, video: str = "a") -> SweepRow:
    return SweepRow(interval, video, 1.0 / interval, idf1, None, None, None, 0, None, None, 1, 1.0)


def test_the_knee_is_the_sparsest_interval_within_the_drop_of_the_best():
    assert knee_interval({1: 0.90, 2: 0.88, 3: 0.86, 5: 0.84, 8: 0.70}, 0.05) == 3
    assert knee_interval({1: 0.90, 5: 0.85, 8: 0.80}, 0.05) == 5  # exactly at the limit counts
    assert knee_interval({1: 0.60, 2: 0.90, 5: 0.70, 12: 0.88}, 0.05) == 12  # not the first to fall: the largest
    assert knee_interval({1: 0.90, 3: None, 5: 0.40}, 0.05) == 1  # unscored intervals are no candidates
    assert knee_interval({1: None, 2: None}, 0.05) is None
    assert knee_interval({1: 0.9, 2: 0.5}, 1.0) == 2


def test_idf1_is_averaged_over_the_videos_scored_at_each_interval():
    rows = [row(1, 0.9, "a"), row(1, 0.7, "b"), row(2, 0.8, "a"), row(2, None, "b"), row(3, None, "a")]
    assert mean_idf1(rows) == {1: 0.8, 2: 0.8, 3: None}


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"intervals": []}, "interval_sweep.intervals: empty: give at least one interval"),
        ({"intervals": [1, 0, 5]}, "interval_sweep.intervals.1: Input should be greater than or equal to 1"),
        ({"intervals": [2, 5, 2]}, "interval_sweep.intervals: 2 listed more than once"),
        ({"max_idf1_drop": -0.1}, "interval_sweep.max_idf1_drop: Input should be greater than or equal to 0"),
        ({"interval": [1]}, "interval_sweep.interval: unknown key"),
    ],
)
def test_bad_sweep_params_are_named(tmp_path: Path, sweep: dict, message: str):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"interval_sweep": sweep}))
    with pytest.raises(ConfigError) as error:
        load_params(path)
    assert message in str(error.value)


def test_declaration_and_code_deps():
    assert STAGE.deps == ("${detect.weights}", "data/demo/videos")
    assert set(STAGE.outputs) == {
        "reports/interval_tradeoff.csv",
        "reports/interval_tradeoff.png",
        "metrics/interval_sweep.json",
    }
    assert {"interval_sweep", "detect", "track", "flow_report.gt_min_visible"} <= set(STAGE.param_keys)
    assert {"tasks/detect.py", "tasks/track.py", "tasks/yolo/inference.py"} <= set(code_files("interval_sweep"))
    assert "tasks/macs.py" not in code_files("interval_sweep")  # counted as macs counts, without its classifier


def test_no_video_is_an_error(tmp_path: Path):
    detect = TINY_DETECT.model_copy(update={"weights": str(tmp_path / "never-loaded.pt"), "videos": ["nowhere/*.mp4"]})
    with pytest.raises(SweepError, match=r"no videos to sweep:\n  nowhere/\*\.mp4: no videos found"):
        sweep_intervals(
            IntervalSweepConfig(),
            detect,
            TrackConfig(),
            root=tmp_path,
            out_csv=tmp_path / "sweep.csv",
            out_png=tmp_path / "sweep.png",
            metrics_json=tmp_path / "sweep.json",
        )
    assert not (tmp_path / "sweep.csv").exists()


def oracle_detect(detector, cfg: DetectConfig, video: Path, out_csv: Path) -> VideoReport:
    """detect_video with the ground truth for a detector: every visible true person at the sampled frames."""
    capture, info = open_video(video)
    capture.release()
    frames = set(sampled_indices(info.frames, cfg.interval, cfg.start, cfg.end))
    boxes = [t for t in read_truth(video.with_suffix(".csv"), info.width, info.height, TruthFilter()) if t.counted]
    rows = [
        (t.frame, round(t.frame / info.fps, 4), *(int(v) for v in t.box), 0.9, 0) for t in boxes if t.frame in frames
    ]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as handle:
        csv.writer(handle).writerows([DETECTION_COLUMNS, *sorted(rows)])
    return VideoReport(
        video=str(video),
        name=video.stem,
        status="ok",
        frames=info.frames,
        fps=info.fps,
        width=info.width,
        height=info.height,
        frames_read=info.frames,
        sampled=len(frames),
        detections=len(rows),
    )


def sweep(root: Path, weights: Path, videos: list[str]) -> dict:
    """The stage as `lightweight run interval_sweep` runs it, in project `root`."""
    params = Params.model_validate(
        {
            "detect": TINY_DETECT.model_dump() | {"weights": str(weights), "videos": videos},
            "interval_sweep": {"intervals": [5, 1, 12, 2, 8, 3], "max_idf1_drop": 0.05},  # any order
        }
    )
    return STAGE.run(params, root)


@pytest.fixture(scope="module")
def swept(tiny_demo: Path, trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """The sweep over the tiny demo video (and a missing one) with the 1-epoch detector: (project, result)."""
    root = tmp_path_factory.mktemp("sweep")
    return root, sweep(root, trained_checkpoint, [str(tiny_demo / "videos"), "missing.mp4"])


@pytest.mark.slow
def test_one_row_per_interval_and_video_and_cost_falls_as_one_over_interval(swept, trained_checkpoint: Path):
    out, result = swept
    header = (out / "reports" / "interval_tradeoff.csv").read_text().splitlines()[0]
    assert header.split(",")[:7] == [
        "interval",
        "video",
        "gmacs_per_s",
        "idf1",
        "mota",
        "people_error_rel",
        "crossing_error",
    ]
    assert tuple(header.split(",")) == COLUMNS
    rows = read_sweep(out / "reports" / "interval_tradeoff.csv")
    assert [(r.video, r.interval) for r in rows] == [("street_00", i) for i in INTERVALS]
    assert [r.sampled_frames for r in rows] == [len(range(0, TINY_DEMO.video_frames, i)) for i in INTERVALS]
    # GMACs per frame as tasks/macs.py counts them: one forward pass at the letterboxed frame size
    model = detection_model(load_checkpoint(trained_checkpoint), trained_checkpoint)
    shape = letterbox_shape((TINY_DEMO.video_height, TINY_DEMO.video_width), TINY_DETECT.imgsz)
    per_frame = count_gflops(model, shape) / 2
    for r in rows:
        assert r.gmacs_per_frame == pytest.approx(per_frame, rel=1e-5)
        assert r.gmacs_per_s * r.interval == pytest.approx(per_frame * TINY_DEMO.video_fps, rel=1e-5)
    assert [r.gmacs_per_s for r in rows] == sorted((r.gmacs_per_s for r in rows), reverse=True)
    for r in rows:  # scored against the ground truth beside the video
        assert r.people_true is not None and r.crossing_error is not None and r.crossing_error >= 0
        if r.people_true:
            assert r.idf1 is not None and 0 <= r.idf1 <= 1
            assert r.people_error_rel == pytest.approx(r.people / r.people_true - 1, abs=1e-4)
        else:  # at interval 12 the one sampled frame shows no one: nothing to score, and no knee candidate
            assert r.idf1 is None and r.people_error_rel is None
    assert rows[0].people_true >= 1
    assert result["failed"] == ["missing"]


@pytest.mark.slow
def test_the_knee_in_the_metrics_is_computed_from_the_rows(swept):
    out, result = swept
    rows = read_sweep(out / "reports" / "interval_tradeoff.csv")
    metrics = json.loads((out / "metrics" / "interval_sweep.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    idf1 = mean_idf1(rows)
    assert metrics["knee_interval"] == knee_interval(idf1, 0.05) is not None
    assert metrics["intervals"] == INTERVALS
    assert metrics["best_idf1"] == max(v for v in idf1.values() if v is not None)
    assert metrics["by_interval"]["1"]["idf1_mean"] == idf1[1]
    assert metrics["videos"]["street_00"]["knee_interval"] == knee_interval({r.interval: r.idf1 for r in rows}, 0.05)
    assert (out / "reports" / "interval_tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_with_perfect_detections_the_scores_are_the_tracker_s(
    tiny_demo: Path, trained_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("tasks.interval_sweep.detect_video", oracle_detect)
    result = sweep(tmp_path, trained_checkpoint, [str(tiny_demo / "videos")])
    rows = {r.interval: r for r in read_sweep(tmp_path / "reports" / "interval_tradeoff.csv")}
    assert rows[1].idf1 == rows[1].mota == 1.0  # every person, one track each, on every frame
    assert rows[1].people == rows[1].people_true and rows[1].people_error_rel == 0.0
    assert rows[1].crossing_error == 0
    assert result["best_interval"] == 1 and result["best_idf1"] == 1.0
    assert result["knee_interval"] == max(i for i, r in rows.items() if r.idf1 is not None and r.idf1 >= 0.95)
