"""Batch-1 CPU latency of YOLOv5 checkpoints on PyTorch, ONNX Runtime and OpenVINO, side by side in one process.

Each checkpoint is exported as stage `export` exports it, then every (checkpoint, runtime) pair is timed on the
same input in interleaved rounds, best of N (tasks/timing.py), at each thread count in turn.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tasks.runtimes import ExportError, open_session
from tasks.timing import min_call_times, torch_threads
from tasks.yolo.export import export_model, export_onnx, export_openvino

__all__ = ["ALL_RUNTIMES", "AnyRuntime", "Latencies", "latency_matrix", "runtime_files"]

AnyRuntime = Literal["torch", "onnxruntime", "openvino", "onnxruntime_int8"]
ALL_RUNTIMES: tuple[AnyRuntime, ...] = ("torch", "onnxruntime", "openvino", "onnxruntime_int8")
Latencies = dict[int, dict[tuple[str, AnyRuntime], float]]  # {threads: {(model, runtime): seconds}}


def runtime_files(
    checkpoints: dict[str, Path],
    runtimes: Sequence[AnyRuntime],
    out: Path,
    *,
    imgsz: int,
    opset: int,
    dynamic: bool,
    simplify: bool,
    int8: dict[str, Path] | None = None,
) -> dict[str, dict[AnyRuntime, Path]]:
    """{model: {runtime: file}}: "torch" is the checkpoint itself, the others exports of it written under `out`.

    INT8 models are not made here (they need calibration, stage export does it): `int8` gives them by model name,
    and a model without one has no onnxruntime_int8 entry.
    """
    files: dict[str, dict[AnyRuntime, Path]] = {}
    for name, weights in checkpoints.items():
        files[name] = {"torch": weights}
        if "onnxruntime" in runtimes or "openvino" in runtimes:
            onnx_file = out / f"{name}.onnx"
            export_onnx(weights, onnx_file, imgsz=imgsz, opset=opset, dynamic=dynamic, simplify=simplify)
            files[name]["onnxruntime"] = onnx_file
            if "openvino" in runtimes:
                files[name]["openvino"] = export_openvino(onnx_file, out / f"{name}_openvino", name)
        if "onnxruntime_int8" in runtimes and name in (int8 or {}):
            files[name]["onnxruntime_int8"] = (int8 or {})[name]
    return files


def _runner(
    file: Path, runtime: AnyRuntime, threads: int, torch_model: Callable[[Path], torch.nn.Module]
) -> Callable[[np.ndarray], object]:
    """One forward pass of a float32 NCHW batch on `runtime` with `threads` CPU threads."""
    if runtime != "torch":
        return open_session(file, runtime, threads)  # a session's thread count is fixed when it opens
    model = torch_model(file)

    def run(image: np.ndarray) -> object:
        with torch.inference_mode(), torch_threads(threads):
            return model(torch.from_numpy(image))

    return run


def latency_matrix(
    files: dict[str, dict[AnyRuntime, Path]], *, imgsz: int, threads: Sequence[int], repeats: int
) -> Latencies:
    """Best seconds of one batch-1 pass at `imgsz` px per (model, runtime), for each thread count."""
    if not files or any(t < 1 for t in threads):
        raise ExportError(f"latency_matrix needs models and thread counts >= 1, got {list(files)} and {threads}")
    image = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    matrix: Latencies = {}
    torch_model = functools.cache(export_model)  # loaded and fused once, timed at each thread count
    for count in threads:
        runners = {
            (name, runtime): _runner(file, runtime, count, torch_model)
            for name, by_runtime in files.items()
            for runtime, file in by_runtime.items()
        }
        matrix[count] = min_call_times({key: (lambda run=run: run(image)) for key, run in runners.items()}, repeats)
    return matrix
