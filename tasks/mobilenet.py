"""The person-attribute classifier: MobileNetV3 checkpoint format, loading, cropping and batch inference.

A checkpoint is a plain dict (loads with `torch.load(weights_only=True)`):
`format` ("lightweight-classifier/1"), `arch` (mobilenet_v3_small | mobilenet_v3_large), `names` (class
names, in output order), `input_size` ([height, width]), `mean` and `std` (3 RGB values on 0..1 pixels),
`state_dict` (torchvision's MobileNetV3 with `num_classes=len(names)`), and optionally `pad` (box margin as a
share of width/height used when cropping, default 0) and `accuracy` (held-out accuracy, or None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

from tasks.boxes import padded_box
from tasks.errors import LightweightError
from tasks.pickles import pickle_globals, torch_refusal_detail

__all__ = [
    "ARCHITECTURES",
    "FORMAT",
    "Classifier",
    "ClassifierError",
    "build_network",
    "checkpoint_dict",
    "classifier_macs",
    "classify_images",
    "crop_box",
    "load_classifier",
    "normalise",
    "predict_batches",
    "preprocess",
]

FORMAT = "lightweight-classifier/1"
ARCHITECTURES = {"mobilenet_v3_small": mobilenet_v3_small, "mobilenet_v3_large": mobilenet_v3_large}
_REQUIRED = ("format", "arch", "names", "input_size", "mean", "std", "state_dict")


class ClassifierError(LightweightError, ValueError):
    """A classifier checkpoint or crop that cannot be used, with the reason."""


@dataclass(frozen=True)
class Classifier:
    """A loaded classifier in eval mode and everything needed to feed it."""

    network: nn.Module
    arch: str
    names: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad: float
    accuracy: float | None


def build_network(arch: str, num_classes: int) -> nn.Module:
    """torchvision's MobileNetV3 with fresh weights (nothing is downloaded)."""
    if arch not in ARCHITECTURES:
        raise ClassifierError(f"arch {arch!r}: expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](weights=None, num_classes=num_classes)


def checkpoint_dict(classifier: Classifier) -> dict[str, Any]:
    """The checkpoint of `classifier`: plain types and tensors only."""
    return {
        "format": FORMAT,
        "arch": classifier.arch,
        "names": list(classifier.names),
        "input_size": list(classifier.input_size),
        "mean": list(classifier.mean),
        "std": list(classifier.std),
        "pad": classifier.pad,
        "accuracy": classifier.accuracy,
        "state_dict": {k: v.detach().cpu().clone() for k, v in classifier.network.state_dict().items()},
    }


def _numbers(ckpt: dict[str, Any], key: str, count: int, path: Path) -> tuple[float, ...]:
    value = ckpt[key]
    if not isinstance(value, list | tuple) or len(value) != count or not all(isinstance(v, int | float) for v in value):
        raise ClassifierError(f"{path}: {key!r} must be a list of {count} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _validated(ckpt: Any, path: Path) -> dict[str, Any]:
    if not isinstance(ckpt, dict):
        raise ClassifierError(f"{path}: expected a dict checkpoint ({FORMAT}), got {type(ckpt).__name__}")
    missing = [key for key in _REQUIRED if key not in ckpt]
    if missing:
        raise ClassifierError(f"{path}: not a {FORMAT} checkpoint, missing keys: {', '.join(missing)}")
    if ckpt["format"] != FORMAT:
        raise ClassifierError(f"{path}: format {ckpt['format']!r}, expected {FORMAT!r}")
    if ckpt["arch"] not in ARCHITECTURES:
        raise ClassifierError(f"{path}: arch {ckpt['arch']!r}, expected one of {sorted(ARCHITECTURES)}")
    names = ckpt["names"]
    if not isinstance(names, list | tuple) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise ClassifierError(f"{path}: 'names' must be a list of at least 2 non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ClassifierError(f"{path}: 'names' has duplicates: {names!r}")
    size = _numbers(ckpt, "input_size", 2, path)
    if not all(s == int(s) and 16 <= s <= 1024 for s in size):
        raise ClassifierError(f"{path}: 'input_size' must be [height, width] in 16..1024 pixels, got {size}")
    if any(s <= 0 for s in _numbers(ckpt, "std", 3, path)):
        raise ClassifierError(f"{path}: 'std' values must be positive")
    _numbers(ckpt, "mean", 3, path)
    if not isinstance(ckpt["state_dict"], dict):
        raise ClassifierError(f"{path}: 'state_dict' must be a dict of tensors")
    return ckpt


def _refusal(path: Path, error: Exception) -> ClassifierError:
    """Our words for a file torch would not load: the globals it names, never torch's advice to load it unsafely."""
    from torch._weights_only_unpickler import _get_allowed_globals  # what weights_only=True admits

    allowed = set(_get_allowed_globals())
    refused = [name for name in pickle_globals(path) if name not in allowed and f"builtins.{name}" not in allowed]
    if refused:
        return ClassifierError(
            f"{path}: refused to load: it references {', '.join(refused)}, more than a classifier checkpoint "
            "(a dict of tensors, numbers and strings) holds. Nothing in the file was executed."
        )
    return ClassifierError(f"{path}: not a readable torch checkpoint ({torch_refusal_detail(error)})")


def load_classifier(path: Path | str) -> Classifier:
    """Load and check a classifier checkpoint; every problem is a ClassifierError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{path}: classifier checkpoint not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and safe-globals errors alike
        raise _refusal(path, error) from None
    ckpt = _validated(raw, path)
    names = tuple(ckpt["names"])
    head = ckpt["state_dict"].get("classifier.3.weight")
    if head is None or not isinstance(head, torch.Tensor):
        raise ClassifierError(f"{path}: state_dict has no 'classifier.3.weight': not a torchvision MobileNetV3")
    if head.shape[0] != len(names):
        raise ClassifierError(f"{path}: {len(names)} names but the network has {head.shape[0]} outputs")
    network = build_network(ckpt["arch"], len(names))
    try:
        network.load_state_dict(ckpt["state_dict"])
    except RuntimeError as error:
        raise ClassifierError(f"{path}: state_dict does not fit {ckpt['arch']}: {error}") from error
    accuracy = ckpt.get("accuracy")
    return Classifier(
        network=network.eval(),
        arch=ckpt["arch"],
        names=names,
        input_size=tuple(int(s) for s in ckpt["input_size"]),  # type: ignore[arg-type]
        mean=_numbers(ckpt, "mean", 3, path),  # type: ignore[arg-type]
        std=_numbers(ckpt, "std", 3, path),  # type: ignore[arg-type]
        pad=float(ckpt.get("pad") or 0.0),
        accuracy=float(accuracy) if isinstance(accuracy, int | float) else None,
    )


def crop_box(image: np.ndarray, box: Sequence[float], pad: float) -> np.ndarray:
    """The box (x1, y1, x2, y2 pixels) widened by `pad` of its size on every side, clipped to the image."""
    clipped = padded_box(image.shape, box, pad)
    if clipped is None:
        height, width = image.shape[:2]
        raise ClassifierError(f"box {tuple(box)} lies outside the {width}x{height} image")
    left, top, right, bottom = clipped
    return image[top:bottom, left:right]


def preprocess(images: Sequence[np.ndarray], input_size: tuple[int, int]) -> torch.Tensor:
    """BGR uint8 crops -> an RGB uint8 batch (N, 3, height, width), each crop stretched to the input size."""
    height, width = input_size
    batch = np.empty((len(images), height, width, 3), np.uint8)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise ClassifierError(f"crop {i}: expected a non-empty BGR image, got shape {image.shape}")
        shrinking = image.shape[0] > height or image.shape[1] > width
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        batch[i] = resized[:, :, ::-1]
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float input of the network."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean_t) / std_t


@torch.inference_mode()
def predict_batches(classifier: Classifier, pixels: torch.Tensor, batch: int) -> torch.Tensor:
    """Softmax probabilities (N, classes) for a preprocessed uint8 batch."""
    classifier.network.eval()
    out = [
        torch.softmax(classifier.network(normalise(pixels[i : i + batch], classifier.mean, classifier.std)), dim=1)
        for i in range(0, len(pixels), batch)
    ]
    return torch.cat(out) if out else torch.empty(0, len(classifier.names))


def classify_images(classifier: Classifier, images: Sequence[np.ndarray], batch: int = 64) -> list[tuple[str, float]]:
    """(class name, probability) of the most likely class for each BGR crop."""
    if batch < 1:
        raise ClassifierError(f"batch must be at least 1, got {batch}")
    results: list[tuple[str, float]] = []
    for start in range(0, len(images), batch):  # preprocess per batch: memory stays flat for long videos
        probs = predict_batches(classifier, preprocess(images[start : start + batch], classifier.input_size), batch)
        best, index = probs.max(dim=1)
        results.extend((classifier.names[int(i)], float(p)) for p, i in zip(best, index, strict=True))
    return results


def classifier_macs(classifier: Classifier) -> int:
    """Multiply-accumulates for one crop (convolutions and linear layers: FlopCounterMode FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    network = classifier.network
    was_training = network.training
    network.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, 3, *classifier.input_size))
    network.train(was_training)
    return counter.get_total_flops() // 2
