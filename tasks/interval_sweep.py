"""Stage `interval_sweep`: how sparse sampling can be before people can no longer be followed.

For every interval of `interval_sweep.intervals`, the detect stage's sampled detection (tasks/detect.py, with
`detect`'s thresholds at that interval) and the track stage's tracking (tasks/track.py) run on the configured
videos into a scratch folder, and tasks/track.py's scoring measures the tracks against the ground truth beside
each video. The cost axis is the detector's: GMACs per frame, counted as tasks/macs.py counts them (one forward
pass at the letterboxed frame size), x fps / interval = GMACs per second of video.

The knee is the largest interval whose IDF1 (averaged over the videos) is within `max_idf1_drop` of the best.
"""

from __future__ import annotations

import csv
import logging
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tasks.atomic import atomic_file, write_json, write_png
from tasks.config import DetectConfig, IntervalSweepConfig, Params, TrackConfig
from tasks.detect import detect_video, find_videos, load_detector
from tasks.errors import LightweightError
from tasks.frames import sampled_indices
from tasks.letterbox import letterbox_shape
from tasks.stage import Stage
from tasks.track import TruthFilter, read_tracks, read_truth, score_tracks, track_video
from tasks.yolo import count_gflops, detection_model, load_checkpoint

__all__ = ["SweepError", "SweepRow", "knee_interval", "mean_idf1", "read_sweep", "sweep_intervals"]

log = logging.getLogger(__name__)

_EPSILON = 1e-9  # an IDF1 exactly `max_idf1_drop` below the best is within it, whatever the float rounding


class SweepError(LightweightError, ValueError):
    """A sweep that cannot run: no video to process."""


@dataclass(frozen=True)
class SweepRow:
    """One video at one interval: a row of reports/interval_tradeoff.csv (None: not measurable, written empty)."""

    interval: int
    video: str
    gmacs_per_s: float | None  # detector GMACs per second of video: gmacs_per_frame x fps / interval
    idf1: float | None  # None without ground truth beside the video
    mota: float | None
    people_error_rel: float | None  # unique people found / true - 1
    crossing_error: int | None  # the largest |found - true| of any line's in or out count
    people: int  # unique people tracked
    people_true: int | None
    id_switches: int | None
    sampled_frames: int
    gmacs_per_frame: float


COLUMNS = tuple(f.name for f in fields(SweepRow))


