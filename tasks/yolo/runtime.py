"""Make stock YOLOv5 7.0.14 run on today's stack, offline, with checkpoints loaded safely."""

from __future__ import annotations

import pickle
import random
import shutil
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import torch

from tasks.yolo.allowlist import CHECKPOINT_GLOBALS

__all__ = [
    "allowlisted_loading",
    "nms_without_time_limit",
    "provide_fonts",
    "yolov5_random",
    "yolov5_runtime",
]

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


def _untimed(nms: Callable[..., Any]) -> Callable[..., Any]:
    """`nms` reading a clock that never advances: the same code, without its wall-clock cut-off."""
    frozen_clock = types.SimpleNamespace(time=lambda: 0.0)
    untimed = types.FunctionType(
        nms.__code__, {**nms.__globals__, "time": frozen_clock}, nms.__name__, nms.__defaults__
    )
    untimed.__kwdefaults__ = nms.__kwdefaults__
    untimed.__doc__, untimed.__module__, untimed.__qualname__ = nms.__doc__, nms.__module__, nms.__qualname__
    untimed.__wrapped__ = nms  # type: ignore[attr-defined]
    return untimed


def nms_without_time_limit() -> Callable[..., Any]:
    """Make every YOLOv5 module call a `non_max_suppression` without its time limit; return that function.

    YOLOv5 stops NMS once a batch has taken 0.5 + 0.05 * batch seconds of wall time and returns no boxes
    for the rest of the batch. On a busy CPU that silently changed val mAP, hence which epoch train.py
    keeps as best.pt and when it stops early, and dropped detections from whole frames of a video.
    """
    from yolov5.utils import general

    current = general.non_max_suppression
    original = getattr(current, "__wrapped__", current)
    untimed = current if current is not original else _untimed(original)
    # Modules that did `from yolov5.utils.general import non_max_suppression` hold their own reference.
    _rebind_in_yolov5("non_max_suppression", original, untimed)
    return untimed


def _rebind_in_yolov5(attribute: str, current: object, replacement: object) -> None:
    """Every loaded YOLOv5 module whose `attribute` is `current` gets `replacement` instead."""
    for name, module in list(sys.modules.items()):
        if name.startswith("yolov5") and getattr(module, attribute, None) is current:
            setattr(module, attribute, replacement)


# YOLOv5 draws its augmentations from the `random` module's shared generator, which other threads of the process
# draw from too: Prefect's log and event workers jitter their waits with random.uniform. In a flow, a training run
# then depended on when those threads woke (two identical runs gave different weights; a DVC stage, alone in its
# process, did not). YOLOv5's modules get a generator of their own instead; its init_seeds seeds it as before.
_YOLOV5_RANDOM = random.Random()


def yolov5_random() -> random.Random:
    """Give every loaded YOLOv5 module that uses the `random` module a generator no other code draws from."""
    _rebind_in_yolov5("random", random, _YOLOV5_RANDOM)
    return _YOLOV5_RANDOM


# torch's `safe_globals` context removes its entries on exit, even while an outer context or another thread
# still loads: so one shared context is entered by the first user and left by the last.
_ALLOWLIST = torch.serialization.safe_globals(CHECKPOINT_GLOBALS)
_allowlist_lock = threading.Lock()
_allowlist_users = 0


@contextmanager
def _allowlist_entered() -> Iterator[None]:
    global _allowlist_users
    with _allowlist_lock:
        if _allowlist_users == 0:
            _ALLOWLIST.__enter__()
        _allowlist_users += 1
    try:
        yield
    finally:
        with _allowlist_lock:
            _allowlist_users -= 1
            if _allowlist_users == 0:
                _ALLOWLIST.__exit__(None, None, None)


@contextmanager
def allowlisted_loading() -> Iterator[None]:
    """`torch.load` limited to the checkpoint allow-list (on top of torch's own `weights_only` set); nests."""
    with warnings.catch_warnings(), _allowlist_entered():
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        # Pickles of other protocols fail or are refused with our own message; the warning adds nothing.
        warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
        yield


@contextmanager
def yolov5_runtime() -> Iterator[None]:
    """Run YOLOv5 code with fonts in place, NMS without its time limit, a random generator of its own, and
    `torch.load` limited to the allow-list.

    YOLOv5 calls `torch.load` without `weights_only`, whose default is now True; inside this
    context those calls accept exactly the classes a YOLOv5 checkpoint is made of, nothing else,
    and a refusal is reported in LightWeight's words (torch's advises loading the file unsafely).
    """
    provide_fonts()
    with allowlisted_loading():
        warnings.filterwarnings("ignore", category=FutureWarning, module="yolov5")
        nms_without_time_limit()
        yolov5_random()
        try:
            yield
        except pickle.UnpicklingError as error:
            from tasks.yolo.checkpoint import refusal

            raise refusal(None, error) from None
