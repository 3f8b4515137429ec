"""Stage `preview`: something to look at — a short GIF per video of what the tracker saw.

`reports/preview/<video>.gif` plays `preview.seconds` of video from `preview.start_s`, one GIF frame per sampled
frame at the sampled frame rate (fps / detect.interval), each with the track boxes and ids of the track stage
(data/tracks), every person's voted colour (data/people.csv), the counting lines (tasks/track.py's video_lines)
and each line's running in/out counts since the start of the video (data/tracks/crossings.json). A GIF, not
an mp4: OpenCV writes mp4 with the mp4v codec, which browsers do not play. OpenCV reads and draws; Pillow
writes the GIF. `preview.enabled: false` leaves an empty reports/preview.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tasks.atomic import atomic_dir, atomic_file
from tasks.config import DetectConfig, Params, PreviewConfig, TrackConfig
from tasks.detections import VideoReport, read_summary
from tasks.errors import LightweightError
from tasks.frames import ReadStats, frames_at, open_video, sampled_indices
from tasks.stage import Stage
from tasks.track import CROSSINGS_NAME, Point, TrackRow, read_tracks, video_lines

__all__ = ["PreviewError", "clip_frames", "draw_frame", "preview_video", "preview_videos", "running_counts"]

log = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LINE_BGR = (255, 255, 0)  # cyan: no shirt colour of the demo
# Box colours by track id (matplotlib's tab10, BGR): neighbours in id differ, so do neighbours on screen.
_PALETTE = (
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
    (194, 119, 227),
    (127, 127, 127),
    (34, 189, 188),
    (207, 190, 23),
)
_GIF_COLOURS = 64  # palette size of each GIF frame, chosen per frame; 128 makes the demo GIFs 20% larger


class PreviewError(LightweightError, ValueError):
    """Preview inputs that are missing: the track stage has not run."""


def clip_frames(sampled: Iterable[int], fps: float, start_s: float, seconds: float) -> list[int]:
    """The sampled frame indices within [start_s, start_s + seconds) of video."""
    first, stop = math.ceil(start_s * fps - 1e-9), math.ceil((start_s + seconds) * fps - 1e-9)
    return [frame for frame in sampled if first <= frame < stop]


def running_counts(
    crossings: Sequence[Mapping[str, Any]], lines: Iterable[str], frame: int
) -> dict[str, dict[str, int]]:
    """{line: {"in": n, "out": n}}: the crossings (crossings.json events) up to and including `frame`."""
    counts = {name: {"in": 0, "out": 0} for name in lines}
    for event in crossings:
        if event["frame"] <= frame and event["line"] in counts:
            counts[event["line"]][event["direction"]] += 1
    return counts


def _text(image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int], scale: float) -> None:
    """Text with a dark outline, legible on any background."""
    cv2.putText(image, text, origin, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, _FONT, scale, colour, 1, cv2.LINE_AA)


def _centred(
    image: np.ndarray, text: str, centre: tuple[float, float], colour: tuple[int, int, int], scale: float
) -> None:
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, 1)
    _text(image, text, (round(centre[0] - w / 2), round(centre[1] + h / 2)), colour, scale)


def _draw_line(image: np.ndarray, name: str, a: tuple[int, int], b: tuple[int, int], scale: float) -> None:
    """The line, its name on its "out" side and "in" on the other, near its start (out of the way of counts)."""
    cv2.line(image, a, b, _LINE_BGR, 2, cv2.LINE_AA)
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy) or 1.0
    near = (a[0] + 0.1 * dx, a[1] + 0.1 * dy)
    (w, _), _ = cv2.getTextSize(name, _FONT, scale, 1)
    # "in" is onto the left of start -> end as seen on screen (y down): the side the normal (dy, -dx) points to
    left = (dy / length, -dx / length)
    _centred(image, "in", (near[0] + 14 * left[0], near[1] + 14 * left[1]), _LINE_BGR, scale)
    away = 8 + w / 2
    _centred(image, name, (near[0] - away * left[0], near[1] - away * left[1]), _LINE_BGR, scale)


def draw_frame(
    frame: np.ndarray,
    *,
    width: int,
    rows: Sequence[TrackRow],
    colours: Mapping[int, str],
    lines: Mapping[str, tuple[Point, Point]],
    counts: Mapping[str, Mapping[str, int]],
    frame_index: int,
    time_s: float,
) -> np.ndarray:
    """The frame downscaled to at most `width` pixels, with tracks, colours, lines and counts drawn (BGR)."""
    scale = min(1.0, width / frame.shape[1])
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if scale < 1 else frame.copy()
    image = cv2.medianBlur(image, 3)  # sensor and codec noise: a third of the GIF's bytes, and nothing to see
    font = 0.4
    for name, (start, end) in lines.items():
        a = (round(start[0] * scale), round(start[1] * scale))
        b = (round(end[0] * scale), round(end[1] * scale))
        _draw_line(image, name, a, b, font)
    for row in rows:
        colour = _PALETTE[row.track_id % len(_PALETTE)]
        x1, y1, x2, y2 = (round(v * scale) for v in row.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        label = f"{row.track_id} {colours.get(row.track_id) or '?'}"
        (w, h), _ = cv2.getTextSize(label, _FONT, font, 1)
        top = max(y1 - h - 4, 0)
        cv2.rectangle(image, (x1, top), (x1 + w + 4, top + h + 4), colour, cv2.FILLED)
        cv2.putText(image, label, (x1 + 2, top + h + 1), _FONT, font, (255, 255, 255), 1, cv2.LINE_AA)
    panel = [f"frame {frame_index}  {time_s:.1f} s", *(f"{n}: in {c['in']}  out {c['out']}" for n, c in counts.items())]
    panel_width = max(cv2.getTextSize(text, _FONT, font, 1)[0][0] for text in panel) + 12
    shade = image[: 16 * len(panel) + 8, :panel_width]
    shade[:] = shade // 3  # darkened behind the text
    for i, text in enumerate(panel):  # the frame number differs: no two GIF frames are equal, none merged
        _text(image, text, (6, 16 + 16 * i), (255, 255, 255), font)
    return image


def _read_colours(path: Path, video: str) -> dict[int, str]:
    with path.open(newline="") as handle:
        return {int(r["track_id"]): r["colour"] for r in csv.DictReader(handle) if r["video"] == video}


def _write_gif(path: Path, frames: Sequence[np.ndarray], frame_ms: int) -> None:
    images = [
        Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).quantize(
            _GIF_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        for f in frames
    ]
    with atomic_file(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)


def preview_video(
    cfg: PreviewConfig,
    detect: DetectConfig,
    track: TrackConfig,
    *,
    report: VideoReport,
    video: Path,
    tracks_csv: Path,
    crossings: Sequence[Mapping[str, Any]],
    colours: Mapping[int, str],
    out_gif: Path,
) -> dict[str, Any]:
    """One video's GIF; its clip's sampled frames, or none (and no GIF) when the clip is past the video's end."""
    fps = report.fps or 1.0
    sampled = sampled_indices(report.frames_read, detect.interval, detect.start, detect.end)
    wanted = clip_frames(sampled, fps, cfg.start_s, cfg.seconds)
    if not wanted:
        log.warning(
            "%s: no sampled frame between preview.start_s %g s and %g s (the video has %.1f s): no preview",
            report.name,
            cfg.start_s,
            cfg.start_s + cfg.seconds,
            report.frames_read / fps,
        )
        return {"frames": 0}
    lines = video_lines(track, report.name, report.width, report.height)
    by_frame: dict[int, list[TrackRow]] = {}
    for row in read_tracks(tracks_csv):
        by_frame.setdefault(row.frame, []).append(row)
    capture, info = open_video(video)
    drawn = []
    try:
        for index, frame in frames_at(capture, info, ReadStats(), wanted):
            counts = running_counts(crossings, lines, index)
            rows = by_frame.get(index, [])
            drawn.append(
                draw_frame(
                    frame,
                    width=cfg.width,
                    rows=rows,
                    colours=colours,
                    lines=lines,
                    counts=counts,
                    frame_index=index,
                    time_s=index / fps,
                )
            )
    finally:
        capture.release()
    if not drawn:
        log.warning("%s: none of the clip's frames decoded: no preview", report.name)
        return {"frames": 0}
    frame_ms = max(20, round(1000 * detect.interval / fps))  # browsers play GIF delays under 20 ms slowly
    _write_gif(out_gif, drawn, frame_ms)
    height, width = drawn[0].shape[:2]
    return {"frames": len(drawn), "frame_ms": frame_ms, "width": width, "height": height}


