"""Stage `track`: people followed across sampled frames, one colour per person, line crossings, MOT scores.

supervision's ByteTrack associates the sampled detections (told the sampled frame rate, fps / interval),
supervision's LineZone counts crossings, and motmetrics scores the tracks against the ground truth beside
a video. Nothing here re-implements a filter or an assignment solver.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import motmetrics as mm
import numpy as np
import supervision as sv
from supervision.tracker.byte_tracker import matching

from tasks.atomic import atomic_dir, atomic_file, write_json
from tasks.config import Params, TrackConfig
from tasks.crop_index import read_crop_index
from tasks.detections import VideoReport, read_summary
from tasks.errors import LightweightError
from tasks.stage import Stage

__all__ = [
    "PEOPLE_COLUMNS",
    "TRACK_COLUMNS",
    "Crossing",
    "Person",
    "TrackError",
    "TrackRow",
    "TrackSummary",
    "TruthBox",
    "TruthFilter",
    "count_crossings",
    "people_table",
    "read_tracks",
    "read_truth",
    "score_tracks",
    "track_video",
    "track_videos",
    "video_lines",
]

log = logging.getLogger(__name__)

TRACK_COLUMNS = ("frame", "time_s", "track_id", "x1", "y1", "x2", "y2", "conf", "detection")
PEOPLE_COLUMNS = ("video", "track_id", "first_s", "last_s", "sampled_frames", "colour", "confidence")
CROSSINGS_NAME = "crossings.json"  # beside the per-video CSVs; .json, so no video name can collide with it
_SV_BUFFER_FPS = 30.0  # supervision counts lost_track_buffer in frames of a 30 fps video
# motmetrics' names -> ours in metrics/track.json; motp is the mean 1 - IoU of the matched boxes
_MOT_METRICS = {
    "idf1": "idf1",
    "idp": "idp",
    "idr": "idr",
    "mota": "mota",
    "motp": "motp",
    "num_switches": "id_switches",
    "num_false_positives": "false_positives",
    "num_misses": "misses",
    "num_objects": "true_boxes",
    "mostly_tracked": "mostly_tracked",
    "mostly_lost": "mostly_lost",
    "num_fragmentations": "fragmentations",
}
_LINK_IOU = 0.3  # a track updated in a step owns the detection its filtered box overlaps this much (see _update)

Box = tuple[float, float, float, float]
Point = tuple[float, float]


class TrackError(LightweightError, ValueError):
    """Tracking inputs or settings that cannot work, named before anything is written."""


@dataclass(frozen=True)
class TrackRow:
    """One box of one track: a row of data/tracks/<video>.csv."""

    frame: int
    time_s: float
    track_id: int
    box: Box
    conf: float
    detection: int  # row of the video's detection CSV (0 = first data row); -1 for ground truth


@dataclass(frozen=True)
class Crossing:
    """A track seen on the other side of a line than at its previous sighting."""

    line: str
    track_id: int
    frame: int
    time_s: float
    direction: Literal["in", "out"]


@dataclass(frozen=True)
class TrackSummary:
    """What tracking one video gave."""

    video: str
    frame_rate: int  # the sampled frame rate ByteTrack was told
    sampled_frames: int
    detections: int
    tracked: int  # detections that belong to a track
    tracks: int  # distinct people
    lines: dict[str, tuple[Point, Point]]  # in pixels
    crossings: tuple[Crossing, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """{line: {"in": n, "out": n}}, every line listed."""
        return _tally(self.crossings, self.lines)


@dataclass(frozen=True)
class Person:
    """One track with its colour: a row of data/people.csv."""

    video: str
    track_id: int
    first_s: float
    last_s: float
    sampled_frames: int
    colour: str  # "" when none of its crops was classified
    confidence: float  # the winning colour's summed probability / the crops that voted (1: all sure and agreeing)


@dataclass(frozen=True)
class TruthFilter:
    """Which true people a detector can be expected to find (flow_report.gt_min_visible, gt_min_height)."""

    min_visible: float = 0.5
    min_height: float = 16


@dataclass(frozen=True)
class TruthBox:
    """One row of MOT-style ground truth, clipped to the frame."""

    frame: int
    person: int
    box: Box
    colour: str
    counted: bool  # passes the TruthFilter; the others are neither required nor held against a tracker


def _fmt(point: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in point) + ")"


def video_lines(cfg: TrackConfig, video: str, width: int, height: int) -> dict[str, tuple[Point, Point]]:
    """The lines of one video in pixels: those under "*" and the video's own (which replace same-named ones)."""
    keyed = {name: ("*", line) for name, line in cfg.lines.get("*", {}).items()}
    keyed |= {name: (video, line) for name, line in cfg.lines.get(video, {}).items()}
    lines: dict[str, tuple[Point, Point]] = {}
    for name, (key, line) in keyed.items():
        points = line.in_pixels(width, height)
        for x, y in points:
            if x > width or y > height:
                raise TrackError(
                    f"track.lines.{key}.{name}: point {_fmt((x, y))} is outside the {width}x{height} frame of {video}"
                )
        lines[name] = points
    return lines


