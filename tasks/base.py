"""Stage `base`: the detector everything else compresses, trained on the demo or brought by the user."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks.atomic import atomic_file, write_json
from tasks.config import BaseConfig, Params
from tasks.dataset import resolved_dataset_yaml
from tasks.layout import Layout
from tasks.stage import Stage
from tasks.yolo import ValMetrics, describe_checkpoint, train, validate

__all__ = ["BaseResult", "prepare_base_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseResult:
    weights: Path
    metrics: Path


def prepare_base_model(
    cfg: BaseConfig, *, data_yaml: Path, out_weights: Path, out_metrics: Path, weights: Path | None = None
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
                data=data,
                cfg=cfg.cfg,
                weights="",
                run_dir=run_dir,
                **cfg.train_options(),
            )
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


def _run(params: Params, root: Path) -> BaseResult:
    layout = Layout(root)
    return prepare_base_model(
        params.base,
        data_yaml=params.model.data_yaml(layout.demo_data),
        out_weights=layout.base_weights,
        out_metrics=layout.base_metrics,
        weights=params.model.weights_path(),
    )


STAGE = Stage(
    name="base",
    run=_run,
    deps=("data/demo",),
    outs=("models/base.pt",),
    metrics=("metrics/base.json",),
    params=("base", "model"),
)
