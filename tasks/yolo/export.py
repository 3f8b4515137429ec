"""YOLOv5 detection checkpoints exported to ONNX and OpenVINO IR, and proven equal to the checkpoint.

The ONNX file is what YOLOv5 7.0's export.py writes (input `images`, output `output0`, `stride` and `names`
in the metadata), so stock `DetectMultiBackend`, val.py and detect.py load it unchanged. The IR is converted
with today's `openvino.convert_model` (YOLOv5 7.0's own path imports the removed `openvino.inference_engine`).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tasks.runtimes import ExportError, Session, import_package, open_session, read_exported
from tasks.timing import torch_threads
from tasks.yolo.checkpoint import detection_model, load_checkpoint
from tasks.yolo.runtime import yolov5_runtime
from tasks.yolo.training import THREADS

__all__ = [
    "FORMAT_PACKAGES",
    "RuntimeCheck",
    "check_export",
    "export_model",
    "export_onnx",
    "export_openvino",
    "require_formats",
    "sample_images",
    "stock_val_map50",
    "tree_bytes",
]

# What each format needs installed: the ONNX file is written with `onnx` and every IR is converted from it.
FORMAT_PACKAGES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino")}


def require_formats(formats: tuple[str, ...], simplify: bool = False) -> None:
    """Fail naming the pip package when a format's exporter or runtime is not installed."""
    for package in dict.fromkeys(p for f in formats for p in FORMAT_PACKAGES[f]):
        import_package(package)
    if simplify:
        import_package("onnxslim")


def export_model(weights: Path, dynamic: bool = False) -> nn.Module:
    """The checkpoint's network as YOLOv5 exports it: EMA weights, BatchNorm fused, Detect in export mode."""
    model = copy.deepcopy(detection_model(load_checkpoint(weights), weights)).fuse().eval()
    with yolov5_runtime():
        from yolov5.models.yolo import Detect

    for module in model.modules():
        if isinstance(module, Detect):
            module.inplace = False
            module.export = True  # returns (predictions,) only, as export.py sets it
            module.dynamic = dynamic  # the grid is then computed in the graph from the input's shape
    return model


def _stride(model: nn.Module) -> int:
    return max(int(model.stride.max()), 32)  # what DetectMultiBackend reads from a .pt


def _names(model: nn.Module) -> dict[int, str]:
    names = model.names
    names = dict(enumerate(names)) if isinstance(names, list | tuple) else names
    return {int(k): str(v) for k, v in names.items()}


def _simplify(onnx_model: Any, path: Path) -> Any:
    onnxslim = import_package("onnxslim")
    try:
        return onnxslim.slim(onnx_model)
    except Exception as error:  # onnxslim raises whatever its passes raise
        raise ExportError(f"{path}: onnxslim failed ({type(error).__name__}: {error})") from None


def export_onnx(
    weights: Path, out: Path, *, imgsz: int, opset: int, dynamic: bool, simplify: bool = False
) -> tuple[int, dict[int, str]]:
    """Write `out` as YOLOv5 7.0's export.py does, optionally with a free batch/height/width; (stride, names)."""
    onnx = import_package("onnx")
    model = export_model(weights, dynamic)
    stride, names = _stride(model), _names(model)
    if imgsz % stride:
        raise ExportError(f"imgsz {imgsz} is not a multiple of the model's stride {stride}")
    image = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad():
        for _ in range(2):  # export.py's dry runs: they build the anchor grids
            model(image)
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about YOLOv5's shape checks, expected when tracing
        torch.onnx.export(
            model,
            image,
            str(out),
            opset_version=opset,
            do_constant_folding=True,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes=axes if dynamic else None,
            dynamo=False,
        )
    onnx_model = onnx.load(str(out))
    onnx.checker.check_model(onnx_model)
    if simplify:
        onnx_model = _simplify(onnx_model, out)
    for key, value in {"stride": stride, "names": names}.items():  # exactly export.py's metadata
        meta = onnx_model.metadata_props.add()
        meta.key, meta.value = key, str(value)
    onnx.save(onnx_model, str(out))
    return stride, names


