"""Streaming the sampled frames of a video: grab every frame, decode only the ones asked for."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from tasks.errors import LightweightError

__all__ = [
    "ReadStats",
    "VideoError",
    "VideoInfo",
    "frames_at",
    "open_video",
    "prefetched",
    "sampled_frames",
    "sampled_indices",
]

T = TypeVar("T")

# A video whose container still promises frames may have this many undecodable ones in a row before we stop.
MAX_CONSECUTIVE_FAILURES = 250


class VideoError(LightweightError, ValueError):
    """A video that cannot be opened or read at all."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frames: int  # as the container reports it; 0 when unknown
    fps: float  # 0 when unknown
    width: int
    height: int


@dataclass
class ReadStats:
    frames_read: int = 0  # frame positions consumed, decoded or not
    decode_failures: int = 0  # frames that failed to decode mid-stream (skipped)


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video for reading, or raise VideoError naming it and why."""
    if not path.exists():
        raise VideoError(f"{path}: video not found")
    if not path.is_file():
        raise VideoError(f"{path}: not a file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: cannot open video (not a video OpenCV can decode, or a damaged container)")
    info = VideoInfo(
        path=path,
        frames=max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
        fps=max(float(capture.get(cv2.CAP_PROP_FPS)), 0.0),
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    return capture, info


def sampled_indices(frames: int, interval: int, start: int = 0, end: int | None = None) -> range:
    """The frame indices sampled from a video of `frames` frames."""
    stop = frames if end is None else min(end, frames)
    return range(start, max(stop, start), interval)


def sampled_frames(
    capture: cv2.VideoCapture,
    info: VideoInfo,
    stats: ReadStats,
    interval: int,
    start: int = 0,
    end: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) for frames start, start+interval, … before `end`."""
    return _frames(capture, info, stats, lambda index: index >= start and (index - start) % interval == 0, end)


def frames_at(
    capture: cv2.VideoCapture, info: VideoInfo, stats: ReadStats, indices: Collection[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) for the given frame indices, in order."""
    wanted = frozenset(indices)
    return _frames(capture, info, stats, wanted.__contains__, max(wanted, default=-1) + 1)


def _frames(
    capture: cv2.VideoCapture, info: VideoInfo, stats: ReadStats, wanted: Callable[[int], bool], end: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    """Unwanted frames are only grabbed (demuxed and decoded, never converted to BGR). A frame that fails
    to decode before the container's frame count is skipped and counted, and reading goes on."""
    index, consecutive_failures = 0, 0
    while end is None or index < end:
        if not capture.grab():
            if index < info.frames and consecutive_failures < MAX_CONSECUTIVE_FAILURES:
                stats.decode_failures += 1
                consecutive_failures += 1
                index += 1
                continue
            break
        consecutive_failures = 0
        if wanted(index):
            ok, frame = capture.retrieve()
            if ok:
                yield index, frame
            else:
                stats.decode_failures += 1
        index += 1
        stats.frames_read = index
    stats.frames_read = index


def prefetched(items: Iterable[T], depth: int) -> Iterator[T]:
    """Produce `items` in a background thread, at most `depth` ahead (OpenCV decodes without the GIL)."""
    buffer: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def put(kind: str, payload: object) -> bool:
        while not stop.is_set():  # never block forever: the consumer may have gone away
            try:
                buffer.put((kind, payload), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("done", None)
        except BaseException as error:  # handed to the consumer, raised there
            put("error", error)

    worker = threading.Thread(target=produce, name="frame-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = buffer.get()
            if kind == "done":
                return
            if kind == "error":
                raise payload  # type: ignore[misc]
            yield payload  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
