"""YOLOv5 dataset yamls: checked before any work, and made absolute for YOLOv5.

YOLOv5 resolves a relative `path:` against its own package folder, so a portable dataset yaml
(paths relative to the yaml itself, as the demo writes) is rewritten into the run folder first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["DatasetError", "read_dataset_yaml", "resolved_dataset_yaml"]


class DatasetError(ValueError):
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


def resolved_dataset_yaml(data_yaml: Path, run_dir: Path) -> Path:
    """Write a copy of `data_yaml` with an absolute `path` into `run_dir` and return it."""
    data = read_dataset_yaml(data_yaml)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "data.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