def preview_videos(
    cfg: PreviewConfig,
    detect: DetectConfig,
    track: TrackConfig,
    *,
    root: Path,
    detections_dir: Path,
    tracks_dir: Path,
    people_csv: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """A GIF per tracked video into `out_dir` (replaced as a whole; left empty when `cfg.enabled` is false)."""
    videos: dict[str, Any] = {}
    with atomic_dir(out_dir) as tmp:
        if cfg.enabled:
            crossings_json = tracks_dir / CROSSINGS_NAME
            for needed in (crossings_json, people_csv):
                if not needed.is_file():
                    raise PreviewError(f"{needed}: not found; run the track stage first")
            crossings = json.loads(crossings_json.read_text())
            for report in (r for r in read_summary(detections_dir) if r.status == "ok"):
                tracks_csv = tracks_dir / f"{report.name}.csv"
                if not tracks_csv.is_file():
                    raise PreviewError(f"{tracks_csv}: not found; run the track stage first")
                videos[report.name] = preview_video(
                    cfg,
                    detect,
                    track,
                    report=report,
                    video=report.path(root),
                    tracks_csv=tracks_csv,
                    crossings=crossings.get(report.name, []),
                    colours=_read_colours(people_csv, report.name),
                    out_gif=tmp / f"{report.name}.gif",
                )
                log.info("preview %s: %s", report.name, videos[report.name])
    return {"enabled": cfg.enabled, "videos": videos}


def _run(params: Params, root: Path) -> dict[str, Any]:
    return preview_videos(
        params.preview,
        params.detect,
        params.track,
        root=root,
        detections_dir=root / "data" / "detections",
        tracks_dir=root / "data" / "tracks",
        people_csv=root / "data" / "people.csv",
        out_dir=root / "reports" / "preview",
    )


STAGE = Stage(
    name="preview",
    run=_run,
    deps=("data/detections", "data/tracks", "data/people.csv", "data/demo/videos"),
    outs=("reports/preview",),  # in the DVC cache, not git: a GIF is a megabyte or so
    params=("preview", "detect.interval", "detect.start", "detect.end", "track.lines"),
)
