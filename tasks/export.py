"""Stage `export`: base and fine-tuned detectors as ONNX and OpenVINO IR, each proven equal to its checkpoint.

Every export is checked before anything is written: its raw outputs against the checkpoint's on real val
images, and its mAP50 on the val split against the checkpoint's. One failure names the model, the runtime
and the difference, and nothing is written; otherwise each file or IR folder replaces its old version atomically.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.atomic import atomic_dir, atomic_file, write_json
from tasks.caching import sha256_file
from tasks.config import ExportConfig, Params
from tasks.dataset import resolved_dataset_yaml
from tasks.layout import Layout
from tasks.stage import Stage
from tasks.yolo import detection_model, load_checkpoint
from tasks.yolo.export import (
    FORMAT_RUNTIME,
    RuntimeCheck,
    check_export,
    export_onnx,
    export_openvino,
    require_formats,
    sample_images,
    tree_bytes,
)
from tasks.yolo.runtimes import ExportError

__all__ = ["STAGE", "ExportConfig", "ExportError", "export_checkpoint", "export_models", "export_paths"]

log = logging.getLogger(__name__)


def export_paths(out_dir: Path, name: str, formats: tuple[str, ...]) -> dict[str, Path]:
    """Where each format of model `name` is written: <name>.onnx and the IR folder <name>_openvino/."""
    paths = {"onnx": out_dir / f"{name}.onnx", "openvino": out_dir / f"{name}_openvino"}
    return {fmt: paths[fmt] for fmt in formats}


@dataclass(frozen=True)
class _Prepared:
    """One model exported and checked in the scratch folder, not yet in place."""

    name: str
    files: dict[str, Path]  # format -> scratch file or folder
    report: dict[str, Any]  # runtime -> metrics
    failures: list[str]  # empty when every export equals the checkpoint


def _check_inputs(weights: dict[str, Path], cfg: ExportConfig) -> None:
    """Every checkpoint a YOLOv5 detection model and every runtime installed, before any work."""
    for path in weights.values():
        detection_model(load_checkpoint(path), path)  # CheckpointError names the file
    require_formats(cfg.formats, cfg.simplify)


def _failures(name: str, checks: dict[str, RuntimeCheck], base_map: float | None, cfg: ExportConfig) -> list[str]:
    failures = []
    for runtime, check in checks.items():
        if not check.max_abs_diff <= cfg.max_output_diff:  # `not <=` also catches NaN
            failures.append(
                f"{name} on {runtime}: raw outputs differ from the checkpoint's by up to {check.max_abs_diff:.4g} "
                f"(export.max_output_diff {cfg.max_output_diff})"
            )
        if check.map50_diff is not None and not abs(check.map50_diff) <= cfg.max_map50_diff:
            failures.append(
                f"{name} on {runtime}: val mAP50 {check.map50:.4f} against {base_map:.4f} for the checkpoint "
                f"(difference {check.map50_diff:+.4f}, export.max_map50_diff {cfg.max_map50_diff})"
            )
    return failures


def _prepare(
    name: str, weights: Path, cfg: ExportConfig, data_yaml: Path | None, images: np.ndarray, scratch: Path
) -> _Prepared:
    """Export one checkpoint into `scratch` and hold every export to it."""
    onnx_file = scratch / f"{name}.onnx"
    log.info("exporting %s (%s) to %s at %d px", name, weights, ", ".join(cfg.formats), cfg.imgsz)
    export_onnx(weights, onnx_file, imgsz=cfg.imgsz, opset=cfg.opset, dynamic=cfg.dynamic, simplify=cfg.simplify)
    files: dict[str, Path] = {}
    if "onnx" in cfg.formats:
        files["onnx"] = onnx_file
    if "openvino" in cfg.formats:
        files["openvino"] = export_openvino(onnx_file, scratch / f"{name}_openvino", name).parent
    exported = {FORMAT_RUNTIME[fmt]: path for fmt, path in files.items()}
    base_map, checks = check_export(
        weights, exported, images=images, data_yaml=data_yaml, imgsz=cfg.map50_size, workers=cfg.workers
    )
    report: dict[str, Any] = {
        "torch": {"map50": _round(base_map), "file_bytes": weights.stat().st_size, "sha256": sha256_file(weights)}
    }
    for fmt, path in files.items():
        check = checks[FORMAT_RUNTIME[fmt]]
        report[check.runtime] = {
            "format": fmt,
            "map50": _round(check.map50),
            "map50_diff": _round(check.map50_diff),
            "max_abs_diff": float(f"{check.max_abs_diff:.4g}"),
            "file_bytes": tree_bytes(path),
        }
        log.info(
            "%s on %s: max |output diff| %.3g, mAP50 %s (checkpoint %s)",
            name,
            check.runtime,
            check.max_abs_diff,
            report[check.runtime]["map50"],
            report["torch"]["map50"],
        )
    return _Prepared(name, files, report, _failures(name, checks, base_map, cfg))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def _install(prepared: _Prepared, out_dir: Path) -> dict[str, Path]:
    """Move one model's checked exports into place, each replacing its old version in one step."""
    targets = export_paths(out_dir, prepared.name, tuple(prepared.files))
    for fmt, source in prepared.files.items():
        if source.is_dir():
            with atomic_dir(targets[fmt]) as tmp:
                shutil.copytree(source, tmp, dirs_exist_ok=True)
        else:
            with atomic_file(targets[fmt]) as tmp:
                shutil.copyfile(source, tmp)
    return targets


