"""Typed, validated pipeline parameters: one section per stage of `params.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "BaseConfig",
    "ClassifyConfig",
    "ConfigError",
    "DemoConfig",
    "FinetuneConfig",
    "ModelConfig",
    "Params",
    "PruneConfig",
    "SelectConfig",
    "ValConfig",
    "load_params",
]


class ConfigError(ValueError):
    """A parameter file that cannot be used, with every offending key named."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoConfig(_Section):
    """Synthetic street scenes, the embedded demo data."""

    seed: int = 0  # same seed, byte-identical dataset and videos
    image_width: int = Field(320, ge=64, le=2048)  # dataset image size in pixels
    image_height: int = Field(320, ge=64, le=2048)
    train_images: int = Field(400, ge=1)
    val_images: int = Field(100, ge=1)
    max_people: int = Field(6, ge=1, le=50)  # pedestrians per dataset image, drawn from 1..max_people
    distractors: int = Field(4, ge=0, le=50)  # non-person objects per image (cars, poles, bins, trees)
    videos: int = Field(2, ge=0, le=20)
    video_frames: int = Field(240, ge=1)
    video_width: int = Field(640, ge=64, le=4096)
    video_height: int = Field(360, ge=64, le=4096)
    video_fps: int = Field(15, ge=1, le=120)
    video_people: int = Field(8, ge=1, le=100)  # pedestrians crossing each video


class ModelConfig(_Section):
    """Where the detector and its dataset come from: the demo, or your own."""

    weights: str = ""  # your own YOLOv5 checkpoint (best.pt); empty trains the demo detector
    data: str = ""  # your own YOLOv5 dataset yaml; empty uses the demo dataset

    def data_yaml(self, demo_data: Path) -> Path:
        """The dataset yaml in use: the user's, or the demo's."""
        return Path(self.data) if self.data else demo_data / "data.yaml"

    def weights_path(self) -> Path | None:
        """The user's checkpoint, or None to train the demo detector."""
        return Path(self.weights) if self.weights else None

    @model_validator(mode="after")
    def _user_paths_exist(self) -> ModelConfig:
        for key in ("weights", "data"):
            value = getattr(self, key)
            if value and not Path(value).is_file():
                raise ValueError(f"{key}: file not found: {value}")
        return self


class BaseConfig(_Section):
    """Training the base detector with YOLOv5's own train.py."""

    cfg: str = "yolov5n.yaml"  # model yaml: a stock name (yolov5n/s/m/l/x.yaml) or a path
    epochs: int = Field(60, ge=1)
    imgsz: int = Field(192, ge=32, le=1280, multiple_of=32)
    batch: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, le=16)  # dataloader processes
    patience: int = Field(100, ge=0)  # early stopping; 0 disables it
    seed: int = 0
    hyp: dict[str, float] = Field(default_factory=dict)  # overrides of YOLOv5's hyp.scratch-low.yaml


class PruneConfig(_Section):
    """Structured, dependency-aware channel pruning of the base detector."""

    ratio: float = Field(0.5, gt=0, lt=1)  # share of channels removed from every prunable layer
    importance: Literal["l2", "l1", "bn_scale", "random"] = "l2"  # channel ranking; random is a baseline
    round_to: int = Field(8, ge=8, multiple_of=8)  # YOLOv5 rounds every yaml width up to a multiple of 8
    iterative_steps: int = Field(1, ge=1)  # reach the ratio in this many pruning steps
    global_ranking: bool = False  # rank channels across layers instead of within each layer


class FinetuneConfig(_Section):
    """Fine-tuning the pruned detector with YOLOv5's own train.py and the rewritten yaml."""

    epochs: int = Field(30, ge=1)
    imgsz: int = Field(192, ge=32, le=1280, multiple_of=32)
    batch: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, le=16)
    patience: int = Field(100, ge=0)
    seed: int = 0
    hyp: dict[str, float] = Field(default_factory=dict)  # e.g. {lr0: 0.005}: overrides of hyp.scratch-low.yaml


class ValConfig(_Section):
    """Comparing base, pruned and fine-tuned detectors side by side on the same val split."""

    imgsz: int = Field(192, ge=32, le=1280, multiple_of=32)  # val input size (the training size)
    batch: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, le=16)
    latency_imgsz: int = Field(640, ge=32, le=1280, multiple_of=32)  # timing input size: YOLOv5 detect's default
    latency_repeats: int = Field(20, ge=1)  # CPU latency is the min over this many interleaved runs
    throughput_batch: int = Field(8, ge=1)


class SelectConfig(_Section):
    """Picking a pruning ratio across DVC experiments (`lightweight select`)."""

    max_map50_drop: float = Field(0.03, ge=0, le=1)  # largest mAP50 loss from base a candidate may show


_Pixels = Annotated[int, Field(ge=16, le=512)]


class ClassifyConfig(_Section):
    """The person-attribute classifier (stages `classifier` and `classify`): MobileNetV3 from torchvision."""

    arch: Literal["mobilenet_v3_small", "mobilenet_v3_large"] = "mobilenet_v3_small"
    weights: str = ""  # your own classifier checkpoint (format in README); empty trains one on the demo crops
    imgsz: tuple[_Pixels, _Pixels] = (64, 32)  # [height, width] crops are stretched to; people are ~2:1 tall
    epochs: int = Field(10, ge=1)
    batch: int = Field(64, ge=2)  # training and inference batch
    lr: float = Field(0.003, gt=0, le=1)  # AdamW peak learning rate (one-cycle schedule)
    seed: int = 0
    pad: float = Field(0.1, ge=0, le=1)  # margin around each box, as a share of its width/height, when cropping
    min_size: int = Field(16, ge=1)  # demo boxes shorter than this (pixels) are left out: too few shirt pixels
    min_visible: float = Field(0.5, ge=0, le=1)  # demo boxes more hidden than this are left out: colour is a guess
    threads: int = Field(1, ge=0, le=64)  # torch CPU threads; 0 = one per core (slower on a shared machine)

    def weights_path(self) -> Path | None:
        """The user's checkpoint, or None to train on the demo."""
        return Path(self.weights) if self.weights else None

    @model_validator(mode="after")
    def _user_weights_exist(self) -> ClassifyConfig:
        if self.weights and not Path(self.weights).is_file():
            raise ValueError(f"weights: file not found: {self.weights}")
        return self


class Params(_Section):
    """All of `params.yaml`."""

    demo: DemoConfig = DemoConfig()
    model: ModelConfig = ModelConfig()
    base: BaseConfig = BaseConfig()
    prune: PruneConfig = PruneConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    val: ValConfig = ValConfig()
    select: SelectConfig = SelectConfig()
    classify: ClassifyConfig = ClassifyConfig()


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (`base.epochs`) on a copy of the raw parameters."""
    merged = {section: dict(values) if isinstance(values, dict) else values for section, values in raw.items()}
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r}: expected SECTION.KEY, e.g. base.epochs")
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {dotted!r}: section {section!r} is not a mapping")
        target[key] = value
    return merged


def load_params(path: Path | str = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate the parameter file, failing with every bad key named."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: parameter file not found") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    raw = _apply_overrides(raw, overrides or {})
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, str(path))) from None
