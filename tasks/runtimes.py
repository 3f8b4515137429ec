"""Exported YOLOv5 detectors on ONNX Runtime and OpenVINO, with detect.py's pre- and post-processing.

`open_session` runs the raw network (what the export's equality check and the benchmarks time);
`ExportedDetector` is `tasks.yolo.inference.Detector` on such a session: detect.py's letterbox,
non_max_suppression and scale_boxes (tasks/letterbox.py), so its boxes are those of the torch Detector.
Nothing here imports torch or yolov5: a deployed detector runs on the runtime, NumPy and OpenCV alone.
"""

from __future__ import annotations

import ast
import ctypes
import functools
import importlib
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import yaml

from tasks.errors import LightweightError
from tasks.letterbox import check_img_size, letterbox, non_max_suppression, scale_boxes

__all__ = [
    "FORMAT_RUNTIME",
    "PIP_PACKAGES",
    "RUNTIMES",
    "ExportError",
    "ExportedDetector",
    "ExportedModel",
    "Runtime",
    "Session",
    "import_package",
    "open_session",
    "read_exported",
]

# onnxruntime_int8: an INT8 (QDQ) ONNX model on ONNX Runtime; its outputs approximate the checkpoint's
Runtime = Literal["onnxruntime", "onnxruntime_int8", "openvino"]
RUNTIMES: tuple[Runtime, ...] = ("onnxruntime", "onnxruntime_int8", "openvino")
# the runtime each export format (tasks.layout.export_paths) runs on
FORMAT_RUNTIME: dict[str, Runtime] = {"onnx": "onnxruntime", "openvino": "openvino", "int8": "onnxruntime_int8"}
PIP_PACKAGES = {"onnx": "onnx", "onnxruntime": "onnxruntime", "openvino": "openvino", "onnxslim": "onnxslim"}


class ExportError(LightweightError, ValueError):
    """An export that cannot be made, loaded or trusted: a missing package, a bad file, outputs that differ."""


def import_package(name: str) -> ModuleType:
    """Import an export or runtime package, or fail naming what to `pip install`."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        package = PIP_PACKAGES.get(name, name)
        raise ExportError(f"{name} is not installed: pip install {package} ({error})") from None


@dataclass(frozen=True)
class ExportedModel:
    """An exported YOLOv5 model on disk: its runtime file and the stride and class names YOLOv5 stored with it."""

    path: Path  # the .onnx or the IR's .xml
    stride: int
    names: dict[int, str]


def _parse_names(value: str, source: Path) -> dict[int, str]:
    try:
        names = ast.literal_eval(value)  # YOLOv5 writes str(dict) and reads it back with eval(); literals suffice
    except (ValueError, SyntaxError):
        raise ExportError(f"{source}: unreadable 'names' metadata {value[:80]!r}") from None
    names = dict(enumerate(names)) if isinstance(names, list | tuple) else names
    return {int(k): str(v) for k, v in names.items()}


def _openvino_xml(path: Path) -> Path:
    """The IR's .xml: the path itself, or the one .xml inside an IR folder (YOLOv5's layout)."""
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if len(found) != 1:
            raise ExportError(f"{path}: expected one OpenVINO .xml in the folder, found {len(found)}")
        return found[0]
    return path


def read_exported(path: Path | str) -> ExportedModel:
    """Locate an exported model (.onnx, an IR .xml or its folder) and read its YOLOv5 metadata."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: exported model not found")
    if path.suffix == ".onnx":
        onnx = import_package("onnx")
        try:
            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as error:  # protobuf raises its own types for bytes it cannot parse
            raise ExportError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    else:
        xml = _openvino_xml(path)
        if xml.suffix != ".xml" or not xml.with_suffix(".bin").is_file():
            raise ExportError(f"{path}: not an ONNX model or an OpenVINO IR (.xml + .bin)")
        metadata = xml.with_suffix(".yaml")  # where YOLOv5's OpenVINO export keeps stride and names
        meta = yaml.safe_load(metadata.read_text()) if metadata.is_file() else {}
        meta = {k: str(v) for k, v in (meta or {}).items()}
        path = xml
    if "stride" not in meta or "names" not in meta:
        raise ExportError(f"{path}: no YOLOv5 stride/names metadata: not exported from a YOLOv5 detection model")
    return ExportedModel(path, int(meta["stride"]), _parse_names(meta["names"], path))


