"""Shared fixtures: a tiny demo dataset and a real YOLOv5 train.py checkpoint trained on it."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from flows.kernels import pin_cpu_kernels
from tasks.config import (
    BaseConfig,
    ClassifierConfig,
    ClassifyConfig,
    CropConfig,
    DemoConfig,
    DetectConfig,
    FinetuneConfig,
    FlowReportConfig,
    ValConfig,
)
from tasks.registry import stage_names

pytest_plugins = ["tests.moto_s3"]  # fixtures `s3_server` (moto on 127.0.0.1) and `aws_env`

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, like the machines this runs on
# Idle OpenMP threads sleep instead of spinning: three workers (and their stage subprocesses) share two cores, and
# spinning threads took a third of the suite's CPU (tests of prune, val, export, finetune and yolo: 440 -> 282 s
# of CPU, 251 -> 175 s of wall). libgomp reads it once, when torch loads: pytest imports this file before the
# test modules import torch (the imports above do not), and subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
pin_cpu_kernels()  # torch's kernels capped at AVX2, as every `lightweight` process runs (flows/kernels.py)

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules made of slow tests first, those with the most of them first: xdist (--dist=loadscope) hands
    modules out in this order, so the end-to-end ones start at once and quick ones fill the workers at the end."""

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    tests = Counter(module(item) for item in items)
    slow = Counter(module(item) for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: (-slow[module(item)] / tests[module(item)], -slow[module(item)]))


def stock_yaml(name: str) -> Path:
    """A model yaml shipped with the yolov5 package, e.g. yolov5n.yaml."""
    import yolov5

    return Path(yolov5.__file__).parent / "models" / name


TINY_DEMO = DemoConfig(
    seed=7,
    image_width=128,
    image_height=128,
    train_images=12,
    val_images=6,
    max_people=3,
    distractors=2,
    video_distractors=2,
    videos=1,
    video_frames=24,  # long enough for the walkers to come fully into view (visible counts the part outside)
    video_width=160,
    video_height=96,
    video_fps=5,
    video_people=3,
)
TINY_BASE = BaseConfig(epochs=1, imgsz=64, batch=4, workers=0)
TINY_FINETUNE = FinetuneConfig(epochs=1, imgsz=64, batch=4, workers=0)
TINY_DETECT = DetectConfig(imgsz=64, conf=0.01, max_det=20, interval=2)  # the 1-epoch detector is unsure
TINY_VAL = ValConfig(imgsz=64, batch=4, workers=0, latency_imgsz=64, latency_repeats=2, throughput_batch=2)
TINY_CLASSIFIER = ClassifierConfig(imgsz=(32, 16), epochs=2, batch=8, min_size=8)
TINY_CLASSIFY = ClassifyConfig(batch=8)
STAGES = tuple(stage_names())  # DVC stages = Prefect task names = modules, from the registry


def tiny_params() -> dict:
    """A params.yaml for the whole DAG that runs in about a minute."""
    return {
        "demo_data": TINY_DEMO.model_dump(),
        "model": {},
        "base": TINY_BASE.model_dump(),
        "prune": {"ratio": 0.5},
        "finetune": TINY_FINETUNE.model_dump(),
        # OpenVINO's conversions are the slowest part of export and val: the DAG tests time ONNX Runtime only,
        # tests/test_export.py and tests/test_val.py cover OpenVINO
        # ... and at one thread count (tests/test_val.py times two)
        "val": {**TINY_VAL.model_dump(), "runtimes": ["torch", "onnxruntime"], "latency_threads": [1]},
        "detect": TINY_DETECT.model_dump(),
        "crop": CropConfig().model_dump(),  # DVC wants every section a stage declares, defaults or not
        "flow_report": FlowReportConfig().model_dump(),
        "classifier": TINY_CLASSIFIER.model_dump(mode="json"),
        "classify": TINY_CLASSIFY.model_dump(mode="json"),
        "track": {"lines": {"*": {"middle": {"points": [[0.5, 0.0], [0.5, 1.0]], "units": "fraction"}}}},
        "interval_sweep": {"intervals": [1, 2]},
        # a 1-epoch detector's mAP50 turns on a few near-tied scores (ONNX Runtime's 1e-5 output differences
        # moved it by 0.07 at 64 px): the DAG tests do not test the export check, tests/test_export.py does
        "export": {"formats": ["onnx"], "imgsz": 64, "check_images": 2, "map50_imgsz": 64, "max_map50_diff": 1.0},
        "preview": {"seconds": 1, "width": 96},
    }


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.demo_data import generate_demo_data

    return generate_demo_data(TINY_DEMO, tmp_path_factory.mktemp("demo") / "demo").root


@pytest.fixture(scope="session")
def trained_checkpoint(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt exactly as YOLOv5's train.py leaves it (nc=1, 'person')."""
    from tasks.dataset import resolved_dataset_yaml
    from tasks.yolo import train

    run_dir = tmp_path_factory.mktemp("train")
    data = resolved_dataset_yaml(tiny_demo / "data.yaml", run_dir)
    return train(
        data=data,
        cfg="yolov5n.yaml",
        weights="",
        run_dir=run_dir,
        epochs=1,
        imgsz=64,
        batch=4,
        workers=0,
        patience=0,
        seed=0,
        noval=True,
        cache="ram",
    )


@pytest.fixture(scope="session")
def pruned(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """`trained_checkpoint` pruned at ratio 0.5: (outputs, metrics)."""
    from tasks.config import PruneConfig
    from tasks.layout import PruneOutputs
    from tasks.prune import prune_checkpoint

    out = PruneOutputs.in_folder(tmp_path_factory.mktemp("pruned"))
    return out, prune_checkpoint(PruneConfig(ratio=0.5), weights=trained_checkpoint, out=out)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    """A classifier trained by stage `classifier` on `tiny_demo`: (weights, metrics)."""
    from tasks.classifier import prepare_classifier

    out = tmp_path_factory.mktemp("classifier")
    result = prepare_classifier(
        TINY_CLASSIFIER, dataset=tiny_demo, out_weights=out / "classifier.pt", out_metrics=out / "classifier.json"
    )
    return result.weights, result.metrics
