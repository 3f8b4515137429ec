"""Stage `preview`: a GIF per video with one frame per sampled frame of the clip, drawn; off leaves nothing."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tasks.artifacts import FLOW_KEY, flow_rows
from tasks.config import ConfigError, DetectConfig, Params, PreviewConfig, TrackConfig, load_params
from tasks.detections import DETECTION_COLUMNS, VideoReport, write_summary
from tasks.frames import open_video
from tasks.preview import STAGE, PreviewError, clip_frames, draw_frame, preview_videos, running_counts
from tasks.track import PEOPLE_COLUMNS, TrackRow, track_video
from tests.conftest import TINY_DEMO

INTERVAL = 2
DETECT = DetectConfig(interval=INTERVAL)
TRACK = TrackConfig()


@pytest.fixture(scope="module")
def project(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/detections, data/tracks and data/people.csv of the tiny demo video, detections = its ground truth."""
    root = tmp_path_factory.mktemp("preview")
    [video] = sorted((tiny_demo / "videos").glob("*.mp4"))
    capture, info = open_video(video)
    capture.release()
    sampled = list(range(0, info.frames, INTERVAL))
    with video.with_suffix(".csv").open(newline="") as handle:
        truth = [r for r in csv.DictReader(handle) if int(r["frame"]) in sampled]
    rows = []
    for r in truth:
        left, top, w, h = (float(r[k]) for k in ("left", "top", "width", "height"))
        x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + w, info.width), min(top + h, info.height)
        rows.append((int(r["frame"]), round(int(r["frame"]) / info.fps, 4), int(x1), int(y1), int(x2), int(y2), 0.9, 0))
    detections = root / "data" / "detections"
    detections.mkdir(parents=True)
    with (detections / f"{video.stem}.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([DETECTION_COLUMNS, *rows])
    report = VideoReport(
        video=str(video),
        name=video.stem,
        status="ok",
        frames=info.frames,
        fps=info.fps,
        width=info.width,
        height=info.height,
        frames_read=info.frames,
        sampled=len(sampled),
        detections=len(rows),
    )
    write_summary(detections, [report], root)
    tracks = root / "data" / "tracks"
    summary = track_video(
        TRACK,
        detections_csv=detections / f"{video.stem}.csv",
        fps=info.fps,
        interval=INTERVAL,
        width=info.width,
        height=info.height,
        out_csv=tracks / f"{video.stem}.csv",
        sampled_frames=sampled,
    )
    assert summary.tracks >= 1  # something to draw
    (tracks / "crossings.json").write_text(json.dumps({video.stem: [asdict(c) for c in summary.crossings]}))
    with (root / "data" / "people.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PEOPLE_COLUMNS)
        writer.writerows((video.stem, n, 0.0, 1.0, 2, "red", 1.0) for n in range(1, summary.tracks + 1))
    return root


def run(project: Path, out: Path, **preview) -> dict:
    return preview_videos(
        PreviewConfig(**preview),
        DETECT,
        TRACK,
        root=project,
        detections_dir=project / "data" / "detections",
        tracks_dir=project / "data" / "tracks",
        people_csv=project / "data" / "people.csv",
        out_dir=out,
    )


def gif_frames(path: Path) -> list[tuple[np.ndarray, int]]:
    """Every frame of a GIF decoded by Pillow, as RGB arrays, with its duration in ms."""
    frames = []
    with Image.open(path) as image:
        assert image.format == "GIF"
        for index in range(image.n_frames):
            image.seek(index)
            frames.append((np.asarray(image.convert("RGB")), image.info["duration"]))
    return frames


def test_one_gif_frame_per_sampled_frame_at_the_sampled_rate(project: Path, tmp_path: Path):
    result = run(project, tmp_path / "preview")  # 8 s from 0: the whole tiny video (under 5 s at 5 fps)
    [gif] = sorted((tmp_path / "preview").iterdir())
    assert gif.name == "street_00.gif"
    frames = gif_frames(gif)
    sampled = len(range(0, TINY_DEMO.video_frames, INTERVAL))
    assert len(frames) == sampled == result["videos"]["street_00"]["frames"]
    assert {duration for _, duration in frames} == {1000 * INTERVAL // 5}  # interval / fps seconds each
    assert {f.shape for f, _ in frames} == {(96, 160, 3)}  # the video's size: never enlarged to preview.width
    assert len({f.tobytes() for f, _ in frames}) == len(frames)  # every frame its own picture


def test_the_clip_is_start_s_plus_seconds_and_width_downscales(project: Path, tmp_path: Path):
    run(project, tmp_path / "preview", start_s=0.4, seconds=1.0, width=80)  # frames 2..6: sampled 2, 4, 6
    frames = gif_frames(tmp_path / "preview" / "street_00.gif")
    assert len(frames) == 3
    assert frames[0][0].shape == (48, 80, 3)


def test_a_clip_past_the_end_writes_no_gif(project: Path, tmp_path: Path):
    result = run(project, tmp_path / "preview", start_s=60)
    assert result["videos"]["street_00"]["frames"] == 0
    assert list((tmp_path / "preview").iterdir()) == []


def test_disabled_leaves_an_empty_folder(project: Path, tmp_path: Path):
    out = tmp_path / "preview"
    run(project, out)
    assert list(out.iterdir())
    assert run(project, out, enabled=False) == {"enabled": False, "videos": {}}
    assert out.is_dir() and list(out.iterdir()) == []  # the last run's GIFs are gone


def test_without_tracks_it_says_which_stage_to_run(project: Path, tmp_path: Path):
    with pytest.raises(PreviewError, match=r"crossings.json: not found; run the track stage first"):
        preview_videos(
            PreviewConfig(),
            DETECT,
            TRACK,
            root=project,
            detections_dir=project / "data" / "detections",
            tracks_dir=tmp_path / "no-tracks",
            people_csv=project / "data" / "people.csv",
            out_dir=tmp_path / "preview",
        )


def test_clip_frames_are_the_sampled_ones_in_the_window():
    sampled = range(0, 600, 5)
    assert clip_frames(sampled, 15, 2.0, 1.0) == [30, 35, 40]
    assert clip_frames(range(0, 12, 2), 5, 0.4, 1.0) == [2, 4, 6]  # 0.4 x 5 is not quite 2.0 in floats
    assert clip_frames(sampled, 15, 100, 8) == []


def test_running_counts_add_up_to_the_frame_shown():
    events = [
        {"line": "middle", "frame": 2, "direction": "in"},
        {"line": "middle", "frame": 6, "direction": "out"},
        {"line": "middle", "frame": 6, "direction": "in"},
        {"line": "gone", "frame": 0, "direction": "in"},  # a line no longer configured is not shown
    ]
    assert running_counts(events, ["middle"], 1) == {"middle": {"in": 0, "out": 0}}
    assert running_counts(events, ["middle"], 2) == {"middle": {"in": 1, "out": 0}}
    assert running_counts(events, ["middle", "door"], 9) == {"middle": {"in": 2, "out": 1}, "door": {"in": 0, "out": 0}}


def test_boxes_and_lines_are_drawn_at_the_downscaled_size():
    frame = np.zeros((200, 400, 3), np.uint8)
    row = TrackRow(0, 0.0, 3, (100.0, 60.0, 160.0, 180.0), 0.9, 0)
    lines = {"middle": ((300.0, 0.0), (300.0, 200.0))}
    plain = draw_frame(frame, width=200, rows=[], colours={}, lines={}, counts={}, frame_index=0, time_s=0.0)
    counts = {"middle": {"in": 1, "out": 0}}
    drawn = draw_frame(
        frame, width=200, rows=[row], colours={3: "red"}, lines=lines, counts=counts, frame_index=0, time_s=0.0
    )
    assert drawn.shape == plain.shape == (100, 200, 3)
    assert drawn[60, 50].any() and not plain[60, 50].any()  # the box's left edge, at half scale
    assert drawn[50, 150].any() and not plain[50, 150].any()  # the line
    assert not drawn[60, 65].any()  # inside the box: the frame, untouched


def test_bad_preview_params_are_named(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"preview": {"seconds": 0, "start_s": -1, "width": 8, "enabled": "sometimes"}}))
    with pytest.raises(ConfigError) as error:
        load_params(path)
    message = str(error.value)
    assert "preview.seconds: Input should be greater than 0" in message
    assert "preview.start_s: Input should be greater than or equal to 0" in message
    assert "preview.width: Input should be greater than or equal to 64" in message
    assert "preview.enabled: Input should be a valid boolean" in message


def test_the_stage_reads_and_writes_the_declared_paths(project: Path):
    assert STAGE.name == "preview" and STAGE.outputs == ("reports/preview",)
    assert {"data/tracks", "data/people.csv", "data/demo/videos"} <= set(STAGE.deps)
    result = STAGE.run(Params.model_validate({"detect": {"interval": INTERVAL}, "preview": {"seconds": 1}}), project)
    assert result["videos"]["street_00"]["frames"] == 3  # frames 0, 2, 4 of the first second at 5 fps
    assert [p.name for p in (project / "reports" / "preview").iterdir()] == ["street_00.gif"]


def test_the_people_flow_table_has_a_row_per_video():
    track = {
        "videos": {
            "b": {"status": "failed", "error": "cannot open"},
            "a": {
                "status": "ok",
                "people": 24,
                "colours": {"blue": 10, "red": 14},
                "lines": {"middle": {"in": 11, "out": 12, "by_colour": {}}, "door": {"in": 1, "out": 0}},
                "ground_truth": {"people_true": 23},
            },
        }
    }
    assert flow_rows(track) == [
        {
            "video": "a",
            "people": 24,
            "people_true": 23,
            "crossings_in": 12,
            "crossings_out": 12,
            "lines": "middle: 11 in, 12 out; door: 1 in, 0 out",
            "colours": "blue 10, red 14",
        },
        {
            "video": "b",
            "people": None,
            "people_true": None,
            "crossings_in": None,
            "crossings_out": None,
            "lines": "failed: cannot open",
            "colours": "",
        },
    ]
    assert FLOW_KEY == "people-flow"
