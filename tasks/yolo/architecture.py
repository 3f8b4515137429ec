"""Pruned YOLOv5 networks as YOLOv5 sees them: width rules, a yaml that rebuilds them, a train.py checkpoint.

YOLOv5's train.py rebuilds the network from `cfg or ckpt['model'].yaml` and copies only tensors of
matching shape, so a pruned model must carry a yaml that rebuilds it exactly. That yaml uses the stock
syntax with `depth_multiple: 1.0`, `width_multiple: 1.0` and every width written out.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from tasks.pruning import WidthRules
from tasks.yolo.checkpoint import CheckpointError

__all__ = [
    "build_model",
    "check_rewritable",
    "merged_checkpoint",
    "outputs_match",
    "pruned_yaml",
    "same_architecture",
    "width_rules",
]

_REWRITABLE = {"Conv", "C3", "SPPF", "Concat", "Upsample", "Detect"}


def _modules():
    from yolov5.models.common import C3, SPPF, Conv
    from yolov5.models.yolo import Detect

    return C3, SPPF, Conv, Detect


def check_rewritable(model: nn.Module) -> None:
    """Fail before any work on layers this rewrite does not know (stock v7.0 yamls use none)."""
    unknown = sorted({type(m).__name__ for m in model.model} - _REWRITABLE)
    if unknown:
        raise CheckpointError(
            f"cannot prune and rewrite layers of type {', '.join(unknown)} (supported: "
            f"{', '.join(sorted(_REWRITABLE))})"
        )


def width_rules(model: nn.Module) -> WidthRules:
    """What keeps a pruned YOLOv5 expressible as a yaml: C3 inner widths equal, SPPF hidden = input // 2."""
    c3, sppf, _, detect = _modules()
    rules = WidthRules()
    for layer in model.model:
        if isinstance(layer, detect):
            rules.ignored.append(layer)  # outputs are na * (nc + 5): never pruned
        elif isinstance(layer, c3):
            inner = [layer.cv1.conv, layer.cv2.conv]
            for bottleneck in layer.m:
                inner += [bottleneck.cv1.conv, bottleneck.cv2.conv]
            rules.equal.append(inner)
        elif isinstance(layer, sppf):
            rules.halve_input.append(layer.cv1.conv)
    return rules


def _e_for(hidden: int, c2: int) -> float:
    """The C3 `e` for which YOLOv5's `int(c2 * e)` gives back exactly `hidden`."""
    e = hidden / c2
    return e if int(c2 * e) == hidden else (hidden + 0.5) / c2


def pruned_yaml(model: nn.Module) -> dict[str, Any]:
    """The model yaml (as a dict) that rebuilds `model`'s current widths exactly."""
    c3, sppf, conv, _ = _modules()
    check_rewritable(model)
    source = model.yaml
    layers = [*source["backbone"], *source["head"]]
    rewritten = []
    for layer, (origin, _number, name, args) in zip(model.model, layers, strict=True):
        args = list(args)
        number = 1
        if isinstance(layer, conv):
            args = [layer.conv.out_channels, *args[1:]]
        elif isinstance(layer, c3):
            c2 = layer.cv3.conv.out_channels
            shortcut = args[1] if len(args) > 1 else True
            groups = args[2] if len(args) > 2 else 1
            args = [c2, shortcut, groups, _e_for(layer.cv1.conv.out_channels, c2)]
            number = len(layer.m)
        elif isinstance(layer, sppf):
            args = [layer.cv2.conv.out_channels, *args[1:]]
        rewritten.append([origin, number, name, args])
    split = len(source["backbone"])
    extra = {k: v for k, v in source.items() if k not in {"backbone", "head", "depth_multiple", "width_multiple"}}
    return {
        **extra,
        "nc": int(model.model[-1].nc),
        "depth_multiple": 1.0,
        "width_multiple": 1.0,
        "backbone": rewritten[:split],
        "head": rewritten[split:],
    }


def build_model(yaml_dict: dict[str, Any], nc: int) -> nn.Module:
    """YOLOv5's own DetectionModel built from a yaml dict, as train.py builds it."""
    from yolov5.models.yolo import DetectionModel

    return DetectionModel(copy.deepcopy(yaml_dict), ch=3, nc=nc)


def merged_checkpoint(source: dict[str, Any], pruned: nn.Module, yaml_dict: dict[str, Any]) -> dict[str, Any]:
    """The dict YOLOv5's train.py saves, holding the pruned network; training restarts from epoch 0."""
    pruned = copy.deepcopy(pruned).float()
    pruned.yaml = copy.deepcopy(yaml_dict)
    pruned.yaml_file = "pruned.yaml"
    for parameter in pruned.parameters():
        parameter.requires_grad_(False)
    origin = source.get("ema") or source["model"]
    for attribute in ("names", "nc", "hyp", "args"):
        if hasattr(origin, attribute):
            setattr(pruned, attribute, copy.deepcopy(getattr(origin, attribute)))
    return {
        "epoch": -1,
        "best_fitness": None,
        "model": copy.deepcopy(pruned).half(),
        "ema": copy.deepcopy(pruned).half(),
        "updates": 0,
        "optimizer": None,
        "opt": copy.deepcopy(source.get("opt")),
        "git": copy.deepcopy(source.get("git")),
        "date": source.get("date"),  # the source's: the same inputs give a byte-identical checkpoint
    }


def same_architecture(a: nn.Module, b: nn.Module) -> bool:
    """Same state_dict keys with the same tensor shapes."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


@torch.no_grad()
def outputs_match(a: nn.Module, b: nn.Module, imgsz: int = 128, atol: float = 1e-4) -> bool:
    image = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    return torch.allclose(a.eval()(image)[0], b.eval()(image)[0], atol=atol)