def _read_detections(path: Path) -> list[TrackRow]:
    """The detection CSV as rows without a track (track_id 0), `detection` = data-row number."""
    if not path.is_file():
        raise TrackError(f"{path}: detections not found; run the detect stage first")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("frame", "time_s", "x1", "y1", "x2", "y2", "conf") if c not in (reader.fieldnames or [])]
        if missing:
            raise TrackError(f"{path}: missing columns {', '.join(missing)}")
        return [
            TrackRow(
                int(r["frame"]),
                float(r["time_s"]),
                0,
                (float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])),
                float(r["conf"]),
                row,
            )
            for row, r in enumerate(reader)
        ]


def _tensors(rows: Sequence[TrackRow], buffer: float) -> np.ndarray:
    """ByteTrack's input, one (x1, y1, x2, y2, confidence) per detection, boxes widened by `buffer`."""
    xyxy = np.array([r.box for r in rows], dtype=float).reshape(-1, 4)
    widened = xyxy + buffer * np.tile(xyxy[:, 2:] - xyxy[:, :2], 2) * np.array([-1, -1, 1, 1])
    return np.hstack((widened, np.array([r.conf for r in rows], dtype=float).reshape(-1, 1)))


def _update(tracker: sv.ByteTrack, tensors: np.ndarray) -> dict[int, int]:
    """One ByteTrack step: {index into `tensors`: track id} for the detections its tracks took.

    As `ByteTrack.update_with_detections`, which links each updated track back to a detection by IoU >= 0.5 with
    the track's filtered box; here the bar is `_LINK_IOU`: at sparse sampling the filtered box lags a walker whose
    legs change the box's width, and at 0.5 one track update in sixteen lost its detection on the demo.
    """
    tracks = tracker.update_with_tensors(tensors)
    if not tracks or not len(tensors):
        return {}
    cost = 1 - sv.box_iou_batch(tensors[:, :4], np.asarray([t.tlbr for t in tracks]))
    links, _, _ = matching.linear_assignment(cost, thresh=1 - _LINK_IOU)
    return {int(d): int(tracks[t].external_track_id) for d, t in links}


def _newborn(tracker: sv.ByteTrack, tensors: np.ndarray, taken: Iterable[int]) -> dict[int, int]:
    """{track id: index into `tensors`} for the tracks this step started (from detections not `taken`).

    ByteTrack confirms a track at its second hit and reports it from then on; the detection that started it
    is found here, at its birth, so a person's first sighting belongs to them too.
    """
    born = [t for t in tracker.tracked_tracks if not t.is_activated and t.start_frame == tracker.frame_id]
    free = sorted(set(range(len(tensors))) - set(taken))
    found: dict[int, int] = {}
    for track in born:  # a new track's box is its detection's box, exactly: the best overlap finds it
        if not free:
            break
        overlaps = sv.box_iou_batch(np.asarray([track.tlbr]), tensors[free, :4])[0]
        found[int(track.external_track_id)] = free.pop(int(np.argmax(overlaps)))
    return found