def export_openvino(onnx_file: Path, out_dir: Path, name: str) -> Path:
    """Convert an exported ONNX file to an FP32 IR `out_dir/<name>.xml` (+ .bin, + .yaml with stride and names)."""
    import yaml

    ov = import_package("openvino")
    exported = read_exported(onnx_file)
    model = ov.convert_model(str(onnx_file))
    model.set_rt_info(str(exported.stride), ["model_info", "stride"])
    model.set_rt_info(str(exported.names), ["model_info", "names"])
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / f"{name}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)  # FP32 weights: what the equality check proves
    metadata = {"stride": exported.stride, "names": exported.names}  # YOLOv5's IR metadata file
    xml.with_suffix(".yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    return xml


def tree_bytes(path: Path) -> int:
    """Size on disk of a file, or of every file under a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _image_files(data_yaml: Path, split: str) -> list[str]:
    with yolov5_runtime():
        from yolov5.utils.dataloaders import IMG_FORMATS
        from yolov5.utils.general import check_dataset

        data = check_dataset(str(data_yaml))
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    files: list[str] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            files += sorted(str(p) for p in entry.rglob("*") if p.suffix[1:].lower() in IMG_FORMATS)
        elif entry.suffix == ".txt":
            files += [line.strip() for line in entry.read_text().splitlines() if line.strip()]
        else:
            files.append(str(entry))
    return files


def sample_images(data_yaml: Path | None, count: int, imgsz: int, split: str = "val") -> np.ndarray:
    """`count` images of a split letterboxed square to `imgsz` (float32 NCHW in [0, 1]); without data, fixed noise.

    `data_yaml` as YOLOv5 reads it: absolute split paths, see tasks.dataset.resolved_dataset_yaml.
    """
    import cv2

    if data_yaml is None:  # still a real test of every layer, only not of realistic activations
        return np.random.default_rng(0).random((count, 3, imgsz, imgsz), dtype=np.float32)
    from yolov5.utils.augmentations import letterbox

    files = _image_files(data_yaml, split)[:count]
    if not files:
        raise ExportError(f"{data_yaml}: no {split} images to check the export on")
    images = []
    for file in files:
        frame = cv2.imread(file)
        if frame is None:
            raise ExportError(f"{file}: image does not decode")
        image = letterbox(frame, (imgsz, imgsz), auto=False)[0]  # val.py's square inference on exports
        images.append(image.transpose((2, 0, 1))[::-1])
    return np.stack(images).astype(np.float32) / 255


class _RuntimeModule(nn.Module):
    """A runtime session that YOLOv5's val.run can call where it would call the model it is training."""

    def __init__(self, session: Session, names: dict[int, str]) -> None:
        super().__init__()
        self._device = nn.Parameter(torch.zeros(1), requires_grad=False)  # val.run reads the device off a parameter
        self.names = names
        self._session = session

    def forward(self, image: torch.Tensor, augment: bool = False) -> tuple[torch.Tensor]:
        return (torch.from_numpy(self._session(image.numpy())),)


def _map50(model: nn.Module, data_yaml: Path, imgsz: int, batch: int, workers: int) -> float:
    """mAP50 on the val split by YOLOv5's val.run, every image letterboxed square to `imgsz`.

    val.run's own loader gives .pt weights rectangular batches but exports square ones; handing it the
    loader lets every runtime see identical pixels, so only the runtime differs.
    """
    with yolov5_runtime():
        from yolov5 import val as yolov5_val
        from yolov5.utils.callbacks import Callbacks
        from yolov5.utils.dataloaders import create_dataloader
        from yolov5.utils.general import check_dataset

        data = check_dataset(str(data_yaml))
        stride = 32  # only shapes rectangular batches, and these are square
        loader = create_dataloader(data["val"], imgsz, batch, stride, rect=False, workers=workers, prefix="check: ")[0]
        with tempfile.TemporaryDirectory(prefix="lightweight-check-") as scratch:  # val.run writes results.html there
            (_p, _r, map50, *_rest), *_ = yolov5_val.run(
                data=data,
                model=model,
                dataloader=loader,
                imgsz=imgsz,
                batch_size=batch,
                plots=False,
                half=False,
                callbacks=Callbacks(),
                save_dir=Path(scratch),
            )
    return float(map50)


@dataclass(frozen=True)
class RuntimeCheck:
    """One export against its checkpoint: raw-output difference on real images, mAP50 on the val split."""

    runtime: str
    max_abs_diff: float  # largest |export - checkpoint| over every raw output (box pixels, scores)
    map50: float | None  # None when no dataset was given
    map50_diff: float | None  # export - checkpoint


def _torch_outputs(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(images[i : i + 1]))[0].numpy() for i in range(len(images))])


def check_export(
    weights: Path,
    exported: dict[str, Path],
    *,
    images: np.ndarray,
    data_yaml: Path | None,
    imgsz: int,
    workers: int = 0,
) -> tuple[float | None, dict[str, RuntimeCheck]]:
    """The checkpoint's mAP50 and, per runtime, how far its export's outputs and mAP50 are from it.

    `exported` maps a runtime to the file it runs. Both sides run the same fused network, batch 1,
    on the same letterboxed images; the checkpoint side is what DetectMultiBackend runs for a .pt.
    """
    model = export_model(weights)
    names = _names(model)
    with torch_threads(THREADS):  # fixed, as in validate(): the same numbers on every run
        reference = _torch_outputs(model, images)
        base_map = _map50(model, data_yaml, imgsz, 1, workers) if data_yaml is not None else None
    checks = {}
    for runtime, path in exported.items():
        session = open_session(path, runtime)  # one thread: the same numbers on every run
        outputs = session(images)
        if outputs.shape != reference.shape:
            raise ExportError(f"{path}: outputs of shape {outputs.shape}, the checkpoint's are {reference.shape}")
        diff = float(np.abs(outputs - reference).max())
        map50 = _map50(_RuntimeModule(session, names), data_yaml, imgsz, 1, workers) if data_yaml else None
        map_diff = None if map50 is None or base_map is None else map50 - base_map
        checks[runtime] = RuntimeCheck(runtime, diff, map50, map_diff)
    return base_map, checks


def stock_val_map50(weights: Path, data_yaml: Path, imgsz: int, run_dir: Path) -> float:
    """mAP50 from YOLOv5's own val.run given the file as `--weights` (how `val.py --weights x.onnx` runs it)."""
    with yolov5_runtime():
        from yolov5 import val as yolov5_val
        from yolov5.utils.callbacks import Callbacks

        (_p, _r, map50, *_rest), *_ = yolov5_val.run(
            data=str(data_yaml),
            weights=str(Path(weights).resolve()),
            imgsz=imgsz,
            batch_size=1,
            workers=0,
            device="cpu",
            project=str(run_dir),
            name="val",
            exist_ok=True,
            plots=False,
            callbacks=Callbacks(),
        )
    return float(map50)
