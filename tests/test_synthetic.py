"""The renderer's ground truth: a figure's visibility counts what is outside the picture as hidden."""

from dataclasses import replace

import numpy as np
import pytest

from tasks.synthetic import Pedestrian, Scene, render

WIDTH, HEIGHT = 320, 240


def _scene() -> Scene:
    return Scene(np.full((HEIGHT, WIDTH, 3), 128, np.uint8), horizon=60)


def _walker(x: float) -> Pedestrian:
    return Pedestrian(
        x=x,
        foot_y=200,
        height=100,
        colour=0,
        shirt_bgr=(0, 0, 200),
        trousers_bgr=(60, 60, 60),
        skin_bgr=(120, 160, 200),
        phase=0.0,
    )


def test_a_figure_inside_the_picture_and_unhidden_is_fully_visible():
    (placed,) = render(_scene(), [_walker(160)], [])[1]
    assert placed.visible == 1.0


@pytest.mark.parametrize("x", [0.0, WIDTH - 1.0])
def test_a_figure_cut_by_the_border_is_as_visible_as_its_share_in_the_picture(x: float):
    whole = render(_scene(), [_walker(160)], [])[1][0]
    (cut,) = render(_scene(), [_walker(x)], [])[1]
    # standing on the border, about half the figure is outside: visible about 0.5, not 1.0 (its in-picture share)
    assert 0.35 < cut.visible < 0.65
    assert cut.box[2] - cut.box[0] < 0.7 * (whole.box[2] - whole.box[0])


def test_a_figure_hidden_by_a_nearer_one_counts_only_what_shows():
    far, near = _walker(160), replace(_walker(165), foot_y=220, height=110)
    placed = {p.pedestrian: p for p in render(_scene(), [far, near], [])[1]}
    assert placed[1].visible == 1.0
    assert 0 not in placed or placed[0].visible < 0.5  # mostly behind the nearer figure


def test_a_view_is_the_same_picture_cut_out_with_its_labels_in_view_coordinates():
    people = [_walker(100), replace(_walker(220), foot_y=180, height=90)]
    full_image, full_placed = render(_scene(), people, [])
    view_image, view_placed = render(_scene(), people, [], view=(60, 20, 200, 200))
    assert view_image.shape == (200, 200, 3)
    assert np.array_equal(view_image, full_image[20:220, 60:260])
    shifted = [(p.pedestrian, (p.box[0] - 60, p.box[1] - 20, p.box[2] - 60, p.box[3] - 20)) for p in full_placed]
    assert [(p.pedestrian, p.box) for p in view_placed] == shifted
    assert [p.visible for p in view_placed] == [p.visible for p in full_placed] == [1.0, 1.0]


def test_a_figure_cut_by_the_view_is_as_visible_as_its_share_in_the_view():
    (whole,) = render(_scene(), [_walker(160)], [])[1]
    (cut,) = render(_scene(), [_walker(160)], [], view=(160, 0, 160, HEIGHT))[1]  # the view's left edge halves it
    assert cut.box[0] == 0 and 0.35 < cut.visible < 0.65
    assert cut.box[2] - cut.box[0] < 0.7 * (whole.box[2] - whole.box[0])
