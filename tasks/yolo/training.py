"""YOLOv5's own train.py and val.py, run in-process with our runtime fixes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from tasks.yolo.checkpoint import load_checkpoint
from tasks.yolo.runtime import yolov5_runtime

__all__ = ["THREADS", "ValMetrics", "default_hyp", "train", "validate"]

log = logging.getLogger(__name__)

THREADS = 2
"""torch intra-op threads while training and validating. Fixed, not one per core: ATen's CPU reductions
(the loss, BatchNorm statistics) add per-thread partial sums, so another thread count gives other weights."""


@dataclass(frozen=True)
class ValMetrics:
    precision: float
    recall: float
    map50: float
    map50_95: float
    pr_curve: tuple[tuple[float, float], ...] = ()  # (recall, precision) at IoU 0.5, all classes pooled

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 5) for k, v in asdict(self).items() if k != "pr_curve"}


def _pr_curve(tp: np.ndarray, conf: np.ndarray, target_cls: np.ndarray, points: int = 101) -> tuple:
    """Precision envelope over a recall grid from the matches YOLOv5 computed (IoU 0.5 column)."""
    if len(target_cls) == 0 or len(conf) == 0:
        return ()
    order = np.argsort(-conf)
    hits = tp[order, 0].astype(float)
    true_positives, false_positives = np.cumsum(hits), np.cumsum(1 - hits)
    recall = true_positives / len(target_cls)
    precision = np.maximum.accumulate((true_positives / (true_positives + false_positives))[::-1])[::-1]
    grid = np.linspace(0, 1, points)
    at_grid = [float(precision[recall >= r].max()) if (recall >= r).any() else 0.0 for r in grid]
    return tuple((round(float(r), 4), round(p, 5)) for r, p in zip(grid, at_grid, strict=True))


def _local(weights: Path | str) -> str:
    """An absolute path: YOLOv5 first asks the Hugging Face hub about any 'folder/file.pt' it is given."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{weights}: weights not found")
    load_checkpoint(path)  # a refused or unreadable file fails here, in our words, before YOLOv5's torch.load
    return str(path.resolve())


@contextmanager
def _fixed_threads(threads: int) -> Iterator[None]:
    """`threads` torch intra-op threads for the duration; the process's own settings back afterwards.

    Also restores `torch.use_deterministic_algorithms`, which YOLOv5's init_seeds turns on for the whole process.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    previous, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _warn_if_fewer_cores(workers: int) -> None:
    """YOLOv5 quietly uses min(workers, cores) loader processes; each has its own augmentation RNG stream."""
    cores = os.cpu_count() or 1
    if workers > cores:
        log.warning(
            f"{workers} data-loader workers asked, {cores} CPU cores: YOLOv5 runs {cores}, so its augmentations "
            f"(and the weights) differ from those of a machine with {workers} or more cores"
        )


def _portable(value: Any, folders: tuple[tuple[Path, str], ...]) -> Any:
    """An absolute path as one relative to the first of `folders` holding it (after its label), else its name.

    Absolute paths differ between clones, machines and working folders; `opt` is only a record (a stripped
    best.pt cannot resume). Both sides are compared with symlinks resolved: a virtualenv reached through a link
    found its own yolov5 yaml "outside" the package, and the checkpoint's bytes then differed from a fresh clone's.
    """
    if not isinstance(value, str) or not Path(value).is_absolute():
        return value
    real = Path(value).resolve()
    for folder, label in folders:
        if real.is_relative_to(folder.resolve()):
            return str(Path(label) / real.relative_to(folder.resolve()))
    return Path(value).name


def _reproducible_checkpoint(path: Path, run_dir: Path) -> None:
    """Rewrite train.py's checkpoint without what differs between identical trainings.

    Those are the wall-clock `date` (set to None) and the absolute paths in `opt`: the scratch run folder
    (random), the virtualenv's yolov5 package, the clone, the weights. Same weights then give the same bytes, so
    `dvc repro -f` reproduces the hash in dvc.lock. The zip's inner folder is named after the file: saved in place.
    """
    import yolov5

    ckpt = load_checkpoint(path)
    folders = ((run_dir.absolute(), "."), (Path(yolov5.__file__).parent, "yolov5"))
    ckpt["date"] = None
    if isinstance(ckpt.get("opt"), dict):
        ckpt["opt"] = {key: _portable(value, folders) for key, value in ckpt["opt"].items()}
    torch.save(ckpt, path)


@contextmanager
def _no_validation() -> Iterator[None]:
    """YOLOv5's `--noval` without its 7.0.14 failure after the first epoch (train.py logs `map50s`, which only
    a validation sets): every validation train.py asks for returns zeros without running.

    Every epoch's fitness is then zero, and train.py saves best.pt whenever the fitness equals the best so far:
    best.pt is the last epoch's weights. The stages validate it right after training.
    """
    from yolov5 import val as yolov5_val

    run = yolov5_val.run

    def skipped(*args: Any, **kwargs: Any) -> Any:
        classes = kwargs["model"].nc
        return (0.0,) * 7, np.zeros(classes), np.zeros(classes), (0.0, 0.0, 0.0)

    yolov5_val.run = skipped
    try:
        yield
    finally:
        yolov5_val.run = run


def default_hyp() -> dict[str, Any]:
    """YOLOv5's hyp.scratch-low.yaml, the hyperparameters its train.py uses by default."""
    import yolov5

    return yaml.safe_load((Path(yolov5.__file__).parent / "data/hyps/hyp.scratch-low.yaml").read_text())


