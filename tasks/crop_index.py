"""The output format of stage `crop`, for the stages that read it: `data/crops/index.csv`.

Kept apart from tasks/crop.py so that a reader of the index does not depend on how crops are cut.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tasks.errors import LightweightError

__all__ = ["CROP_INDEX_COLUMNS", "INDEX_NAME", "CropIndexError", "read_crop_index"]

CROP_INDEX_COLUMNS = ("crop", "video", "frame", "detection", "x1", "y1", "x2", "y2", "conf")
INDEX_NAME = "index.csv"


class CropIndexError(LightweightError, ValueError):
    """A crops index that is missing."""


def read_crop_index(path: Path) -> list[dict[str, str]]:
    """The rows of a crops index.csv."""
    if not path.is_file():
        raise CropIndexError(f"{path}: crops index not found; run the crop stage first")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
