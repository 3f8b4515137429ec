"""Small videos written by the tests themselves: numbered frames, zero frames, damaged frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["corrupt_jpeg_frames", "frame_number", "write_numbered_video"]


def write_numbered_video(path: Path, frames: int, size: tuple[int, int] = (64, 48), fps: float = 10) -> Path:
    """An MJPG AVI whose frame i is a flat grey of level 4*i (read it back with `frame_number`)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 4 * i, np.uint8))
    writer.release()
    return path


def frame_number(frame: np.ndarray) -> int:
    """The index `write_numbered_video` encoded in a frame."""
    return round(float(frame.mean()) / 4)


def corrupt_jpeg_frames(path: Path, indices: list[int]) -> Path:
    """Overwrite the image data of the given MJPG frames so they no longer decode."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG start markers
    for index in indices:
        start = starts[index]
        data[start + 2 : start + 400] = bytes(398)
    path.write_bytes(bytes(data))
    return path