def _owners(cfg: TrackConfig, detections: Sequence[TrackRow], frames: Sequence[int], frame_rate: int) -> dict[int, int]:
    """ByteTrack over the sampled frames in order: {detection row: ByteTrack's track id} of confirmed tracks."""
    tracker = sv.ByteTrack(
        track_activation_threshold=cfg.track_activation_threshold,
        lost_track_buffer=max(1, round(cfg.lost_track_s * _SV_BUFFER_FPS)),
        minimum_matching_threshold=cfg.minimum_matching_threshold,
        frame_rate=frame_rate,
        minimum_consecutive_frames=1,
    )
    by_frame: dict[int, list[TrackRow]] = {}
    for row in detections:
        by_frame.setdefault(row.frame, []).append(row)
    owner: dict[int, int] = {}
    births: dict[int, int] = {}  # ByteTrack's track id -> the detection row that started it
    for frame in frames:
        rows = by_frame.get(frame, [])
        tensors = _tensors(rows, cfg.buffer)
        took = _update(tracker, tensors)
        owner |= {rows[i].detection: track_id for i, track_id in took.items()}
        births |= {track_id: rows[i].detection for track_id, i in _newborn(tracker, tensors, took).items()}
    confirmed = set(owner.values())
    return owner | {row: track_id for track_id, row in births.items() if track_id in confirmed}


def _numbered(owner: Mapping[int, int], detections: Sequence[TrackRow]) -> list[TrackRow]:
    """The tracked detections with their tracks numbered 1, 2, ... by first sighting (frame, then CSV row)."""
    by_row = {row.detection: row for row in detections}
    first: dict[int, tuple[int, int]] = {}
    for row, track_id in owner.items():
        key = (by_row[row].frame, row)
        first[track_id] = min(first.get(track_id, key), key)
    number = {track_id: n for n, track_id in enumerate(sorted(first, key=first.__getitem__), start=1)}
    tracked = [
        TrackRow(by_row[row].frame, by_row[row].time_s, number[track_id], by_row[row].box, by_row[row].conf, row)
        for row, track_id in owner.items()
    ]
    return sorted(tracked, key=lambda r: (r.frame, r.track_id))


def count_crossings(
    rows: Iterable[TrackRow], lines: Mapping[str, tuple[Point, Point]], anchor: str = "bottom_center"
) -> list[Crossing]:
    """Crossings of every line by every track, in frame order (supervision's LineZone, one per line)."""
    position = sv.Position.BOTTOM_CENTER if anchor == "bottom_center" else sv.Position.CENTER
    zones = {
        name: sv.LineZone(start=sv.Point(*start), end=sv.Point(*end), triggering_anchors=(position,))
        for name, (start, end) in lines.items()
    }
    by_frame: dict[int, list[TrackRow]] = {}
    for row in rows:
        by_frame.setdefault(row.frame, []).append(row)
    crossings: list[Crossing] = []
    for frame in sorted(by_frame) if zones else []:
        group = sorted(by_frame[frame], key=lambda r: r.track_id)
        detections = sv.Detections(
            xyxy=np.array([r.box for r in group], dtype=float), tracker_id=np.array([r.track_id for r in group])
        )
        for name, zone in zones.items():
            crossed_in, crossed_out = zone.trigger(detections)
            for row, came_in, went_out in zip(group, crossed_in, crossed_out, strict=True):
                if came_in or went_out:
                    crossings.append(Crossing(name, row.track_id, frame, row.time_s, "in" if came_in else "out"))
    return crossings


def _tally(crossings: Iterable[Crossing], lines: Iterable[str]) -> dict[str, dict[str, int]]:
    counts = {name: {"in": 0, "out": 0} for name in lines}
    for crossing in crossings:
        counts[crossing.line][crossing.direction] += 1
    return counts


