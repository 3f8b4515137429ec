"""Where each stage reads and writes, relative to the project root (dvc.yaml names the same paths)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXPORT_FORMATS", "FlowOutputs", "Layout", "PruneOutputs", "ValOutputs", "export_paths", "int8_path"]


def int8_path(models_dir: Path, name: str) -> Path:
    """Where stage export (and `lightweight export --int8`) keeps the INT8 model of `name`: a folder of its own,
    so that the stage always has it as an output, empty when INT8 is off."""
    return models_dir / "int8" / f"{name}.onnx"


EXPORT_FORMATS = ("onnx", "openvino", "int8")


def export_paths(models_dir: Path, name: str, formats: tuple[str, ...] = EXPORT_FORMATS) -> dict[str, Path]:
    """Where each export format of model `name` lives: <name>.onnx, the IR folder <name>_openvino/, int8/<name>.onnx."""
    paths = {
        "onnx": models_dir / f"{name}.onnx",
        "openvino": models_dir / f"{name}_openvino",
        "int8": int8_path(models_dir, name),
    }
    return {fmt: paths[fmt] for fmt in formats}


@dataclass(frozen=True)
class PruneOutputs:
    weights: Path  # YOLOv5 train.py-format checkpoint of the pruned network
    yaml: Path  # model yaml that rebuilds it exactly
    metrics: Path  # params, GFLOPs and per-layer widths before/after
    widths_csv: Path  # per-layer widths, for `dvc plots`
    widths_png: Path

    @classmethod
    def in_folder(cls, folder: Path) -> PruneOutputs:
        return cls(
            folder / "pruned.pt",
            folder / "pruned.yaml",
            folder / "prune.json",
            folder / "prune_widths.csv",
            folder / "prune_widths.png",
        )


@dataclass(frozen=True)
class ValOutputs:
    metrics: Path  # per model: P, R, mAP50, mAP50-95, params, GFLOPs, latency, throughput
    table: Path  # the comparison as a markdown table
    pr_csv: Path  # PR curves at IoU 0.5, one column per model, for `dvc plots`
    pr_png: Path
    latency_csv: Path  # batch-1 latency per model, runtime and thread count, for `dvc plots`
    latency_png: Path


@dataclass(frozen=True)
class FlowOutputs:
    metrics: Path  # per video: people per sampled frame, class tallies, ground-truth comparison
    counts_dir: Path  # one CSV per video: frame, time, detected and true people, for `dvc plots`
    counts_png: Path
    classes_csv: Path  # crops per class over all videos
    classes_png: Path


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def demo_data(self) -> Path:
        return self.root / "data" / "demo"

    @property
    def base_weights(self) -> Path:
        return self.root / "models" / "base.pt"

    @property
    def base_metrics(self) -> Path:
        return self.root / "metrics" / "base.json"

    @property
    def prune_outputs(self) -> PruneOutputs:
        return PruneOutputs(
            weights=self.root / "models" / "pruned.pt",
            yaml=self.root / "models" / "pruned.yaml",
            metrics=self.root / "metrics" / "prune.json",
            widths_csv=self.root / "reports" / "prune_widths.csv",
            widths_png=self.root / "reports" / "prune_widths.png",
        )

    @property
    def finetuned_weights(self) -> Path:
        return self.root / "models" / "finetuned.pt"

    @property
    def val_outputs(self) -> ValOutputs:
        return ValOutputs(
            metrics=self.root / "metrics" / "val.json",
            table=self.root / "reports" / "compare.md",
            pr_csv=self.root / "reports" / "pr_curves.csv",
            pr_png=self.root / "reports" / "pr_curves.png",
            latency_csv=self.root / "reports" / "latency.csv",
            latency_png=self.root / "reports" / "latency.png",
        )

    @property
    def detections(self) -> Path:
        return self.root / "data" / "detections"

    @property
    def classifier_weights(self) -> Path:
        return self.root / "models" / "classifier.pt"

    @property
    def classifier_metrics(self) -> Path:
        return self.root / "metrics" / "classifier.json"

    @property
    def crops_dir(self) -> Path:
        return self.root / "data" / "crops"

    @property
    def crops_index(self) -> Path:
        return self.crops_dir / "index.csv"

    @property
    def predictions(self) -> Path:
        return self.root / "data" / "predictions.csv"

    @property
    def macs(self) -> Path:
        return self.root / "metrics" / "macs.json"

    @property
    def flow_outputs(self) -> FlowOutputs:
        return FlowOutputs(
            metrics=self.root / "metrics" / "flow.json",
            counts_dir=self.root / "reports" / "people_counts",
            counts_png=self.root / "reports" / "people_counts.png",
            classes_csv=self.root / "reports" / "class_counts.csv",
            classes_png=self.root / "reports" / "class_counts.png",
        )

    @property
    def published(self) -> tuple[str, ...]:
        """What `lightweight publish` uploads, as globs relative to `root`; the first must exist."""
        return (
            "models/finetuned.pt",
            "reports/*",
            "reports/people_counts/*.csv",
            "metrics/*.json",
            "data/crops/index.csv",
            "data/predictions.csv",
        )

    @property
    def nightly_detections(self) -> Path:
        """The nightly re-run of sampled detection (kept apart from the DVC-tracked data/detections)."""
        return self.root / "nightly" / "detections"

    @property
    def nightly_history(self) -> Path:
        """Every nightly evaluation, oldest first: where the next night finds the one to compare with."""
        return self.root / "nightly" / "history.json"
