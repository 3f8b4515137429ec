"""tasks/letterbox.py: detect.py's pre- and post-processing without torch, held to YOLOv5's own functions."""

import numpy as np
import pytest
import torch

from tasks.letterbox import check_img_size, letterbox, letterbox_shape, non_max_suppression, scale_boxes
from tasks.yolo.runtime import yolov5_runtime

with yolov5_runtime():
    from yolov5.utils import augmentations, general


@pytest.mark.parametrize("shape", [(360, 640), (480, 270), (333, 517), (640, 640)])
@pytest.mark.parametrize(("new_shape", "auto"), [(384, True), (640, True), (320, False), ((256, 416), False)])
def test_letterbox_gives_yolov5s_pixels(shape: tuple[int, int], new_shape, auto: bool):
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    theirs = augmentations.letterbox(image, new_shape, stride=32, auto=auto)[0]
    mine = letterbox(image, new_shape, stride=32, auto=auto)
    assert mine.shape == theirs.shape and np.array_equal(mine, theirs)
    if auto and isinstance(new_shape, int):
        assert letterbox_shape(shape, new_shape) == mine.shape[:2]


def test_image_sizes_round_up_to_the_stride_as_yolov5s():
    for imgsz in (1, 31, 32, 33, 384, 400, 640):
        assert check_img_size(imgsz, 32) == general.check_img_size(imgsz, s=32)


def _predictions(batch: int, anchors: int, classes: int, seed: int) -> np.ndarray:
    """Raw outputs like a trained detector's: clustered boxes (NMS has work), a spread of objectness."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 300, (batch, 12, 2))
    pick = rng.integers(0, 12, (batch, anchors))
    xy = np.take_along_axis(centres, pick[..., None], 1) + rng.normal(0, 6, (batch, anchors, 2))
    wh = rng.uniform(10, 80, (batch, anchors, 2))
    scores = rng.uniform(0, 1, (batch, anchors, 1 + classes)) ** 3
    return np.concatenate((xy, wh, scores), 2).astype(np.float32)


@pytest.mark.parametrize(
    ("classes", "kept_classes", "max_det"), [(1, None, 300), (3, None, 300), (3, [0, 2], 300), (3, None, 5)]
)
def test_non_max_suppression_keeps_yolov5s_boxes_in_its_order(classes: int, kept_classes, max_det: int):
    prediction = _predictions(3, 4000, classes, seed=classes + max_det)
    theirs = general.non_max_suppression(torch.from_numpy(prediction.copy()), 0.25, 0.45, kept_classes, max_det=max_det)
    mine = non_max_suppression(prediction, 0.25, 0.45, kept_classes, max_det=max_det)
    assert sum(len(t) for t in theirs) > 10, "the reference kept almost nothing: the comparison would be empty"
    for own, reference in zip(mine, theirs, strict=True):
        assert own.dtype == np.float32 and own.shape == tuple(reference.shape)
        np.testing.assert_allclose(own, reference.numpy(), rtol=0, atol=1e-4)


def test_non_max_suppression_of_nothing_and_bad_thresholds():
    empty = non_max_suppression(np.zeros((2, 10, 6), np.float32))
    assert [d.shape for d in empty] == [(0, 6), (0, 6)]
    with pytest.raises(ValueError, match=r"conf_thres 1.5 and iou_thres 0.45 must be within \[0, 1\]"):
        non_max_suppression(np.zeros((1, 10, 6), np.float32), 1.5, 0.45)


@pytest.mark.parametrize(("letterboxed", "frame"), [((384, 640), (360, 640)), ((640, 640), (480, 270))])
def test_boxes_scale_back_to_the_frame_as_yolov5s(letterboxed: tuple[int, int], frame: tuple[int, int]):
    boxes = np.random.default_rng(1).uniform(-20, 660, (50, 4)).astype(np.float32)
    theirs = general.scale_boxes(letterboxed, torch.from_numpy(boxes.copy()), frame).numpy()
    mine = scale_boxes(letterboxed, boxes, frame)
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-4)
    assert mine[:, [0, 2]].max() <= frame[1] and mine[:, [1, 3]].max() <= frame[0] and mine.min() >= 0