class Session:
    """An exported model on one runtime: a float32 NCHW batch in [0, 1] in, (batch, anchors, 5 + nc) out.

    With `sessions` > 1 it holds that many independent sessions of `threads` threads each and splits every
    batch between them, run side by side; a static export (fixed batch) gets its frames a batch at a time.
    """

    input_shape: tuple[int | None, ...]  # None where the export left the dimension free
    sessions: int

    def _run_parallel(self, parts: list[np.ndarray]) -> list[np.ndarray]:
        """Run up to `sessions` parts at once, one per session."""
        raise NotImplementedError

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        fixed = self.input_shape[0]
        if fixed is not None:
            parts = [batch[i : i + fixed] for i in range(0, len(batch), fixed)]
        else:
            parts = [part for part in np.array_split(batch, min(self.sessions, len(batch))) if len(part)]
        outputs = []
        for i in range(0, len(parts), self.sessions):
            outputs += self._run_parallel(parts[i : i + self.sessions])
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


class _OnnxRuntimeSession(Session):
    """ONNX Runtime on the CPU: `sessions` InferenceSessions of `threads` threads, on Python threads side by side."""

    def __init__(self, path: Path, threads: int, sessions: int) -> None:
        ort = import_package("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one chain of convolutions: nothing to run side by side
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._sessions = [
                ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]) for _ in range(sessions)
            ]
        except Exception as error:  # ORT raises its own Fail/InvalidGraph types
            raise ExportError(f"{path}: ONNX Runtime cannot load it ({type(error).__name__}: {error})") from None
        first = self._sessions[0].get_inputs()[0]
        self._input = first.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in first.shape)
        self.sessions = sessions
        self._pool = ThreadPoolExecutor(max_workers=sessions) if sessions > 1 else None  # ORT releases the GIL

    def _run_one(self, session: Any, part: np.ndarray) -> np.ndarray:
        return session.run(None, {self._input: part})[0]

    def _run_parallel(self, parts: list[np.ndarray]) -> list[np.ndarray]:
        if self._pool is None or len(parts) == 1:
            return [self._run_one(self._sessions[0], part) for part in parts]
        return list(self._pool.map(self._run_one, self._sessions, parts))


class _OpenVinoSession(Session):
    """OpenVINO on the CPU in FP32, compiled once per input shape (static shapes run fastest).

    `sessions` > 1 are OpenVINO streams of one compiled model, run with its own async requests: calling
    `infer` from two Python threads at once can deadlock in OpenVINO's Python bindings.
    """

    def __init__(self, path: Path, threads: int, sessions: int) -> None:
        ov = import_package("openvino")
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(path))
        except Exception as error:  # OpenVINO raises RuntimeError subclasses for unreadable files
            raise ExportError(f"{path}: OpenVINO cannot read it ({type(error).__name__}: {error})") from None
        self._config = {
            "NUM_STREAMS": sessions,
            "INFERENCE_NUM_THREADS": threads * sessions,  # shared out evenly between the streams
            "INFERENCE_PRECISION_HINT": "f32",  # never bf16/f16 behind our back: the export was proven in FP32
        }
        shape = self._model.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in shape)
        self.sessions = sessions
        self._requests: dict[tuple[int, ...], list[Any]] = {}

    def _requests_for(self, shape: tuple[int, ...]) -> list[Any]:
        if shape not in self._requests:
            model = self._model.clone()
            if None in self.input_shape:
                model.reshape({model.inputs[0]: list(shape)})
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._requests[shape] = [compiled.create_infer_request() for _ in range(self.sessions)]
        return self._requests[shape]

    def _run_parallel(self, parts: list[np.ndarray]) -> list[np.ndarray]:
        with _calling_threads_signal_stack_kept():
            started = []
            for i, part in enumerate(parts):
                request = self._requests_for(tuple(part.shape))[i]
                request.start_async({0: np.ascontiguousarray(part)}, share_inputs=False)
                started.append(request)
            outputs = []
            for request in started:
                request.wait()
                outputs.append(request.get_output_tensor(0).data.copy())
        return outputs


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, opened once: the signal-stack guard runs on every OpenVINO batch."""
    return ctypes.CDLL(None, use_errno=True)


@contextmanager
def _calling_threads_signal_stack_kept() -> Iterator[None]:
    """Give the calling thread its alternate signal stack back after an OpenVINO call.

    OpenVINO's CPU plugin installs a signal stack of its own on the thread that runs a model and, when the model is
    freed, puts back the one it found. Two models freed in the order they came (the latency matrix) leave the thread
    the first model's stack, already unmapped. Python's signal handlers run on it: the next signal (SIGCHLD from a
    loader worker or a subprocess) killed the process with SIGSEGV, and forked loader workers aborted.
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = _libc()
    saved = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(saved), None)


