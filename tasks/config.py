"""Typed, validated pipeline parameters: one section per stage of `params.yaml`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import LightweightError

__all__ = [
    "BaseConfig",
    "ClassifierConfig",
    "ClassifyConfig",
    "ConfigError",
    "CropConfig",
    "DemoConfig",
    "DetectConfig",
    "ExportConfig",
    "FinetuneConfig",
    "FlowReportConfig",
    "IntervalSweepConfig",
    "LineSpec",
    "ModelConfig",
    "NightlyConfig",
    "Params",
    "PreviewConfig",
    "PruneConfig",
    "RunnerConfig",
    "SelectConfig",
    "StorageConfig",
    "TrackConfig",
    "TrainingConfig",
    "ValConfig",
    "knob_overrides",
    "load_params",
    "validated",
]


class ConfigError(LightweightError, ValueError):
    """A parameter file that cannot be used, with every offending key named."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoConfig(_Section):
    """Synthetic street scenes, the embedded demo data."""

    seed: int = 0  # same seed, byte-identical dataset and videos
    image_width: int = Field(320, ge=64, le=2048)  # dataset image size in pixels
    image_height: int = Field(320, ge=64, le=2048)
    train_images: int = Field(800, ge=1)
    val_images: int = Field(100, ge=1)
    max_people: int = Field(6, ge=1, le=50)  # pedestrians per dataset image, drawn from 1..max_people
    distractors: int = Field(10, ge=0, le=50)  # extra non-person objects per still, drawn from 0..distractors
    videos: int = Field(2, ge=0, le=20)
    video_frames: int = Field(600, ge=1)
    video_width: int = Field(640, ge=64, le=4096)
    video_height: int = Field(360, ge=64, le=4096)
    video_fps: int = Field(15, ge=1, le=120)
    video_people: int = Field(24, ge=1, le=100)  # pedestrians crossing each video, entering in turn
    video_distractors: int = Field(4, ge=0, le=50)  # objects standing in each video (the first a car)


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


class TrainingConfig(_Section):
    """YOLOv5's own train.py settings, shared by stages `base` and `finetune`."""

    epochs: int = Field(30, ge=1)
    imgsz: int = Field(192, ge=32, le=1280, multiple_of=32)
    batch: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, le=16)  # dataloader processes
    patience: int = Field(0, ge=0)  # early stopping after this many epochs without progress; 0: off
    seed: int = 0
    hyp: dict[str, float] = Field(default_factory=dict)  # overrides of YOLOv5's hyp.scratch-low.yaml
    noval: bool = True  # YOLOv5's --noval: no validation between epochs; best.pt = the last epoch's weights
    cache: Literal["none", "ram"] = "ram"  # YOLOv5's --cache ram: decoded training images kept in memory

    @model_validator(mode="after")
    def _patience_needs_validation(self) -> TrainingConfig:
        if self.noval and self.patience:
            raise ValueError(
                f"patience={self.patience} stops on validation results, which noval=true skips: "
                "set patience to 0 or noval to false"
            )
        return self

    def train_options(self) -> dict[str, Any]:
        """These settings as keyword arguments of the adapter's `train` (shared by base and finetune)."""
        return {key: getattr(self, key) for key in TrainingConfig.model_fields}


class BaseConfig(TrainingConfig):
    """Training the base detector from scratch."""

    cfg: str = "yolov5n.yaml"  # model yaml: a stock name (yolov5n/s/m/l/x.yaml) or a path


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


class FinetuneConfig(TrainingConfig):
    """Fine-tuning the pruned detector with the rewritten yaml."""

    epochs: int = Field(30, ge=1)
    epochs_per_step: int = Field(0, ge=0)  # with prune.iterative_steps > 1: fine-tune between steps (0: off)


