"""CPU timing that survives a shared, noisy machine: same process, same input, interleaved, min of N.

The torch thread count is fixed while timing: with two threads a pass is only as fast as the slower
core, so on a shared machine small (pruned) models lose more to the neighbours than big ones, and the
ratio drifts from run to run. One thread needs one free core at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["min_latencies", "torch_threads"]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with this many intra-op torch threads (None or 0: leave as is), then restore the count.

    Small networks on small batches gain nothing from more threads on a shared CPU; they wait on each other.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def min_latencies(
    models: dict[str, nn.Module], batch: torch.Tensor, repeats: int, threads: int | None = None
) -> dict[str, float]:
    """Best wall time in seconds of one forward pass of `batch` per model, over `repeats` interleaved rounds."""
    best = dict.fromkeys(models, float("inf"))
    with torch.inference_mode(), torch_threads(threads):
        for model in models.values():  # warm-up: allocator, anchor grids, kernel selection
            for _ in range(2):
                model(batch)
        for _ in range(repeats):
            for name, model in models.items():  # interleaved, so machine noise hits every model alike
                start = time.perf_counter()
                model(batch)
                best[name] = min(best[name], time.perf_counter() - start)
    return best
