"""CPU timing that survives a shared, noisy machine: same process, same input, interleaved, min of N."""

from __future__ import annotations

import time

import torch
from torch import nn

__all__ = ["min_latencies"]


def min_latencies(models: dict[str, nn.Module], batch: torch.Tensor, repeats: int) -> dict[str, float]:
    """Best wall time in seconds of one forward pass of `batch` per model, over `repeats` interleaved rounds."""
    best = dict.fromkeys(models, float("inf"))
    with torch.inference_mode():
        for model in models.values():  # warm-up: allocator, anchor grids, kernel selection
            for _ in range(2):
                model(batch)
        for _ in range(repeats):
            for name, model in models.items():  # interleaved, so machine noise hits every model alike
                start = time.perf_counter()
                model(batch)
                best[name] = min(best[name], time.perf_counter() - start)
    return best