class ValConfig(_Section):
    """Comparing base, pruned and fine-tuned detectors side by side on the same val split."""

    imgsz: int = Field(192, ge=32, le=1280, multiple_of=32)  # val input size (the training size)
    batch: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, le=16)
    latency_imgsz: int = Field(640, ge=32, le=1280, multiple_of=32)  # timing input size: YOLOv5 detect's default
    latency_repeats: int = Field(40, ge=1)  # CPU latency is the min over this many interleaved runs
    latency_threads: list[Annotated[int, Field(ge=1, le=256)]] = Field([1, 2], min_length=1)  # each timed apart
    # timed side by side; the ONNX/IR files are exported as stage export does (its opset, dynamic, simplify);
    # onnxruntime_int8: the INT8 models stage export kept in models/int8/ (export.int8), where there are any
    runtimes: list[Literal["torch", "onnxruntime", "openvino", "onnxruntime_int8"]] = Field(
        ["torch", "onnxruntime", "openvino", "onnxruntime_int8"], min_length=1
    )
    throughput_batch: int = Field(8, ge=1)  # torch, at the first of latency_threads

    @field_validator("latency_threads", "runtimes")
    @classmethod
    def _distinct(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"values must be distinct, got {values}")
        return values

    @field_validator("runtimes")
    @classmethod
    def _torch_timed(cls, runtimes: list[str]) -> list[str]:
        if "torch" not in runtimes:
            raise ValueError("must include torch: every speed-up is against the base on PyTorch")
        return runtimes


class SelectConfig(_Section):
    """Picking a pruning ratio across DVC experiments (`lightweight select`)."""

    max_map50_drop: float = Field(0.03, ge=-1, le=1)  # largest mAP50 loss from base; < 0: must beat it by that


class DetectConfig(_Section):
    """Sampled detection on video: every `interval`-th frame goes through the detector."""

    weights: str = "models/finetuned.pt"  # any YOLOv5 detection checkpoint
    videos: list[str] = ["data/demo/videos"]  # video files, folders of videos, or globs
    interval: int = Field(5, ge=1)  # detect every interval-th frame (1 = every frame)
    start: int = Field(0, ge=0)  # first frame index considered (0-based)
    end: int | None = Field(None, ge=1)  # stop before this frame index; null = to the end of the video
    # inference size (long side), a multiple of 32 as in detect.py. Run a detector at the scale it was trained at:
    # the demo's learnt 320 px stills at 192 (x0.6), so its 640 px video frames run at 384 (640 x 0.6).
    imgsz: int = Field(384, ge=32)
    # confidence threshold. 0.35: on the demo's val split F1 is as at detect.py's 0.25 (0.853 vs 0.854) with
    # precision 0.93 instead of 0.88, and a count is only as good as its false positives are few
    conf: float = Field(0.35, gt=0, lt=1)
    iou: float = Field(0.45, gt=0, lt=1)  # NMS IoU threshold
    max_det: int = Field(1000, ge=1)  # maximum detections per frame
    classes: list[int] | None = None  # keep only these class ids (e.g. [0] = person on COCO); null keeps all
    batch: int = Field(8, ge=1)  # sampled frames per forward pass
    threads: int = Field(2, ge=1, le=256)  # CPU threads of the detector: fixed, so boxes do not depend on the machine
    # torch: the .pt as it is; onnxruntime / openvino: its export by stage export (must have passed the equality
    # check and come from these very weights); onnxruntime_int8: its INT8 model, if export.int8 kept one (not held
    # to the equality check, only to export.max_int8_map50_drop); auto: the fastest FP32 export that passed, else torch
    runtime: Literal["auto", "torch", "onnxruntime", "openvino", "onnxruntime_int8"] = "auto"

    def weights_path(self, root: Path) -> Path:
        """`weights` resolved against the project folder."""
        return Path(self.weights) if Path(self.weights).is_absolute() else root / self.weights

    @model_validator(mode="after")
    def _check(self) -> DetectConfig:
        if self.imgsz % 32:
            raise ValueError(f"imgsz {self.imgsz} is not a multiple of 32 (YOLOv5's largest stride)")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be greater than start ({self.start})")
        if not self.videos:
            raise ValueError("videos is empty: give at least one video file, folder or glob")
        return self


class CropConfig(_Section):
    """Cropping each detection from its original frame."""

    pad: float = Field(0.1, ge=0, le=1)  # margin added on each side, as a fraction of the box width/height
    min_size: int = Field(8, ge=1)  # crops narrower or lower than this many pixels (after clipping) are dropped
    jpeg_quality: int = Field(95, ge=10, le=100)


class FlowReportConfig(_Section):
    """People-flow report: counts over time, class tallies and the comparison with ground truth."""

    match_iou: float = Field(0.5, gt=0, lt=1)  # a detection matches a ground-truth person at this IoU
    gt_min_visible: float = Field(0.5, ge=0, le=1)  # ground-truth people less visible than this are not counted
    gt_min_height: int = Field(16, ge=0)  # nor those lower than this many pixels (too small to detect)


