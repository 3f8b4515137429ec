"""Stage `flow_report`: people per sampled frame, class tallies, and the comparison with ground truth."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tasks.atomic import atomic_dir, atomic_file, write_json, write_png
from tasks.boxes import box_iou
from tasks.config import DetectConfig, FlowReportConfig, Params
from tasks.crop_index import read_crop_index
from tasks.detections import VideoReport, read_summary
from tasks.frames import sampled_indices
from tasks.layout import FlowOutputs, Layout
from tasks.stage import Stage

__all__ = [
    "GroundTruth",
    "flow_report",
    "match_boxes",
    "people_per_frame",
    "read_ground_truth",
]

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundTruth:
    """People of one frame that a detector can be expected to find: (box, colour name) each; and the ones it
    need not find (mostly hidden, too small), whose detections count neither for nor against it."""

    people: list[tuple[Box, str]]
    ignored: list[Box] = field(default_factory=list)


def match_boxes(detections: list[Box], truths: list[Box], min_iou: float) -> dict[int, int]:
    """Greedy one-to-one matching, detections in the given order (by confidence): {detection: truth}."""
    matches: dict[int, int] = {}
    taken: set[int] = set()
    for d, detection in enumerate(detections):
        best, best_iou = -1, min_iou
        for t, truth in enumerate(truths):
            if t not in taken and (iou := box_iou(detection, truth)) >= best_iou:
                best, best_iou = t, iou
        if best >= 0:
            matches[d] = best
            taken.add(best)
    return matches


def read_ground_truth(path: Path, cfg: FlowReportConfig, width: int, height: int) -> dict[int, GroundTruth]:
    """MOT-style `frame,id,left,top,width,height,colour,colour_name,visible` rows, clipped to the frame and
    filtered to the people a detector can be expected to see."""
    frames: dict[int, GroundTruth] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            left, top = float(row["left"]), float(row["top"])
            box = (
                max(left, 0.0),
                max(top, 0.0),
                min(left + float(row["width"]), width),
                min(top + float(row["height"]), height),
            )
            frame = frames.setdefault(int(row["frame"]), GroundTruth([]))
            visible = float(row.get("visible") or 1.0)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue  # outside the frame
            if visible >= cfg.gt_min_visible and box[3] - box[1] >= cfg.gt_min_height:
                frame.people.append((box, row.get("colour_name", "")))
            else:
                frame.ignored.append(box)
    return frames


def _read_detections(path: Path) -> dict[int, list[tuple[int, Box]]]:
    """{frame: [(row number, box)]} in CSV order (by confidence within a frame)."""
    frames: dict[int, list[tuple[int, Box]]] = {}
    with path.open(newline="") as handle:
        for row_number, row in enumerate(csv.DictReader(handle)):
            box = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
            frames.setdefault(int(row["frame"]), []).append((row_number, box))
    return frames


def _read_predictions(path: Path) -> dict[str, str]:
    with path.open(newline="") as handle:
        return {row["crop"]: row["class"] for row in csv.DictReader(handle)}


def _sampled(report: VideoReport, detections: dict[int, list], detect: DetectConfig) -> list[int]:
    """The sampled frame indices of a video, frames without detections included."""
    indices = list(sampled_indices(report.frames_read, detect.interval, detect.start, detect.end))
    return indices if len(indices) == report.sampled else sorted(detections)  # damaged video: what was seen


def _per_frame(report: VideoReport, detections_csv: Path, detect: DetectConfig) -> tuple[dict, list[int], list[int]]:
    """A video's detections by frame, its sampled frames, and the people found in each."""
    detections = _read_detections(detections_csv)
    frames = _sampled(report, detections, detect)
    return detections, frames, [len(detections.get(f, [])) for f in frames]


def _video_metrics(
    cfg: FlowReportConfig,
    detect: DetectConfig,
    report: VideoReport,
    video: Path,
    detections_csv: Path,
    classes: dict[int, str],
) -> tuple[dict[str, Any], list[tuple]]:
    """The video's metrics and its count series: (video, frame, time, detected, true count or "")."""
    detections, frames, counts = _per_frame(report, detections_csv, detect)
    metrics: dict[str, Any] = {
        "status": "ok",
        "sampled_frames": len(frames),
        "decode_failures": report.decode_failures,
        "detections": sum(counts),
        "people_per_frame_mean": _mean(counts),
        "people_per_frame_max": max(counts, default=0),
        "classes": dict(sorted(Counter(classes.values()).items())),
    }
    truth_file = video.with_suffix(".csv")  # MOT-style ground truth beside the video, when there is one
    truths: list[int | str] = [""] * len(frames)
    if truth_file.is_file():
        truth = read_ground_truth(truth_file, cfg, report.width, report.height)
        found, right, judged = 0, 0, 0
        counted = list(counts)
        for i, frame in enumerate(frames):
            here = truth.get(frame, GroundTruth([]))
            people = here.people
            rows = detections.get(frame, [])
            matches = match_boxes([box for _, box in rows], [box for box, _ in people], cfg.match_iou)
            unmatched = [box for d, (_, box) in enumerate(rows) if d not in matches]
            counted[i] -= len(match_boxes(unmatched, here.ignored, cfg.match_iou))  # found one it need not find
            truths[i] = len(people)
            found += len(matches)
            for d, t in matches.items():
                if (predicted := classes.get(rows[d][0])) is not None:
                    judged += 1
                    right += predicted == people[t][1]
        total = sum(int(t) for t in truths)
        metrics["ground_truth"] = {
            "people_per_frame_mean": _mean([int(t) for t in truths]),
            "count_mae": _mean([abs(n - int(t)) for n, t in zip(counted, truths, strict=True)]),
            "recall_iou50": round(found / total, 4) if total else None,
            "colour_accuracy": round(right / judged, 4) if judged else None,
            "colour_judged": judged,
        }
    fps = report.fps or 1.0
    series = [(report.name, f, round(f / fps, 4), n, t) for f, n, t in zip(frames, counts, truths, strict=True)]
    return metrics, series


