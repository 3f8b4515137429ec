"""Stage `export`: base and fine-tuned detectors as ONNX and OpenVINO IR, each proven equal to its checkpoint.

Every export is checked before anything is written: its raw outputs against the checkpoint's on real val
images, and its mAP50 on the val split against the checkpoint's. One failure names the model, the runtime
and the difference, and nothing is written; otherwise each file or IR folder replaces its old version atomically.
With `export.int8`, each model is also quantized to INT8 and kept (in models/int8/) only if its mAP50 holds.
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
from tasks.config import ConfigError, ExportConfig, Params
from tasks.dataset import resolved_dataset_yaml
from tasks.digest import sha256_file
from tasks.layout import Layout, export_paths, int8_path
from tasks.runtimes import FORMAT_RUNTIME, ExportError
from tasks.stage import Stage
from tasks.yolo import detection_model, load_checkpoint
from tasks.yolo.export import (
    RuntimeCheck,
    check_export,
    export_onnx,
    export_openvino,
    require_formats,
    sample_images,
    tree_bytes,
)
from tasks.yolo.quantize import detect_head_scope, quantize_int8

__all__ = [
    "INT8",
    "STAGE",
    "ExportConfig",
    "ExportError",
    "export_checkpoint",
    "export_models",
]

log = logging.getLogger(__name__)


INT8 = FORMAT_RUNTIME["int8"]  # the runtime label of INT8 models: ONNX Runtime runs them (OpenVINO reads them too)


@dataclass(frozen=True)
class _Prepared:
    """One model exported and checked in the scratch folder, not yet in place."""

    name: str
    files: dict[str, Path]  # format -> scratch file or folder (FP32 exports)
    report: dict[str, Any]  # runtime -> metrics
    failures: list[str]  # empty when every export equals the checkpoint
    int8: Path | None = None  # the scratch INT8 model, when asked for and kept


def _check_inputs(weights: dict[str, Path], cfg: ExportConfig, data_yaml: Path | None) -> None:
    """Every checkpoint a YOLOv5 detection model and every runtime installed, before any work."""
    for path in weights.values():
        detection_model(load_checkpoint(path), path)  # CheckpointError names the file
    require_formats(("onnx", *cfg.formats) if cfg.int8 else cfg.formats, cfg.simplify)
    if cfg.int8 and data_yaml is None:
        raise ExportError("INT8 needs calibration images: give a dataset (--data DATA.yaml) with a train split")


def _calibration_images(data: Path | None, cfg: ExportConfig) -> np.ndarray | None:
    """export.int8_images training images at the size mAP50 is checked at, or an error naming the shortfall."""
    if not cfg.int8 or data is None:
        return None
    try:
        images = sample_images(data, cfg.int8_images, cfg.map50_size, split="train")
    except ExportError as error:
        raise ExportError(f"INT8 calibration (export.int8: true): {error}") from None
    if len(images) < cfg.int8_images:
        raise ExportError(
            f"INT8 calibration needs export.int8_images = {cfg.int8_images} training images; the train split of "
            f"{data} has {len(images)} (lower export.int8_images or add images)"
        )
    return images


def _int8_decision(report: dict[str, Any], cfg: ExportConfig) -> tuple[bool, str]:
    """Keep an INT8 model only if its val mAP50 is within export.max_int8_map50_drop of the checkpoint's."""
    drop = report["torch"]["map50"] - report[INT8]["map50"]
    if drop <= cfg.max_int8_map50_drop:
        return True, f"kept: mAP50 drop {drop:+.4f} within export.max_int8_map50_drop {cfg.max_int8_map50_drop}"
    return False, f"not kept: mAP50 drop {drop:+.4f} exceeds export.max_int8_map50_drop {cfg.max_int8_map50_drop}"


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
    name: str,
    weights: Path,
    cfg: ExportConfig,
    data_yaml: Path | None,
    images: np.ndarray,
    scratch: Path,
    calibration: np.ndarray | None,
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
    if calibration is not None:
        head = detect_head_scope(detection_model(load_checkpoint(weights), weights))
        exported[INT8] = quantize_int8(
            onnx_file, int8_path(scratch / "quantized", name), calibration=calibration, keep_fp32_scope=head
        )
    base_map, checks = check_export(
        weights, exported, images=images, data_yaml=data_yaml, imgsz=cfg.map50_size, workers=cfg.workers
    )
    report: dict[str, Any] = {
        "torch": {"map50": _round(base_map), "file_bytes": weights.stat().st_size, "sha256": sha256_file(weights)}
    }
    labelled = {**files, **({"int8": exported[INT8]} if INT8 in exported else {})}  # format -> file
    for fmt, path in labelled.items():
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
    kept_int8 = None
    if INT8 in checks:
        kept, reason = _int8_decision(report, cfg)
        report[INT8].update(kept=kept, reason=reason)
        log.info("%s INT8: %s", name, reason)
        kept_int8 = exported[INT8] if kept else None
    fp32 = {runtime: check for runtime, check in checks.items() if runtime != INT8}
    return _Prepared(name, files, report, _failures(name, fp32, base_map, cfg), kept_int8)


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