class RunnerConfig(_Section):
    """Where the Prefect flow runs the per-video detection tasks (not read by any DVC stage)."""

    task_runner: Literal["threads", "dask"] = "threads"  # dask: prefect-dask's DaskTaskRunner
    threads: int = Field(1, ge=1)  # videos at once with "threads" (torch already uses every core for one)
    dask_address: str = ""  # a running scheduler, e.g. tcp://10.0.0.5:8786; empty starts a local cluster
    dask_workers: int = Field(2, ge=1)  # worker processes of that local cluster


class StorageConfig(_Section):
    """Where DVC's remote and `lightweight publish` keep artifacts on S3; credentials come from the AWS chain."""

    endpoint_url: str = ""  # S3-compatible server, e.g. http://127.0.0.1:9000; empty: AWS (or $AWS_ENDPOINT_URL_S3)
    bucket: str = Field("lightweight", min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = Field("lightweight", pattern=r"^$|^[^/](.*[^/])?$")  # key prefix in the bucket, no end slashes
    region: str = ""  # empty: from the AWS chain ($AWS_DEFAULT_REGION, the profile)
    max_attempts: int = Field(5, ge=1, le=20)  # per request, first try included (botocore "standard" retries)
    connect_timeout: float = Field(10, gt=0)  # seconds
    read_timeout: float = Field(60, gt=0)  # seconds without a byte from the server before a request fails
    # Files larger than this are published in parts of this size (S3 takes at most 5 GB in one PUT, parts >= 5 MiB).
    multipart_mb: int = Field(64, ge=5, le=5120)

    # Environment variables that override the file, so CI and users can point elsewhere without editing it.
    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "LIGHTWEIGHT_S3_ENDPOINT_URL": "endpoint_url",
        "LIGHTWEIGHT_S3_BUCKET": "bucket",
        "LIGHTWEIGHT_S3_PREFIX": "prefix",
        "LIGHTWEIGHT_S3_REGION": "region",
    }

    def with_environment(self, environ: Mapping[str, str] = os.environ) -> StorageConfig:
        """This config with the LIGHTWEIGHT_S3_* variables that are set applied (validated again)."""
        given = {name: environ[name] for name in self.ENVIRONMENT if environ.get(name)}
        if not given:
            return self
        updates = {self.ENVIRONMENT[name]: value for name, value in given.items()}
        try:
            return StorageConfig.model_validate({**self.model_dump(), **updates})
        except ValidationError as error:
            source = "storage from the environment (" + ", ".join(f"{k}={v}" for k, v in given.items()) + ")"
            raise ConfigError(_describe(error, source)) from None

    @model_validator(mode="after")
    def _endpoint_is_a_url(self) -> StorageConfig:
        if self.endpoint_url and not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url: expected http://HOST[:PORT] or https://..., got {self.endpoint_url!r}")
        return self


class NightlyConfig(_Section):
    """The `nightly-eval` deployment: re-validate the fine-tuned model and compare with the last good run."""

    max_map50_drop: float = Field(0.02, ge=0, le=1)  # largest fall in fine-tuned mAP50 before the run fails
    max_count_shift: float = Field(0.25, ge=0)  # largest relative change of mean people per frame on a video
    cron: str = "0 2 * * *"  # when `lightweight serve` schedules it: five cron fields
    timezone: str = "UTC"  # IANA name the cron is read in

    @field_validator("cron")
    @classmethod
    def _five_cron_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"expected five cron fields (minute hour day month weekday), got {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}, e.g. UTC or Europe/Paris") from None
        return value


_Pixels = Annotated[int, Field(ge=16, le=512)]


class ClassifierConfig(_Section):
    """Stage `classifier`: the person-attribute classifier, MobileNetV3 from torchvision, trained or brought."""

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
    def _user_weights_exist(self) -> ClassifierConfig:
        if self.weights and not Path(self.weights).is_file():
            raise ValueError(f"weights: file not found: {self.weights}")
        return self


class ClassifyConfig(_Section):
    """Stage `classify`: the classifier on every crop."""

    batch: int = Field(64, ge=1)  # crops per forward pass
    threads: int = Field(1, ge=0, le=64)  # torch CPU threads; 0 = one per core (slower on a shared machine)


_Point = tuple[float, float]


def _fmt(point: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in point) + ")"


