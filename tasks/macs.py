"""Stage `macs`: where the compute of watching video goes — the detector per frame, the classifier per crop."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tasks.atomic import write_json
from tasks.config import DetectConfig, Params
from tasks.crop_index import read_crop_index
from tasks.detections import read_summary
from tasks.layout import Layout
from tasks.letterbox import letterbox_shape
from tasks.mobilenet import classifier_macs, load_classifier
from tasks.stage import Stage
from tasks.yolo import count_gflops, detection_model, load_checkpoint

__all__ = ["compute_costs"]

log = logging.getLogger(__name__)


def _detector_gmacs(weights: Path, shape: tuple[int, int]) -> dict[str, Any]:
    model = detection_model(load_checkpoint(weights), weights)
    return {
        "weights": str(weights),
        "parameters": sum(p.numel() for p in model.parameters()),
        "gmacs_per_frame": round(count_gflops(model, shape) / 2, 4),
    }


def _every_frame(frames: int, detector_gmacs: float, crops_per_frame: float, gmacs_per_crop: float) -> float:
    """GMACs with every frame detected: crops scale with the frames seen."""
    return frames * (detector_gmacs + crops_per_frame * gmacs_per_crop)


def compute_costs(
    detect: DetectConfig,
    *,
    detectors: dict[str, Path],
    classifier: Path,
    detections_dir: Path,
    crops_index: Path,
    out: Path,
) -> dict[str, Any]:
    """metrics/macs.json: per-model costs, and per video the total for every frame versus every interval-th."""
    reports = [r for r in read_summary(detections_dir) if r.status == "ok" and r.frames_read]
    crops = Counter(row["video"] for row in read_crop_index(crops_index))
    loaded = load_classifier(classifier)
    classifier_cost = {
        "arch": loaded.arch,
        "input_size": list(loaded.input_size),
        "parameters": sum(p.numel() for p in loaded.network.parameters()),
        "gmacs_per_crop": round(classifier_macs(loaded) / 1e9, 6),
    }
    shapes = {letterbox_shape((r.height, r.width), detect.imgsz) for r in reports} or {(detect.imgsz, detect.imgsz)}
    models = {
        name: {f"{h}x{w}": _detector_gmacs(path, (h, w)) for h, w in sorted(shapes)}
        for name, path in detectors.items()
        if path.is_file()
    }
    used = next(iter(models))  # the detector the detect stage ran (listed first); the others for comparison
    per_crop = classifier_cost["gmacs_per_crop"]
    videos: dict[str, Any] = {}
    for report in reports:
        h, w = letterbox_shape((report.height, report.width), detect.imgsz)
        per_frame = {name: m[f"{h}x{w}"]["gmacs_per_frame"] for name, m in models.items()}
        crops_per_frame = crops[report.name] / report.sampled if report.sampled else 0.0
        every = {
            name: _every_frame(report.frames_read, gmacs, crops_per_frame, per_crop)
            for name, gmacs in per_frame.items()
        }
        sampled = report.sampled * per_frame[used] + crops[report.name] * per_crop
        videos[report.name] = {
            "frames": report.frames_read,
            "sampled_frames": report.sampled,
            "crops": crops[report.name],
            "gmacs_interval_1": round(every[used], 3),
            f"gmacs_interval_{detect.interval}": round(sampled, 3),
            "saving": round(every[used] / sampled, 2) if sampled else None,
            "detector_share": round(report.sampled * per_frame[used] / sampled, 4) if sampled else None,
        }
        for name in sorted(every.keys() - {used}):
            videos[report.name][f"gmacs_interval_1_{name}_detector"] = round(every[name], 3)
    result = {
        "detectors": models,
        "detector_used": used,
        "classifier": classifier_cost,
        "interval": detect.interval,
        "videos": videos,
    }
    if videos:
        shares = [v["detector_share"] for v in videos.values() if v["detector_share"] is not None]
        log.info("detector share of the compute: %.1f%%", 100 * float(np.mean(shares)) if shares else 0.0)
    write_json(out, result)
    return result


def _run(params: Params, root: Path) -> dict[str, Any]:
    layout = Layout(root)
    return compute_costs(
        params.detect,
        detectors={"detect": params.detect.weights_path(root), "base": layout.base_weights},
        classifier=layout.classifier_weights,
        detections_dir=layout.detections,
        crops_index=layout.crops_index,
        out=layout.macs,
    )


STAGE = Stage(
    name="macs",
    run=_run,
    deps=("${detect.weights}", "models/base.pt", "models/classifier.pt", "data/detections", "data/crops/index.csv"),
    metrics=("metrics/macs.json",),
    params=("detect.imgsz", "detect.interval"),
)
