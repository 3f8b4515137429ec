"""Stage `val`: base, pruned and fine-tuned detectors compared on one val split, in one process."""

from __future__ import annotations

import copy
import csv
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from tasks.atomic import atomic_file, write_json, write_png
from tasks.config import Params, ValConfig
from tasks.dataset import resolved_dataset_yaml
from tasks.layout import Layout, ValOutputs
from tasks.stage import Stage
from tasks.timing import min_latencies
from tasks.yolo import count_gflops, detection_model, load_checkpoint, validate

__all__ = ["compare_models"]

log = logging.getLogger(__name__)


def _table(results: dict[str, dict[str, Any]], cfg: ValConfig) -> str:
    lines = [
        f"| model | params | GFLOPs@640 | P | R | mAP50 | mAP50-95 | latency ms (b1, {cfg.latency_imgsz}px, "
        f"{cfg.latency_threads} thread{'s' if cfg.latency_threads > 1 else ''}) | speed-up "
        f"| imgs/s (b{cfg.throughput_batch}) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['gflops_640']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['map50']:.3f} | {r['map50_95']:.3f} | {r['latency_ms']:.1f} | {r['speedup']:.2f}x "
            f"| {r['throughput']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _write_pr(curves: dict[str, tuple], out: ValOutputs) -> None:
    names = [name for name, curve in curves.items() if curve]
    if not names:
        return
    grid = [r for r, _ in curves[names[0]]]
    with atomic_file(out.pr_csv) as tmp, tmp.open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["recall", *names])
        for i, recall in enumerate(grid):
            rows.writerow([recall, *(curves[name][i][1] for name in names)])
    figure = Figure(figsize=(6, 5))
    axis = figure.subplots()
    for name in names:
        axis.plot(grid, [p for _, p in curves[name]], label=name)
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title="PR curves at IoU 0.5")
    axis.legend()
    figure.tight_layout()
    write_png(figure, out.pr_png)


def compare_models(cfg: ValConfig, *, weights: dict[str, Path], data_yaml: Path, out: ValOutputs) -> dict[str, Any]:
    """Accuracy, size and CPU speed of each checkpoint in `weights` (the first is the baseline)."""
    models = {name: detection_model(load_checkpoint(path), path) for name, path in weights.items()}
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="lightweight-val-") as scratch:
        data = resolved_dataset_yaml(data_yaml, Path(scratch))
        for name, path in weights.items():
            metrics = validate(
                weights=path,
                data=data,
                imgsz=cfg.imgsz,
                batch=cfg.batch,
                workers=cfg.workers,
                run_dir=Path(scratch) / name,
            )
            curves[name] = metrics.pr_curve
            results[name] = {
                **metrics.to_dict(),
                "parameters": sum(p.numel() for p in models[name].parameters()),
                "gflops_640": round(count_gflops(models[name]), 4),
            }
    fused = {name: copy.deepcopy(model).fuse().eval() for name, model in models.items()}
    generator = torch.Generator().manual_seed(0)
    size = cfg.latency_imgsz
    single = min_latencies(
        fused, torch.rand(1, 3, size, size, generator=generator), cfg.latency_repeats, cfg.latency_threads
    )
    batch = torch.rand(cfg.throughput_batch, 3, size, size, generator=generator)
    batched = min_latencies(fused, batch, max(3, cfg.latency_repeats // 4), cfg.latency_threads)
    baseline = next(iter(weights))
    for name, result in results.items():
        result["latency_ms"] = round(single[name] * 1e3, 3)
        result["speedup"] = round(single[baseline] / single[name], 3)
        result["throughput"] = round(cfg.throughput_batch / batched[name], 2)
        result["map50_vs_" + baseline] = round(result["map50"] / max(results[baseline]["map50"], 1e-9), 4)
    write_json(out.metrics, results)
    with atomic_file(out.table) as tmp:
        tmp.write_text(_table(results, cfg))
    _write_pr(curves, out)
    log.info("comparison:\n%s", _table(results, cfg))
    return results


def _run(params: Params, root: Path) -> dict[str, Any]:
    layout = Layout(root)
    weights = {
        "base": layout.base_weights,
        "pruned": layout.prune_outputs.weights,
        "finetuned": layout.finetuned_weights,
    }
    return compare_models(
        params.val, weights=weights, data_yaml=params.model.data_yaml(layout.demo_data), out=layout.val_outputs
    )


STAGE = Stage(
    name="val",
    run=_run,
    deps=("models/base.pt", "models/pruned.pt", "models/finetuned.pt", "data/demo"),
    uncached=("reports/compare.md",),
    metrics=("metrics/val.json",),
    plots=("reports/pr_curves.csv", "reports/pr_curves.png"),
    params=("val", "model"),
)
