"""Structural channel pruning with torch-pruning: the only module that imports it.

torch-pruning's dependency graph removes coupled channels together (convs, their batch norms,
residual adds, concats), so pruned channels are physically gone. On top of its pruner this adds
width rules that a model's config format may need: sets of convs that must keep equal widths,
and convs whose width must be half their input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch_pruning as tp
from torch import nn

__all__ = ["IMPORTANCES", "Importance", "WidthRules", "kept_channels", "prune_structured"]

Importance = Literal["l2", "l1", "bn_scale", "random"]
IMPORTANCES: tuple[str, ...] = ("l2", "l1", "bn_scale", "random")


@dataclass
class WidthRules:
    ignored: list[nn.Module] = field(default_factory=list)  # output channels never pruned
    equal: list[list[nn.Conv2d]] = field(default_factory=list)  # each list ends at one shared width
    halve_input: list[nn.Conv2d] = field(default_factory=list)  # out_channels = in_channels // 2


def kept_channels(width: int, ratio: float, round_to: int) -> int:
    """Channels torch-pruning keeps of `width` at `ratio` (floored to a multiple of `round_to`)."""
    kept = int(width * (1 - ratio))
    return kept - kept % round_to


def _importance(name: Importance) -> tp.importance.Importance:
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "random":
        return tp.importance.RandomImportance()
    raise ValueError(f"unknown importance {name!r}; choose one of {', '.join(IMPORTANCES)}")


def _prune_to(pruner: tp.pruner.BasePruner, conv: nn.Conv2d, target: int) -> None:
    """Remove the least important output channels of `conv` (and everything coupled) down to `target`."""
    excess = conv.out_channels - target
    if excess <= 0:
        return
    full = pruner.DG.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(conv.out_channels)))
    scores = pruner.estimate_importance(full)
    weakest = torch.argsort(scores)[:excess].tolist()
    pruner.DG.get_pruning_group(conv, tp.prune_conv_out_channels, weakest).prune()


def prune_structured(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    ratio: float,
    importance: Importance = "l2",
    round_to: int = 8,
    global_ranking: bool = False,
    iterative_steps: int = 1,
    rules: WidthRules | None = None,
) -> nn.Module:
    """Remove `ratio` of the channels of `model` in place, honouring `rules`; returns the model."""
    rules = rules or WidthRules()
    for parameter in model.parameters():
        parameter.requires_grad_(True)  # the dependency graph is traced through autograd
    pruner = tp.pruner.BasePruner(
        model,
        example_inputs,
        importance=_importance(importance),
        pruning_ratio=ratio,
        global_pruning=global_ranking,
        iterative_steps=iterative_steps,
        round_to=round_to,
        ignored_layers=[*rules.ignored, *rules.halve_input],
    )
    for _ in range(iterative_steps):
        pruner.step()
    for convs in rules.equal:
        target = min(conv.out_channels for conv in convs)
        for conv in convs:
            _prune_to(pruner, conv, target)
    for conv in rules.halve_input:
        _prune_to(pruner, conv, conv.in_channels // 2)
    return model
