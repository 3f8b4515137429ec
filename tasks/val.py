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
from tasks.config import ExportConfig, Params, ValConfig
from tasks.dataset import resolved_dataset_yaml
from tasks.layout import Layout, ValOutputs, int8_path
from tasks.stage import Stage
from tasks.timing import min_latencies
from tasks.yolo import count_gflops, detection_model, load_checkpoint, validate
from tasks.yolo.latency import Latencies, latency_matrix, runtime_files

__all__ = ["compare_models"]

log = logging.getLogger(__name__)


def _table(results: dict[str, dict[str, Any]], cfg: ValConfig) -> str:
    lines = [
        f"| model | params | GFLOPs@640 | P | R | mAP50 | mAP50-95 | torch latency ms (b1, {cfg.latency_imgsz}px, "
        f"{_threads(cfg.latency_threads[0])}) | speed-up "
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


def _threads(count: int) -> str:
    return f"{count} thread{'s' if count > 1 else ''}"


def _latency_rows(matrix: Latencies, baseline: str) -> list[dict[str, Any]]:
    """One row per (threads, model, runtime): ms, and speed-ups against base on torch and base on that runtime."""
    rows = []
    for threads, seconds in matrix.items():
        for (model, runtime), own in seconds.items():
            rows.append(
                {
                    "threads": threads,
                    "model": model,
                    "runtime": runtime,
                    "ms": round(own * 1e3, 3),
                    "vs_base_torch": round(seconds[baseline, "torch"] / own, 3),
                    # None where the base has no model on that runtime (an INT8 model that was not kept)
                    "vs_base_same_runtime": (
                        round(seconds[baseline, runtime] / own, 3) if (baseline, runtime) in seconds else None
                    ),
                }
            )
    return rows


def _latency_table(rows: list[dict[str, Any]], cfg: ValConfig, repeats: int) -> str:
    lines = [
        f"\nBatch-1 latency at {cfg.latency_imgsz} px, best of {repeats} interleaved rounds: speed-up against the "
        "base on PyTorch (what YOLOv5 users run) and against the base on the same runtime (the pruning's own gain).\n",
        "| threads | model | runtime | ms | vs base·torch | vs base·same runtime |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['threads']} | {r['model']} | {r['runtime']} | {r['ms']:.1f} | {r['vs_base_torch']:.2f}x "
            f"| {'—' if r['vs_base_same_runtime'] is None else format(r['vs_base_same_runtime'], '.2f') + 'x'} |"
        )
    return "\n".join(lines) + "\n"


def _write_latency(rows: list[dict[str, Any]], cfg: ValConfig, out: ValOutputs) -> None:
    with atomic_file(out.latency_csv) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    thread_counts = list(dict.fromkeys(r["threads"] for r in rows))
    figure = Figure(figsize=(4 + 3 * len(thread_counts), 4.5))
    axes = figure.subplots(1, len(thread_counts), sharey=True, squeeze=False)[0]
    models = list(dict.fromkeys(r["model"] for r in rows))
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    width = 0.8 / len(runtimes)
    for axis, threads in zip(axes, thread_counts, strict=True):
        for k, runtime in enumerate(runtimes):
            ms = {r["model"]: r["ms"] for r in rows if r["threads"] == threads and r["runtime"] == runtime}
            axis.bar(
                [i + k * width for i in range(len(models))], [ms.get(m, 0.0) for m in models], width, label=runtime
            )
        axis.set_xticks([i + width * (len(runtimes) - 1) / 2 for i in range(len(models))], models)
        axis.set(title=f"{_threads(threads)}, batch 1, {cfg.latency_imgsz} px", ylabel="latency ms (min of N)")
    axes[0].legend()
    figure.tight_layout()
    write_png(figure, out.latency_png)


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


def compare_models(
    cfg: ValConfig,
    *,
    weights: dict[str, Path],
    data_yaml: Path,
    export: ExportConfig,
    out: ValOutputs,
    int8: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Accuracy, size and CPU speed on each runtime of each checkpoint in `weights` (the first is the baseline).

    `int8` ({name: INT8 .onnx}, from stage export) adds those models to the timing as runtime onnxruntime_int8.
    """
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
    baseline = next(iter(weights))
    with tempfile.TemporaryDirectory(prefix="lightweight-latency-") as scratch:
        files = runtime_files(
            weights,
            cfg.runtimes,
            Path(scratch),
            imgsz=cfg.latency_imgsz,  # a static export must be made for the size it is timed at
            opset=export.opset,
            dynamic=export.dynamic,
            simplify=export.simplify,
            int8=int8,
        )
        matrix = latency_matrix(
            files, imgsz=cfg.latency_imgsz, threads=cfg.latency_threads, repeats=cfg.latency_repeats
        )
    rows = _latency_rows(matrix, baseline)
    fused = {name: copy.deepcopy(model).fuse().eval() for name, model in models.items()}
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(cfg.throughput_batch, 3, cfg.latency_imgsz, cfg.latency_imgsz, generator=generator)
    batched = min_latencies(fused, batch, max(3, cfg.latency_repeats // 4), cfg.latency_threads[0])
    for name, result in results.items():
        single = {r["runtime"]: r for r in rows if r["model"] == name and r["threads"] == cfg.latency_threads[0]}
        result["latency_ms"] = single["torch"]["ms"]
        result["speedup"] = single["torch"]["vs_base_torch"]
        result["throughput"] = round(cfg.throughput_batch / batched[name], 2)
        result["map50_vs_" + baseline] = round(result["map50"] / max(results[baseline]["map50"], 1e-9), 4)
        result["latency"] = {
            f"{r['runtime']}@{r['threads']}": {k: r[k] for k in ("ms", "vs_base_torch", "vs_base_same_runtime")}
            for r in rows
            if r["model"] == name
        }
    write_json(out.metrics, results)
    table = _table(results, cfg) + _latency_table(rows, cfg, cfg.latency_repeats)
    with atomic_file(out.table) as tmp:
        tmp.write_text(table)
    _write_pr(curves, out)
    _write_latency(rows, cfg, out)
    log.info("comparison:\n%s", table)
    return results


def _run(params: Params, root: Path) -> dict[str, Any]:
    layout = Layout(root)
    weights = {
        "base": layout.base_weights,
        "pruned": layout.prune_outputs.weights,
        "finetuned": layout.finetuned_weights,
    }
    return compare_models(
        params.val,
        weights=weights,
        data_yaml=params.model.data_yaml(layout.demo_data),
        export=params.export,
        out=layout.val_outputs,
        int8=_kept_int8(params, root, weights),
    )


def _kept_int8(params: Params, root: Path, weights: dict[str, Path]) -> dict[str, Path]:
    """The INT8 models stage export kept, if they can run at val.latency_imgsz (a static export cannot)."""
    if not params.export.dynamic and params.export.imgsz != params.val.latency_imgsz:
        log.warning(
            "INT8 models not timed: exported static at %d px, timed at %d",
            params.export.imgsz,
            params.val.latency_imgsz,
        )
        return {}
    return {name: path for name in weights if (path := int8_path(root / "models", name)).is_file()}


STAGE = Stage(
    name="val",
    run=_run,
    deps=("models/base.pt", "models/pruned.pt", "models/finetuned.pt", "data/demo", "models/int8"),
    uncached=("reports/compare.md",),
    metrics=("metrics/val.json",),
    plots=("reports/pr_curves.csv", "reports/pr_curves.png", "reports/latency.csv", "reports/latency.png"),
    params=("val", "model", "export"),
)
