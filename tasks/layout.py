"""Where each stage reads and writes, relative to the project root (dvc.yaml names the same paths)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def demo_data(self) -> Path:
        return self.root / "data" / "demo"

    @property
    def base_weights(self) -> Path:
        return self.root / "models" / "base.pt"

    @property
    def base_metrics(self) -> Path:
        return self.root / "metrics" / "base.json"
