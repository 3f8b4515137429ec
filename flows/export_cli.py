"""`lightweight export CKPT`: any YOLOv5 v7.0 detection checkpoint to ONNX and OpenVINO IR, proven equal."""

from __future__ import annotations

from pathlib import Path

import typer

from tasks.config import ExportConfig

__all__ = ["export"]

_DEFAULTS = ExportConfig()  # the options' defaults are params.yaml's export section's


def export(
    checkpoint: Path = typer.Argument(..., help="a YOLOv5 v7.0 detection checkpoint (.pt), pruned or not, any nc"),
    format: str = typer.Option("onnx,openvino", "--format", help="comma-separated: onnx, openvino"),
    int8: bool = typer.Option(
        False, "--int8", help="also OUT/int8/CKPT_STEM.onnx, calibrated on --data's train split, kept if mAP50 holds"
    ),
    int8_images: int = typer.Option(
        _DEFAULTS.int8_images, "--int8-images", help="training images to calibrate INT8 on"
    ),
    data: Path | None = typer.Option(None, "--data", help="dataset yaml: check mAP50 on its val split too"),
    out: Path = typer.Option(..., "--out", help="folder for CKPT_STEM.onnx and CKPT_STEM_openvino/"),
    imgsz: int = typer.Option(640, help="export input size (a multiple of 32)"),
    max_map50_diff: float = typer.Option(
        _DEFAULTS.max_map50_diff, help="largest |mAP50 of an FP32 export - the .pt's| (with --data)"
    ),
    max_int8_map50_drop: float = typer.Option(
        _DEFAULTS.max_int8_map50_drop, help="largest mAP50 an INT8 model may lose and be kept"
    ),
) -> None:
    """Export a checkpoint to ONNX (YOLOv5 metadata: stock val.py/detect.py load it) and an FP32 OpenVINO IR.

    Each export's raw outputs are compared with the checkpoint's (on --data's val images, or fixed noise
    without it) and, with --data, its val mAP50 too; an export that differs is reported and not written.
    --int8 (needs --data) also quantizes the ONNX model, kept only within the mAP50 drop allowed by default.
    """
    from tasks.config import validated
    from tasks.export import INT8, export_checkpoint
    from tasks.layout import export_paths, int8_path
    from tasks.runtimes import FORMAT_RUNTIME

    formats = tuple(f.strip() for f in format.split(",") if f.strip())
    cfg = validated(
        ExportConfig,
        "options",
        formats=formats,
        int8=int8,
        int8_images=int8_images,
        imgsz=imgsz,
        map50_imgsz=None,
        max_map50_diff=max_map50_diff,
        max_int8_map50_drop=max_int8_map50_drop,
    )
    report = export_checkpoint(cfg, weights=checkpoint, out_dir=out, data_yaml=data)
    for name, runtimes in report["models"].items():
        paths = export_paths(out, name, cfg.formats)
        for fmt, path in paths.items():
            result, reference = runtimes[FORMAT_RUNTIME[fmt]], runtimes["torch"]
            map50 = "" if result["map50"] is None else f", mAP50 {result['map50']:.4f} (.pt {reference['map50']:.4f})"
            typer.echo(f"{path}: {result['file_bytes']:,} bytes, max |output diff| {result['max_abs_diff']:.3g}{map50}")
        if INT8 in runtimes:
            result = runtimes[INT8]
            typer.echo(f"{int8_path(out, name)}: mAP50 {result['map50']:.4f}, {result['reason']}")
