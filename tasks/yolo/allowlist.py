"""The classes and functions a YOLOv5 checkpoint is made of: the `torch.load` allow-list."""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["CHECKPOINT_GLOBALS", "allowed_global_names"]


def _stack_without_source(context: int = 1) -> list[inspect.FrameInfo]:
    """inspect.stack() with file names and line numbers but no source lines."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, None, None))
        frame = frame.f_back
    return frames


@contextmanager
def _quick_stack() -> Iterator[None]:
    """yolov5.utils.general calls inspect.stack() twice at import only to compare two file names, and inspect.stack
    looks up the module and source of every frame: half a second of each stage process here (benchmarks/imports.py)."""
    stack = inspect.stack
    inspect.stack = _stack_without_source
    try:
        yield
    finally:
        inspect.stack = stack


def _yolov5_modules() -> list[type]:
    with warnings.catch_warnings(), _quick_stack():
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        from yolov5.models import common, experimental, yolo

    return [
        # detection/segmentation/classification models and their heads
        yolo.DetectionModel,
        yolo.SegmentationModel,
        yolo.ClassificationModel,
        yolo.Detect,
        yolo.Segment,
        # building blocks the stock yamls use
        common.Conv,
        common.DWConv,
        common.DWConvTranspose2d,
        common.Bottleneck,
        common.BottleneckCSP,
        common.CrossConv,
        common.C3,
        common.C3x,
        common.C3TR,
        common.C3SPP,
        common.C3Ghost,
        common.SPP,
        common.SPPF,
        common.Focus,
        common.GhostConv,
        common.GhostBottleneck,
        common.Contract,
        common.Expand,
        common.Concat,
        common.Proto,
        common.Classify,
        common.TransformerLayer,
        common.TransformerBlock,
        experimental.Sum,
        experimental.MixConv2d,
    ]


_TORCH_MODULES: list[type] = [
    nn.Sequential,
    nn.ModuleList,
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.BatchNorm2d,
    nn.SiLU,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Hardswish,
    nn.Identity,
    nn.Upsample,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Linear,
    nn.Flatten,
    nn.MultiheadAttention,
    nn.modules.linear.NonDynamicallyQuantizableLinear,
]

# numpy scalars/arrays appear in `best_fitness` and in some `opt` values
_NUMPY: list[Callable[..., Any] | type] = [
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.float64)),
    type(np.dtype(np.float32)),
    type(np.dtype(np.int64)),
]


def _aliases(objects: list[type]) -> list[tuple[Any, str]]:
    """The same classes under the module paths of an ultralytics/yolov5 git checkout (`models.yolo...`)."""
    return [(obj, f"{obj.__module__.removeprefix('yolov5.')}.{obj.__qualname__}") for obj in objects]


def _build() -> list[Any]:
    yolov5_modules = _yolov5_modules()
    from yolov5.models import yolo

    numpy_legacy = [
        (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    ]
    model_alias = [
        (yolo.DetectionModel, "models.yolo.Model"),
        (yolo.DetectionModel, "yolov5.models.yolo.Model"),
    ]
    return [
        *yolov5_modules,
        *_aliases(yolov5_modules),
        *model_alias,
        *_TORCH_MODULES,
        *_NUMPY,
        *numpy_legacy,
        torch._utils._rebuild_parameter,
        set,
    ]


CHECKPOINT_GLOBALS: list[Any] = _build()


def _pickle_name(entry: Any) -> str:
    """The `module.qualname` a pickle uses for an allow-list entry (an alias tuple carries its own name)."""
    if isinstance(entry, tuple):
        return entry[1]
    return f"{entry.__module__}.{entry.__qualname__}"


def allowed_global_names() -> frozenset[str]:
    """Every global `torch.load(weights_only=True)` accepts under the allow-list: torch's own and ours."""
    from torch import _weights_only_unpickler

    return frozenset(_weights_only_unpickler._get_allowed_globals()) | {_pickle_name(g) for g in CHECKPOINT_GLOBALS}
