"""CPU timing that survives a shared, noisy machine: same process, same input, interleaved, min of N.

The torch thread count is fixed while timing: with two threads a pass is only as fast as the slower
core, so on a shared machine small (pruned) models lose more to the neighbours than big ones, and the
ratio drifts from run to run. One thread needs one free core at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn

__all__ = ["min_call_times", "min_latencies", "torch_threads"]

Key = TypeVar("Key", bound=Hashable)


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


def min_call_times(calls: dict[Key, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[Key, float]:
    """Best wall time in seconds of each call over `repeats` interleaved rounds, after `warmup` calls each.

    Interleaved, so machine noise hits every call alike; the minimum, because noise only ever adds time.
    """
    best = dict.fromkeys(calls, float("inf"))
    for call in calls.values():  # warm-up: allocators, anchor grids, kernel selection, compiled shapes
        for _ in range(warmup):
            call()
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def min_latencies(
    models: dict[str, nn.Module], batch: torch.Tensor, repeats: int, threads: int | None = None
) -> dict[str, float]:
    """Best wall time in seconds of one forward pass of `batch` per model, over `repeats` interleaved rounds."""
    with torch.inference_mode(), torch_threads(threads):
        return min_call_times({name: (lambda m=model: m(batch)) for name, model in models.items()}, repeats)
