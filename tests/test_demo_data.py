import csv
import filecmp
from pathlib import Path

import cv2
import numpy as np
import yaml

from tasks.demo_data import generate_demo_data
from tasks.synthetic import COLOUR_NAMES
from tests.conftest import TINY_DEMO


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_layout_is_a_yolov5_dataset_with_videos(tiny_demo: Path):
    data = yaml.safe_load((tiny_demo / "data.yaml").read_text())
    assert data["names"] == {0: "person"} and data["nc"] == 1
    assert data["colours"] == list(COLOUR_NAMES) and len(COLOUR_NAMES) >= 4
    for split, count in (("train", TINY_DEMO.train_images), ("val", TINY_DEMO.val_images)):
        assert len(list((tiny_demo / "images" / split).glob("*.jpg"))) == count
        assert len(list((tiny_demo / "labels" / split).glob("*.txt"))) == count
    assert all_files(tiny_demo / "videos") == ["street_00.csv", "street_00.mp4"]


def test_labels_are_normalised_boxes_with_one_colour_attribute_each(tiny_demo: Path):
    rows = list(csv.DictReader((tiny_demo / "attributes" / "train.csv").open()))
    label_lines = [
        line.split()
        for path in sorted((tiny_demo / "labels" / "train").glob("*.txt"))
        for line in path.read_text().splitlines()
    ]
    assert len(rows) == len(label_lines) > 0
    for cls, *xywh in label_lines:
        assert cls == "0"
        assert all(0.0 <= float(v) <= 1.0 for v in xywh)
    assert {row["colour_name"] for row in rows} <= set(COLOUR_NAMES)
    assert all(int(row["x2"]) > int(row["x1"]) and int(row["y2"]) > int(row["y1"]) for row in rows)


def test_video_has_every_frame_and_ground_truth_inside_it(tiny_demo: Path):
    capture = cv2.VideoCapture(str(tiny_demo / "videos" / "street_00.mp4"))
    frames = 0
    while capture.grab():
        frames += 1
    assert frames == TINY_DEMO.video_frames
    assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == TINY_DEMO.video_width
    rows = list(csv.DictReader((tiny_demo / "videos" / "street_00.csv").open()))
    assert rows, "pedestrians should cross the demo video"
    for row in rows:
        assert 0 <= int(row["frame"]) < TINY_DEMO.video_frames
        assert int(row["left"]) >= 0 and int(row["left"]) + int(row["width"]) <= TINY_DEMO.video_width
        assert int(row["top"]) + int(row["height"]) <= TINY_DEMO.video_height


def test_same_seed_gives_identical_files(tiny_demo: Path, tmp_path: Path):
    again = generate_demo_data(TINY_DEMO, tmp_path / "again").root
    assert all_files(again) == all_files(tiny_demo)
    _, mismatch, errors = filecmp.cmpfiles(tiny_demo, again, all_files(tiny_demo), shallow=False)
    assert mismatch == [] and errors == []


def test_another_seed_gives_other_images(tiny_demo: Path, tmp_path: Path):
    other = generate_demo_data(TINY_DEMO.model_copy(update={"seed": TINY_DEMO.seed + 1}), tmp_path / "other").root
    first = cv2.imread(str(tiny_demo / "images" / "train" / "train_00000.jpg"))
    second = cv2.imread(str(other / "images" / "train" / "train_00000.jpg"))
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 10


def test_regenerating_replaces_the_folder_whole(tiny_demo: Path, tmp_path: Path):
    target = tmp_path / "demo"
    generate_demo_data(TINY_DEMO.model_copy(update={"train_images": 3, "videos": 0}), target)
    generate_demo_data(TINY_DEMO.model_copy(update={"train_images": 2, "videos": 0}), target)
    assert len(list((target / "images" / "train").glob("*.jpg"))) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