class LineSpec(_Section):
    """A counting line: two points, in pixels or as fractions of the frame's width and height."""

    points: tuple[_Point, _Point]  # [[x, y], [x, y]]: start, end; "in" = onto the left of start→end, as seen on screen
    units: Literal["fraction", "pixels"]  # no default: [[0.5, 0], [0.5, 1]] means different lines in each

    @model_validator(mode="after")
    def _check(self) -> LineSpec:
        start, end = self.points
        if start == end:
            raise ValueError(f"the two points are equal ({_fmt(start)}): a line needs two different points")
        for point in self.points:
            if min(point) < 0 or (self.units == "fraction" and max(point) > 1):
                limit = "fractions of width and height, 0 to 1" if self.units == "fraction" else "pixels, 0 or more"
                raise ValueError(f"point {_fmt(point)} is outside the frame ({limit})")
        return self

    def in_pixels(self, width: int, height: int) -> tuple[_Point, _Point]:
        """The two points in pixels of a `width` x `height` frame."""
        if self.units == "pixels":
            return self.points
        (x1, y1), (x2, y2) = self.points
        return (x1 * width, y1 * height), (x2 * width, y2 * height)


class TrackConfig(_Section):
    """Tracking on the sampled detections, line crossings and the scoring against ground truth."""

    # ByteTrack (supervision): boxes above this confidence are associated first; below it (down to 0.1) they can
    # only continue a track; a new track needs this + 0.1.
    track_activation_threshold: float = Field(0.25, gt=0, lt=0.9)
    # Largest association cost 1 - IoU x confidence of a first-round match (0.8: IoU x confidence >= 0.2).
    minimum_matching_threshold: float = Field(0.8, gt=0, lt=1)
    # seconds a track survives unseen (behind someone, something) before it ends; on the demo 2 s split people
    # who pass behind others into two or three tracks (unique people +21-33%), 6 s kept them whole (+8-13%)
    lost_track_s: float = Field(6.0, gt=0)
    # Boxes are widened by this share of their width/height on every side while associating ("buffered IoU"):
    # between sparse samples a walker moves farther than a box's width, and plain IoU would fall to zero.
    buffer: float = Field(0.5, ge=0, le=2)
    anchor: Literal["bottom_center", "center"] = "bottom_center"  # the point of a box that crosses lines: the feet
    # {video name or "*": {line name: line}}; by default one vertical line through the middle of every video
    lines: dict[str, dict[str, LineSpec]] = Field(
        default_factory=lambda: {"*": {"middle": LineSpec(points=((0.5, 0.0), (0.5, 1.0)), units="fraction")}}
    )
    match_iou: float = Field(0.5, gt=0, lt=1)  # scoring: a track box matches a true person at this IoU


class IntervalSweepConfig(_Section):
    """Stage `interval_sweep`: detection and tracking at several intervals, scored against the ground truth."""

    intervals: list[Annotated[int, Field(ge=1)]] = [1, 2, 3, 5, 8, 12]  # detect.interval values tried
    max_idf1_drop: float = Field(0.05, ge=0, le=1)  # the knee: the largest interval with IDF1 this close to the best

    @field_validator("intervals")
    @classmethod
    def _some_distinct_intervals(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("empty: give at least one interval, e.g. [1, 2, 3, 5, 8, 12]")
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(str, repeated))} listed more than once")
        return value


class PreviewConfig(_Section):
    """Stage `preview`: a short GIF per video with the tracks, their colours, the lines and running counts."""

    enabled: bool = True  # false: the stage writes an empty reports/preview
    start_s: float = Field(0, ge=0)  # where the clip starts, in seconds of video
    seconds: float = Field(8, gt=0)  # clip length, in seconds of video; shown at the sampled frame rate
    width: int = Field(480, ge=64, le=1920)  # GIF width in pixels (never wider than the video); height keeps the aspect


