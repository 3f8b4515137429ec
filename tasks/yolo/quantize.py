"""INT8 post-training static quantization of an exported YOLOv5 ONNX model, with ONNX Runtime's quantize_static.

QDQ format, weights per channel: ONNX Runtime and OpenVINO both run such a file as INT8. The Detect head (its
last convolutions and the box decoding after them) stays in FP32: box coordinates in pixels and objectness
logits are what collapses naive INT8 YOLO.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from torch import nn

from tasks.runtimes import ExportError, import_package

__all__ = ["detect_head_scope", "quantize_int8"]


def detect_head_scope(model: nn.Module) -> str:
    """The ONNX node-name prefix of the model's Detect module, e.g. '/model.24/' (torch.onnx names by scope)."""
    last = len(model.model) - 1  # YOLOv5's Detect is always the last layer of the yaml
    if type(model.model[last]).__name__ != "Detect":
        raise ExportError(f"the last layer is {type(model.model[last]).__name__}, not YOLOv5's Detect")
    return f"/model.{last}/"


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over an NCHW float32 array, one image per batch."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self._batches: Iterator[np.ndarray] = (images[i : i + 1] for i in range(len(images)))
        self._input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}

    def rewind(self) -> None:  # part of the protocol; quantize_static reads the data once
        raise NotImplementedError


def quantize_int8(onnx_file: Path, out: Path, *, calibration: np.ndarray, keep_fp32_scope: str) -> Path:
    """Write `out`: `onnx_file` quantized to INT8 (QDQ), activation ranges from `calibration` images (MinMax).

    Nodes whose names start with `keep_fp32_scope` stay FP32. The YOLOv5 metadata (stride, names) is carried
    over, so stock YOLOv5 loads the result like the FP32 export. Same inputs give the same bytes.
    """
    onnx = import_package("onnx")
    quantization = import_package("onnxruntime.quantization")
    if len(calibration) == 0:
        raise ExportError(f"{onnx_file}: no calibration images for INT8 quantization")
    source = onnx.load(str(onnx_file))
    kept = [node.name for node in source.graph.node if node.name.startswith(keep_fp32_scope)]
    if not kept:
        raise ExportError(f"{onnx_file}: no node under {keep_fp32_scope!r}: not a YOLOv5 export with its Detect head")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lightweight-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference and graph optimisation first, as ONNX Runtime advises; symbolic shapes cannot be
        # inferred through the dynamic grid of YOLOv5's Detect, and the ONNX ones suffice for quantization.
        quantization.shape_inference.quant_pre_process(str(onnx_file), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared),
            str(out),
            _Batches(calibration, source.graph.input[0].name),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=kept,
            calibrate_method=quantization.CalibrationMethod.MinMax,
        )
    quantized = onnx.load(str(out))
    present = {prop.key for prop in quantized.metadata_props}
    for prop in source.metadata_props:  # stride and names, as YOLOv5's export.py writes them
        if prop.key in present:
            continue
        entry = quantized.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    onnx.save(quantized, str(out))
    return out
