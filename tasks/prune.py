"""Stage `prune`: load ckpt → prune → merge ckpt → rewrite yaml, with what it saved measured.

Iterative mode (`prune.iterative_steps` > 1 with `finetune.epochs_per_step` > 0) fine-tunes between
steps: step i cuts every layer to its width at ratio i/steps of the final one, ranking channels by the
weights the previous round of training left; the last step is fine-tuned by stage `finetune`.
"""

from __future__ import annotations

import copy
import csv
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from matplotlib.figure import Figure
from torch import nn

from tasks.atomic import atomic_file, write_json, write_png, write_torch
from tasks.config import FinetuneConfig, Params, PruneConfig, TrainingConfig
from tasks.dataset import resolved_dataset_yaml
from tasks.errors import LightweightError
from tasks.finetune import finetune
from tasks.layout import Layout, PruneOutputs
from tasks.pruning import WidthRules, kept_channels, prunable_convs, prune_structured, prune_to_widths
from tasks.stage import Stage
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

__all__ = ["PruneError", "prune_checkpoint"]

log = logging.getLogger(__name__)
TRACE_IMGSZ = 256  # input size for tracing the dependency graph; widths do not depend on it


class PruneError(LightweightError, ValueError):
    """Pruning settings this checkpoint cannot honour."""


def _check_ratio(model: nn.Module, rules: WidthRules, cfg: PruneConfig) -> None:
    for name, conv in prunable_convs(model, rules).items():
        if kept_channels(conv.out_channels, cfg.ratio, cfg.round_to, cfg.min_channels) == 0:
            raise PruneError(
                f"prune.ratio={cfg.ratio} leaves no channels in {name} ({conv.out_channels} channels, "
                f"kept in multiples of round_to={cfg.round_to}); lower the ratio or set prune.min_channels"
            )


def _check_step_training(cfg: PruneConfig, retrain: FinetuneConfig, data_yaml: Path | None) -> None:
    if cfg.iterative_steps < 2:
        raise PruneError("fine-tuning between pruning steps needs prune.iterative_steps > 1")
    if cfg.global_ranking:
        raise PruneError("prune.global_ranking cannot be combined with fine-tuning between pruning steps")
    if retrain.epochs < 1:
        raise PruneError(f"fine-tuning between pruning steps needs at least 1 epoch, got {retrain.epochs}")
    if data_yaml is None:
        raise PruneError("fine-tuning between pruning steps needs a dataset yaml")
    with tempfile.TemporaryDirectory(prefix="lightweight-prune-check-") as scratch:
        resolved_dataset_yaml(data_yaml, Path(scratch))  # a missing val split fails now, not after step 1


def _prune_one_shot(cfg: PruneConfig, model: nn.Module) -> nn.Module:
    pruned = copy.deepcopy(model)
    prune_structured(
        pruned,
        torch.zeros(1, 3, TRACE_IMGSZ, TRACE_IMGSZ),
        ratio=cfg.ratio,
        importance=cfg.importance,
        round_to=cfg.round_to,
        global_ranking=cfg.global_ranking,
        iterative_steps=cfg.iterative_steps,
        min_channels=cfg.min_channels,
        rules=width_rules(pruned),
    )
    return pruned


def _write_model(ckpt: dict[str, Any], model: nn.Module, weights: Path, model_yaml: Path) -> dict[str, Any]:
    """Write `model` as a train.py checkpoint plus the yaml that rebuilds it, both checked; returns the yaml."""
    model.eval()
    yaml_dict = pruned_yaml(model)
    rebuilt = build_model(yaml_dict, nc=int(model.model[-1].nc))
    if not same_architecture(model, rebuilt):
        raise RuntimeError("internal error: the rewritten yaml does not rebuild the pruned network")
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    if not outputs_match(model, rebuilt):
        raise RuntimeError("internal error: the network rebuilt from the yaml computes something else")
    with atomic_file(model_yaml) as tmp:
        tmp.write_text(yaml.safe_dump(yaml_dict, sort_keys=False))
    write_torch(weights, merged_checkpoint(ckpt, model, yaml_dict))
    return yaml_dict


