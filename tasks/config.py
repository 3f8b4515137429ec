"""Typed, validated pipeline parameters: one section per stage of `params.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "BaseConfig",
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
    min_channels: int = Field(8, ge=0)  # no layer pruned below this (0: a ratio emptying a layer is an error)

    @model_validator(mode="after")
    def _min_channels_keeps_yaml_widths(self) -> PruneConfig:
        if self.min_channels % self.round_to:
            raise ValueError(f"min_channels={self.min_channels} must be a multiple of round_to={self.round_to}")
        return self


class FinetuneConfig(_Section):
    """Fine-tuning the pruned detector with YOLOv5's own train.py and the rewritten yaml."""

    epochs: int = Field(30, ge=1)
    imgsz: int = Field(192, ge=32, le=1280, multiple_of=32)
    batch: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, le=16)
    patience: int = Field(100, ge=0)
    seed: int = 0
    hyp: dict[str, float] = Field(default_factory=dict)  # e.g. {lr0: 0.005}: overrides of hyp.scratch-low.yaml
    epochs_per_step: int = Field(0, ge=0)  # with prune.iterative_steps > 1: fine-tune between steps (0: off)


class ValConfig(_Section):
    """Comparing base, pruned and fine-tuned detectors side by side on the same val split."""

    imgsz: int = Field(192, ge=32, le=1280, multiple_of=32)  # val input size (the training size)
    batch: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, le=16)
    latency_imgsz: int = Field(640, ge=32, le=1280, multiple_of=32)  # timing input size: YOLOv5 detect's default
    latency_repeats: int = Field(40, ge=1)  # CPU latency is the min over this many interleaved runs
    latency_threads: int = Field(1, ge=1, le=256)  # torch threads while timing: fixed, see tasks/timing.py
    throughput_batch: int = Field(8, ge=1)


class SelectConfig(_Section):
    """Picking a pruning ratio across DVC experiments (`lightweight select`)."""

    max_map50_drop: float = Field(0.03, ge=0, le=1)  # largest mAP50 loss from base a candidate may show


class Params(_Section):
    """All of `params.yaml`."""

    demo: DemoConfig = DemoConfig()
    model: ModelConfig = ModelConfig()
    base: BaseConfig = BaseConfig()
    prune: PruneConfig = PruneConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    val: ValConfig = ValConfig()
    select: SelectConfig = SelectConfig()

    @model_validator(mode="after")
    def _iterative_mode_is_complete(self) -> Params:
        if self.finetune.epochs_per_step and self.prune.iterative_steps == 1:
            raise ValueError(
                f"finetune.epochs_per_step={self.finetune.epochs_per_step} fine-tunes between pruning steps: "
                "set prune.iterative_steps > 1, or epochs_per_step to 0"
            )
        if self.finetune.epochs_per_step and self.prune.global_ranking:
            raise ValueError("prune.global_ranking cannot be combined with finetune.epochs_per_step > 0 "
                             "(each step prunes every layer to its own width)")  # fmt: skip
        return self

    def step_training(self) -> FinetuneConfig | None:
        """Training between pruning steps (iterative mode), or None when the stage prunes in one go."""
        if self.prune.iterative_steps > 1 and self.finetune.epochs_per_step > 0:
            return self.finetune.model_copy(update={"epochs": self.finetune.epochs_per_step})
        return None


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {key}: {message}" if key else f"  {message}")  # a rule across sections names its keys
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
