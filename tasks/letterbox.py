"""YOLOv5 detect.py's pre- and post-processing in NumPy and OpenCV, for exported models run without torch.

A deployed ONNX Runtime or OpenVINO detector needs neither torch (500 MB resident on import) nor the yolov5
package: these are YOLOv5 7.0's `letterbox`, `non_max_suppression` (its default path: best class per box,
class-aware) and `scale_boxes`, step for step in float32, with OpenCV's NMS in place of torchvision's.
tests/test_letterbox.py holds each to YOLOv5's own function.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["check_img_size", "letterbox", "letterbox_shape", "non_max_suppression", "scale_boxes"]

_PAD_COLOUR = (114, 114, 114)
_MAX_WH = 7680  # YOLOv5's class offset: boxes of different classes never overlap
_MAX_NMS = 30000  # YOLOv5 keeps at most this many candidates, best first, for NMS


def check_img_size(imgsz: int, stride: int) -> int:
    """`imgsz` rounded up to a multiple of `stride`, as YOLOv5's check_img_size (floor 0)."""
    return max(math.ceil(imgsz / stride) * stride, 0)


def letterbox_shape(frame_shape: tuple[int, int], imgsz: int, stride: int = 32) -> tuple[int, int]:
    """(height, width) of a frame after detect.py's letterbox: long side `imgsz`, padded to the stride."""
    height, width = frame_shape
    ratio = min(imgsz / height, imgsz / width)
    new_height, new_width = round(height * ratio), round(width * ratio)
    return new_height + (-new_height) % stride, new_width + (-new_width) % stride


def letterbox(
    image: np.ndarray, new_shape: int | tuple[int, int], *, stride: int = 32, auto: bool = True
) -> np.ndarray:
    """Resize keeping the aspect ratio, then pad with grey: to the stride (`auto`) or to exactly `new_shape`."""
    shape = image.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    ratio = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * ratio)), int(round(shape[0] * ratio))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw, dh = dw / 2, dh / 2
    if shape[::-1] != new_unpad:
        image = cv2.resize(image, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=_PAD_COLOUR)


def _xywh2xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes)
    out[:, 0] = boxes[:, 0] - boxes[:, 2] / 2
    out[:, 1] = boxes[:, 1] - boxes[:, 3] / 2
    out[:, 2] = boxes[:, 0] + boxes[:, 2] / 2
    out[:, 3] = boxes[:, 1] + boxes[:, 3] / 2
    return out


def _one_image(
    x: np.ndarray, conf_thres: float, iou_thres: float, classes: list[int] | None, max_det: int
) -> np.ndarray:
    x = x[x[:, 4] > conf_thres]  # objectness first
    if not len(x):
        return np.zeros((0, 6), np.float32)
    x = x.copy()
    x[:, 5:] *= x[:, 4:5]  # class confidence = objectness x class probability
    box = _xywh2xyxy(x[:, :4])
    best = x[:, 5:].argmax(1)
    conf = x[np.arange(len(x)), 5 + best]
    det = np.concatenate((box, conf[:, None], best[:, None].astype(np.float32)), 1)[conf > conf_thres]
    if classes is not None:
        det = det[np.isin(det[:, 5], classes)]
    if not len(det):
        return np.zeros((0, 6), np.float32)
    det = det[np.argsort(-det[:, 4], kind="stable")[:_MAX_NMS]]
    shifted = det[:, :4] + det[:, 5:6] * _MAX_WH
    xywh = np.concatenate((shifted[:, :2], shifted[:, 2:] - shifted[:, :2]), 1).astype(np.float64)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), det[:, 4].astype(np.float64).tolist(), 0.0, iou_thres)
    keep = np.asarray(keep, np.int64).reshape(-1)[:max_det]
    return det[keep].astype(np.float32)


def non_max_suppression(
    prediction: np.ndarray,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: list[int] | None = None,
    max_det: int = 300,
) -> list[np.ndarray]:
    """Per image of a (batch, anchors, 5 + nc) raw output: (n, 6) x1, y1, x2, y2, conf, class, best first."""
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres {conf_thres} and iou_thres {iou_thres} must be within [0, 1]")
    return [_one_image(x, conf_thres, iou_thres, classes, max_det) for x in prediction.astype(np.float32)]


def scale_boxes(letterboxed_shape: tuple[int, ...], boxes: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """x1, y1, x2, y2 from the letterboxed image back to the frame's pixels, clipped to the frame."""
    gain = min(letterboxed_shape[0] / frame_shape[0], letterboxed_shape[1] / frame_shape[1])
    pad_x = (letterboxed_shape[1] - frame_shape[1] * gain) / 2
    pad_y = (letterboxed_shape[0] - frame_shape[0] * gain) / 2
    boxes = boxes.copy()
    boxes[:, [0, 2]] -= np.float32(pad_x)
    boxes[:, [1, 3]] -= np.float32(pad_y)
    boxes[:, :4] /= np.float32(gain)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame_shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame_shape[0])
    return boxes