def _install_int8_files(prepared: list[_Prepared], out_dir: Path) -> None:
    """The kept INT8 models into out_dir/int8/, file by file, next to whatever is there."""
    for item in prepared:
        if item.int8 is not None:
            with atomic_file(int8_path(out_dir, item.name)) as tmp:
                shutil.copyfile(item.int8, tmp)


def _install_stage_folders(prepared: list[_Prepared], out_dir: Path) -> None:
    """The folders dvc.yaml declares, each replaced whole: int8/ with the kept INT8 models (empty when INT8 is off
    or none was kept), and an empty <name>_openvino/ for each model not exported to OpenVINO."""
    with atomic_dir(out_dir / "int8") as tmp:
        for item in prepared:
            if item.int8 is not None:
                shutil.copyfile(item.int8, tmp / int8_path(tmp, item.name).name)
    for item in prepared:
        if "openvino" not in item.files:
            with atomic_dir(export_paths(out_dir, item.name, ("openvino",))["openvino"]):
                pass


def _export_all(
    cfg: ExportConfig, weights: dict[str, Path], data_yaml: Path | None, out_dir: Path, *, stage_outputs: bool
) -> dict[str, dict[str, Any]]:
    """Export and check every model in a scratch folder; only when all pass, put them in `out_dir`."""
    _check_inputs(weights, cfg, data_yaml)
    with tempfile.TemporaryDirectory(prefix="lightweight-export-") as scratch_name:
        scratch = Path(scratch_name)
        data = resolved_dataset_yaml(data_yaml, scratch / "data") if data_yaml is not None else None
        calibration = _calibration_images(data, cfg)  # before any export: a shortfall is a config error
        images = sample_images(data, cfg.check_images, cfg.imgsz)
        prepared = [_prepare(name, path, cfg, data, images, scratch, calibration) for name, path in weights.items()]
        failures = [failure for p in prepared for failure in p.failures]
        if failures:
            raise ExportError("exports differ from their checkpoints; nothing was written:\n  " + "\n  ".join(failures))
        for item in prepared:
            _install(item, out_dir)
        if stage_outputs:
            _install_stage_folders(prepared, out_dir)
        else:
            _install_int8_files(prepared, out_dir)
    return {item.name: item.report for item in prepared}


def _int8_summary(cfg: ExportConfig, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not cfg.int8:
        return {"enabled": False, "kept": [], "reason": "export.int8 is false (FP32 exports only)"}
    return {
        "enabled": True,
        "calibration_images": cfg.int8_images,
        "calibration_imgsz": cfg.map50_size,
        "max_map50_drop": cfg.max_int8_map50_drop,
        "kept": sorted(name for name, runtimes in models.items() if runtimes[INT8]["kept"]),
        "reason": {name: runtimes[INT8]["reason"] for name, runtimes in models.items()},
    }


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
    """Export each checkpoint in `weights` ({name: .pt}) to out_dir/<name>.onnx and <name>_openvino/, proven equal
    (the stage's outputs: without openvino in `cfg.formats`, <name>_openvino/ is an empty folder).

    metrics_path gets, per model and runtime, the val mAP50, the largest raw-output difference and the file size.
    """
    if "onnx" not in cfg.formats:
        raise ConfigError(
            f"export.formats {list(cfg.formats)}: the export stage always writes models/<name>.onnx (dvc.yaml "
            "declares it, and OpenVINO IR is converted from it): keep onnx in the list"
        )
    models = _export_all(cfg, weights, data_yaml, out_dir, stage_outputs=True)
    metrics = {
        **_settings(cfg, "val split, square letterbox at map50_imgsz, batch 1"),
        "models": models,
        "int8": _int8_summary(cfg, models),
    }
    write_json(metrics_path, metrics)
    return metrics


def export_checkpoint(
    cfg: ExportConfig, *, weights: Path, out_dir: Path, data_yaml: Path | None = None
) -> dict[str, Any]:
    """Export one checkpoint to out_dir/<stem>.onnx, <stem>_openvino/ (and int8/<stem>.onnx); with a dataset, mAP50 too.

    Without a dataset the raw outputs are compared on fixed noise images: every layer is still exercised.
    """
    models = _export_all(cfg, {weights.stem: weights}, data_yaml, out_dir, stage_outputs=False)
    checked_on = "val split" if data_yaml is not None else f"{cfg.check_images} noise images (no dataset given)"
    return {**_settings(cfg, checked_on), "models": models, "int8": _int8_summary(cfg, models)}


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
    outs=(
        "models/base.onnx",
        "models/finetuned.onnx",
        "models/base_openvino",
        "models/finetuned_openvino",
        "models/int8",
    ),
    metrics=("metrics/export.json",),
    params=("export", "model"),
)
