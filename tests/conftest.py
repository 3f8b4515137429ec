"""Shared fixtures: a tiny demo dataset and a real YOLOv5 train.py checkpoint trained on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.config import BaseConfig, DemoConfig

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, like the machines this runs on

REPO = Path(__file__).resolve().parents[1]


def stock_yaml(name: str) -> Path:
    """A model yaml shipped with the yolov5 package, e.g. yolov5n.yaml."""
    import yolov5

    return Path(yolov5.__file__).parent / "models" / name


TINY_DEMO = DemoConfig(
    seed=7, image_width=128, image_height=128, train_images=12, val_images=6, max_people=3, distractors=2,
    videos=1, video_frames=12, video_width=160, video_height=96, video_fps=5, video_people=3,
)  # fmt: skip
TINY_BASE = BaseConfig(epochs=1, imgsz=64, batch=4, workers=0)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.demo_data import generate_demo_data

    return generate_demo_data(TINY_DEMO, tmp_path_factory.mktemp("demo") / "demo").root


@pytest.fixture(scope="session")
def trained_checkpoint(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt exactly as YOLOv5's train.py leaves it (nc=1, 'person')."""
    from tasks.dataset import resolved_dataset_yaml
    from tasks.yolo import train

    run_dir = tmp_path_factory.mktemp("train")
    data = resolved_dataset_yaml(tiny_demo / "data.yaml", run_dir)
    return train(
        data=data, cfg="yolov5n.yaml", weights="", run_dir=run_dir, epochs=1, imgsz=64, batch=4, workers=0,
        patience=0, seed=0,
    )  # fmt: skip