def _write_tracks(path: Path, rows: Iterable[TrackRow]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACK_COLUMNS)
        writer.writerows((r.frame, r.time_s, r.track_id, *(_num(v) for v in r.box), r.conf, r.detection) for r in rows)


def _num(value: float) -> float | int:
    """Whole pixel values are written as integers, as the detection CSV has them."""
    return int(value) if float(value).is_integer() else round(value, 2)


def read_tracks(path: Path) -> list[TrackRow]:
    """The rows of a data/tracks/<video>.csv."""
    with path.open(newline="") as handle:
        return [
            TrackRow(
                int(r["frame"]),
                float(r["time_s"]),
                int(r["track_id"]),
                (float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])),
                float(r["conf"]),
                int(r["detection"]),
            )
            for r in csv.DictReader(handle)
        ]


def track_video(
    cfg: TrackConfig,
    *,
    detections_csv: Path,
    fps: float,
    interval: int,
    width: int,
    height: int,
    out_csv: Path,
    sampled_frames: Sequence[int],
    name: str | None = None,
) -> TrackSummary:
    """Track the people of one video over its sampled frames (those without detections included) into `out_csv`."""
    name = name or detections_csv.stem
    lines = video_lines(cfg, name, width, height)  # a line outside the frame fails before anything is written
    detections = _read_detections(detections_csv)
    frames = sorted(set(sampled_frames) | {r.frame for r in detections})
    frame_rate = max(1, round((fps or 1.0) / interval))  # detections are `interval` frames apart
    rows = _numbered(_owners(cfg, detections, frames, frame_rate), detections)
    crossings = count_crossings(rows, lines, cfg.anchor)
    _write_tracks(out_csv, rows)
    return TrackSummary(
        video=name,
        frame_rate=frame_rate,
        sampled_frames=len(frames),
        detections=len(detections),
        tracked=len(rows),
        tracks=len({r.track_id for r in rows}),
        lines=lines,
        crossings=tuple(crossings),
    )


