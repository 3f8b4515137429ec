"""The YOLOv5 adapter: the only code in LightWeight that imports the `yolov5` package."""

from tasks.yolo.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    LayerWidth,
    UnsafeCheckpointError,
    count_gflops,
    describe_checkpoint,
    detection_model,
    layer_widths,
    load_checkpoint,
)
from tasks.yolo.runtime import provide_fonts, yolov5_runtime
from tasks.yolo.training import ValMetrics, default_hyp, train, validate

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "LayerWidth",
    "UnsafeCheckpointError",
    "ValMetrics",
    "count_gflops",
    "default_hyp",
    "describe_checkpoint",
    "detection_model",
    "layer_widths",
    "load_checkpoint",
    "provide_fonts",
    "train",
    "validate",
    "yolov5_runtime",
]