def _export_all(
    cfg: ExportConfig, weights: dict[str, Path], data_yaml: Path | None, out_dir: Path
) -> dict[str, dict[str, Any]]:
    """Export and check every model in a scratch folder; only when all pass, put them in `out_dir`."""
    _check_inputs(weights, cfg)
    with tempfile.TemporaryDirectory(prefix="lightweight-export-") as scratch_name:
        scratch = Path(scratch_name)
        data = resolved_dataset_yaml(data_yaml, scratch / "data") if data_yaml is not None else None
        images = sample_images(data, cfg.check_images, cfg.imgsz)
        prepared = [_prepare(name, path, cfg, data, images, scratch) for name, path in weights.items()]
        failures = [failure for p in prepared for failure in p.failures]
        if failures:
            raise ExportError("exports differ from their checkpoints; nothing was written:\n  " + "\n  ".join(failures))
        for item in prepared:
            _install(item, out_dir)
    return {item.name: item.report for item in prepared}


def _settings(cfg: ExportConfig, checked_on: str) -> dict[str, Any]:
    return {
        "imgsz": cfg.imgsz,
        "dynamic": cfg.dynamic,
        "opset": cfg.opset,
        "simplify": cfg.simplify,
        "check_images": cfg.check_images,
        "map50_imgsz": cfg.map50_size,
        "checked_on": checked_on,
    }


def export_models(
    cfg: ExportConfig, *, weights: dict[str, Path], data_yaml: Path, out_dir: Path, metrics_path: Path
) -> dict[str, Any]:
    """Export each checkpoint in `weights` ({name: .pt}) to out_dir/<name>.onnx and <name>_openvino/, proven equal.

    metrics_path gets, per model and runtime, the val mAP50, the largest raw-output difference and the file size.
    """
    models = _export_all(cfg, weights, data_yaml, out_dir)
    metrics = {
        **_settings(cfg, "val split, square letterbox at map50_imgsz, batch 1"),
        "models": models,
        "int8": {"enabled": False, "kept": False, "reason": "not implemented (FP32 exports only)"},
    }
    write_json(metrics_path, metrics)
    return metrics


def export_checkpoint(
    cfg: ExportConfig, *, weights: Path, out_dir: Path, data_yaml: Path | None = None
) -> dict[str, Any]:
    """Export one checkpoint to out_dir/<stem>.onnx and <stem>_openvino/; with a dataset, mAP50 is checked too.

    Without a dataset the raw outputs are compared on fixed noise images: every layer is still exercised.
    """
    models = _export_all(cfg, {weights.stem: weights}, data_yaml, out_dir)
    checked_on = "val split" if data_yaml is not None else f"{cfg.check_images} noise images (no dataset given)"
    return {**_settings(cfg, checked_on), "models": models}


def _run(params: Params, root: Path) -> dict[str, Any]:
    layout = Layout(root)
    return export_models(
        params.export,
        weights={"base": layout.base_weights, "finetuned": layout.finetuned_weights},
        data_yaml=params.model.data_yaml(layout.demo_data),
        out_dir=root / "models",
        metrics_path=root / "metrics" / "export.json",
    )


STAGE = Stage(
    name="export",
    run=_run,
    deps=("models/base.pt", "models/finetuned.pt", "data/demo"),
    outs=("models/base.onnx", "models/finetuned.onnx", "models/base_openvino", "models/finetuned_openvino"),
    metrics=("metrics/export.json",),
    params=("export", "model"),
)
