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

__all__ = [
    "IMPORTANCES",
    "Importance",
    "WidthRules",
    "kept_channels",
    "prunable_convs",
    "prune_structured",
    "prune_to_widths",
]

Importance = Literal["l2", "l1", "bn_scale", "random"]
IMPORTANCES: tuple[str, ...] = ("l2", "l1", "bn_scale", "random")


@dataclass
class WidthRules:
    ignored: list[nn.Module] = field(default_factory=list)  # output channels never pruned
    equal: list[list[nn.Conv2d]] = field(default_factory=list)  # each list ends at one shared width
    halve_input: list[nn.Conv2d] = field(default_factory=list)  # out_channels = in_channels // 2


def kept_channels(width: int, ratio: float, round_to: int, min_channels: int = 0) -> int:
    """Channels kept of `width` at `ratio` (floored to a multiple of `round_to`, never below `min_channels`)."""
    kept = int(width * (1 - ratio))
    return min(width, max(kept - kept % round_to, min_channels))


def prunable_convs(model: nn.Module, rules: WidthRules) -> dict[str, nn.Conv2d]:
    """The convs whose output channels the ratio applies to, by module name (rules decide the others)."""
    fixed = {id(m) for layer in rules.ignored for m in layer.modules()} | {id(c) for c in rules.halve_input}
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in fixed}


def _floored_ratios(model: nn.Module, ratio: float, round_to: int, min_channels: int, rules: WidthRules) -> dict:
    """Layer ratios for the convs that `ratio` would take below `min_channels`: they keep exactly that many."""
    floored: dict[nn.Module, float] = {}
    for module in prunable_convs(model, rules).values():
        kept = int(module.out_channels * (1 - ratio))
        if kept - kept % round_to < min_channels:
            floored[module] = max(0.0, 1 - (min_channels + 0.5) / module.out_channels)  # +0.5: int() floors
    return floored


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
    min_channels: int = 0,
    rules: WidthRules | None = None,
) -> nn.Module:
    """Remove `ratio` of the channels of `model` in place, honouring `rules`; returns the model.

    With `min_channels` > 0 (a multiple of `round_to`), layers that `ratio` would take below it keep
    `min_channels` instead (or all they have, if narrower): that lets narrow stems survive high ratios.
    """
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
        pruning_ratio_dict=_floored_ratios(model, ratio, round_to, min_channels, rules) or None,
    )
    for _ in range(iterative_steps):
        pruner.step()
    _apply_rules(pruner, rules)
    return model


def prune_to_widths(
    model: nn.Module,
    example_inputs: torch.Tensor,
    widths: dict[str, int],
    *,
    importance: Importance = "l2",
    rules: WidthRules | None = None,
) -> nn.Module:
    """Cut each named conv of `model` in place down to `widths[name]` output channels (its least important ones).

    Exact widths, unlike a ratio: what lets several prune/fine-tune rounds end at the one-shot widths.
    """
    rules = rules or WidthRules()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    pruner = tp.pruner.BasePruner(
        model,
        example_inputs,
        importance=_importance(importance),
        pruning_ratio=0.0,
        ignored_layers=[*rules.ignored, *rules.halve_input],
    )
    convs = dict(model.named_modules())
    unknown = sorted(set(widths) - set(convs))
    if unknown:
        raise ValueError(f"no such layers to prune: {', '.join(unknown)}")
    for name, width in widths.items():
        _prune_to(pruner, convs[name], width)  # coupled convs (residual adds) shrink along with it
    _apply_rules(pruner, rules)
    return model


def _apply_rules(pruner: tp.pruner.BasePruner, rules: WidthRules) -> None:
    for convs in rules.equal:
        target = min(conv.out_channels for conv in convs)
        for conv in convs:
            _prune_to(pruner, conv, target)
    for conv in rules.halve_input:
        _prune_to(pruner, conv, conv.in_channels // 2)
