"""Box geometry: padding, clipping, IoU."""

import pytest

from tasks.boxes import box_iou, padded_box


def test_padded_box_grows_by_pad_on_every_side_and_rounds_outwards():
    assert padded_box((100, 200), (50, 20, 70, 60), 0.1) == (48, 16, 72, 64)
    assert padded_box((100, 200), (50.5, 20.2, 69.5, 59.9), 0.0) == (50, 20, 70, 60)


def test_padded_box_is_clipped_to_the_frame():
    assert padded_box((100, 200, 3), (-10, -5, 30, 120), 0.5) == (0, 0, 50, 100)
    assert padded_box((100, 200), (190, 90, 260, 140), 0.0) == (190, 90, 200, 100)


def test_padded_box_outside_the_frame_is_none():
    assert padded_box((100, 200), (210, 10, 250, 50), 0.0) is None
    assert padded_box((100, 200), (10, 10, 10, 50), 0.0) is None  # no width


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges share no area
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # empty boxes: no division by zero
    ],
)
def test_box_iou(a, b, iou):
    assert box_iou(a, b) == pytest.approx(iou)
    assert box_iou(b, a) == pytest.approx(iou)
