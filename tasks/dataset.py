"""YOLOv5 dataset yamls: checked before any work, and rewritten for YOLOv5 into a run folder.

Two YOLOv5 habits make a dataset yaml unusable as it is: it resolves a relative `path:` against
its own package folder, and it writes `labels/*.cache` files into the dataset, which would change
a DVC-tracked output behind DVC's back. So each split becomes a list of absolute image paths in
the run folder, where YOLOv5 then keeps its cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasks.errors import LightweightError

__all__ = ["IMAGE_SUFFIXES", "DatasetError", "read_dataset_yaml", "resolved_dataset_yaml"]

IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"})


class DatasetError(LightweightError, ValueError):
    """A dataset yaml YOLOv5 could not train or validate on."""


def read_dataset_yaml(data_yaml: Path) -> dict[str, Any]:
    """The dataset description with `path` made absolute and every split checked to exist."""
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise DatasetError(f"{data_yaml}: dataset yaml not found")
    data = yaml.safe_load(data_yaml.read_text())
    if not isinstance(data, dict):
        raise DatasetError(f"{data_yaml}: expected a mapping with train/val/names")
    for key in ("train", "val", "names"):
        if not data.get(key):
            raise DatasetError(f"{data_yaml}: missing '{key}'")
    names = data["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else names
    if "nc" in data and int(data["nc"]) != len(names):
        raise DatasetError(f"{data_yaml}: nc={data['nc']} but {len(names)} names")
    root = Path(data.get("path") or ".")
    root = root if root.is_absolute() else (data_yaml.parent / root).resolve()
    for split in ("train", "val", "test"):
        entries = data.get(split)
        for entry in [entries] if isinstance(entries, str) else entries or []:
            if not (root / entry).exists():
                raise DatasetError(f"{data_yaml}: {split} split not found at {root / entry}")
    return {**data, "path": str(root), "names": names, "nc": len(names)}


def _split_images(root: Path, entries: str | list[str]) -> list[str]:
    images: list[str] = []
    for entry in [entries] if isinstance(entries, str) else entries:
        path = root / entry
        if path.is_dir():
            images += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix == ".txt":  # YOLOv5's list format: one image per line, "./" relative to the list
            for line in path.read_text().splitlines():
                line = line.strip()
                if line:
                    images.append(str(path.parent / line[2:]) if line.startswith("./") else str(root / line))
        else:
            images.append(str(path))
    return images


def resolved_dataset_yaml(data_yaml: Path, run_dir: Path) -> Path:
    """Write `run_dir/data.yaml` whose splits list absolute image paths kept in `run_dir`; return it."""
    data = read_dataset_yaml(data_yaml)
    run_dir.mkdir(parents=True, exist_ok=True)
    root = Path(data["path"])
    for split in ("train", "val", "test"):
        if data.get(split):
            images = _split_images(root, data[split])
            if not images:
                raise DatasetError(f"{data_yaml}: {split} split has no images")
            listing = run_dir / f"{split}.txt"
            listing.write_text("".join(f"{image}\n" for image in images))
            data[split] = str(listing)
    out = run_dir / "data.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
