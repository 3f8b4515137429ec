"""Stage `classifier`: MobileNetV3 trained on demo crops, a plain checkpoint format, clear errors for bad ones."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tasks.classifier import CropSet, evaluate, prepare_classifier, train_classifier
from tasks.config import ClassifierConfig, ConfigError, load_params
from tasks.mobilenet import (
    FORMAT,
    ClassifierError,
    build_network,
    checkpoint_dict,
    classifier_macs,
    classify_images,
    crop_box,
    load_classifier,
)
from tasks.synthetic import COLOUR_NAMES
from tests.conftest import TINY_CLASSIFIER


def test_trained_checkpoint_is_plain_and_reports_held_out_accuracy(tiny_classifier):
    weights, metrics_path = tiny_classifier
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    assert ckpt["format"] == FORMAT and ckpt["arch"] == "mobilenet_v3_small"
    assert ckpt["names"] == list(COLOUR_NAMES) and ckpt["input_size"] == [32, 16] and ckpt["pad"] == 0.1
    metrics = json.loads(metrics_path.read_text())
    assert metrics["accuracy"] == ckpt["accuracy"] and 0 <= metrics["accuracy"] <= 1
    assert metrics["val_crops"] > 0 and metrics["train_crops"] > 0
    assert metrics["parameters"] == sum(
        v.numel() for k, v in ckpt["state_dict"].items() if "running" not in k and "num_batches" not in k
    )
    assert set(metrics["per_class"]) == set(COLOUR_NAMES)
    assert metrics["mmacs_per_crop"] > 0


def test_loaded_classifier_names_one_class_per_crop(tiny_classifier):
    classifier = load_classifier(tiny_classifier[0])
    crops = [np.full((40, 20, 3), value, np.uint8) for value in (0, 90, 255)] + [np.zeros((7, 50, 3), np.uint8)]
    results = classify_images(classifier, crops, batch=3)
    assert len(results) == 4
    assert all(name in COLOUR_NAMES and 1 / len(COLOUR_NAMES) <= p <= 1 for name, p in results)
    one_by_one = classify_images(classifier, crops[:3], batch=1)  # batching does not change the answers
    assert [name for name, _ in one_by_one] == [name for name, _ in results[:3]]
    assert [p for _, p in one_by_one] == pytest.approx([p for _, p in results[:3]], abs=1e-5)


def _red_and_blue(seed: int) -> CropSet:
    """Noisy plain red and blue rectangles, alternating."""
    rng = np.random.default_rng(seed)
    labels = torch.arange(64) % 2
    pixels = torch.zeros(64, 3, 32, 16, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        colour = np.array([200, 40, 40] if label == 0 else [40, 40, 200])  # RGB
        noisy = np.clip(colour + rng.normal(0, 20, (32, 16, 3)), 0, 255).astype(np.uint8)
        pixels[i] = torch.from_numpy(noisy).permute(2, 0, 1)
    return CropSet(pixels, labels, 0)


def test_training_learns_colours_and_is_seeded():
    cfg = TINY_CLASSIFIER.model_copy(update={"epochs": 4, "batch": 16, "lr": 0.01})
    classifier = train_classifier(cfg, _red_and_blue(0), ("red", "blue"))
    assert evaluate(classifier, _red_and_blue(1), 16)["accuracy"] >= 0.9  # held out: other noise
    again = train_classifier(cfg, _red_and_blue(0), ("red", "blue"))
    first, second = classifier.network.state_dict(), again.network.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first), "same seed, same weights"


def test_user_checkpoint_is_copied_and_evaluated(tiny_classifier, tiny_demo: Path, tmp_path: Path):
    weights, _ = tiny_classifier
    out = prepare_classifier(
        TINY_CLASSIFIER,
        dataset=tiny_demo,
        out_weights=tmp_path / "c.pt",
        out_metrics=tmp_path / "c.json",
        weights=weights,
    )
    assert out.weights.read_bytes() == weights.read_bytes()
    metrics = json.loads(out.metrics.read_text())
    assert metrics["source"] == str(weights)
    assert metrics["accuracy"] == torch.load(weights, weights_only=True)["accuracy"]


def test_user_checkpoint_with_other_classes_is_copied_not_evaluated(tiny_demo: Path, tmp_path: Path):
    ckpt = _checkpoint(names=["child", "adult"], num_classes=2)
    torch.save(ckpt, tmp_path / "user.pt")
    out = prepare_classifier(
        TINY_CLASSIFIER,
        dataset=tiny_demo,
        out_weights=tmp_path / "c.pt",
        out_metrics=tmp_path / "c.json",
        weights=tmp_path / "user.pt",
    )
    metrics = json.loads(out.metrics.read_text())
    assert metrics["accuracy"] is None and metrics["names"] == ["child", "adult"]
    assert load_classifier(out.weights).names == ("child", "adult")


def _checkpoint(names=("a", "b"), num_classes=2, arch="mobilenet_v3_small") -> dict:
    from tasks.mobilenet import Classifier

    network = build_network(arch, num_classes)
    return checkpoint_dict(Classifier(network, arch, tuple(names), (32, 16), (0.5,) * 3, (0.25,) * 3, 0.1, None))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("state_dict"), r"missing keys: state_dict"),
        (lambda c: c.update(format="other/2"), r"format 'other/2'"),
        (lambda c: c.update(arch="resnet18"), r"arch 'resnet18', expected one of"),
        (lambda c: c.update(names=["a", "b", "c"]), r"3 names but the network has 2 outputs"),
        (lambda c: c.update(names=["a", "a"]), r"duplicates"),
        (lambda c: c.update(input_size=[32]), r"'input_size' must be a list of 2 numbers"),
        (lambda c: c.update(arch="mobilenet_v3_large"), r"state_dict does not fit mobilenet_v3_large"),
        (lambda c: c["state_dict"].pop("classifier.3.weight"), r"not a torchvision MobileNetV3"),
    ],
)
def test_bad_checkpoints_are_refused_with_the_reason(tmp_path: Path, change, message):
    ckpt = _checkpoint()
    change(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ClassifierError, match=rf"bad\.pt: .*{message}"):
        load_classifier(tmp_path / "bad.pt")


def test_unsafe_pickles_and_missing_files_are_refused(tmp_path: Path):
    torch.save({"model": build_network("mobilenet_v3_small", 2)}, tmp_path / "module.pt")  # a pickled nn.Module
    refused = r"module\.pt: refused to load: it references torchvision\.models\."
    with pytest.raises(ClassifierError, match=refused) as error:
        load_classifier(tmp_path / "module.pt")
    assert "weights_only" not in str(error.value)
    with pytest.raises(ClassifierError, match=r"absent\.pt: classifier checkpoint not found"):
        load_classifier(tmp_path / "absent.pt")


def test_bad_user_weights_stop_the_stage_before_any_output(tiny_demo: Path, tmp_path: Path):
    torch.save({"names": ["a", "b"]}, tmp_path / "user.pt")
    with pytest.raises(ClassifierError, match="missing keys: format, arch"):
        prepare_classifier(
            TINY_CLASSIFIER,
            dataset=tiny_demo,
            out_weights=tmp_path / "c.pt",
            out_metrics=tmp_path / "c.json",
            weights=tmp_path / "user.pt",
        )
    assert not (tmp_path / "c.pt").exists() and not (tmp_path / "c.json").exists()


def test_config_errors_name_the_key(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"classifier": {"weights": "nowhere/classifier.pt"}}))
    with pytest.raises(ConfigError, match=r"classifier: .*weights: file not found: nowhere/classifier\.pt"):
        load_params(params)
    params.write_text(yaml.safe_dump({"classifier": {"arch": "resnet18", "imgsz": [8, 32]}}))
    with pytest.raises(ConfigError) as error:
        load_params(params)
    assert "classifier.arch" in str(error.value) and "classifier.imgsz.0" in str(error.value)
    assert ClassifierConfig().imgsz == load_params(Path(__file__).parents[1] / "params.yaml").classifier.imgsz


def test_crop_box_pads_and_clips():
    image = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    assert crop_box(image, (10, 20, 30, 60), 0.1).shape == (48, 24, 3)  # 2 px and 4 px each side
    assert crop_box(image, (0, 0, 80, 100), 0.5).shape == (100, 80, 3)
    with pytest.raises(ClassifierError, match="outside"):
        crop_box(image, (90, 10, 120, 20), 0.0)


def test_large_costs_more_than_small():
    from tasks.mobilenet import Classifier

    def macs(arch: str) -> int:
        network = build_network(arch, 5)
        return classifier_macs(Classifier(network, arch, tuple("abcde"), (64, 32), (0,) * 3, (1,) * 3, 0, None))

    small, large = macs("mobilenet_v3_small"), macs("mobilenet_v3_large")
    assert 1e6 < small < large