class ExportConfig(_Section):
    """Exporting the detectors for deployment runtimes, and the tolerances their equality is held to."""

    # onnx: <name>.onnx; openvino: <name>_openvino/ (converted from the ONNX)
    formats: tuple[Literal["onnx", "openvino"], ...] = ("onnx", "openvino")
    imgsz: int = Field(640, ge=32, le=1280, multiple_of=32)  # export and check input size: YOLOv5 export's default
    dynamic: bool = True  # free batch/height/width: detect feeds letterboxed batches; val.py/detect.py still load it
    opset: int = Field(17, ge=12, le=20)  # ONNX opset (YOLOv5 7.0 wrote 12; 17 is read by every runtime pinned here)
    simplify: bool = False  # onnxslim the graph before writing it (the equality check still applies)
    check_images: int = Field(16, ge=1)  # val images whose raw outputs are compared with the checkpoint's
    # val mAP50 of the .pt and of each export at this size; None: at imgsz. The demo's is its training size:
    # its detector learnt 192 px, so mAP50 at 640 says little (0.3) and costs 2.5 min per model on 2 cores.
    map50_imgsz: int | None = Field(192, ge=32, le=1280, multiple_of=32)
    max_output_diff: float = Field(0.01, gt=0)  # largest |export - .pt| raw output allowed (box pixels, scores)
    max_map50_diff: float = Field(0.005, ge=0, le=1)  # an FP32 export's val mAP50 must be this close to the .pt's
    workers: int = Field(0, ge=0, le=16)  # dataloader processes for the mAP50 check
    # also INT8 models (ONNX Runtime static quantization, Detect head in FP32) in models/int8/, each kept only if
    # its val mAP50 is within max_int8_map50_drop of the .pt's. Off: this CPU (AVX2, no VNNI) ran INT8 slower.
    int8: bool = False
    int8_images: int = Field(128, ge=1)  # training images the INT8 activation ranges are calibrated on (>= 100)
    max_int8_map50_drop: float = Field(0.01, ge=0, le=1)  # largest val mAP50 loss for an INT8 model to be kept

    @field_validator("formats")
    @classmethod
    def _some_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("formats is empty: give onnx, openvino or both")
        if len(set(value)) != len(value):
            raise ValueError(f"formats lists a format twice: {list(value)}")
        return value

    @model_validator(mode="after")
    def _map50_size_needs_a_dynamic_export(self) -> ExportConfig:
        if not self.dynamic and self.map50_imgsz not in (None, self.imgsz):
            raise ValueError(
                f"map50_imgsz {self.map50_imgsz} differs from imgsz {self.imgsz}, but a static export "
                "(dynamic: false) only takes imgsz; set dynamic: true or map50_imgsz: null"
            )
        return self

    @property
    def map50_size(self) -> int:
        """The size the val mAP50 check runs at."""
        return self.imgsz if self.map50_imgsz is None else self.map50_imgsz


class Params(_Section):
    """All of `params.yaml`."""

    demo_data: DemoConfig = DemoConfig()
    model: ModelConfig = ModelConfig()
    base: BaseConfig = BaseConfig()
    prune: PruneConfig = PruneConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    val: ValConfig = ValConfig()
    select: SelectConfig = SelectConfig()
    detect: DetectConfig = DetectConfig()
    crop: CropConfig = CropConfig()
    flow_report: FlowReportConfig = FlowReportConfig()
    runner: RunnerConfig = RunnerConfig()
    storage: StorageConfig = StorageConfig()
    nightly: NightlyConfig = NightlyConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    classify: ClassifyConfig = ClassifyConfig()
    track: TrackConfig = TrackConfig()
    export: ExportConfig = ExportConfig()
    interval_sweep: IntervalSweepConfig = IntervalSweepConfig()
    preview: PreviewConfig = PreviewConfig()

    @model_validator(mode="after")
    def _iterative_mode_is_complete(self) -> Params:
        if self.finetune.epochs_per_step and self.prune.iterative_steps == 1:
            raise ValueError(
                f"finetune.epochs_per_step={self.finetune.epochs_per_step} fine-tunes between pruning steps: "
                "set prune.iterative_steps > 1, or epochs_per_step to 0"
            )
        if self.finetune.epochs_per_step and self.prune.global_ranking:
            raise ValueError(
                "prune.global_ranking cannot be combined with finetune.epochs_per_step > 0 "
                "(each step prunes every layer to its own width)"
            )
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


def knob_overrides(**knobs: Any) -> dict[str, Any]:
    """Flat deployment parameters (`prune_ratio=0.4`) as dotted overrides (`prune.ratio`); None means unset."""
    overrides = {}
    for name, value in knobs.items():
        sections = [s for s in Params.model_fields if name.startswith(f"{s}_") and len(name) > len(s) + 1]
        if not sections:
            raise ConfigError(f"parameter {name!r}: expected SECTION_KEY, e.g. prune_ratio")
        section = max(sections, key=len)  # demo_data_seed is demo_data.seed
        if value is not None:
            overrides[f"{section}.{name[len(section) + 1 :]}"] = value
    return overrides


def validated(section: type[_Section], source: str, **values: Any) -> Any:
    """`section(**values)`, or a ConfigError naming every bad value (for command-line options)."""
    try:
        return section(**values)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


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
