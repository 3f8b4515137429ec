"""Make stock YOLOv5 7.0.14 run on today's stack, offline, with checkpoints loaded safely."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import torch

from tasks.yolo.allowlist import CHECKPOINT_GLOBALS

__all__ = ["provide_fonts", "yolov5_runtime"]

# YOLOv5 downloads these from the internet on first plot; a bundled DejaVu Sans serves instead.
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def provide_fonts() -> Path:
    """Place a local font where YOLOv5 looks for Arial, so it never downloads one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        from yolov5.utils.general import CONFIG_DIR

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    config_dir = Path(CONFIG_DIR)
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in _FONT_NAMES:
        target = config_dir / name
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
    return config_dir


@contextmanager
def yolov5_runtime() -> Iterator[None]:
    """Run YOLOv5 code with fonts in place and `torch.load` limited to the checkpoint allow-list.

    YOLOv5 calls `torch.load` without `weights_only`, whose default is now True; inside this
    context those calls accept exactly the classes a YOLOv5 checkpoint is made of, nothing else.
    """
    provide_fonts()
    with warnings.catch_warnings(), torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module="yolov5")
        yield