def _significant(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def mean_idf1(rows: Iterable[SweepRow]) -> dict[int, float | None]:
    """{interval: IDF1 averaged over the videos scored at it}, None where no video was."""
    scores: dict[int, list[float]] = {}
    for row in rows:
        values = scores.setdefault(row.interval, [])
        if row.idf1 is not None:
            values.append(row.idf1)
    return {i: round(sum(v) / len(v), 4) if v else None for i, v in sorted(scores.items())}


def knee_interval(idf1: Mapping[int, float | None], max_drop: float) -> int | None:
    """The largest interval whose IDF1 is within `max_drop` of the best; None when nothing was scored."""
    scored = {interval: value for interval, value in idf1.items() if value is not None}
    if not scored:
        return None
    best = max(scored.values())
    return max(interval for interval, value in scored.items() if value >= best - max_drop - _EPSILON)


class _Cost:
    """Detector GMACs per frame by letterboxed input shape, counted once per shape on one loaded model."""

    def __init__(self, weights: Path, imgsz: int) -> None:
        self._model = detection_model(load_checkpoint(weights), weights)
        self._imgsz = imgsz
        self._by_shape: dict[tuple[int, int], float] = {}

    def per_frame(self, height: int, width: int) -> float:
        shape = letterbox_shape((height, width), self._imgsz)
        if shape not in self._by_shape:
            self._by_shape[shape] = count_gflops(self._model, shape) / 2  # YOLOv5's GFLOPs are 2 x MACs
        return self._by_shape[shape]


def _sweep_video(
    detector: Any,
    cost: _Cost,
    detect: DetectConfig,
    track: TrackConfig,
    *,
    video: Path,
    interval: int,
    scratch: Path,
    truth_filter: TruthFilter,
) -> SweepRow | str:
    """Detect, track and score one video at one interval; a video that cannot be read gives its error."""
    at = detect.model_copy(update={"interval": interval})
    detections_csv = scratch / f"interval_{interval}" / "detections" / f"{video.stem}.csv"
    report = detect_video(detector, at, video, detections_csv)
    if report.status != "ok":
        return report.error
    frames = list(sampled_indices(report.frames_read, interval, detect.start, detect.end))  # as the track stage
    tracks_csv = scratch / f"interval_{interval}" / "tracks" / f"{video.stem}.csv"
    summary = track_video(
        track,
        detections_csv=detections_csv,
        fps=report.fps,
        interval=interval,
        width=report.width,
        height=report.height,
        out_csv=tracks_csv,
        sampled_frames=frames,
        name=report.name,
    )
    per_frame = cost.per_frame(report.height, report.width)
    truth_csv = video.with_suffix(".csv")  # MOT-style ground truth beside the video, when there is one
    score: dict[str, Any] = {}
    if truth_csv.is_file():
        score = score_tracks(
            track,
            tracks=read_tracks(tracks_csv),
            truth=read_truth(truth_csv, report.width, report.height, truth_filter),
            sampled_frames=frames,
            lines=summary.lines,
            colours={},  # no classifier here: colour accuracy is the track stage's
        )
    return SweepRow(
        interval=interval,
        video=report.name,
        gmacs_per_s=_significant(per_frame * report.fps / interval) if report.fps else None,
        idf1=score.get("idf1"),
        mota=score.get("mota"),
        people_error_rel=score.get("people_error_rel"),
        crossing_error=score.get("crossing_error_max"),
        people=summary.tracks,
        people_true=score.get("people_true"),
        id_switches=score.get("id_switches"),
        sampled_frames=len(frames),
        gmacs_per_frame=_significant(per_frame),
    )


def _write_csv(path: Path, rows: Sequence[SweepRow]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(tuple("" if v is None else v for v in astuple(row)) for row in rows)


def read_sweep(path: Path) -> list[SweepRow]:
    """The rows of a reports/interval_tradeoff.csv."""
    kinds = {"interval": int, "video": str, "people": int, "sampled_frames": int, "gmacs_per_frame": float}
    kinds |= {"crossing_error": int, "people_true": int, "id_switches": int}
    with path.open(newline="") as handle:
        return [
            SweepRow(**{k: None if v == "" else kinds.get(k, float)(v) for k, v in r.items()})
            for r in csv.DictReader(handle)
        ]


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _plot(rows: Sequence[SweepRow], knee: int | None, max_drop: float, path: Path) -> None:
    figure = Figure(figsize=(8, 6.5))
    idf1_axis, error_axis = figure.subplots(2, 1, sharex=True)
    for video in sorted({row.video for row in rows}):
        own = sorted((r for r in rows if r.video == video and r.gmacs_per_s), key=lambda r: r.interval)
        x = [r.gmacs_per_s for r in own]
        (line,) = idf1_axis.plot(x, [_nan(r.idf1) for r in own], marker="o", label=video)
        error_axis.plot(x, [100 * _nan(r.people_error_rel) for r in own], marker="o", color=line.get_color())
        for r in own:
            idf1_axis.annotate(
                str(r.interval), (r.gmacs_per_s, _nan(r.idf1)), textcoords="offset points", xytext=(4, 4)
            )
            if r.interval == knee:
                for axis, y in ((idf1_axis, _nan(r.idf1)), (error_axis, 100 * _nan(r.people_error_rel))):
                    axis.plot([r.gmacs_per_s], [y], marker="o", markersize=14, fillstyle="none", color="black")
    title = "detect.interval at each point"
    if knee is not None:
        title += f"; circled: the knee, interval {knee} (mean IDF1 within {max_drop} of the best)"
    idf1_axis.set(ylabel="IDF1", title=title, xscale="log")
    idf1_axis.title.set_fontsize(9)
    error_axis.axhline(0, color="grey", linewidth=0.8)
    error_axis.set(xlabel="detector GMACs per second of video (log)", ylabel="unique people: error (%)", xscale="log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 2, not 2 x 10^0
    for axis in (idf1_axis, error_axis):
        axis.grid(True, which="both", alpha=0.3)
        axis.xaxis.set_major_formatter(plain)
        axis.xaxis.set_minor_formatter(plain)
    if rows:
        idf1_axis.legend(loc="best")
    figure.tight_layout()
    write_png(figure, path)


def _summary(rows: Sequence[SweepRow], cfg: IntervalSweepConfig, configured: int) -> dict[str, Any]:
    idf1 = mean_idf1(rows)
    knee = knee_interval(idf1, cfg.max_idf1_drop)
    scored = {i: v for i, v in idf1.items() if v is not None}
    best = max(scored, key=lambda i: (scored[i], -i)) if scored else None  # a tie: the denser
    by_interval: dict[str, Any] = {}
    for interval in sorted(idf1):
        own = [r for r in rows if r.interval == interval]
        errors = [abs(r.people_error_rel) for r in own if r.people_error_rel is not None]
        costs = [r.gmacs_per_s for r in own if r.gmacs_per_s is not None]
        by_interval[str(interval)] = {
            "idf1_mean": idf1[interval],
            "people_error_rel_abs_mean": round(sum(errors) / len(errors), 4) if errors else None,
            "crossing_error_max": max((r.crossing_error for r in own if r.crossing_error is not None), default=None),
            "gmacs_per_s_total": _significant(sum(costs)) if costs else None,
        }
    videos = {}
    for video in sorted({r.video for r in rows}):
        own = {r.interval: r.idf1 for r in rows if r.video == video}
        videos[video] = {"knee_interval": knee_interval(own, cfg.max_idf1_drop)}
    return {
        "intervals": sorted(cfg.intervals),
        "max_idf1_drop": cfg.max_idf1_drop,
        "configured_interval": configured,
        "knee_interval": knee,
        "best_interval": best,
        "best_idf1": scored[best] if best is not None else None,
        "by_interval": by_interval,
        "videos": videos,
    }


def sweep_intervals(
    cfg: IntervalSweepConfig,
    detect: DetectConfig,
    track: TrackConfig,
    *,
    root: Path,
    out_csv: Path,
    out_png: Path,
    metrics_json: Path,
    truth_filter: TruthFilter = TruthFilter(),
) -> dict[str, Any]:
    """Detection, tracking and scores at every interval of `cfg` on `detect.videos`; the trade-off and its knee."""
    videos, failures = find_videos(detect.videos, root)
    if not videos:
        raise SweepError("no videos to sweep:\n  " + "\n  ".join(r.error for r in failures))
    detector = load_detector(detect, detect.weights_path(root))
    cost = _Cost(detect.weights_path(root), detect.imgsz)
    rows: list[SweepRow] = []
    failed = {r.name: r.error for r in failures}
    with tempfile.TemporaryDirectory(prefix="lightweight-interval-sweep-") as scratch:
        for video in videos:
            for interval in sorted(cfg.intervals):
                result = _sweep_video(
                    detector,
                    cost,
                    detect,
                    track,
                    video=video,
                    interval=interval,
                    scratch=Path(scratch),
                    truth_filter=truth_filter,
                )
                if isinstance(result, str):
                    failed[video.stem] = result
                    break
                log.info("%s at interval %d: %s", video.stem, interval, result)
                rows.append(result)
    for name, error in sorted(failed.items()):
        log.error("interval sweep: %s failed: %s", name, error)
    if not any(r.idf1 is not None for r in rows):
        log.warning(
            "interval sweep: no IDF1 measured (no ground truth <video>.csv beside the videos, or no one on their "
            "sampled frames): there is no knee"
        )
    result = _summary(rows, cfg, detect.interval) | {"failed": sorted(failed)}
    _write_csv(out_csv, rows)
    _plot(rows, result["knee_interval"], cfg.max_idf1_drop, out_png)
    write_json(metrics_json, result)
    log.info("interval sweep: knee at interval %s (configured: %d)", result["knee_interval"], detect.interval)
    return result


def _run(params: Params, root: Path) -> dict[str, Any]:
    report = params.flow_report
    return sweep_intervals(
        params.interval_sweep,
        params.detect,
        params.track,
        root=root,
        out_csv=root / "reports" / "interval_tradeoff.csv",
        out_png=root / "reports" / "interval_tradeoff.png",
        metrics_json=root / "metrics" / "interval_sweep.json",
        truth_filter=TruthFilter(report.gt_min_visible, report.gt_min_height),
    )


STAGE = Stage(
    name="interval_sweep",
    run=_run,
    deps=("${detect.weights}", "data/demo/videos"),
    metrics=("metrics/interval_sweep.json",),
    plots=("reports/interval_tradeoff.csv", "reports/interval_tradeoff.png"),
    params=("interval_sweep", "detect", "track", "flow_report.gt_min_visible", "flow_report.gt_min_height"),
)
