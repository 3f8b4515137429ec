"""Loading YOLOv5 checkpoints safely and describing what they hold."""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tasks.errors import LightweightError
from tasks.pickles import is_refusal, pickle_globals, torch_refusal_detail
from tasks.yolo.allowlist import allowed_global_names
from tasks.yolo.runtime import allowlisted_loading

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "LayerWidth",
    "UnsafeCheckpointError",
    "count_gflops",
    "describe_checkpoint",
    "detection_model",
    "layer_widths",
    "load_checkpoint",
    "refusal",
    "unsafe_globals",
]


class CheckpointError(LightweightError, ValueError):
    """A file that is not a usable YOLOv5 detection checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that references something outside the YOLOv5 allow-list; nothing in it was run."""


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a YOLOv5 checkpoint dict with `weights_only=True` and the YOLOv5 allow-list."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    if not zipfile.is_zipfile(path) and _looks_truncated_zip(path):
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (incomplete zip archive)")
    try:
        with allowlisted_loading():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bytes it cannot parse
        raise refusal(path, error) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        kind = type(ckpt).__name__
        raise CheckpointError(f"{path}: not a YOLOv5 checkpoint (expected a dict with 'model', got {kind})")
    return ckpt


def refusal(path: Path | None, error: Exception) -> CheckpointError:
    """LightWeight's error for a file `torch.load(weights_only=True)` did not load, in our words.

    torch's own text advises re-running with the unsafe loader; it is never passed on. Refused globals
    are named from the file itself, so the message does not depend on how far torch's unpickler got
    (a blocked module such as `posix`, an opcode it does not support, a global nested deep in the object).
    Without a `path` (a load inside YOLOv5's code) they are named from torch's message.
    """
    where = path if path is not None else "a checkpoint YOLOv5 loaded"
    unsafe = unsafe_globals(path) if path is not None else []
    if unsafe:
        also = f" It also references {', '.join(unsafe[1:])}." if len(unsafe) > 1 else ""
        return UnsafeCheckpointError(
            f"{where}: refused to load: it references code outside the YOLOv5 checkpoint allow-list "
            f"(Unsupported global: GLOBAL {unsafe[0]}).{also} Nothing in the file was executed."
        )
    detail = torch_refusal_detail(error)
    if is_refusal(detail):
        return UnsafeCheckpointError(
            f"{where}: refused to load: the YOLOv5 checkpoint allow-list does not permit it ({detail}). "
            "Nothing in the file was executed."
        )
    return CheckpointError(f"{where}: not a readable torch checkpoint ({detail})")


def unsafe_globals(path: Path | str) -> list[str]:
    """The globals a pickle file references outside the allow-list, in file order, found without running any.

    Named as torch names them: `module.name`, builtins bare (`getattr`), `os.system` as `posix.system`.
    """
    allowed = allowed_global_names()
    return [name for name in pickle_globals(path) if name not in allowed and f"builtins.{name}" not in allowed]


def _looks_truncated_zip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def detection_model(ckpt: dict[str, Any], path: Path | str = "checkpoint") -> nn.Module:
    """The float32 detection network of a checkpoint (EMA weights when present, as YOLOv5 uses)."""
    from yolov5.models.yolo import ClassificationModel, DetectionModel, SegmentationModel

    model = ckpt.get("ema") or ckpt["model"]
    if isinstance(model, ClassificationModel):
        raise CheckpointError(f"{path}: a YOLOv5 classification model, not a detection model")
    if isinstance(model, SegmentationModel):
        raise CheckpointError(f"{path}: a YOLOv5 segmentation model; only detection models are supported")
    if not isinstance(model, DetectionModel):
        raise CheckpointError(f"{path}: 'model' is a {type(model).__name__}, not a YOLOv5 DetectionModel")
    return model.float().eval()


@dataclass(frozen=True)
class LayerWidth:
    index: int
    module: str
    out_channels: int


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    nc: int
    names: dict[int, str]
    parameters: int
    gflops_640: float
    epoch: int
    has_ema: bool
    has_optimizer: bool
    yaml_file: str
    date: str | None
    layers: list[LayerWidth]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _names(model: nn.Module) -> dict[int, str]:
    names = getattr(model, "names", None) or {}
    if isinstance(names, list | tuple):
        names = dict(enumerate(names))
    return {int(k): str(v) for k, v in names.items()}


def count_gflops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> float:
    """GFLOPs of one forward pass at `imgsz` (or (height, width)); YOLOv5's convention: 2 x multiply-accumulates."""
    parameter = next(model.parameters())
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    image = torch.zeros(1, 3, height, width, dtype=parameter.dtype, device=parameter.device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(image)
    return counter.get_total_flops() / 1e9


def layer_widths(model: nn.Module, imgsz: int = 64) -> list[LayerWidth]:
    """Output channels of every top-level layer, traced with one small forward pass."""
    widths: dict[int, int] = {}

    def record(index: int):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            outputs = output if isinstance(output, list | tuple) else [output]
            widths[index] = sum(o.shape[1] for o in outputs if isinstance(o, torch.Tensor) and o.dim() >= 2)

        return hook

    detect = model.model[-1]
    handles = [m.register_forward_hook(record(i)) for i, m in enumerate(model.model[:-1])]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, imgsz, imgsz))
    finally:
        for handle in handles:
            handle.remove()
    layers = [LayerWidth(i, type(m).__name__, widths[i]) for i, m in enumerate(model.model[:-1])]
    head_width = detect.m[0].out_channels  # na * (nc + 5), the same at every level
    layers.append(LayerWidth(len(model.model) - 1, type(detect).__name__, head_width))
    return layers


def describe_checkpoint(path: Path | str) -> CheckpointInfo:
    """What a checkpoint is: classes, size, cost and training state, all read from the file itself."""
    ckpt = load_checkpoint(path)
    model = detection_model(ckpt, path)
    epoch = ckpt.get("epoch")
    return CheckpointInfo(
        path=str(path),
        nc=int(model.model[-1].nc),  # the Detect head, which is what the weights were trained for
        names=_names(model),
        parameters=sum(p.numel() for p in model.parameters()),
        gflops_640=round(count_gflops(model), 3),
        epoch=-1 if epoch is None else int(epoch),
        has_ema=ckpt.get("ema") is not None,
        has_optimizer=ckpt.get("optimizer") is not None,
        yaml_file=str(getattr(model, "yaml_file", "") or model.yaml.get("yaml_file", "")),
        date=ckpt.get("date"),
        layers=layer_widths(model),
    )