def _read_predictions(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise TrackError(f"{path}: predictions not found; run the classify stage first")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def people_table(
    tracks: Mapping[str, Sequence[TrackRow]],
    crops_index: Iterable[Mapping[str, str]],
    predictions: Iterable[Mapping[str, str]],
) -> list[Person]:
    """One row per track: its colour is the probability-weighted vote of the classifier over the track's crops.

    `tracks` maps video names to their rows; `crops_index` and `predictions` are the rows of
    data/crops/index.csv (crop, video, detection, ...) and data/predictions.csv (crop, class, probability).
    """
    crop_of = {(r["video"], int(r["detection"])): r["crop"] for r in crops_index}
    predicted = {r["crop"]: (r["class"], float(r["probability"])) for r in predictions}
    people: list[Person] = []
    for video in sorted(tracks):
        by_track: dict[int, list[TrackRow]] = {}
        for row in tracks[video]:
            by_track.setdefault(row.track_id, []).append(row)
        for track_id, rows in sorted(by_track.items()):
            votes: Counter[str] = Counter()
            voters = 0
            for row in rows:
                vote = predicted.get(crop_of.get((video, row.detection), ""))
                if vote is not None:  # a crop too small to cut, or a detection without one, does not vote
                    votes[vote[0]] += vote[1]
                    voters += 1
            colour = max(sorted(votes), key=votes.__getitem__) if votes else ""  # a tie goes to the first name
            people.append(
                Person(
                    video=video,
                    track_id=track_id,
                    first_s=min(r.time_s for r in rows),
                    last_s=max(r.time_s for r in rows),
                    sampled_frames=len({r.frame for r in rows}),
                    colour=colour,
                    confidence=round(votes[colour] / voters, 4) if voters else 0.0,
                )
            )
    return people


def read_truth(path: Path, width: int, height: int, keep: TruthFilter) -> list[TruthBox]:
    """MOT-style `frame,id,left,top,width,height,colour,colour_name,visible` rows, clipped to the frame."""
    truth: list[TruthBox] = []
    with path.open(newline="") as handle:
        for r in csv.DictReader(handle):
            left, top = float(r["left"]), float(r["top"])
            box = (
                max(left, 0.0),
                max(top, 0.0),
                min(left + float(r["width"]), width),
                min(top + float(r["height"]), height),
            )
            visible = float(r.get("visible") or 1.0)
            counted = visible >= keep.min_visible and box[3] - box[1] >= keep.min_height and box[2] > box[0]
            truth.append(TruthBox(int(r["frame"]), int(r["id"]), box, r.get("colour_name", ""), counted))
    return truth


def _iou(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return sv.box_iou_batch(np.asarray(a, dtype=float), np.asarray(b, dtype=float))


def _not_ignored(hyps: list[TrackRow], truths: list[TruthBox], min_iou: float) -> list[TrackRow]:
    """The track boxes left once those matching an uncounted true person are set aside (as MOTChallenge does)."""
    if not hyps or all(t.counted for t in truths):
        return hyps
    overlap = _iou([h.box for h in hyps], [t.box for t in truths])
    cost = np.where(overlap >= min_iou, 1 - overlap, np.nan)  # NaN: no match possible
    rows, cols = mm.lap.linear_sum_assignment(cost)
    dropped = {int(r) for r, c in zip(rows, cols, strict=True) if not truths[c].counted and not np.isnan(cost[r, c])}
    return [h for i, h in enumerate(hyps) if i not in dropped]


def _person_matches(accumulator: mm.MOTAccumulator) -> dict[int, int]:
    """{true person: track id} as IDF1 pairs them (motmetrics' global min-cost identity assignment)."""
    df_map = mm.metrics.events_to_df_map(accumulator.events)
    if df_map.raw.empty:
        return {}
    person_frames, track_frames, overlaps = mm.metrics.extract_counts_from_df_map(df_map)
    assignment = mm.metrics.id_global_assignment(df_map)  # rows: sorted people, then dummies; columns alike
    people, tracks = sorted(person_frames), sorted(track_frames)
    pairs = {}
    for r, c in zip(assignment["rids"], assignment["cids"], strict=True):
        if r < len(people) and c < len(tracks) and overlaps.get((people[r], tracks[c]), 0) > 0:
            pairs[int(people[r])] = int(tracks[c])
    return pairs


def _clean(value: Any) -> Any:
    """JSON-safe numbers: numpy scalars as Python numbers, NaN as null, rounded."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def score_tracks(
    cfg: TrackConfig,
    *,
    tracks: Sequence[TrackRow],
    truth: Sequence[TruthBox],
    sampled_frames: Sequence[int],
    lines: Mapping[str, tuple[Point, Point]],
    colours: Mapping[int, str],
) -> dict[str, Any]:
    """IDF1, MOTA, ID switches, people and crossing counts and per-person colour accuracy on the sampled frames.

    `colours` maps a track id to its voted colour. Counted true people are those the TruthFilter kept; a track
    box on an uncounted one is neither a hit nor a false positive.
    """
    frames = sorted(set(sampled_frames))
    hyps_at: dict[int, list[TrackRow]] = {}
    for row in tracks:
        hyps_at.setdefault(row.frame, []).append(row)
    truth_at: dict[int, list[TruthBox]] = {}
    for box in truth:
        truth_at.setdefault(box.frame, []).append(box)
    accumulator = mm.MOTAccumulator(auto_id=False)
    counted: list[TruthBox] = []
    for frame in frames:
        people = [t for t in truth_at.get(frame, []) if t.counted]
        hyps = _not_ignored(hyps_at.get(frame, []), truth_at.get(frame, []), cfg.match_iou)
        overlap = _iou([t.box for t in people], [h.box for h in hyps])
        distances = np.where(overlap >= cfg.match_iou, 1 - overlap, np.nan)
        accumulator.update([t.person for t in people], [h.track_id for h in hyps], distances, frameid=frame)
        counted.extend(people)
    summary = mm.metrics.create().compute(accumulator, metrics=list(_MOT_METRICS), return_dataframe=False)
    true_people = {t.person for t in counted}
    found_people = {r.track_id for r in tracks}
    true_colour = {t.person: t.colour for t in counted}
    pairs = _person_matches(accumulator)
    judged = [p for p, t in pairs.items() if colours.get(t)]
    right = sum(colours[pairs[p]] == true_colour[p] for p in judged)
    found_lines = _tally(count_crossings(tracks, lines, cfg.anchor), lines)
    as_rows = [TrackRow(t.frame, 0.0, t.person, t.box, 1.0, -1) for t in counted]
    true_lines = _tally(count_crossings(as_rows, lines, cfg.anchor), lines)
    line_errors = {
        name: {
            "in": found_lines[name]["in"],
            "out": found_lines[name]["out"],
            "true_in": true_lines[name]["in"],
            "true_out": true_lines[name]["out"],
            "error": max(abs(found_lines[name][d] - true_lines[name][d]) for d in ("in", "out")),
        }
        for name in lines
    }
    return {
        **{name: _clean(summary[key]) for key, name in _MOT_METRICS.items()},
        "people": len(found_people),
        "people_true": len(true_people),
        "people_error": len(found_people) - len(true_people),
        "people_error_rel": round(len(found_people) / len(true_people) - 1, 4) if true_people else None,
        "lines": line_errors,
        "crossing_error_max": max((e["error"] for e in line_errors.values()), default=0),
        "colour_accuracy": round(right / len(judged), 4) if judged else None,
        "colour_judged": len(judged),
    }


def _sampled(frames_read: int, interval: int, start: int, end: int | None) -> list[int]:
    """The frame indices detect sampled: start, start + interval, ... before `end` (as tasks/frames.py)."""
    stop = frames_read if end is None else min(end, frames_read)
    return list(range(start, max(stop, start), interval))


def _video_metrics(summary: TrackSummary, people: list[Person]) -> dict[str, Any]:
    colour_of = {p.track_id: p.colour or "unknown" for p in people}
    lines: dict[str, Any] = {}
    for name, counts in summary.counts().items():
        by_colour: dict[str, dict[str, int]] = {}
        for crossing in summary.crossings:
            if crossing.line == name:
                tally = by_colour.setdefault(colour_of.get(crossing.track_id, "unknown"), {"in": 0, "out": 0})
                tally[crossing.direction] += 1
        lines[name] = {**counts, "by_colour": dict(sorted(by_colour.items()))}
    return {
        "status": "ok",
        "frame_rate": summary.frame_rate,
        "sampled_frames": summary.sampled_frames,
        "detections": summary.detections,
        "tracked_detections": summary.tracked,
        "people": summary.tracks,
        "colours": dict(sorted(Counter(colour_of.values()).items())),  # people, not crops
        "lines": lines,
    }


def _write_people(path: Path, people: Iterable[Person]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PEOPLE_COLUMNS)
        writer.writerows(tuple(asdict(p).values()) for p in people)


def _track_all(
    cfg: TrackConfig,
    reports: Sequence[VideoReport],
    frames: Mapping[str, Sequence[int]],
    *,
    interval: int,
    detections_dir: Path,
    tracks_dir: Path,
) -> tuple[dict[str, TrackSummary], dict[str, list[TrackRow]]]:
    """Every video's tracks into `tracks_dir` (replaced as a whole), with crossings.json beside them."""
    summaries: dict[str, TrackSummary] = {}
    tracks: dict[str, list[TrackRow]] = {}
    with atomic_dir(tracks_dir) as tmp:
        for report in reports:
            summaries[report.name] = track_video(
                cfg,
                detections_csv=detections_dir / f"{report.name}.csv",
                fps=report.fps,
                interval=interval,
                width=report.width,
                height=report.height,
                out_csv=tmp / f"{report.name}.csv",
                sampled_frames=frames[report.name],
                name=report.name,
            )
            tracks[report.name] = read_tracks(tmp / f"{report.name}.csv")
        events = {name: [asdict(c) for c in s.crossings] for name, s in summaries.items()}
        (tmp / CROSSINGS_NAME).write_text(json.dumps(events, indent=2, sort_keys=True) + "\n")
    return summaries, tracks


def track_videos(
    cfg: TrackConfig,
    *,
    interval: int,
    start: int,
    end: int | None,
    root: Path,
    detections_dir: Path,
    crops_index: Path,
    predictions: Path,
    tracks_dir: Path,
    people_csv: Path,
    metrics_json: Path,
    truth_filter: TruthFilter = TruthFilter(),
) -> dict[str, Any]:
    """Track every processed video, vote one colour per person, count crossings and score against ground truth."""
    all_reports = read_summary(detections_dir)
    reports = [r for r in all_reports if r.status == "ok"]
    for report in reports:  # every line of every video checked before anything is written
        video_lines(cfg, report.name, report.width, report.height)
    for key in sorted(set(cfg.lines) - {"*"} - {r.name for r in reports}):
        log.warning("track.lines.%s: no such video among the detections; its lines are unused", key)
    crop_rows, predicted = read_crop_index(crops_index), _read_predictions(predictions)
    frames = {r.name: _sampled(r.frames_read, interval, start, end) for r in reports}
    summaries, tracks = _track_all(
        cfg, reports, frames, interval=interval, detections_dir=detections_dir, tracks_dir=tracks_dir
    )
    people = people_table(tracks, crop_rows, predicted)
    _write_people(people_csv, people)
    videos: dict[str, Any] = {r.name: {"status": "failed", "error": r.error} for r in all_reports if r.status != "ok"}
    for report in reports:
        own = [p for p in people if p.video == report.name]
        videos[report.name] = _video_metrics(summaries[report.name], own)
        video = Path(report.video) if Path(report.video).is_absolute() else root / report.video
        truth_csv = video.with_suffix(".csv")  # MOT-style ground truth beside the video, when there is one
        if truth_csv.is_file():
            videos[report.name]["ground_truth"] = score_tracks(
                cfg,
                tracks=tracks[report.name],
                truth=read_truth(truth_csv, report.width, report.height, truth_filter),
                sampled_frames=frames[report.name],
                lines=summaries[report.name].lines,
                colours={p.track_id: p.colour for p in own},
            )
        log.info("%s: %s", report.name, videos[report.name])
    result = {
        "interval": interval,
        "videos": dict(sorted(videos.items())),
        "failed": sorted(name for name, v in videos.items() if v["status"] == "failed"),
        "people": len(people),
        "colours": dict(sorted(Counter(p.colour or "unknown" for p in people).items())),  # people, not crops
    }
    write_json(metrics_json, result)
    return result


def _run(params: Params, root: Path) -> dict[str, Any]:
    report = params.flow_report
    return track_videos(
        params.track,
        interval=params.detect.interval,
        start=params.detect.start,
        end=params.detect.end,
        root=root,
        detections_dir=root / "data" / "detections",
        crops_index=root / "data" / "crops" / "index.csv",
        predictions=root / "data" / "predictions.csv",
        tracks_dir=root / "data" / "tracks",
        people_csv=root / "data" / "people.csv",
        metrics_json=root / "metrics" / "track.json",
        truth_filter=TruthFilter(report.gt_min_visible, report.gt_min_height),
    )


STAGE = Stage(
    name="track",
    run=_run,
    deps=("data/detections", "data/crops/index.csv", "data/predictions.csv", "data/demo/videos"),
    outs=("data/tracks", "data/people.csv"),
    metrics=("metrics/track.json",),
    params=(
        "track",
        "detect.interval",
        "detect.start",
        "detect.end",
        "flow_report.gt_min_visible",
        "flow_report.gt_min_height",
    ),
)
