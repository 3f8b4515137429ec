"""Stage `classify`: the attribute classifier on every person crop of the videos -> data/predictions.csv."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2

from tasks.atomic import atomic_file
from tasks.config import ClassifyConfig, Params
from tasks.layout import Layout
from tasks.mobilenet import ClassifierError, classify_images, load_classifier
from tasks.stage import Stage
from tasks.timing import torch_threads

__all__ = ["PREDICTION_COLUMNS", "classify_crops"]

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("crop", "class", "probability")
_INDEX_COLUMNS = ("crop",)  # the only column read here; video, frame, box and conf stay in the index


def _crop_names(index: Path) -> list[str]:
    if not index.is_file():
        raise ClassifierError(f"{index}: crop index not found")
    with index.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _INDEX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ClassifierError(f"{index}: missing columns {', '.join(missing)}")
        names = [row["crop"] for row in reader]
    empty = [n for n, name in enumerate(names, start=2) if not name]
    if empty:
        raise ClassifierError(f"{index}: line {empty[0]} has an empty 'crop'")
    return names


def classify_crops(cfg: ClassifyConfig, *, weights: Path, crops_dir: Path, index: Path, out: Path) -> Path:
    """Classify every crop the index lists, in batches; write crop, class, probability atomically."""
    classifier = load_classifier(weights)
    names = _crop_names(index)
    with torch_threads(cfg.threads), atomic_file(out) as tmp, tmp.open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(PREDICTION_COLUMNS)
        for start in range(0, len(names), cfg.batch):  # read per batch: a long video has many crops
            chunk = names[start : start + cfg.batch]
            images = []
            for name in chunk:
                image = cv2.imread(str(crops_dir / name))
                if image is None:
                    raise ClassifierError(f"{crops_dir / name}: crop listed in {index} is missing or unreadable")
                images.append(image)
            for name, (label, probability) in zip(chunk, classify_images(classifier, images, cfg.batch), strict=True):
                rows.writerow([name, label, f"{probability:.4f}"])
    log.info("classified %d crops with %s -> %s", len(names), weights, out)
    return out


def _run(params: Params, root: Path) -> Path:
    layout = Layout(root)
    return classify_crops(
        params.classify,
        weights=layout.classifier_weights,
        crops_dir=layout.crops_dir,
        index=layout.crops_index,
        out=layout.predictions,
    )


STAGE = Stage(
    name="classify",
    run=_run,
    deps=("data/crops", "models/classifier.pt"),
    outs=("data/predictions.csv",),
)
