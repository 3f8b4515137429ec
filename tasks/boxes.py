"""Box geometry shared by cropping, classifier training and the ground-truth comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["box_iou", "padded_box"]


def padded_box(frame_shape: tuple[int, ...], box: Sequence[float], pad: float) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) widened by `pad` of its size on every side, clipped to the frame; None if nothing is left.

    Detection crops and the classifier's training crops both come from here, so they are cut alike.
    """
    height, width = frame_shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = pad * (x2 - x1), pad * (y2 - y1)
    left, top = max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy))
    right, bottom = min(width, math.ceil(x2 + dx)), min(height, math.ceil(y2 + dy))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
