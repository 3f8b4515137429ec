"""Stage `prune`: load ckpt → prune → merge ckpt → rewrite yaml, with what it saved measured."""

from __future__ import annotations

import copy
import csv
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from matplotlib.figure import Figure
from prefect import task
from torch import nn

from tasks.atomic import atomic_file, write_json, write_png
from tasks.caching import StepCachePolicy
from tasks.config import PruneConfig
from tasks.layout import PruneOutputs
from tasks.pruning import WidthRules, kept_channels, prune_structured
from tasks.yolo import count_gflops, detection_model, layer_widths, load_checkpoint
from tasks.yolo.architecture import (
    build_model,
    check_rewritable,
    merged_checkpoint,
    outputs_match,
    pruned_yaml,
    same_architecture,
    width_rules,
)

__all__ = ["PruneError", "prune_checkpoint", "prune_task"]

log = logging.getLogger(__name__)
TRACE_IMGSZ = 256  # input size for tracing the dependency graph; widths do not depend on it


class PruneError(ValueError):
    """Pruning settings this checkpoint cannot honour."""


def _check_ratio(model: nn.Module, rules: WidthRules, cfg: PruneConfig) -> None:
    fixed = {id(m) for layer in rules.ignored for m in layer.modules()} | {id(c) for c in rules.halve_input}
    prunable = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in fixed]
    for name, conv in prunable:
        if kept_channels(conv.out_channels, cfg.ratio, cfg.round_to) == 0:
            raise PruneError(
                f"prune.ratio={cfg.ratio} leaves no channels in {name} ({conv.out_channels} channels, "
                f"kept in multiples of round_to={cfg.round_to}); lower the ratio"
            )


def _summary(model: nn.Module) -> dict[str, Any]:
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflops_640": round(count_gflops(model), 4),
        "widths": layer_widths(model),
    }


def _write_widths(before: list, after: list, csv_path: Path, png_path: Path, title: str) -> None:
    with atomic_file(csv_path) as tmp, tmp.open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["layer", "module", "before", "after"])
        for b, a in zip(before, after, strict=True):
            rows.writerow([b.index, b.module, b.out_channels, a.out_channels])
    figure = Figure(figsize=(10, 4))
    axis = figure.subplots()
    index = [b.index for b in before]
    axis.bar([i - 0.2 for i in index], [b.out_channels for b in before], width=0.4, label="before")
    axis.bar([i + 0.2 for i in index], [a.out_channels for a in after], width=0.4, label="after")
    axis.set(xlabel="layer", ylabel="output channels", title=title, xticks=index)
    axis.legend()
    figure.tight_layout()
    write_png(figure, png_path)


def prune_checkpoint(cfg: PruneConfig, weights: Path, out: PruneOutputs) -> dict[str, Any]:
    """Prune a YOLOv5 checkpoint structurally and write a checkpoint and yaml YOLOv5 accepts as they are."""
    ckpt = load_checkpoint(weights)
    model = detection_model(ckpt, weights)
    check_rewritable(model)
    _check_ratio(model, width_rules(model), cfg)

    before = _summary(model)
    pruned = copy.deepcopy(model)
    prune_structured(
        pruned,
        torch.zeros(1, 3, TRACE_IMGSZ, TRACE_IMGSZ),
        ratio=cfg.ratio,
        importance=cfg.importance,
        round_to=cfg.round_to,
        global_ranking=cfg.global_ranking,
        iterative_steps=cfg.iterative_steps,
        rules=width_rules(pruned),
    )
    pruned.eval()
    yaml_dict = pruned_yaml(pruned)
    rebuilt = build_model(yaml_dict, nc=int(pruned.model[-1].nc))
    if not same_architecture(pruned, rebuilt):
        raise RuntimeError("internal error: the rewritten yaml does not rebuild the pruned network")
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    if not outputs_match(pruned, rebuilt):
        raise RuntimeError("internal error: the network rebuilt from the yaml computes something else")
    after = _summary(pruned)

    with atomic_file(out.yaml) as tmp:
        tmp.write_text(yaml.safe_dump(yaml_dict, sort_keys=False))
    with atomic_file(out.weights) as tmp:
        torch.save(merged_checkpoint(ckpt, pruned, yaml_dict), tmp)
    _write_widths(before["widths"], after["widths"], out.widths_csv, out.widths_png,
                  f"{Path(weights).name}: prune ratio {cfg.ratio} ({cfg.importance})")  # fmt: skip
    metrics = {
        "ratio": cfg.ratio,
        "importance": cfg.importance,
        "parameters_before": before["parameters"],
        "parameters_after": after["parameters"],
        "parameters_reduction": round(before["parameters"] / after["parameters"], 3),
        "gflops_before": before["gflops_640"],
        "gflops_after": after["gflops_640"],
        "gflops_reduction": round(before["gflops_640"] / after["gflops_640"], 3),
        "achieved_channel_ratio": round(
            1 - sum(w.out_channels for w in after["widths"][:-1]) / sum(w.out_channels for w in before["widths"][:-1]),
            4,
        ),
        "layers": [
            {"index": b.index, "module": b.module, "before": b.out_channels, "after": a.out_channels}
            for b, a in zip(before["widths"], after["widths"], strict=True)
        ],
    }
    write_json(out.metrics, metrics)
    log.info(
        "pruned %s: %d -> %d parameters (%.2fx), %.2f -> %.2f GFLOPs (%.2fx)",
        weights, before["parameters"], after["parameters"], metrics["parameters_reduction"],
        before["gflops_640"], after["gflops_640"], metrics["gflops_reduction"],
    )  # fmt: skip
    return metrics


@task(name="prune", cache_policy=StepCachePolicy(code=("tasks.prune", "tasks.pruning", "tasks.yolo"), outputs=("out",)))
def prune_task(cfg: PruneConfig, weights: Path, out: PruneOutputs) -> PruneOutputs:
    """Prune the base detector, merge a YOLOv5 checkpoint and rewrite its yaml."""
    prune_checkpoint(cfg, weights, out)
    return out
