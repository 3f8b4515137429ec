"""CPU timing: min of interleaved runs, with a fixed and restored thread count."""

import torch
from torch import nn

from tasks.timing import min_latencies, torch_threads


class Counting(nn.Module):
    def __init__(self, threads_seen: list[int]) -> None:
        super().__init__()
        self.calls = 0
        self.threads_seen = threads_seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.threads_seen.append(torch.get_num_threads())
        return x * 2


def test_every_model_runs_warmup_plus_repeats_on_the_given_threads():
    seen: list[int] = []
    models = {"a": Counting(seen), "b": Counting(seen)}
    before = torch.get_num_threads()
    best = min_latencies(models, torch.ones(1, 3), repeats=5, threads=1)
    assert set(best) == {"a", "b"} and all(0 < seconds < float("inf") for seconds in best.values())
    assert models["a"].calls == models["b"].calls == 2 + 5
    assert set(seen) == {1}
    assert torch.get_num_threads() == before  # restored


def test_torch_threads_restores_after_an_error_and_leaves_none_as_is():
    before = torch.get_num_threads()
    try:
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError
    except RuntimeError:
        pass
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_runs_are_interleaved():
    order: list[str] = []

    class Named(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            order.append(self.name)
            return x

    min_latencies({"a": Named("a"), "b": Named("b")}, torch.ones(1), repeats=3)
    assert order[4:] == ["a", "b"] * 3  # after the warm-up: a, b, a, b, ... so noise hits both alike