def _prune_and_retrain(
    cfg: PruneConfig, retrain: FinetuneConfig, ckpt: dict[str, Any], model: nn.Module, data_yaml: Path
) -> tuple[nn.Module, dict[str, Any], list[dict[str, Any]]]:
    """Prune in `cfg.iterative_steps` steps with `retrain` between them: (model, its checkpoint, per-step log)."""
    widths = {name: conv.out_channels for name, conv in prunable_convs(model, width_rules(model)).items()}
    current, steps = copy.deepcopy(model), []
    with tempfile.TemporaryDirectory(prefix="lightweight-prune-") as scratch:
        for step in range(1, cfg.iterative_steps + 1):
            ratio = cfg.ratio * step / cfg.iterative_steps
            targets = {n: kept_channels(w, ratio, cfg.round_to, cfg.min_channels) for n, w in widths.items()}
            prune_to_widths(
                current,
                torch.zeros(1, 3, TRACE_IMGSZ, TRACE_IMGSZ),
                targets,
                importance=cfg.importance,
                rules=width_rules(current),
            )
            parameters = sum(p.numel() for p in current.parameters())
            record: dict[str, Any] = {"step": step, "ratio": round(ratio, 4), "parameters": parameters}
            steps.append(record)
            if step == cfg.iterative_steps:
                break  # stage `finetune` trains the last step
            folder = Path(scratch) / f"step{step}"
            folder.mkdir()
            _write_model(ckpt, current, folder / "pruned.pt", folder / "pruned.yaml")
            log.info(
                "prune step %d/%d (ratio %.3f): fine-tuning %d epochs", step, cfg.iterative_steps, ratio, retrain.epochs
            )
            trained = finetune(
                retrain,
                weights=folder / "pruned.pt",
                model_yaml=folder / "pruned.yaml",
                data_yaml=data_yaml,
                out_weights=folder / "trained.pt",
            )
            ckpt = load_checkpoint(trained)
            current = copy.deepcopy(detection_model(ckpt, trained))  # the next ranking uses the trained weights
            record["epochs"] = retrain.epochs
    return current, ckpt, steps


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


def prune_checkpoint(
    cfg: PruneConfig,
    *,
    weights: Path,
    out: PruneOutputs,
    retrain: FinetuneConfig | None = None,
    data_yaml: Path | None = None,
) -> dict[str, Any]:
    """Prune a YOLOv5 checkpoint structurally and write a checkpoint and yaml YOLOv5 accepts as they are.

    With `retrain` (epochs = epochs per step) it fine-tunes on `data_yaml` between the pruning steps.
    """
    ckpt = load_checkpoint(weights)
    model = detection_model(ckpt, weights)
    check_rewritable(model)
    _check_ratio(model, width_rules(model), cfg)
    if retrain is not None:
        _check_step_training(cfg, retrain, data_yaml)

    before = _summary(model)
    if retrain is None or data_yaml is None:
        pruned, steps = _prune_one_shot(cfg, model), []
    else:
        pruned, ckpt, steps = _prune_and_retrain(cfg, retrain, ckpt, model, Path(data_yaml))
    _write_model(ckpt, pruned, out.weights, out.yaml)
    after = _summary(pruned)
    _write_widths(
        before["widths"],
        after["widths"],
        out.widths_csv,
        out.widths_png,
        f"{Path(weights).name}: prune ratio {cfg.ratio} ({cfg.importance})",
    )
    metrics = {
        "ratio": cfg.ratio,
        "importance": cfg.importance,
        "min_channels": cfg.min_channels,
        "iterative_steps": cfg.iterative_steps,
        "epochs_per_step": retrain.epochs if retrain is not None else 0,
        "steps": steps,
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
        weights,
        before["parameters"],
        after["parameters"],
        metrics["parameters_reduction"],
        before["gflops_640"],
        after["gflops_640"],
        metrics["gflops_reduction"],
    )
    return metrics


def _run(params: Params, root: Path) -> dict[str, Any]:
    layout = Layout(root)
    return prune_checkpoint(
        params.prune,
        weights=layout.base_weights,
        out=layout.prune_outputs,
        retrain=params.step_training(),
        data_yaml=params.model.data_yaml(layout.demo_data),
    )


STAGE = Stage(
    name="prune",
    run=_run,
    deps=("models/base.pt", "data/demo"),
    outs=("models/pruned.pt", "models/pruned.yaml"),
    metrics=("metrics/prune.json",),
    plots=("reports/prune_widths.csv", "reports/prune_widths.png"),
    # iterative mode trains between pruning steps with these; finetune.epochs is not one of them
    params=(
        "prune",
        "model",
        "finetune.epochs_per_step",
        *(f"finetune.{key}" for key in TrainingConfig.model_fields if key != "epochs"),
    ),
)
