"""Stage `classifier`: MobileNetV3 trained on the demo's ground-truth person crops, or the user's checkpoint."""

from __future__ import annotations

import csv
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import torch
import yaml
from torch.nn import functional

from tasks.atomic import atomic_file, write_json, write_torch
from tasks.config import ClassifierConfig, Params
from tasks.layout import Layout
from tasks.mobilenet import (
    Classifier,
    ClassifierError,
    build_network,
    checkpoint_dict,
    classifier_macs,
    classify_images,
    crop_box,
    load_classifier,
    normalise,
    predict_batches,
    preprocess,
)
from tasks.stage import Stage
from tasks.timing import torch_threads

__all__ = [
    "ClassifierError",
    "ClassifierResult",
    "CropSet",
    "classifier_macs",
    "classify_images",
    "evaluate",
    "ground_truth_crops",
    "load_classifier",
    "prepare_classifier",
    "train_classifier",
]

log = logging.getLogger(__name__)

# ImageNet statistics: any fixed values work for a network trained from scratch; these are the familiar ones.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_COLUMNS = ("image", "colour_name", "x1", "y1", "x2", "y2", "visible")


@dataclass(frozen=True)
class CropSet:
    """Ground-truth crops of one split, preprocessed, with their class indices."""

    pixels: torch.Tensor  # uint8 (N, 3, height, width), RGB
    labels: torch.Tensor  # int64 (N,), indices into the class names
    skipped: int  # boxes left out by the size/visibility filters


@dataclass(frozen=True)
class ClassifierResult:
    weights: Path
    metrics: Path


def demo_class_names(dataset: Path) -> tuple[str, ...]:
    """The colour classes the demo dataset declares in its data.yaml."""
    data_yaml = dataset / "data.yaml"
    if not data_yaml.is_file():
        raise ClassifierError(f"{data_yaml}: dataset yaml not found")
    colours = (yaml.safe_load(data_yaml.read_text()) or {}).get("colours")
    if not isinstance(colours, list) or len(colours) < 2:
        raise ClassifierError(f"{data_yaml}: no 'colours' list of attribute classes (is it the demo dataset?)")
    return tuple(str(c) for c in colours)