def open_session(path: Path | str, runtime: Runtime, threads: int = 1, sessions: int = 1) -> Session:
    """An exported model (.onnx, IR .xml or IR folder) ready to run on `runtime` with `threads` CPU threads."""
    if threads < 1 or sessions < 1:
        raise ExportError(f"threads and sessions must be at least 1, got {threads} and {sessions}")
    model = read_exported(path)
    if runtime in ("onnxruntime", "onnxruntime_int8"):
        if model.path.suffix != ".onnx":
            raise ExportError(f"{path}: ONNX Runtime runs .onnx models; use runtime openvino for an IR")
        return _OnnxRuntimeSession(model.path, threads, sessions)
    if runtime == "openvino":
        return _OpenVinoSession(model.path, threads, sessions)  # reads an IR, or an .onnx directly
    raise ExportError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")


class ExportedDetector:
    """`Detector` on an exported model: BGR frames in, boxes (x1, y1, x2, y2, conf, class) in frame pixels out.

    `threads` CPU threads in all. `split` (the default) runs them as `threads` one-thread sessions, each on its
    share of every batch, side by side; otherwise one session uses them all. On 2 shared cores the split ran
    sampled detection 1.1-1.5x faster on both runtimes (benchmarks/runtime_speed.py): a one-thread session never
    waits at a barrier for a thread the neighbours' load has descheduled. A batch of one uses one session only.
    """

    def __init__(
        self,
        model: Path,
        runtime: Runtime,
        imgsz: int,
        conf: float,
        iou: float,
        max_det: int,
        classes: tuple[int, ...] | None = None,
        *,
        threads: int = 2,
        split: bool = True,
    ) -> None:
        exported = read_exported(model)
        self.runtime = runtime
        self.names = exported.names
        self.stride = exported.stride
        self._session = open_session(model, runtime, 1, threads) if split else open_session(model, runtime, threads)
        _, _, height, width = self._session.input_shape
        self._static_size = (height, width) if height is not None and width is not None else None
        self.imgsz = check_img_size(imgsz, self.stride)
        if self._static_size is not None and max(self._static_size) != self.imgsz:
            raise ExportError(f"{model}: exported for {height}x{width} inputs, cannot run at imgsz {self.imgsz}")
        self._thresholds = (conf, iou, max_det, list(classes) if classes is not None else None)

    def letterbox(self, frame: np.ndarray) -> np.ndarray:
        """One frame resized and padded as detect.py does it for this export: CHW, RGB, uint8."""
        if self._static_size is None:  # as the torch Detector: padded only to the stride
            image = letterbox(frame, self.imgsz, stride=self.stride, auto=True)
        else:  # detect.py on a static export: padded to its exact input size
            image = letterbox(frame, self._static_size, stride=self.stride, auto=False)
        return np.ascontiguousarray(image.transpose((2, 0, 1))[::-1])

    def __call__(self, letterboxed: list[np.ndarray], frame_shape: tuple[int, ...]) -> list[np.ndarray]:
        """Detections per frame as float32 arrays of shape (n, 6): x1, y1, x2, y2, conf, class."""
        batch = np.stack(letterboxed).astype(np.float32) / np.float32(255)  # the torch Detector's arithmetic
        conf, iou, max_det, classes = self._thresholds
        results = []
        for det in non_max_suppression(self._session(batch), conf, iou, classes, max_det=max_det):
            if len(det):
                det[:, :4] = scale_boxes(batch.shape[2:], det[:, :4], frame_shape).round()
            results.append(det)
        return results
