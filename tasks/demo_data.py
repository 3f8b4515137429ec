"""Stage `demo_data`: a seeded YOLOv5 dataset of street scenes plus demo videos with ground truth."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from tasks.atomic import atomic_dir, write_json
from tasks.config import DemoConfig, Params
from tasks.layout import Layout
from tasks.stage import Stage
from tasks.synthetic import (
    COLOUR_NAMES,
    Distractor,
    Pedestrian,
    Placed,
    Scene,
    random_distractor,
    random_pedestrian,
    random_scene,
    render,
)

__all__ = ["DemoSummary", "generate_demo_data"]

log = logging.getLogger(__name__)

_SPLITS = {"train": 0, "val": 1}
_VIDEO_STREAM = 2
# Video walkers' lanes: their feet between these shares of the ground below the horizon, per direction.
_LANES = {1: (0.3, 0.55), -1: (0.65, 0.98)}
_OCCLUDER_DEPTH = 0.7  # video clutter stands at most this share of the ground below the horizon


@dataclass(frozen=True)
class DemoSummary:
    root: Path
    images: dict[str, int]
    boxes: dict[str, int]
    videos: list[str]
    frames_per_video: int


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per item, so changing one count does not reshuffle the rest."""
    return np.random.default_rng([seed, *stream])


def _foot_range(scene: Scene, height: int) -> tuple[float, float]:
    ground = height - scene.horizon
    return scene.horizon + 0.15 * ground, height * 1.03


def _lane_foot(rng: np.random.Generator, scene: Scene, direction: int, height: int) -> float:
    """The feet row of someone walking in `direction`'s lane (`_LANES`), never below the bottom edge."""
    near, far = _LANES[direction]
    return min(scene.horizon + rng.uniform(near, far) * (height - scene.horizon), height * 0.98)


def _still(cfg: DemoConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[Placed]]:
    """A still framed out of a street as the videos show it: same size, perspective, lanes and standing clutter
    (people pass behind the car and behind each other as they do in the videos), plus more clutter anywhere.

    Stills learnt at the size of videos' frames would cost four times the training; a frame's part at its own
    scale costs nothing more and shows every object as the detector meets it in video.
    """
    w, h = cfg.image_width, cfg.image_height
    street_w, street_h = max(cfg.video_width, w), max(cfg.video_height, h)
    scene = random_scene(rng, street_w, street_h)
    x0, y0 = int(rng.integers(0, street_w - w + 1)), int(rng.integers(0, street_h - h + 1))
    low, high = _foot_range(scene, street_h)
    people = []
    for _ in range(int(rng.integers(1, cfg.max_people + 1))):
        if rng.random() < 0.5:  # walking in a lane, as in the videos
            foot = _lane_foot(rng, scene, 1 if rng.random() < 0.5 else -1, street_h)
        else:
            foot = rng.uniform(low, high)
        people.append(random_pedestrian(rng, scene, rng.uniform(x0 - 0.05 * w, x0 + 1.05 * w), foot))
    clutter = _occluders(rng, scene, street_w, street_h, cfg.video_distractors) + [
        random_distractor(rng, scene, rng.uniform(x0, x0 + w), rng.uniform(low, high))
        for _ in range(int(rng.integers(0, cfg.distractors + 1)))
    ]
    return render(scene, people, clutter, rng=rng, view=(x0, y0, w, h))


