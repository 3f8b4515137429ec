"""YOLOv5's own train.py and val.py, run in-process with our runtime fixes."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tasks.yolo.runtime import yolov5_runtime

__all__ = ["ValMetrics", "default_hyp", "train", "validate"]

log = logging.getLogger(__name__)


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
    return str(path.resolve())


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
) -> Path:
    """Train with YOLOv5's train.py; returns the `best.pt` it writes (train.py's checkpoint format)."""
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
        device="cpu",
        project=str(run_dir),
        name="train",
        exist_ok=True,
        noplots=True,  # label histograms and batch mosaics cost minutes on a CPU
    )
    with yolov5_runtime():
        opt = yolov5_train.parse_opt(known=True)
        for key, value in options.items():
            setattr(opt, key, value)
        # train.run() would reuse main()'s default Callbacks(), which keeps every earlier run's loggers.
        yolov5_train.main(opt, callbacks=Callbacks())
    best = Path(opt.save_dir) / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"YOLOv5 training finished without writing {best}")
    return best


def validate(*, weights: Path, data: Path, imgsz: int, batch: int, workers: int, run_dir: Path) -> ValMetrics:
    """Evaluate a checkpoint on the val split with YOLOv5's val.py."""
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
        with yolov5_runtime():
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