def _mean(values: list[int]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0


def people_per_frame(detect: DetectConfig, detections_dir: Path) -> dict[str, dict[str, float]]:
    """{video: {mean, max, frames}}: people per sampled frame of every processed video."""
    counts: dict[str, dict[str, float]] = {}
    for report in read_summary(detections_dir):
        if report.status == "ok":
            per_frame = _per_frame(report, detections_dir / f"{report.name}.csv", detect)[2]
            counts[report.name] = {"mean": _mean(per_frame), "max": max(per_frame, default=0), "frames": len(per_frame)}
    return counts


def _plot_counts(series: list[tuple], path: Path) -> None:
    videos = sorted({row[0] for row in series})
    figure = Figure(figsize=(8, 2.6 * max(len(videos), 1)))
    axes = figure.subplots(max(len(videos), 1), 1, squeeze=False)[:, 0]
    for axis, video in zip(axes, videos, strict=False):
        rows = [row for row in series if row[0] == video]
        axis.plot([r[2] for r in rows], [r[3] for r in rows], label="detected", marker=".")
        if any(r[4] != "" for r in rows):
            axis.plot([r[2] for r in rows], [r[4] for r in rows], label="ground truth", linestyle="--")
        axis.set(title=video, xlabel="time (s)", ylabel="people")
        axis.legend(loc="upper right")
    figure.tight_layout()
    write_png(figure, path)


def _plot_classes(tallies: dict[str, Counter], path: Path) -> None:
    names = sorted({name for tally in tallies.values() for name in tally})
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    width = 0.8 / max(len(tallies), 1)
    for i, (video, tally) in enumerate(sorted(tallies.items())):
        axis.bar(np.arange(len(names)) + i * width, [tally.get(n, 0) for n in names], width, label=video)
    axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    axis.set(ylabel="crops", title="Classes of the detected people")
    if tallies:
        axis.legend()
    figure.tight_layout()
    write_png(figure, path)


def flow_report(
    cfg: FlowReportConfig,
    detect: DetectConfig,
    *,
    root: Path,
    detections_dir: Path,
    crops_index: Path,
    predictions: Path,
    out: FlowOutputs,
) -> dict[str, Any]:
    """metrics/flow.json, per-video count series and plots; failed videos are listed, not dropped."""
    reports = read_summary(detections_dir)
    crop_rows = read_crop_index(crops_index)
    predicted = _read_predictions(predictions) if predictions.is_file() else {}
    classes_by_video: dict[str, dict[int, str]] = {}
    for row in crop_rows:
        if row["crop"] in predicted:
            classes_by_video.setdefault(row["video"], {})[int(row["detection"])] = predicted[row["crop"]]
    videos: dict[str, Any] = {}
    series: list[tuple] = []
    for report in reports:
        if report.status != "ok":
            videos[report.name] = {"status": "failed", "error": report.error}
            continue
        video = report.path(root)
        classes = classes_by_video.get(report.name, {})
        metrics, rows = _video_metrics(cfg, detect, report, video, detections_dir / f"{report.name}.csv", classes)
        videos[report.name] = metrics
        series.extend(rows)
    result = {
        "interval": detect.interval,
        "videos": videos,
        "failed": sorted(name for name, v in videos.items() if v["status"] == "failed"),
        "classes": dict(sorted(Counter(c for by in classes_by_video.values() for c in by.values()).items())),
    }
    write_json(out.metrics, result)
    with atomic_dir(out.counts_dir) as tmp:
        for video in sorted({row[0] for row in series}):
            with atomic_file(tmp / f"{video}.csv") as file, file.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["frame", "time_s", "detected", "ground_truth"])
                writer.writerows(row[1:] for row in series if row[0] == video)
    with atomic_file(out.classes_csv) as file, file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "crops"])
        writer.writerows(result["classes"].items())
    _plot_counts(series, out.counts_png)
    _plot_classes({v: Counter(by.values()) for v, by in classes_by_video.items()}, out.classes_png)
    for name, metrics in videos.items():
        log.info("%s: %s", name, metrics)
    return result


def _run(params: Params, root: Path) -> dict[str, Any]:
    layout = Layout(root)
    return flow_report(
        params.flow_report,
        params.detect,
        root=root,
        detections_dir=layout.detections,
        crops_index=layout.crops_index,
        predictions=layout.predictions,
        out=layout.flow_outputs,
    )


STAGE = Stage(
    name="flow_report",
    run=_run,
    deps=("data/detections", "data/crops/index.csv", "data/predictions.csv", "data/demo/videos"),
    metrics=("metrics/flow.json",),
    plots=(
        "reports/people_counts",
        "reports/people_counts.png",
        "reports/class_counts.csv",
        "reports/class_counts.png",
    ),
    params=("flow_report", "detect.interval", "detect.start", "detect.end"),
)