def train(
    *,
    data: Path,
    cfg: str,
    weights: str,
    run_dir: Path,
    epochs: int,
    imgsz: int,
    batch: int,
    workers: int,
    patience: int,
    seed: int,
    hyp: dict[str, float] | None = None,
    noval: bool = False,
    cache: str = "none",
    threads: int = THREADS,
) -> Path:
    """Train with YOLOv5's train.py; returns the `best.pt` it writes (train.py's checkpoint format).

    Reruns give the same bytes: YOLOv5 seeds python, numpy, torch and each loader worker from `seed` and turns
    on deterministic algorithms; LightWeight fixes the thread count, takes the wall clock out of NMS (see
    `yolov5_runtime`) and the date and scratch paths out of the checkpoint.
    """
    from yolov5 import train as yolov5_train
    from yolov5.utils.callbacks import Callbacks

    unknown = sorted(set(hyp or {}) - set(default_hyp()))
    if unknown:
        raise ValueError(f"unknown YOLOv5 hyperparameters: {', '.join(unknown)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    hyp_file = run_dir / "hyp.yaml"
    hyp_file.write_text(yaml.safe_dump({**default_hyp(), **(hyp or {})}, sort_keys=False))
    options = dict(
        data=str(data),
        cfg=cfg,
        weights=_local(weights) if weights else "",
        hyp=str(hyp_file),
        epochs=epochs,
        imgsz=imgsz,
        batch_size=batch,
        workers=workers,
        patience=patience,
        seed=seed,
        cache=None if cache == "none" else cache,
        device="cpu",
        project=str(run_dir),
        name="train",
        exist_ok=True,
        noplots=True,  # label histograms and batch mosaics cost minutes on a CPU
    )
    _warn_if_fewer_cores(workers)
    skip_validations = _no_validation() if noval else nullcontext()
    with yolov5_runtime(), _fixed_threads(threads), skip_validations:
        opt = yolov5_train.parse_opt(known=True)
        for key, value in options.items():
            setattr(opt, key, value)
        # train.run() would reuse main()'s default Callbacks(), which keeps every earlier run's loggers.
        yolov5_train.main(opt, callbacks=Callbacks())
    best = Path(opt.save_dir) / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"YOLOv5 training finished without writing {best}")
    _reproducible_checkpoint(best, run_dir)
    return best


def validate(
    *, weights: Path, data: Path, imgsz: int, batch: int, workers: int, run_dir: Path, threads: int = THREADS
) -> ValMetrics:
    """Evaluate a checkpoint on the val split with YOLOv5's val.py (same numbers on every run, see `train`)."""
    from yolov5 import val as yolov5_val
    from yolov5.utils.callbacks import Callbacks

    matches: dict[str, np.ndarray] = {}
    compute_ap = yolov5_val.ap_per_class

    def keep_matches(tp, conf, pred_cls, target_cls, *args, **kwargs):
        matches.update(tp=tp, conf=conf, target_cls=target_cls)
        return compute_ap(tp, conf, pred_cls, target_cls, *args, **kwargs)

    # val.run() reports only summary numbers; the matches behind its PR curve are taken on the way.
    yolov5_val.ap_per_class = keep_matches
    try:
        with yolov5_runtime(), _fixed_threads(threads):
            (precision, recall, map50, map50_95, *_losses), *_per_class = yolov5_val.run(
                data=str(data),
                weights=_local(weights),
                imgsz=imgsz,
                batch_size=batch,
                workers=workers,
                device="cpu",
                task="val",
                project=str(run_dir),
                name="val",
                exist_ok=True,
                plots=False,
                callbacks=Callbacks(),
            )
    finally:
        yolov5_val.ap_per_class = compute_ap
    curve = _pr_curve(**matches) if matches else ()
    return ValMetrics(float(precision), float(recall), float(map50), float(map50_95), curve)
