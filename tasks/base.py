"""Stage `base`: the detector everything else compresses, trained on the demo or brought by the user."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tasks.atomic import atomic_file, write_json
from tasks.caching import StepCachePolicy
from tasks.config import BaseConfig
from tasks.dataset import resolved_dataset_yaml
from tasks.yolo import ValMetrics, describe_checkpoint, train, validate

__all__ = ["BaseResult", "base_task", "prepare_base_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseResult:
    weights: Path
    metrics: Path


def prepare_base_model(
    cfg: BaseConfig, data_yaml: Path, out_weights: Path, out_metrics: Path, weights: Path | None = None
) -> BaseResult:
    """Train the demo detector (or take the user's `weights`), validate it, write weights and metrics."""
    with tempfile.TemporaryDirectory(prefix="lightweight-base-") as scratch:
        run_dir = Path(scratch)
        data = resolved_dataset_yaml(data_yaml, run_dir)
        if weights is not None:
            info = describe_checkpoint(weights)  # refuses anything that is not a detection checkpoint
            log.info("using your checkpoint %s (nc=%d, %s)", weights, info.nc, info.names)
            source = weights
        else:
            log.info("training %s from scratch on %s for %d epochs", cfg.cfg, data_yaml, cfg.epochs)
            source = train(
                data=data, cfg=cfg.cfg, weights="", run_dir=run_dir, epochs=cfg.epochs, imgsz=cfg.imgsz,
                batch=cfg.batch, workers=cfg.workers, patience=cfg.patience, seed=cfg.seed, hyp=cfg.hyp,
            )  # fmt: skip
            info = describe_checkpoint(source)
        metrics: ValMetrics = validate(
            weights=source, data=data, imgsz=cfg.imgsz, batch=cfg.batch, workers=cfg.workers, run_dir=run_dir
        )
        with atomic_file(out_weights) as tmp:
            shutil.copyfile(source, tmp)
    write_json(
        out_metrics,
        {
            **metrics.to_dict(),
            "imgsz": cfg.imgsz,
            "parameters": info.parameters,
            "gflops_640": info.gflops_640,
        },
    )
    log.info("base model %s: %s", out_weights, metrics.to_dict())
    return BaseResult(out_weights, out_metrics)


@task(name="base", cache_policy=StepCachePolicy(code=("tasks.base", "tasks.dataset", "tasks.yolo"),
                                                  outputs=("out_weights", "out_metrics")))  # fmt: skip
def base_task(
    cfg: BaseConfig,
    data_yaml: Path,
    dataset: Path,
    weights: Path | None,
    out_weights: Path,
    out_metrics: Path,
) -> BaseResult:
    """Train or import the base detector and measure it; `dataset` is the folder whose contents key the cache."""
    return prepare_base_model(cfg, data_yaml, out_weights, out_metrics, weights)