def _write_split(cfg: DemoConfig, split: str, count: int, root: Path) -> int:
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    w, h = cfg.image_width, cfg.image_height
    boxes = 0
    with (root / "attributes" / f"{split}.csv").open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["image", "box", "colour", "colour_name", "x1", "y1", "x2", "y2", "visible"])
        for i in tqdm(range(count), desc=f"demo {split}", unit="img", leave=False):
            image, placed = _still(cfg, _rng(cfg.seed, _SPLITS[split], i))
            name = f"{split}_{i:05d}"
            cv2.imwrite(str(images / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            lines = []
            for n, p in enumerate(placed):
                x1, y1, x2, y2 = p.box
                lines.append(
                    f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                )
                rows.writerow([f"{name}.jpg", n, p.colour, COLOUR_NAMES[p.colour], x1, y1, x2, y2, p.visible])
            (labels / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
            boxes += len(placed)
    return boxes


@dataclass(frozen=True)
class _Walker:
    person: Pedestrian
    start: int  # frame the walker enters
    x0: float
    speed: float  # pixels per frame, signed


def _walkers(rng: np.random.Generator, cfg: DemoConfig, scene: Scene) -> list[_Walker]:
    """People entering in turn from alternate sides, spread over the video, so some are always coming and going.

    Entry frames are spread evenly over -0.3 to 0.7 of the video (one slot each, jittered): some are mid-walk at
    the first frame, the last still reach the middle, and the scene neither empties nor crowds. Each direction
    keeps to its own lane, the far one rightwards and the near one leftwards, as on a pavement: people pass
    behind one another but never through one another at the same depth, which no camera would see.
    """
    walkers = []
    for i in range(cfg.video_people):
        direction = 1 if i % 2 == 0 else -1
        person = random_pedestrian(rng, scene, 0.0, _lane_foot(rng, scene, direction, cfg.video_height))
        speed = direction * person.height * rng.uniform(0.02, 0.04)
        margin = person.height * 0.4
        x0 = -margin if direction > 0 else cfg.video_width + margin
        slot = (i + rng.uniform(0.0, 1.0)) / cfg.video_people  # in [0, 1): this walker's share of the video
        start = int((slot - 0.3) * cfg.video_frames)
        walkers.append(_Walker(person, start, x0, speed))
    return walkers


def _occluders(rng: np.random.Generator, scene: Scene, width: int, height: int, count: int) -> list[Distractor]:
    """Clutter for the videos, no nearer than `_OCCLUDER_DEPTH` (a near car would hide a third of the frame for
    seconds); the first is always a car off the middle of the frame, so people walk behind it."""
    low = _foot_range(scene, height)[0]
    near = scene.horizon + _OCCLUDER_DEPTH * (height - scene.horizon)
    clutter = [random_distractor(rng, scene, rng.uniform(0, width), rng.uniform(low, near)) for _ in range(count)]
    if clutter:
        foot = scene.horizon + rng.uniform(0.5, _OCCLUDER_DEPTH) * (height - scene.horizon)
        x = rng.uniform(0.15, 0.35) * width
        clutter[0] = replace(clutter[0], kind="car", x=x, foot_y=foot, scale=scene.height_at(foot))
    return clutter


def _write_video(cfg: DemoConfig, index: int, root: Path) -> str:
    rng = _rng(cfg.seed, _VIDEO_STREAM, index)
    w, h = cfg.video_width, cfg.video_height
    scene = random_scene(rng, w, h)
    clutter = _occluders(rng, scene, w, h, cfg.video_distractors)
    walkers = _walkers(rng, cfg, scene)
    name = f"street_{index:02d}"
    writer = cv2.VideoWriter(
        str(root / "videos" / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), cfg.video_fps, (w, h)
    )
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v video on this machine")
    try:
        with (root / "videos" / f"{name}.csv").open("w", newline="") as handle:
            rows = csv.writer(handle)
            rows.writerow(["frame", "id", "left", "top", "width", "height", "colour", "colour_name", "visible"])
            for frame in tqdm(range(cfg.video_frames), desc=name, unit="frame", leave=False):
                people, ids = [], []
                for walker_id, walker in enumerate(walkers):
                    steps = frame - walker.start
                    x = walker.x0 + walker.speed * steps
                    if steps >= 0 and -walker.person.height < x < w + walker.person.height:
                        phase = walker.person.phase + abs(walker.speed) * steps / (0.12 * walker.person.height)
                        people.append(replace(walker.person, x=x, phase=phase))
                        ids.append(walker_id)
                image, placed = render(scene, people, clutter, rng=_rng(cfg.seed, _VIDEO_STREAM, index, frame))
                writer.write(image)
                for p in placed:
                    x1, y1, x2, y2 = p.box
                    rows.writerow(
                        [
                            frame,
                            ids[p.pedestrian],
                            x1,
                            y1,
                            x2 - x1,
                            y2 - y1,
                            p.colour,
                            COLOUR_NAMES[p.colour],
                            p.visible,
                        ]
                    )
    finally:
        writer.release()
    return f"{name}.mp4"


def _write_data_yaml(root: Path) -> None:
    data = {
        "path": ".",  # the folder of this file; LightWeight resolves it before handing it to YOLOv5
        "train": "images/train",
        "val": "images/val",
        "nc": 1,
        "names": {0: "person"},
        "colours": list(COLOUR_NAMES),  # upper-body colour classes in attributes/*.csv and videos/*.csv
    }
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def generate_demo_data(cfg: DemoConfig, out_dir: Path) -> DemoSummary:
    """Render the demo dataset and videos into `out_dir`, replacing it atomically."""
    counts = {"train": cfg.train_images, "val": cfg.val_images}
    with atomic_dir(out_dir) as root:
        (root / "attributes").mkdir()
        (root / "videos").mkdir()
        boxes = {split: _write_split(cfg, split, n, root) for split, n in counts.items()}
        videos = [_write_video(cfg, i, root) for i in range(cfg.videos)]
        _write_data_yaml(root)
        summary = {"images": counts, "boxes": boxes, "videos": videos, "frames_per_video": cfg.video_frames}
        write_json(root / "summary.json", summary)
    log.info("demo data in %s: %s images, %s boxes, %d videos", out_dir, counts, boxes, len(videos))
    return DemoSummary(out_dir, counts, boxes, videos, cfg.video_frames)


def _run(params: Params, root: Path) -> DemoSummary:
    return generate_demo_data(params.demo_data, Layout(root).demo_data)


STAGE = Stage(name="demo_data", run=_run, outs=("data/demo",))
