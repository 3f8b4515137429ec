"""CPU latency of the base detector, its structurally pruned version, and the same base with weights
zeroed by torch.nn.utils.prune.ln_structured at the same ratio (zeroed, not removed).

All three are measured side by side in one process on the same input (batch 1), interleaved,
min of N, torch threads fixed, after conv+bn fusion as YOLOv5's detect.py runs them. Prints ratios against the base.

    .venv/bin/python benchmarks/prune_speed.py --base models/base.pt --pruned models/pruned.pt
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from tasks.timing import min_latencies
from tasks.yolo import count_gflops, detection_model, load_checkpoint


def zeroed_copy(model: nn.Module, ratio: float) -> nn.Module:
    zeroed = copy.deepcopy(model)
    for module in zeroed.modules():
        if isinstance(module, nn.Conv2d) and module not in zeroed.model[-1].m:
            torch_prune.ln_structured(module, "weight", amount=ratio, n=2, dim=0)
            torch_prune.remove(module, "weight")
    return zeroed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("models/base.pt"))
    parser.add_argument("--pruned", type=Path, default=Path("models/pruned.pt"))
    parser.add_argument("--ratio", type=float, help="zeroing ratio; default: the pruned checkpoint's channel ratio")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing (val.latency_threads)")
    args = parser.parse_args()

    base = detection_model(load_checkpoint(args.base))
    pruned = detection_model(load_checkpoint(args.pruned))
    widths = [
        (b.out_channels, p.out_channels)
        for b, p in zip(base.modules(), pruned.modules(), strict=False)
        if isinstance(b, nn.Conv2d) and isinstance(p, nn.Conv2d)
    ]
    ratio = args.ratio or round(1 - sum(p for _, p in widths) / sum(b for b, _ in widths), 3)
    models = {"base": base, "pruned (removed)": pruned, f"ln_structured {ratio} (zeroed)": zeroed_copy(base, ratio)}
    stats = {name: (sum(p.numel() for p in m.parameters()), count_gflops(m, args.imgsz)) for name, m in models.items()}
    models = {name: copy.deepcopy(m).fuse().eval() for name, m in models.items()}

    image = torch.rand(1, 3, args.imgsz, args.imgsz, generator=torch.Generator().manual_seed(0))
    latency = min_latencies(models, image, args.repeats, args.threads)
    print(f"CPU latency, batch 1, {args.imgsz}px, min of {args.repeats}, torch threads={args.threads}")
    print(f"{'model':<28}{'params':>12}{'GFLOPs':>9}{'ms':>9}{'speed-up':>10}")
    for name in models:
        params, gflops = stats[name]
        speedup = latency["base"] / latency[name]
        print(f"{name:<28}{params:>12,}{gflops:>9.2f}{latency[name] * 1e3:>9.1f}{speedup:>9.2f}x")


if __name__ == "__main__":
    main()