def _attribute_rows(dataset: Path, split: str) -> list[dict[str, str]]:
    path = dataset / "attributes" / f"{split}.csv"
    if not path.is_file():
        raise ClassifierError(f"{path}: attribute labels not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ClassifierError(f"{path}: missing columns {', '.join(missing)}")
        return list(reader)


def ground_truth_crops(
    dataset: Path,
    split: str,
    names: tuple[str, ...],
    cfg: ClassifierConfig,
    input_size: tuple[int, int],
    pad: float,
    filtered: bool = True,
) -> CropSet:
    """Crop every labelled box of a split (padded, clipped), keeping boxes the filters let through."""
    rows, kept, labels, skipped = _attribute_rows(dataset, split), [], [], 0
    images: dict[str, Any] = {}
    for row in rows:
        box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
        small = box[3] - box[1] < cfg.min_size
        if filtered and (small or float(row["visible"]) < cfg.min_visible):
            skipped += 1
            continue
        if row["colour_name"] not in names:
            raise ClassifierError(f"{split}.csv: colour {row['colour_name']!r} is not a class of {list(names)}")
        if row["image"] not in images:
            image_path = dataset / "images" / split / row["image"]
            images[row["image"]] = cv2.imread(str(image_path))
            if images[row["image"]] is None:
                raise ClassifierError(f"{image_path}: image missing or unreadable")
        kept.append(crop_box(images[row["image"]], box, pad))
        labels.append(names.index(row["colour_name"]))
    return CropSet(preprocess(kept, input_size), torch.tensor(labels, dtype=torch.int64), skipped)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 1/8 of the size: detector boxes are never exact."""
    n, _, height, width = batch.shape
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)
    ph, pw = height // 8, width // 8
    padded = functional.pad(batch, (pw, pw, ph, ph), mode="replicate")
    dy = torch.randint(0, 2 * ph + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pw + 1, (n,), generator=generator).tolist()
    shifts = enumerate(zip(dy, dx, strict=True))
    return torch.stack([padded[i, :, y : y + height, x : x + width] for i, (y, x) in shifts])


@torch.no_grad()
def _recalibrate_batchnorm(network: torch.nn.Module, crops: CropSet, batch: int) -> None:
    """Recompute BatchNorm statistics with the final weights over the training crops.

    torchvision's MobileNetV3 keeps running statistics with momentum 0.01: after a short training from scratch
    they still describe the early weights, and the eval-mode network predicts one class for everything.
    """
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch below
    network.train()
    for start in range(0, len(crops.labels) - 1, batch):  # a batch of 1 has no variance
        network(normalise(crops.pixels[start : start + batch], MEAN, STD))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    network.eval()


def train_classifier(cfg: ClassifierConfig, crops: CropSet, names: tuple[str, ...]) -> Classifier:
    """Train MobileNetV3 from scratch on the crops: AdamW, one-cycle schedule, seeded."""
    with torch_threads(cfg.threads):
        return _train(cfg, crops, names)


def _train(cfg: ClassifierConfig, crops: CropSet, names: tuple[str, ...]) -> Classifier:
    count = len(crops.labels)
    if count < 2:
        raise ClassifierError(f"{count} training crops pass the filters (min_size, min_visible); need at least 2")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    network = build_network(cfg.arch, len(names))
    batch = min(cfg.batch, count)
    steps = count // batch  # the remainder is dropped: reshuffled every epoch, and BatchNorm dislikes batch 1
    optimiser = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=cfg.epochs * steps)
    network.train()
    for epoch in range(cfg.epochs):
        order, total = torch.randperm(count, generator=generator), 0.0
        for step in range(steps):
            index = order[step * batch : (step + 1) * batch]
            inputs = _augment(normalise(crops.pixels[index], MEAN, STD), generator)
            loss = functional.cross_entropy(network(inputs), crops.labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        log.info("classifier epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, total / steps)
    _recalibrate_batchnorm(network, crops, batch)
    return Classifier(network.eval(), cfg.arch, names, cfg.imgsz, MEAN, STD, cfg.pad, None)


def evaluate(classifier: Classifier, crops: CropSet, batch: int) -> dict[str, Any]:
    """Accuracy overall and per class (None for a class without crops)."""
    if len(crops.labels) == 0:
        return {"accuracy": None, "per_class": dict.fromkeys(classifier.names)}
    predicted = predict_batches(classifier, crops.pixels, batch).argmax(dim=1)
    correct = predicted == crops.labels
    per_class = {}
    for index, name in enumerate(classifier.names):
        mask = crops.labels == index
        per_class[name] = round(float(correct[mask].float().mean()), 4) if mask.any() else None
    return {"accuracy": round(float(correct.float().mean()), 4), "per_class": per_class}


def _save(classifier: Classifier, accuracy: float | None, out_weights: Path) -> None:
    ckpt = checkpoint_dict(classifier)
    ckpt["accuracy"] = accuracy
    write_torch(out_weights, ckpt)


def prepare_classifier(
    cfg: ClassifierConfig, *, dataset: Path, out_weights: Path, out_metrics: Path, weights: Path | None = None
) -> ClassifierResult:
    """Train the classifier on the demo crops (or check the user's `weights`), measure it, write both outputs."""
    with torch_threads(cfg.threads):
        return _prepare(cfg, dataset, out_weights, out_metrics, weights)


def _prepare(
    cfg: ClassifierConfig, dataset: Path, out_weights: Path, out_metrics: Path, weights: Path | None
) -> ClassifierResult:
    user = load_classifier(weights) if weights is not None else None  # a bad checkpoint stops us before any work
    demo_names = demo_class_names(dataset)
    seconds = 0.0
    if user is None:
        train = ground_truth_crops(dataset, "train", demo_names, cfg, cfg.imgsz, cfg.pad)
        log.info("training %s on %d crops (%d filtered out)", cfg.arch, len(train.labels), train.skipped)
        start = time.perf_counter()
        classifier = train_classifier(cfg, train, demo_names)
        seconds = time.perf_counter() - start
        counts: dict[str, Any] = {"train_crops": len(train.labels), "train_skipped": train.skipped}
    else:
        classifier, counts = user, {}
    comparable = set(demo_names) <= set(classifier.names)  # the demo labels mean something to this classifier
    if comparable:
        held_out = ground_truth_crops(dataset, "val", classifier.names, cfg, classifier.input_size, classifier.pad)
        every = ground_truth_crops(dataset, "val", classifier.names, cfg, classifier.input_size, classifier.pad, False)
        if user is None and len(held_out.labels) == 0:
            raise ClassifierError(f"{dataset}: no val crops pass the filters (min_size, min_visible)")
        scores = evaluate(classifier, held_out, cfg.batch)
        counts |= {
            "val_crops": len(held_out.labels),
            "val_skipped": held_out.skipped,
            "accuracy_all_val": evaluate(classifier, every, cfg.batch)["accuracy"],
        }
    else:
        log.warning("%s: classes %s are not the demo's %s; not evaluated", weights, classifier.names, demo_names)
        scores = {"accuracy": None, "per_class": {}}
    if user is None:
        _save(classifier, scores["accuracy"], out_weights)
    else:
        with atomic_file(out_weights) as tmp:  # byte for byte: downstream always reads models/classifier.pt
            shutil.copyfile(weights, tmp)  # type: ignore[arg-type]
    metrics = {
        **scores,
        **counts,
        "source": "trained" if user is None else str(weights),
        "arch": classifier.arch,
        "names": list(classifier.names),
        "input_size": list(classifier.input_size),
        "parameters": sum(p.numel() for p in classifier.network.parameters()),
        "mmacs_per_crop": round(classifier_macs(classifier) / 1e6, 2),
    }
    write_json(out_metrics, metrics)
    # Wall time to the log only: the same inputs give byte-identical outputs (two fresh clones differed here).
    log.info(
        "classifier %s: accuracy %s on the held-out crops, %.1f s of training",
        out_weights,
        scores["accuracy"],
        seconds,
    )
    return ClassifierResult(out_weights, out_metrics)


def _run(params: Params, root: Path) -> ClassifierResult:
    layout = Layout(root)
    return prepare_classifier(
        params.classifier,
        dataset=layout.demo_data,
        out_weights=layout.classifier_weights,
        out_metrics=layout.classifier_metrics,
        weights=params.classifier.weights_path(),
    )


STAGE = Stage(
    name="classifier",
    run=_run,
    deps=("data/demo",),
    outs=("models/classifier.pt",),
    metrics=("metrics/classifier.json",),
)
