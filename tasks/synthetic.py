"""Synthetic street scenes: textured backgrounds, articulated pedestrians in perspective, distractors.

Everything is drawn with OpenCV from a seeded `numpy.random.Generator`, so a seed fixes every pixel.
Objects are painted far-to-near; an id mask records what stays visible, which decides which
pedestrians are labelled (a mostly hidden one is not).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

__all__ = [
    "COLOUR_NAMES",
    "Distractor",
    "Pedestrian",
    "Placed",
    "Scene",
    "random_distractor",
    "random_pedestrian",
    "random_scene",
    "render",
]

# Upper-body clothing colours: the attribute the classifier learns. BGR base colours.
COLOUR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "white")
_COLOUR_BGR = {
    "red": (40, 40, 200),
    "green": (50, 160, 40),
    "blue": (190, 80, 30),
    "yellow": (40, 210, 230),
    "white": (235, 235, 235),
}
_TROUSERS_BGR = ((40, 40, 40), (90, 60, 30), (110, 110, 110), (60, 80, 110), (150, 170, 190))
_SKIN_BGR = ((140, 170, 220), (100, 135, 190), (60, 90, 140), (45, 65, 100))

MIN_VISIBLE_FRACTION = 0.4  # a pedestrian hidden more than this is not labelled


@dataclass(frozen=True)
class Scene:
    """A static backdrop; `horizon` is the image row where ground meets sky."""

    background: np.ndarray
    horizon: int

    def height_at(self, foot_y: float) -> float:
        """Pedestrian height in pixels for feet at row `foot_y` (linear perspective)."""
        h = self.background.shape[0]
        return max(0.0, (foot_y - self.horizon) / (h - self.horizon)) * 0.55 * h


@dataclass(frozen=True)
class Pedestrian:
    x: float  # centre column
    foot_y: float  # row of the feet
    height: float
    colour: int  # index into COLOUR_NAMES
    shirt_bgr: tuple[int, int, int]
    trousers_bgr: tuple[int, int, int]
    skin_bgr: tuple[int, int, int]
    phase: float  # walking cycle, radians
    width_ratio: float = 0.3  # shoulders relative to height


@dataclass(frozen=True)
class Distractor:
    kind: str  # car, pole, bin, tree, sign
    x: float
    foot_y: float
    scale: float
    bgr: tuple[int, int, int]


@dataclass(frozen=True)
class Placed:
    """A labelled pedestrian in a rendered image."""

    pedestrian: int  # index into the list passed to `render`
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 clipped to the image
    colour: int
    visible: float  # fraction of the whole figure in view: not hidden by nearer objects nor outside the image


def _jitter(rng: np.random.Generator, bgr: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in bgr)  # type: ignore[return-value]


def _noise_texture(rng: np.random.Generator, shape: tuple[int, int], strength: float) -> np.ndarray:
    small = rng.normal(0, strength, (shape[0] // 4 + 1, shape[1] // 4 + 1)).astype(np.float32)
    coarse = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    fine = rng.normal(0, strength / 2, shape).astype(np.float32)
    return coarse + fine


def random_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Sky, a row of buildings with windows, pavement and road, with noise so nothing is flat."""
    horizon = int(height * rng.uniform(0.3, 0.45))
    image = np.zeros((height, width, 3), np.float32)
    sky_top, sky_bottom = (
        np.array(_jitter(rng, (220, 180, 120), 30)),
        np.array(_jitter(rng, (240, 220, 200), 15)),
    )
    for row in range(horizon):
        t = row / max(horizon - 1, 1)
        image[row] = sky_top * (1 - t) + sky_bottom * t
    x = int(rng.integers(-20, 0))
    while x < width:
        w = int(rng.integers(width // 10, width // 4))
        top = int(rng.integers(int(horizon * 0.1), int(horizon * 0.8)))
        facade = _jitter(rng, (120, 130, 150), 50)
        cv2.rectangle(image, (x, top), (x + w, horizon), facade, -1)
        window = _jitter(rng, (90, 80, 60), 30)
        step = max(6, w // 6)
        for wy in range(top + step // 2, horizon - step, step):
            for wx in range(x + step // 3, x + w - step // 2, step):
                cv2.rectangle(image, (wx, wy), (wx + step // 2, wy + step // 2), window, -1)
        x += w + int(rng.integers(0, width // 20))
    pavement = np.array(_jitter(rng, (150, 150, 145), 25), np.float32)
    road = np.array(_jitter(rng, (85, 85, 85), 15), np.float32)
    road_top = horizon + int((height - horizon) * rng.uniform(0.15, 0.35))
    road_bottom = road_top + int((height - horizon) * rng.uniform(0.15, 0.3))
    image[horizon:] = pavement
    image[road_top:road_bottom] = road
    for sx in range(int(rng.integers(0, 40)), width, 60):
        mid = (road_top + road_bottom) // 2
        cv2.rectangle(image, (sx, mid - 1), (sx + 30, mid + 1), (220, 220, 220), -1)
    for gy in range(horizon, height, max(4, (height - horizon) // 12)):
        cv2.line(image, (0, gy), (width, gy), tuple(float(c) - 12 for c in pavement), 1)
    image += _noise_texture(rng, (height, width), 10)[..., None]
    return Scene(np.clip(image, 0, 255).astype(np.uint8), horizon)


def random_pedestrian(rng: np.random.Generator, scene: Scene, x: float, foot_y: float) -> Pedestrian:
    colour = int(rng.integers(len(COLOUR_NAMES)))
    return Pedestrian(
        x=x,
        foot_y=foot_y,
        height=scene.height_at(foot_y) * rng.uniform(0.85, 1.1),
        colour=colour,
        shirt_bgr=_jitter(rng, _COLOUR_BGR[COLOUR_NAMES[colour]], 25),
        trousers_bgr=_jitter(rng, _TROUSERS_BGR[int(rng.integers(len(_TROUSERS_BGR)))], 15),
        skin_bgr=_SKIN_BGR[int(rng.integers(len(_SKIN_BGR)))],
        phase=float(rng.uniform(0, 2 * np.pi)),
        width_ratio=float(rng.uniform(0.24, 0.32)),
    )


def random_distractor(rng: np.random.Generator, scene: Scene, x: float, foot_y: float) -> Distractor:
    kind = ("car", "pole", "bin", "tree", "sign")[int(rng.integers(5))]
    return Distractor(kind, x, foot_y, scene.height_at(foot_y), _jitter(rng, (120, 120, 120), 100))


def _limb(points: list[tuple[float, float]], canvas: np.ndarray, mask: np.ndarray, oid: int, bgr, thick: int):
    pts = np.array(points, np.int32)
    cv2.polylines(canvas, [pts], False, bgr, thick, cv2.LINE_AA)
    cv2.polylines(mask, [pts], False, oid, thick)


def _draw_pedestrian(p: Pedestrian, canvas: np.ndarray, mask: np.ndarray, oid: int) -> None:
    """Paint one figure on `canvas` and its silhouette on `mask`."""
    h = p.height
    head_r = max(1.0, 0.065 * h)
    neck_y = p.foot_y - h + 2 * head_r
    hip_y = p.foot_y - 0.48 * h
    half_w = p.width_ratio * h / 2
    limb = max(1, int(round(0.075 * h)))
    swing = np.sin(p.phase)
    # legs: hips to knees to feet, swinging opposite each other
    for side, sign in ((-1, 1), (1, -1)):
        hip = (p.x + side * half_w * 0.4, hip_y)
        knee = (hip[0] + sign * swing * 0.1 * h, hip_y + 0.25 * h)
        foot = (hip[0] + sign * swing * 0.2 * h, p.foot_y - limb / 2)
        _limb([hip, knee, foot], canvas, mask, oid, p.trousers_bgr, limb)
    # torso
    torso = np.array(
        [
            (p.x - half_w, neck_y + 0.02 * h),
            (p.x + half_w, neck_y + 0.02 * h),
            (p.x + half_w * 0.75, hip_y + 0.04 * h),
            (p.x - half_w * 0.75, hip_y + 0.04 * h),
        ],
        np.int32,
    )
    cv2.fillConvexPoly(canvas, torso, p.shirt_bgr, cv2.LINE_AA)
    cv2.fillConvexPoly(mask, torso, oid)
    # arms: sleeves in the shirt colour, hands in skin
    arm = max(1, int(round(0.06 * h)))
    for side, sign in ((-1, -1), (1, 1)):
        shoulder = (p.x + side * half_w * 0.9, neck_y + 0.05 * h)
        elbow = (shoulder[0] + side * 0.03 * h + sign * swing * 0.06 * h, shoulder[1] + 0.17 * h)
        hand = (elbow[0] + sign * swing * 0.1 * h, elbow[1] + 0.15 * h)
        _limb([shoulder, elbow], canvas, mask, oid, p.shirt_bgr, arm)
        _limb([elbow, hand], canvas, mask, oid, p.skin_bgr, arm)
    # head
    centre = (int(round(p.x)), int(round(neck_y - head_r)))
    cv2.circle(canvas, centre, int(round(head_r)), p.skin_bgr, -1, cv2.LINE_AA)
    cv2.circle(mask, centre, int(round(head_r)), oid, -1)
    cv2.ellipse(canvas, centre, (int(round(head_r)), int(round(head_r * 0.6))), 0, 180, 360, (30, 30, 40), -1)


def _draw_distractor(d: Distractor, canvas: np.ndarray, mask: np.ndarray, oid: int) -> None:
    s, x, y = d.scale, d.x, d.foot_y
    shapes: list[tuple[np.ndarray, tuple[int, int, int]]] = []

    def box(x1: float, y1: float, x2: float, y2: float, bgr) -> None:
        shapes.append((np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], np.int32), bgr))

    if d.kind == "car":
        box(x - 0.9 * s, y - 0.45 * s, x + 0.9 * s, y - 0.12 * s, d.bgr)
        box(x - 0.5 * s, y - 0.7 * s, x + 0.45 * s, y - 0.45 * s, d.bgr)
        box(x - 0.42 * s, y - 0.65 * s, x + 0.37 * s, y - 0.47 * s, (70, 60, 50))
    elif d.kind == "pole":
        box(x - 0.025 * s, y - 1.3 * s, x + 0.025 * s, y, (70, 70, 70))
        box(x - 0.08 * s, y - 1.3 * s, x + 0.08 * s, y - 1.2 * s, (60, 200, 230))
    elif d.kind == "bin":
        box(x - 0.15 * s, y - 0.45 * s, x + 0.15 * s, y, d.bgr)
    elif d.kind == "sign":
        box(x - 0.02 * s, y - 1.0 * s, x + 0.02 * s, y, (90, 90, 90))
        box(x - 0.15 * s, y - 1.1 * s, x + 0.15 * s, y - 0.8 * s, d.bgr)
    else:  # tree
        box(x - 0.05 * s, y - 0.9 * s, x + 0.05 * s, y, (30, 60, 90))
    for polygon, bgr in shapes:
        cv2.fillConvexPoly(canvas, polygon, bgr, cv2.LINE_AA)
        cv2.fillConvexPoly(mask, polygon, oid)
    if d.kind == "car":
        for wx in (x - 0.55 * s, x + 0.55 * s):
            cv2.circle(canvas, (int(wx), int(y - 0.12 * s)), int(0.13 * s), (20, 20, 20), -1, cv2.LINE_AA)
            cv2.circle(mask, (int(wx), int(y - 0.12 * s)), int(0.13 * s), oid, -1)
    elif d.kind == "tree":
        crown = (int(x), int(y - 1.05 * s))
        cv2.circle(canvas, crown, int(0.3 * s), (40, 120, 40), -1, cv2.LINE_AA)
        cv2.circle(mask, crown, int(0.3 * s), oid, -1)


def render(
    scene: Scene,
    pedestrians: list[Pedestrian],
    distractors: list[Distractor],
    noise: float = 4.0,
    rng: np.random.Generator | None = None,
    view: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, list[Placed]]:
    """Paint everything far-to-near on the scene; label pedestrians that stay mostly visible.

    `view` (x, y, width, height): the part of the scene in the picture, as a camera framing part of the street
    sees it; boxes and visibility are then of that part.
    """
    canvas = scene.background.copy()
    mask = np.zeros(canvas.shape[:2], np.int32)
    x0, y0, view_w, view_h = view or (0, 0, canvas.shape[1], canvas.shape[0])
    window = (slice(y0, y0 + view_h), slice(x0, x0 + view_w))
    objects: list[Pedestrian | Distractor] = sorted([*pedestrians, *distractors], key=lambda o: o.foot_y)
    index_of = {id(p): i for i, p in enumerate(pedestrians)}
    silhouettes: dict[int, tuple[tuple[int, int, int, int], int]] = {}  # box and area as drawn
    for oid, obj in enumerate(objects, start=1):
        if isinstance(obj, Pedestrian):
            own = np.zeros_like(mask)
            _draw_pedestrian(obj, canvas, own, oid)
            ys, xs = np.nonzero(own[window])
            if len(xs):
                box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                silhouettes[oid] = (box, len(xs))
            mask[own == oid] = oid
        else:
            _draw_distractor(obj, canvas, mask, oid)
    canvas, mask = np.ascontiguousarray(canvas[window]), mask[window]
    if rng is not None and noise > 0:
        grain = rng.normal(0, noise, canvas.shape[:2]).astype(np.float32)[..., None]
        canvas = np.clip(canvas.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    placed = []
    height, width = mask.shape
    for oid, (box, area) in silhouettes.items():
        pedestrian = objects[oid - 1]
        assert isinstance(pedestrian, Pedestrian)
        shown = np.count_nonzero(mask == oid)
        if shown / area >= MIN_VISIBLE_FRACTION and box[2] - box[0] >= 3 and box[3] - box[1] >= 6:
            cut = box[0] == 0 or box[1] == 0 or box[2] == width or box[3] == height  # part of it may be outside
            visible = shown / (_whole_area(pedestrian) if cut else area)
            placed.append(Placed(index_of[id(pedestrian)], box, pedestrian.colour, round(float(visible), 3)))
    return canvas, placed


def _whole_area(p: Pedestrian) -> int:
    """Pixels of the figure drawn whole, wherever it stands: what MOT ground truth's visibility is a share of.

    A figure half out of the picture is half visible, as one half hidden by a car is (MOTChallenge's
    convention); counting only its in-picture pixels made a sliver at the border "fully visible".
    """
    margin = int(np.ceil(p.height)) + 4
    size = (2 * margin, 2 * margin)
    own = np.zeros(size, np.int32)
    _draw_pedestrian(
        replace(p, x=p.x - round(p.x) + margin, foot_y=p.foot_y - round(p.foot_y) + 1.5 * margin),
        np.zeros((*size, 3), np.uint8),
        own,
        1,
    )
    return max(int(np.count_nonzero(own)), 1)
