"""Stage `track`: ids kept across sampled frames, crossings each way, one colour per person, MOT scores, bad input."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from tasks.crop_index import CROP_INDEX_COLUMNS
from tasks.detections import DETECTION_COLUMNS, VideoReport, write_summary
from tasks.track import (
    STAGE,
    TRACK_COLUMNS,
    TrackConfig,
    TrackError,
    TrackRow,
    TruthBox,
    people_table,
    read_tracks,
    score_tracks,
    track_video,
)

FPS, INTERVAL, WIDTH, HEIGHT, FRAMES = 15, 5, 640, 360, 180
SAMPLED = list(range(0, FRAMES, INTERVAL))
MIDDLE = {"points": [[0.5, 0.0], [0.5, 1.0]], "units": "fraction"}  # drawn downwards: "in" = left to right


@dataclass(frozen=True)
class Walker:
    """A person crossing at constant speed, feet at `foot`, as wide as a demo walker (0.35 of the height)."""

    x0: float
    foot: float
    speed: float  # pixels per frame, signed
    height: float
    colour: str

    def box(self, frame: int) -> tuple[int, int, int, int] | None:
        x, half = self.x0 + self.speed * frame, 0.175 * self.height
        left, right = int(max(0, x - half)), int(min(WIDTH, x + half))
        return (left, int(self.foot - self.height), right, int(self.foot)) if right - left >= 4 else None


WALKERS = (
    Walker(-30, 170, 3.0, 90, "red"),  # far, rightwards across the middle
    Walker(670, 300, -4.0, 160, "blue"),  # near, leftwards across the middle, in front of the first as they pass
    Walker(80, 240, 0.8, 130, "red"),  # strolls on the left, never reaches the middle
)


def _write_detections(path: Path, walkers=WALKERS, frames=SAMPLED) -> list[int]:
    """The walkers' boxes as a detection CSV; returns the walker of each data row."""
    rows, owners = [], []
    for frame in frames:
        for n, walker in enumerate(walkers):
            if (box := walker.box(frame)) is not None:
                rows.append((frame, round(frame / FPS, 4), *box, round(0.9 - 0.05 * n, 2), 0))
                owners.append(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([DETECTION_COLUMNS, *rows])
    return owners


def _track(tmp_path: Path, cfg: TrackConfig | None = None, **overrides):
    args = {
        "detections_csv": tmp_path / "cam.csv",
        "fps": FPS,
        "interval": INTERVAL,
        "width": WIDTH,
        "height": HEIGHT,
        "out_csv": tmp_path / "tracks" / "cam.csv",
        "sampled_frames": SAMPLED,
    }
    return track_video(cfg or TrackConfig(lines={"*": {"middle": MIDDLE}}), **(args | overrides))


def _truth(walkers=WALKERS, frames=SAMPLED) -> list[TruthBox]:
    return [
        TruthBox(frame, n, box, walker.colour, counted=True)
        for frame in frames
        for n, walker in enumerate(walkers)
        if (box := walker.box(frame)) is not None
    ]


def test_each_walker_keeps_one_track_from_its_first_sighting(tmp_path: Path):
    owners = _write_detections(tmp_path / "cam.csv")
    summary = _track(tmp_path)
    rows = read_tracks(tmp_path / "tracks" / "cam.csv")

    assert summary.tracks == 3 and summary.sampled_frames == len(SAMPLED)
    assert summary.tracked == summary.detections == len(owners)  # first sightings included
    walkers_of = {t: {owners[r.detection] for r in rows if r.track_id == t} for t in {r.track_id for r in rows}}
    assert sorted(map(len, walkers_of.values())) == [1, 1, 1]  # no track ever takes another walker's box
    assert len({next(iter(w)) for w in walkers_of.values()}) == 3  # and no walker is split
    firsts = [min(r.frame for r in rows if r.track_id == t) for t in (1, 2, 3)]
    assert firsts == sorted(firsts)  # numbered by first sighting


@pytest.mark.parametrize(("lost_track_s", "tracks"), [(2.0, 1), (0.5, 2)])
def test_a_walker_hidden_for_a_second_keeps_their_id_while_the_track_is_kept(tmp_path: Path, lost_track_s, tracks):
    hidden = set(range(60, 80, INTERVAL))  # four sampled frames, 1.1 s, behind something
    _write_detections(tmp_path / "cam.csv", walkers=WALKERS[:1], frames=[f for f in SAMPLED if f not in hidden])
    summary = _track(tmp_path, TrackConfig(lost_track_s=lost_track_s))
    assert summary.tracks == tracks


def test_detection_column_joins_tracks_to_the_detection_csv(tmp_path: Path):
    _write_detections(tmp_path / "cam.csv")
    _track(tmp_path)
    with (tmp_path / "cam.csv").open(newline="") as handle:
        detections = list(csv.DictReader(handle))
    with (tmp_path / "tracks" / "cam.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == TRACK_COLUMNS
        for row in reader:
            source = detections[int(row["detection"])]
            assert [row[k] for k in ("frame", "x1", "y1", "x2", "y2")] == [
                source[k] for k in ("frame", "x1", "y1", "x2", "y2")
            ]


def test_same_detections_give_byte_identical_tracks(tmp_path: Path):
    _write_detections(tmp_path / "cam.csv")
    _track(tmp_path, out_csv=tmp_path / "a.csv")
    _track(tmp_path, out_csv=tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_crossings_are_counted_each_way_and_follow_the_line_direction(tmp_path: Path):
    _write_detections(tmp_path / "cam.csv")
    reversed_middle = {"points": [[320, 360], [320, 0]], "units": "pixels"}  # drawn upwards: "in" = right to left
    lines = {"*": {"middle": MIDDLE, "top": {"points": [[0, 0.05], [1, 0.05]], "units": "fraction"}}}
    summary = _track(tmp_path, TrackConfig(lines=lines | {"cam": {"up": reversed_middle}}))

    assert summary.counts() == {"middle": {"in": 1, "out": 1}, "top": {"in": 0, "out": 0}, "up": {"in": 1, "out": 1}}
    by_line = {(c.line, c.direction): c for c in summary.crossings}
    assert by_line["middle", "in"].track_id == by_line["up", "out"].track_id  # the same walker, either way round
    assert by_line["middle", "in"].frame == 120  # first sampled frame with the feet right of x=320


def test_a_per_video_line_replaces_the_shared_one_of_the_same_name(tmp_path: Path):
    _write_detections(tmp_path / "cam.csv")
    left = {"points": [[100, 0], [100, 360]], "units": "pixels"}
    summary = _track(tmp_path, TrackConfig(lines={"*": {"middle": MIDDLE}, "cam": {"middle": left}}))
    assert summary.lines == {"middle": ((100, 0), (100, 360))}
    assert summary.counts()["middle"] == {"in": 2, "out": 1}  # the stroller crosses x=100 too


def test_the_vote_is_weighted_by_probability_and_counts_people():
    def row(track: int, detection: int, frame: int) -> TrackRow:
        return TrackRow(frame, round(frame / FPS, 4), track, (0, 0, 10, 20), 0.9, detection)

    tracks = {"cam": [row(1, 0, 0), row(1, 1, 5), row(1, 2, 10), row(2, 3, 0), row(2, 4, 5), row(3, 5, 10)]}
    index = [{"crop": f"cam/{d}.jpg", "video": "cam", "detection": str(d)} for d in range(5)]  # 5: no crop
    predictions = [
        {"crop": "cam/0.jpg", "class": "red", "probability": "0.4"},
        {"crop": "cam/1.jpg", "class": "red", "probability": "0.4"},
        {"crop": "cam/2.jpg", "class": "blue", "probability": "0.9"},  # one sure vote beats two unsure ones
        {"crop": "cam/3.jpg", "class": "green", "probability": "0.8"},
        {"crop": "cam/4.jpg", "class": "green", "probability": "0.6"},
    ]
    people = people_table(tracks, index, predictions)

    assert [(p.track_id, p.colour, p.confidence) for p in people] == [(1, "blue", 0.3), (2, "green", 0.7), (3, "", 0.0)]
    assert (people[0].first_s, people[0].last_s, people[0].sampled_frames) == (0.0, round(10 / FPS, 4), 3)


def test_scores_a_perfect_tracker_at_one_and_a_swapping_one_lower():
    truth = _truth()
    perfect = [TrackRow(t.frame, 0.0, t.person + 1, t.box, 0.9, -1) for t in truth]
    swapped = [  # walkers 0 and 2 exchange ids halfway
        TrackRow(t.frame, 0.0, (3 - t.person if t.person != 1 and t.frame >= 90 else t.person + 1), t.box, 0.9, -1)
        for t in truth
    ]
    lines = {"middle": ((320.0, 0.0), (320.0, 360.0))}
    colours = {1: "red", 2: "blue", 3: "red"}
    cfg = TrackConfig()

    good = score_tracks(cfg, tracks=perfect, truth=truth, sampled_frames=SAMPLED, lines=lines, colours=colours)
    bad = score_tracks(cfg, tracks=swapped, truth=truth, sampled_frames=SAMPLED, lines=lines, colours=colours)

    assert (good["idf1"], good["mota"], good["id_switches"], good["people_error"]) == (1.0, 1.0, 0, 0)
    assert good["lines"]["middle"] == {"in": 1, "out": 1, "true_in": 1, "true_out": 1, "error": 0}
    assert (good["colour_accuracy"], good["colour_judged"]) == (1.0, 3)
    assert bad["idf1"] < 0.9 and bad["id_switches"] == 2 and bad["mota"] < 1.0
    wrong = score_tracks(cfg, tracks=perfect, truth=truth, sampled_frames=SAMPLED, lines=lines, colours={2: "red"})
    assert (wrong["colour_accuracy"], wrong["colour_judged"]) == (0.0, 1)


def test_a_track_on_a_person_too_hidden_to_count_is_no_false_positive():
    hidden = TruthBox(60, 9, (580.0, 100.0, 610.0, 180.0), "white", counted=False)
    truth = [*_truth(frames=[60]), hidden]
    tracks = [TrackRow(t.frame, 0.0, t.person + 1, t.box, 0.9, -1) for t in truth]
    scores = score_tracks(TrackConfig(), tracks=tracks, truth=truth, sampled_frames=[60], lines={}, colours={})
    assert (scores["false_positives"], scores["misses"], scores["people_true"], scores["people"]) == (0, 0, 3, 4)


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ({"points": [[0.5, 0.5], [0.5, 0.5]], "units": "fraction"}, "lines.*.middle", "the two points are equal"),
        ({"points": [[0.5, 0.0], [1.5, 1.0]], "units": "fraction"}, "lines.*.middle", r"point \(1.5, 1\) is outside"),
        ({"points": [[-3, 0], [10, 10]], "units": "pixels"}, "lines.*.middle", r"point \(-3, 0\) is outside"),
        ({"points": [[0.5, 0.0], [0.5, 1.0]]}, "lines.*.middle.units", "Field required"),
    ],
)
def test_a_bad_line_is_a_config_error_naming_its_key(line, key, message):
    with pytest.raises(ValidationError) as caught:
        TrackConfig.model_validate({"lines": {"*": {"middle": line}}})
    errors = caught.value.errors()
    assert [".".join(map(str, e["loc"])) for e in errors] == [key]
    assert re.search(message, errors[0]["msg"])


def test_a_pixel_line_outside_the_frame_fails_before_anything_is_written(tmp_path: Path):
    _write_detections(tmp_path / "cam.csv")
    door = {"points": [[700, 10], [700, 300]], "units": "pixels"}
    with pytest.raises(TrackError, match=r"track\.lines\.cam\.door: point \(700, 10\) is outside the 640x360 frame"):
        _track(tmp_path, TrackConfig(lines={"cam": {"door": door}}))
    assert not (tmp_path / "tracks").exists()


def test_no_detections_give_an_empty_track_file_and_zero_counts(tmp_path: Path):
    _write_detections(tmp_path / "cam.csv", walkers=())
    summary = _track(tmp_path)
    assert (summary.tracks, summary.tracked, summary.counts()) == (0, 0, {"middle": {"in": 0, "out": 0}})
    assert (tmp_path / "tracks" / "cam.csv").read_text().splitlines() == [",".join(TRACK_COLUMNS)]
    scores = score_tracks(
        TrackConfig(), tracks=[], truth=_truth(), sampled_frames=SAMPLED, lines=summary.lines, colours={}
    )
    assert (scores["idf1"], scores["people"], scores["people_error"], scores["colour_judged"]) == (0.0, 0, -3, 0)


def test_an_interval_too_sparse_to_follow_anyone_still_runs(tmp_path: Path):
    frames = list(range(0, FRAMES, 60))  # 4 s apart: walkers move farther than any box between samples
    owners = _write_detections(tmp_path / "cam.csv", frames=frames)
    summary = _track(tmp_path, interval=60, sampled_frames=frames)
    assert summary.frame_rate == 1 and summary.detections == len(owners)
    rows = read_tracks(tmp_path / "tracks" / "cam.csv")
    scores = score_tracks(
        TrackConfig(), tracks=rows, truth=_truth(frames=frames), sampled_frames=frames, lines={}, colours={}
    )
    assert scores["idf1"] is not None and scores["idf1"] < 1.0  # the metrics show what sparse sampling costs


def _project(root: Path) -> None:
    """detect, crop and classify outputs for one video of the walkers (plus a failed one), ground truth beside it."""
    detections = root / "data" / "detections"
    owners = _write_detections(detections / "cam.csv")
    cam = VideoReport(
        video="videos/cam.mp4",  # relative to the project, as detect records it; the video itself is not read
        name="cam",
        status="ok",
        frames=FRAMES,
        fps=FPS,
        width=WIDTH,
        height=HEIGHT,
        frames_read=FRAMES,
        sampled=len(SAMPLED),
        detections=len(owners),
    )
    write_summary(detections, [cam, VideoReport(video="broken.mp4", name="broken", status="failed", error="bad")])
    (root / "videos").mkdir()
    with (root / "videos" / "cam.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "id", "left", "top", "width", "height", "colour", "colour_name", "visible"])
        for t in _truth():
            x1, y1, x2, y2 = t.box
            writer.writerow([t.frame, t.person, x1, y1, x2 - x1, y2 - y1, 0, t.colour, 1.0])
    (root / "data" / "crops").mkdir(parents=True)
    with (root / "data" / "crops" / "index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CROP_INDEX_COLUMNS)
        writer.writerows((f"cam/{d}.jpg", "cam", 0, d, 0, 0, 1, 1, 0.9) for d in range(len(owners)))
    with (root / "data" / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["crop", "class", "probability"])
        for d, n in enumerate(owners):  # every fourth crop is misread, unsurely
            wrong = d % 4 == 0
            writer.writerow([f"cam/{d}.jpg", "green" if wrong else WALKERS[n].colour, 0.3 if wrong else 0.8])


def test_the_stage_writes_tracks_people_and_scores(tmp_path: Path):
    _project(tmp_path)
    params = SimpleNamespace(
        track=TrackConfig(lines={"*": {"middle": MIDDLE}}),
        detect=SimpleNamespace(interval=INTERVAL, start=0, end=None),
        flow_report=SimpleNamespace(gt_min_visible=0.5, gt_min_height=16),
    )
    result = STAGE.run(params, tmp_path)

    assert STAGE.name == "track" and all((tmp_path / out).exists() for out in STAGE.outputs)
    assert result == json.loads((tmp_path / "metrics" / "track.json").read_text())
    cam = result["videos"]["cam"]
    assert result["failed"] == ["broken"] and result["people"] == 3
    assert cam["colours"] == {"blue": 1, "red": 2}  # people, though each has a dozen crops or more
    assert cam["lines"]["middle"] == {
        "in": 1,
        "out": 1,
        "by_colour": {"blue": {"in": 0, "out": 1}, "red": {"in": 1, "out": 0}},
    }
    truth = cam["ground_truth"]
    assert (truth["idf1"], truth["mota"], truth["id_switches"], truth["people_error"]) == (1.0, 1.0, 0, 0)
    assert (truth["crossing_error_max"], truth["colour_accuracy"]) == (0, 1.0)
    with (tmp_path / "data" / "people.csv").open(newline="") as handle:
        people = list(csv.DictReader(handle))
    # numbered by first sighting: the stroller is there at once, the walker from the right enters before the other
    assert [(p["video"], p["track_id"], p["colour"]) for p in people] == [
        ("cam", "1", "red"),
        ("cam", "2", "blue"),
        ("cam", "3", "red"),
    ]
    crossings = json.loads((tmp_path / "data" / "tracks" / "crossings.json").read_text())
    assert sorted(c["direction"] for c in crossings["cam"]) == ["in", "out"]


def test_the_stage_checks_every_line_before_writing(tmp_path: Path):
    _project(tmp_path)
    params = SimpleNamespace(
        track=TrackConfig(lines={"cam": {"door": {"points": [[10, 10], [10, 400]], "units": "pixels"}}}),
        detect=SimpleNamespace(interval=INTERVAL, start=0, end=None),
        flow_report=SimpleNamespace(gt_min_visible=0.5, gt_min_height=16),
    )
    with pytest.raises(TrackError, match=r"track\.lines\.cam\.door"):
        STAGE.run(params, tmp_path)
    assert not any((tmp_path / out).exists() for out in STAGE.outputs)
